"""The optional delivery pipeline stack: only with -c pipeline=true; V2; deploys the committed weight
by default; the deploy build can do nothing but assume the CDK bootstrap roles."""

from __future__ import annotations

import json
import sys

import pytest

CONNECTION = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PIPELINE_CONTEXT = {
    "pipeline": "true",
    "pipelineConnectionArn": CONNECTION,
    "pipelineRepository": "acme/crystal-canary",
}
STACK = "CrystalCanaryPipeline"
BOOTSTRAP_ROLES = ("deploy", "file-publishing", "image-publishing", "lookup")


@pytest.fixture(scope="module")
def piped(synth):
    return synth(**PIPELINE_CONTEXT)


@pytest.fixture(scope="module")
def template(piped):
    return piped.templates[STACK]


@pytest.fixture(scope="module")
def pipeline(piped):
    return piped.one("AWS::CodePipeline::Pipeline", STACK)["Properties"]


def action(pipeline: dict, stage: str) -> dict:
    (found,) = next(s for s in pipeline["Stages"] if s["Name"] == stage)["Actions"]
    return found


def project_of(template: dict, action_: dict) -> dict:
    return template["Resources"][action_["Configuration"]["ProjectName"]["Ref"]]["Properties"]


def buildspec(project: dict) -> dict:
    return json.loads(project["Source"]["BuildSpec"])


def env_vars(action_: dict) -> dict:
    return {v["name"]: v["value"] for v in json.loads(action_["Configuration"]["EnvironmentVariables"])}


def test_no_pipeline_stack_without_pipeline_true(synth):
    assert set(synth().templates) == {"CrystalCanary"}
    assert set(synth(pipeline="false").templates) == {"CrystalCanary"}


def test_the_canary_stack_does_not_depend_on_the_pipeline(synth, piped):
    assert set(piped.templates) == {"CrystalCanary", STACK}
    # Identical with or without the pipeline, and no cross-stack reference either way.
    assert piped.template == synth().template
    for stack in piped.templates.values():
        assert "Fn::ImportValue" not in json.dumps(stack)


def test_codepipeline_v2_deploys_the_checked_out_committed_weight_by_default(template, pipeline):
    assert pipeline["PipelineType"] == "V2"
    (variable,) = pipeline["Variables"]
    assert variable["Name"] == "canaryWeight"
    # Not a number frozen when the pipeline was deployed: cdk.json as merged, read at run time.
    assert variable["DefaultValue"] == "committed"
    commands = buildspec(project_of(template, action(pipeline, "Deploy")))["phases"]["build"]["commands"]
    resolve = commands[0]
    assert 'json.load(open("cdk.json"))["context"].get("canaryWeight", 0)' in resolve
    assert 'if [ "$WEIGHT" = committed ]; then WEIGHT="$COMMITTED_WEIGHT"; fi' in resolve


def test_the_weight_resolution_runs_in_bash_as_intended(template, pipeline, tmp_path):
    import subprocess

    resolve = buildspec(project_of(template, action(pipeline, "Deploy")))["phases"]["build"]["commands"][0]
    (tmp_path / "cdk.json").write_text('{"context": {"canaryWeight": 25}}')
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    for variable, expected in (("committed", "25"), ("40", "40")):
        out = subprocess.run(
            ["bash", "-c", resolve + '; echo "$WEIGHT"'],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={"CANARY_WEIGHT": variable, "PATH": "/usr/bin:/bin"},
            check=True,
        )
        assert out.stdout.strip() == expected


def test_stages_in_order_source_test_and_diff_approval_deploy(pipeline):
    assert [s["Name"] for s in pipeline["Stages"]] == ["Source", "TestAndDiff", "Approval", "Deploy"]
    assert [
        action(pipeline, s)["ActionTypeId"]["Provider"] for s in ("Source", "TestAndDiff", "Approval", "Deploy")
    ] == [
        "CodeStarSourceConnection",
        "CodeBuild",
        "Manual",
        "CodeBuild",
    ]


def test_source_is_the_connection_repository_and_branch(pipeline):
    config = action(pipeline, "Source")["Configuration"]
    assert config["ConnectionArn"] == CONNECTION
    assert config["FullRepositoryId"] == "acme/crystal-canary"
    assert config["BranchName"] == "main"


def role_statements(template: dict, role_id: str) -> list[dict]:
    """Every statement of the AWS::IAM::Policy resources attached to `role_id`."""
    return [
        st
        for r in template["Resources"].values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"]["Roles"]
        for st in r["Properties"]["PolicyDocument"]["Statement"]
    ]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


CODESTAR_CONNECTION = CONNECTION.replace(":codeconnections:", ":codestar-connections:")


@pytest.mark.parametrize("connection", [CONNECTION, CODESTAR_CONNECTION], ids=["codeconnections", "codestar"])
def test_source_action_may_use_the_connection_whichever_service_prefix_its_arn_has(synth, connection):
    """AWS CodeStar Connections became AWS CodeConnections; new connections have `codeconnections` ARNs,
    old ones keep `codestar-connections`, and IAM's service prefix must match the resource's
    (https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html)."""
    piped = synth(**{**PIPELINE_CONTEXT, "pipelineConnectionArn": connection})
    template = piped.templates[STACK]
    source = action(piped.one("AWS::CodePipeline::Pipeline", STACK)["Properties"], "Source")
    assert source["Configuration"]["ConnectionArn"] == connection
    role_id = source["RoleArn"]["Fn::GetAtt"][0]
    statements = role_statements(template, role_id)
    granted = {a for st in statements if connection in as_list(st["Resource"]) for a in as_list(st["Action"])}
    prefix = connection.split(":")[2]
    assert f"{prefix}:UseConnection" in granted  # the one IAM checks for this ARN
    assert granted == {"codeconnections:UseConnection", "codestar-connections:UseConnection"}
    # Nothing else on the connection, and the connection on no other statement of any role.
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy":
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                if any("UseConnection" in a for a in as_list(st["Action"])):
                    assert r["Properties"]["Roles"] == [{"Ref": role_id}]
                    assert as_list(st["Resource"]) == [connection]


def test_tests_and_diff_then_deploy_the_same_source(pipeline):
    source_output = action(pipeline, "Source")["OutputArtifacts"][0]["Name"]
    for stage in ("TestAndDiff", "Deploy"):
        assert action(pipeline, stage)["InputArtifacts"] == [{"Name": source_output}]


def test_test_stage_runs_make_test_and_the_diff_to_the_weight_to_deploy(template, pipeline):
    test = action(pipeline, "TestAndDiff")
    assert env_vars(test) == {"CANARY_WEIGHT": "#{variables.canaryWeight}"}
    commands = buildspec(project_of(template, test))["phases"]["build"]["commands"]
    assert commands[0] == "make test"
    assert commands[-1] == '.venv/bin/python -m canary_stack.ops.offline_diff --from "$COMMITTED_WEIGHT" --to "$WEIGHT"'


def test_deploy_runs_cdk_deploy_at_the_pipeline_variable(template, pipeline):
    deploy = action(pipeline, "Deploy")
    # Pipeline variables resolve in action configuration only; the buildspec reads the env var.
    assert env_vars(deploy) == {"CANARY_WEIGHT": "#{variables.canaryWeight}"}
    commands = buildspec(project_of(template, deploy))["phases"]["build"]["commands"]
    assert commands[1:] == [
        'npx cdk deploy CrystalCanary --require-approval never --no-notices -c canaryWeight="$WEIGHT"'
    ]


def test_deploy_role_may_only_assume_the_bootstrap_roles(template, pipeline):
    resources = template["Resources"]
    project = project_of(template, action(pipeline, "Deploy"))
    role_id = project["ServiceRole"]["Fn::GetAtt"][0]
    role = resources[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    statements = [
        st
        for r in resources.values()
        if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"]["Roles"]
        for st in r["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert all(st["Effect"] == "Allow" for st in statements)

    def actions(st):
        return st["Action"] if isinstance(st["Action"], list) else [st["Action"]]

    (assume,) = [st for st in statements if "sts:AssumeRole" in actions(st)]
    assert actions(assume) == ["sts:AssumeRole"]
    names = sorted(arn["Fn::Join"][1][4] for arn in assume["Resource"])
    assert names == sorted(f":role/cdk-hnb659fds-{kind}-role-" for kind in BOOTSTRAP_ROLES)
    for arn in assume["Resource"]:
        assert arn["Fn::Join"][1][5:] == [{"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}]

    # The rest: writing its build logs and reading the pipeline's artifacts, nothing else.
    for st in statements:
        if st is assume:
            continue
        acts = set(actions(st))
        if all(a.startswith("logs:") for a in acts):
            assert acts <= {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
        else:
            assert acts == {"s3:GetBucket*", "s3:GetObject*", "s3:List*"}, st
            assert "PipelineArtifactsBucket" in json.dumps(st["Resource"])


def test_builds_are_not_given_aws_credentials_in_plain_text(template):
    # Neither project gets keys: the deploy works through its role only.
    for project in (r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"):
        assert "AWS_ACCESS_KEY_ID" not in json.dumps(project)
