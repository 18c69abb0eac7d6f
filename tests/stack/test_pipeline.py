"""The optional delivery pipeline stack: only with -c pipeline=true; V2; deploys the committed weight
by default; the deploy build can do nothing but assume the CDK bootstrap roles."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.alarms import put_alarm
from support.configurations import CONNECTION, PIPELINE_CONTEXT
from support.loopback import LoopbackHttp, crystal_service, describe_stacks
from support.synthesis import ROOT

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


def build_commands(template: dict, pipeline: dict, stage: str) -> list[str]:
    return buildspec(project_of(template, action(pipeline, stage)))["phases"]["build"]["commands"]


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
    variables = {v["Name"]: v["DefaultValue"] for v in pipeline["Variables"]}
    # Not a number frozen when the pipeline was deployed: cdk.json as merged, read at run time;
    # and no rollout unless a run asks for one. A variable's default cannot be empty (1-1000
    # characters: https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PipelineVariableDeclaration.html).
    assert variables == {
        "canaryWeight": "committed",
        "rolloutSteps": "none",
        "rolloutBake": "600",
        "rolloutVerifyRequests": "0",
        "rolloutMinCanaryRequests": "30",
    }


STEP = ".venv/bin/python -m canary_stack.ops pipeline "


def test_buildspecs_run_the_project_s_steps_and_hold_no_shell_logic(template, pipeline):
    """Each build is `make setup`, then the steps of canary_stack/ops/pipeline.py, which read and
    check the variables themselves: no command holds a variable, a condition or a pipe."""
    assert build_commands(template, pipeline, "TestAndDiff") == [STEP + "test", STEP + "diff"]
    assert build_commands(template, pipeline, "Deploy") == [STEP + "deploy"]
    for stage in ("TestAndDiff", "Deploy"):
        spec = buildspec(project_of(template, action(pipeline, stage)))
        assert spec["phases"]["install"]["commands"] == ["make setup"]
        assert set(spec["phases"]) == {"install", "build"}
        for command in spec["phases"]["build"]["commands"]:
            assert not re.search(r"[$;&|<>`(){}\[\]\"'*?]", command), command


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
def test_the_source_and_both_builds_may_use_the_connection_whichever_service_prefix_its_arn_has(synth, connection):
    """AWS CodeStar Connections became AWS CodeConnections; new connections have `codeconnections` ARNs,
    old ones keep `codestar-connections`, and IAM's service prefix must match the resource's
    (https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html). With the full-clone output,
    CodeBuild clones through the connection with the project's role: "you must grant your CodeBuild
    environment permissions to use the connection", UseConnection on the connection ARN
    (https://docs.aws.amazon.com/codepipeline/latest/userguide/troubleshooting.html#codebuild-role-connections)."""
    piped = synth(**{**PIPELINE_CONTEXT, "pipelineConnectionArn": connection})
    template = piped.templates[STACK]
    pipeline = piped.one("AWS::CodePipeline::Pipeline", STACK)["Properties"]
    source = action(pipeline, "Source")
    assert source["Configuration"]["ConnectionArn"] == connection
    users = {source["RoleArn"]["Fn::GetAtt"][0]} | {
        project_of(template, action(pipeline, stage))["ServiceRole"]["Fn::GetAtt"][0]
        for stage in ("TestAndDiff", "Deploy")
    }
    assert len(users) == 3
    prefix = connection.split(":")[2]
    for role_id in users:
        statements = role_statements(template, role_id)
        granted = {a for st in statements if connection in as_list(st["Resource"]) for a in as_list(st["Action"])}
        assert f"{prefix}:UseConnection" in granted  # the one IAM checks for this ARN
        assert granted == {"codeconnections:UseConnection", "codestar-connections:UseConnection"}, role_id
    # Nothing else on the connection, and the connection on no other role.
    for r in template["Resources"].values():
        if r["Type"] == "AWS::IAM::Policy":
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                if any("UseConnection" in a for a in as_list(st["Action"])):
                    (role,) = r["Properties"]["Roles"]
                    assert role["Ref"] in users
                    assert as_list(st["Resource"]) == [connection]


def test_the_source_action_hands_codebuild_a_git_clone(pipeline):
    """The default output is a zip without .git, on which `make test`'s git tests fail. Full clone:
    "the next CodeBuild job clones the repository (instead of CodePipeline downloading the files).
    This provides access to repository history"
    (https://docs.aws.amazon.com/cdk/api/v2/python/aws_cdk.pipelines/ConnectionSourceOptions.html); the
    action's configuration field is OutputArtifactFormat
    (https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-CodestarConnectionSource.html)."""
    assert action(pipeline, "Source")["Configuration"]["OutputArtifactFormat"] == "CODEBUILD_CLONE_REF"
    # Only CodeBuild can use a clone reference: every consumer of the artifact is a CodeBuild action.
    output = action(pipeline, "Source")["OutputArtifacts"][0]["Name"]
    consumers = [a for s in pipeline["Stages"] for a in s["Actions"] if {"Name": output} in a.get("InputArtifacts", [])]
    assert [c["ActionTypeId"]["Provider"] for c in consumers] == ["CodeBuild", "CodeBuild"]


def test_tests_and_diff_then_deploy_the_same_source(pipeline):
    source_output = action(pipeline, "Source")["OutputArtifacts"][0]["Name"]
    for stage in ("TestAndDiff", "Deploy"):
        assert action(pipeline, stage)["InputArtifacts"] == [{"Name": source_output}]


def test_variables_reach_both_builds_only_as_environment_variables(template, pipeline):
    # Pipeline variables resolve in action configuration only; the buildspecs read the env vars.
    expected = {
        "CANARY_WEIGHT": "#{variables.canaryWeight}",
        "ROLLOUT_STEPS": "#{variables.rolloutSteps}",
        "ROLLOUT_BAKE": "#{variables.rolloutBake}",
        "ROLLOUT_VERIFY_REQUESTS": "#{variables.rolloutVerifyRequests}",
        "ROLLOUT_MIN_CANARY_REQUESTS": "#{variables.rolloutMinCanaryRequests}",
    }
    for stage in ("TestAndDiff", "Deploy"):
        assert env_vars(action(pipeline, stage)) == expected
        for command in build_commands(template, pipeline, stage):
            assert "#{" not in command
            # Every use of a variable is a double-quoted expansion: no value becomes shell text.
            for name in (*expected, "WEIGHT", "COMMITTED_WEIGHT", "VERIFY"):
                unquoted = re.sub(r'"[^"]*"', "", command)
                assert f"${name}" not in unquoted and f"${{{name}}}" not in unquoted, command


def test_test_stage_runs_privileged_for_the_image_s_crystal_compiler(template, pipeline):
    project = project_of(template, action(pipeline, "TestAndDiff"))
    # Docker in CodeBuild needs privileged mode (ci/crystal-in-docker runs the compiler in Docker).
    assert project["Environment"]["PrivilegedMode"] is True
    assert project["Environment"]["Image"] == "aws/codebuild/standard:7.0"


def test_the_approval_names_the_commit_and_where_the_real_diff_is(pipeline):
    """A manual approval shows its CustomData with the pipeline's variables resolved; a configuration
    field holds at most 1000 characters
    (https://docs.aws.amazon.com/codepipeline/latest/userguide/reference-variables.html)."""
    approve = action(pipeline, "Approval")
    text = approve["Configuration"]["CustomData"]
    namespace = action(pipeline, "Source")["Namespace"]
    assert text.startswith(
        f"Commit #{{{namespace}.CommitId}}: deploys CrystalCanary at canaryWeight #{{variables.canaryWeight}}"
    )
    assert "`cdk diff` of CrystalCanary as deployed now against what this run deploys" in text
    assert len(text) <= 1000


def test_deploy_build_timeout_covers_the_longest_rollout_the_tool_accepts(template, pipeline):
    """CodeBuild builds time out after 5 to 2160 minutes (36 hours)
    (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_CreateProject.html). The rollout
    is given the timeout less 20 minutes of set-up as --max-duration, so a plan that cannot finish
    is refused before its first deploy instead of being killed mid-bake with no rollback."""
    from canary_stack.pipeline_variables import MAX_ROLLOUT_SECONDS

    project = project_of(template, action(pipeline, "Deploy"))
    minutes = project["TimeoutInMinutes"]
    assert 5 <= minutes <= 2160
    assert minutes == 480
    assert MAX_ROLLOUT_SECONDS == minutes * 60 - 20 * 60


def role_of(template: dict, pipeline: dict, stage: str) -> tuple[str, list[dict]]:
    project = project_of(template, action(pipeline, stage))
    role_id = project["ServiceRole"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    return role_id, role_statements(template, role_id)


def actions_of(st: dict) -> list[str]:
    return as_list(st["Action"])


def check_build_basics(st: dict) -> None:
    """What CodeBuild itself needs: its logs, the pipeline's artifacts (the clone reference), the clone."""
    acts = set(actions_of(st))
    if all(a.startswith("logs:") for a in acts):
        assert acts <= {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    elif all(a.endswith(":UseConnection") for a in acts):
        assert as_list(st["Resource"]) == [CONNECTION]
    else:
        assert acts == {"s3:GetBucket*", "s3:GetObject*", "s3:List*"}, st
        assert "PipelineArtifactsBucket" in json.dumps(st["Resource"])


def test_test_role_may_only_assume_the_lookup_role_for_cdk_diff(template, pipeline):
    """`cdk diff --method template` compares templates "using the lookup role"; the change-set methods
    use the deploy role (https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-diff.html). The test
    build may look, never change: no deploy or publishing role, nothing else of AWS."""
    _, statements = role_of(template, pipeline, "TestAndDiff")
    assert all(st["Effect"] == "Allow" for st in statements)
    (assume,) = [st for st in statements if "sts:AssumeRole" in actions_of(st)]
    assert actions_of(assume) == ["sts:AssumeRole"]
    assert assume["Resource"]["Fn::Join"][1][4] == ":role/cdk-hnb659fds-lookup-role-"
    for st in statements:
        if st is not assume:
            check_build_basics(st)


def test_deploy_role_may_only_assume_the_bootstrap_roles_and_read_the_alarms_and_the_stack(template, pipeline):
    _, statements = role_of(template, pipeline, "Deploy")
    assert all(st["Effect"] == "Allow" for st in statements)

    (assume,) = [st for st in statements if "sts:AssumeRole" in actions_of(st)]
    assert actions_of(assume) == ["sts:AssumeRole"]
    names = sorted(arn["Fn::Join"][1][4] for arn in assume["Resource"])
    assert names == sorted(f":role/cdk-hnb659fds-{kind}-role-" for kind in BOOTSTRAP_ROLES)
    for arn in assume["Resource"]:
        assert arn["Fn::Join"][1][5:] == [{"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}]

    # The rollout reads the canary alarms, metric and composite: "To use this operation and return
    # information about composite alarms, you must be signed on with the cloudwatch:DescribeAlarms
    # permission that is scoped to *"
    # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html).
    (alarms,) = [st for st in statements if any(a.startswith("cloudwatch:") for a in actions_of(st))]
    assert actions_of(alarms) == ["cloudwatch:DescribeAlarms"]
    assert alarms["Resource"] == "*"

    # The rollout and its verify read the canary stack's outputs and status: DescribeStacks on that
    # stack only (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html).
    (outputs,) = [st for st in statements if any(a.startswith("cloudformation:") for a in actions_of(st))]
    assert actions_of(outputs) == ["cloudformation:DescribeStacks"]
    assert outputs["Resource"]["Fn::Join"][1][-1] == ":stack/CrystalCanary/*"
    assert outputs["Resource"]["Fn::Join"][1][2] == ":cloudformation:"

    # The rest: its build logs, the pipeline's artifacts and the clone, nothing else.
    for st in statements:
        if st not in (assume, alarms, outputs):
            check_build_basics(st)


def test_builds_are_not_given_aws_credentials_in_plain_text(template):
    # Neither project gets keys: the deploy works through its role only.
    for project in (r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CodeBuild::Project"):
        assert "AWS_ACCESS_KEY_ID" not in json.dumps(project)


# ---------------------------------------------------------------------------------------------
# The Deploy stage end to end: its buildspec commands, run by bash as CodeBuild runs them, against
# CloudWatch served by moto on 127.0.0.1 and a recording stand-in for the project's CDK CLI.

ALARM_5XX = "CrystalCanary-canary-5xx"
ALARM_LATENCY = "CrystalCanary-canary-p99-latency"
REGION = "us-east-1"

# Records its argv (one JSON line per run), says what it deployed or diffed, and fails when asked to.
FAKE_CDK = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_CDK_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
weight = [a for a in sys.argv if a.startswith("canaryWeight=")][-1].split("=", 1)[1]
print(f"fake cdk: {{sys.argv[1]}} canaryWeight={{weight}}", flush=True)
sys.exit(1 if weight == os.environ.get("FAKE_CDK_FAIL_AT") else 0)
"""


def run_like_codebuild(commands: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A buildspec 0.2 phase with `shell: bash`: the commands run in order, each seeing the
    environment and directory the one before left; the first that exits non-zero fails the phase
    and the rest never run (https://docs.aws.amazon.com/codebuild/latest/userguide/build-spec-ref.html).
    Stricter than one shared shell: each command gets its own bash and only exported variables carry
    over, so the buildspec works whichever way CodeBuild keeps state between commands."""
    out, err = [], []
    state = Path(tempfile.mkdtemp(prefix="codebuild-state-"))
    env_file, cwd_file = state / "env", state / "cwd"
    for index, command in enumerate(commands):
        script = f'{command}\n__rc=$?; env -0 > "{env_file}"; pwd > "{cwd_file}"; exit "$__rc"'
        result = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        out.append(result.stdout)
        err.append(result.stderr)
        if result.returncode != 0:
            out.append(f"[Container] command {index} exit status {result.returncode}\n")
            shutil.rmtree(state)
            return subprocess.CompletedProcess(commands, result.returncode, "".join(out), "".join(err))
        pairs = (entry.split("=", 1) for entry in env_file.read_text().split("\0") if "=" in entry)
        env = {k: v for k, v in pairs if k not in ("_", "SHLVL", "PWD", "OLDPWD")}
        cwd = Path(cwd_file.read_text().strip())
    shutil.rmtree(state)
    return subprocess.CompletedProcess(commands, 0, "".join(out), "".join(err))


@pytest.fixture(scope="module")
def moto_server():
    """moto's server on a free loopback port, one per module: stopping one waits out its 0.5 s poll."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto_cloudwatch(moto_server):
    """CloudWatch by moto's server, emptied and given the stack's alarms for each test; yields (endpoint, client)."""
    import urllib.request

    import boto3

    endpoint = moto_server
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    client = boto3.client(
        "cloudwatch",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for name in (ALARM_5XX, ALARM_LATENCY, "CrystalCanary-production-5xx"):
        put_alarm(client, name)
    # Not a canary alarm: even firing, it must not stop a rollout.
    client.set_alarm_state(AlarmName="CrystalCanary-production-5xx", StateValue="ALARM", StateReason="test")
    yield endpoint, client


# Records its argv and the `crystal` it would run (one JSON line per run); exit FAKE_MAKE_EXIT.
FAKE_MAKE = f"""#!{sys.executable}
import json, os, shutil, sys
with open(os.environ["FAKE_MAKE_LOG"], "a") as log:
    aws = sorted(k for k in os.environ if k.startswith("AWS_") and k not in ("AWS_REGION", "AWS_DEFAULT_REGION"))
    log.write(json.dumps({{"argv": sys.argv[1:], "crystal": shutil.which("crystal"), "aws": aws}}) + "\\n")
print("fake make: " + " ".join(sys.argv[1:]), flush=True)
sys.exit(int(os.environ.get("FAKE_MAKE_EXIT", "0")))
"""


def git(cwd: Path, *args: str) -> str:
    identity = ("-c", "user.name=pipeline test", "-c", "user.email=pipeline@example.com")
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


# The Makefile and what `make setup` depends on: in the commit, and as old as its stamps in each clone.
SETUP_FILES = ("Makefile", "requirements.txt", "requirements-dev.txt", "package.json", "package-lock.json")


@pytest.fixture(scope="module")
def pipeline_origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository the source action reads, one commit: the package, the Makefile and what its
    set-up depends on, ci/, and cdk.json (committed weight 25). Each test clones it (`source_copy`)."""
    origin = tmp_path_factory.mktemp("origin")
    shutil.copytree(ROOT / "canary_stack", origin / "canary_stack", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "ci", origin / "ci")
    for name in SETUP_FILES:
        shutil.copy2(ROOT / name, origin / name)
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    cdk_json["context"]["canaryWeight"] = 25
    (origin / "cdk.json").write_text(json.dumps(cdk_json))
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "the commit the pipeline runs")
    return origin


@pytest.fixture
def source_copy(tmp_path: Path, pipeline_origin: Path) -> Path:
    """What a build has of the source after `make setup`: a git clone of the commit (the source
    action's CODEBUILD_CLONE_REF), its set-up files as old as the stamps (so `make deploy` finds it
    done), the venv, and a recording node_modules/.bin/cdk. A new clone for each test: a build
    writes into it."""
    src = tmp_path / "src"
    git(tmp_path, "clone", "-q", str(pipeline_origin), str(src))
    for name in SETUP_FILES:
        shutil.copystat(ROOT / name, src / name)  # as old as the stamps below: set-up is done
    (src / ".venv").symlink_to((ROOT / ".venv").resolve(), target_is_directory=True)
    cdk = src / "node_modules" / ".bin" / "cdk"
    cdk.parent.mkdir(parents=True)
    cdk.write_text(FAKE_CDK)
    cdk.chmod(0o755)
    (src / "node_modules" / ".installed").touch()
    return src


class StageRun:
    def __init__(self, result: subprocess.CompletedProcess, log: Path, make_log: Path):
        self.code = result.returncode
        self.out = result.stdout
        self.err = result.stderr
        self.argv = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        self.make = [json.loads(line) for line in make_log.read_text().splitlines()] if make_log.exists() else []


@pytest.fixture
def run_stage(template, pipeline, source_copy, moto_cloudwatch, loopback, tmp_path):
    """Runs a synthesized buildspec's build commands in the clone, with the pipeline variables as
    CodePipeline resolves them into the action's environment variables, and the environment
    CodeBuild sets (AWS_REGION, CODEBUILD_RESOLVED_SOURCE_VERSION:
    https://docs.aws.amazon.com/codebuild/latest/userguide/build-env-ref-env-vars.html)."""
    endpoint, _ = moto_cloudwatch
    # The rollout reads the deployed stack (its Url for the probe traffic, its outputs after each
    # deploy): a deployed CrystalCanary whose Url is a service answering production's commit.
    service = loopback(crystal_service(canary_every=10))
    stack = loopback(describe_stacks({"Url": service.url, "CanaryWeight": "0", "CanaryCommit": "CANARY"}))
    defaults = {v["Name"]: v["DefaultValue"] for v in pipeline["Variables"]}
    log, make_log = tmp_path / "cdk-argv.jsonl", tmp_path / "make-argv.jsonl"
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "make").write_text(FAKE_MAKE)
    (fake_bin / "make").chmod(0o755)

    def run(stage: str, extra_env: dict[str, str] | None = None, **variables: str) -> StageRun:
        values = {**defaults, **variables}
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "CODEBUILD_RESOLVED_SOURCE_VERSION": git(source_copy, "rev-parse", "HEAD").strip(),
            "FAKE_CDK_LOG": str(log),
            "FAKE_MAKE_LOG": str(make_log),
            **(extra_env or {}),
        }
        if stage == "TestAndDiff":  # `make test` is the suite itself: a recording make stands in
            env["PATH"] = f"{fake_bin}:{env['PATH']}"
        else:
            env.setdefault("AWS_ENDPOINT_URL_CLOUDFORMATION", stack.url)
        for name, reference in env_vars(action(pipeline, stage)).items():
            match = re.fullmatch(r"#\{variables\.(\w+)\}", reference)
            assert match is not None, reference
            (variable,) = match.groups()
            env[name] = values[variable]
        commands = build_commands(template, pipeline, stage)
        return StageRun(run_like_codebuild(commands, cwd=source_copy, env=env), log, make_log)

    return run


@pytest.fixture
def run_deploy_stage(run_stage):
    return lambda extra_env=None, **variables: run_stage("Deploy", extra_env, **variables)


@pytest.fixture
def loopback():
    servers: list[LoopbackHttp] = []

    def start(handle) -> LoopbackHttp:
        servers.append(LoopbackHttp(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def deploy_argv(weight: int) -> list[str]:
    return ["deploy", "CrystalCanary", "--require-approval", "never", "--no-notices", "-c", f"canaryWeight={weight}"]


def test_deploy_stage_by_default_deploys_the_committed_weight_once(run_deploy_stage):
    run = run_deploy_stage()
    assert run.code == 0, run.out + run.err
    assert run.argv == [deploy_argv(25)]


def test_deploy_stage_deploys_a_weight_the_run_was_started_with(run_deploy_stage, source_copy):
    hostile = '$(touch pwned); `touch pwned` "; touch pwned'
    run = run_deploy_stage(canaryWeight="40")
    assert run.code == 0 and run.argv == [deploy_argv(40)]
    # make deploy checks the weight with the app's parser before the CLI starts; neither make nor
    # a shell ever evaluates it.
    run = run_deploy_stage(canaryWeight=hostile)
    assert run.code != 0 and run.argv == [deploy_argv(40)]  # nothing more was deployed
    assert run.err.startswith(
        "pipeline deploy: error: canaryWeight must be a whole number from 0 to 100, got '$(touch pwned)"
    )
    assert not (source_copy / "pwned").exists()


def test_deploy_stage_refuses_app_mesh_before_building_anything(run_deploy_stage, source_copy):
    # Both deploy paths (one weight and the rollout) refuse the router AWS no longer serves before
    # the CLI starts, so no image is built or published for a deploy that cannot succeed.
    cdk_json = json.loads((source_copy / "cdk.json").read_text())
    cdk_json["context"]["trafficRouter"] = "appmesh"
    (source_copy / "cdk.json").write_text(json.dumps(cdk_json))
    for variables in ({}, {"rolloutSteps": "10,50,100", "rolloutBake": "0", "rolloutMinCanaryRequests": "0"}):
        run = run_deploy_stage(**variables)
        assert run.code == 2 and run.argv == [], run.out + run.err
        assert "AWS App Mesh reached end of support on 2026-09-30" in run.err


def test_deploy_stage_rollout_deploys_every_step_in_order_watching_the_canary_alarms(run_deploy_stage):
    run = run_deploy_stage(rolloutSteps="10,50,100", rolloutBake="0", rolloutMinCanaryRequests="0")
    assert run.code == 0, run.out + run.err
    assert run.argv == [deploy_argv(10), deploy_argv(50), deploy_argv(100)]
    # The log shows each step and what was watched: the canary alarms, not production's.
    for i, weight in enumerate((10, 50, 100), 1):
        assert f"== step {i}/3: canary weight {weight}% ==" in run.out
    assert f"{ALARM_5XX}=OK" in run.out and "production-5xx" not in run.out
    assert "the stack is at canary weight 100%" in run.out


class ForwardingProxy:
    """Passes each request to `target` unchanged; `answered(request)` (the path, the X-Amz-Target
    header and the body: where the AWS protocols name the operation) runs once the target has answered
    and before the caller gets that answer, so it can change what the next request sees."""

    def __init__(self, target: str, answered):
        host, port = target.removeprefix("http://").split(":")

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(host, int(port), timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                answered(self.path.encode() + self.headers.get("X-Amz-Target", "").encode() + body)
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_deploy_stage_rollout_rolls_back_to_0_and_fails_on_an_alarm_during_a_bake(
    run_deploy_stage, moto_cloudwatch, tmp_path
):
    endpoint, client = moto_cloudwatch
    log = tmp_path / "cdk-argv.jsonl"
    fired = threading.Event()

    def fire_after_the_first_poll_at_50(request: bytes) -> None:
        # rollout's reads go through the proxy; the alarm fires right after the bake at 50 has read
        # it quiet (that answer still says OK), so the bake's second poll, a second later, finds it.
        if fired.is_set() or b"DescribeAlarms" not in request:
            return
        if log.exists() and "canaryWeight=50" in log.read_text():
            client.set_alarm_state(AlarmName=ALARM_5XX, StateValue="ALARM", StateReason="canary 5xx above 5%")
            fired.set()

    proxy = ForwardingProxy(endpoint, fire_after_the_first_poll_at_50)
    try:
        run = run_deploy_stage(
            {"AWS_ENDPOINT_URL_CLOUDWATCH": proxy.url},
            rolloutSteps="10,50,100",
            rolloutBake="1",
            rolloutMinCanaryRequests="0",
        )
    finally:
        proxy.close()
    assert fired.is_set(), run.out + run.err
    assert run.code == 1, run.out + run.err
    assert run.argv == [deploy_argv(10), deploy_argv(50), deploy_argv(0)]
    at_50 = run.out[run.out.index("== step 2/3") :]
    assert f"{ALARM_5XX}=OK" in at_50  # the bake had started with the alarm quiet
    assert f"ROLLBACK: alarm {ALARM_5XX} is in state ALARM" in at_50
    assert "rolled back: the stack is at canary weight 0" in at_50
    assert re.search(r"\[Container\] command \d+ exit status 1\n$", run.out)  # the build fails


def test_deploy_stage_rollout_rolls_back_and_fails_when_a_step_s_deploy_fails(run_deploy_stage, loopback):
    # CloudFormation changed the stack (each answer is a later update): the failed deploy reached it.
    cloudformation = loopback(
        describe_stacks({"Url": "http://127.0.0.1:9", "CanaryWeight": "0", "CanaryCommit": "CANARY"}, changing=True)
    )
    run = run_deploy_stage(
        {"FAKE_CDK_FAIL_AT": "50", "AWS_ENDPOINT_URL_CLOUDFORMATION": cloudformation.url},
        rolloutSteps="10,50,100",
        rolloutBake="0",
        rolloutMinCanaryRequests="0",
    )
    assert run.code == 1, run.out + run.err
    assert run.argv == [deploy_argv(10), deploy_argv(50), deploy_argv(0)]
    assert "ROLLBACK: deploy of 50 failed (exit 1)" in run.out
    assert "rolled back: the stack is at canary weight 0" in run.out


def test_deploy_stage_rollout_verifies_each_step_at_the_stack_s_url(run_deploy_stage, loopback):
    """rolloutVerifyRequests: after each bake, the measured split at the stack's Url output must
    match the step; the router here really sends 10 %, so step 10 passes and step 50 rolls back."""
    service = loopback(crystal_service(canary_every=10))
    outputs = {"Url": service.url, "CanaryWeight": "0", "CanaryCommit": "CANARY"}
    cloudformation = loopback(describe_stacks(outputs))
    run = run_deploy_stage(
        {"AWS_ENDPOINT_URL_CLOUDFORMATION": cloudformation.url},
        rolloutSteps="10,50",
        rolloutBake="0",
        rolloutMinCanaryRequests="0",
        rolloutVerifyRequests="200",
    )
    assert run.code == 1, run.out + run.err
    assert run.argv == [deploy_argv(10), deploy_argv(50), deploy_argv(0)]
    # Only DescribeStacks of the canary stack: what the Deploy role is granted (test_pipeline_iam.py).
    assert cloudformation.requests
    assert all(
        b"Action=DescribeStacks" in body and b"StackName=CrystalCanary" in body
        for _, _, body in cloudformation.requests
    )
    assert len(service.requests) == 400
    assert "PASS: expected 10%" in run.out and "FAIL: expected 50%" in run.out
    assert "ROLLBACK: verify at weight 50" in run.out


def test_deploy_stage_rollout_without_a_readable_url_deploys_nothing(run_deploy_stage, loopback):
    cloudformation = loopback(describe_stacks({"CanaryWeight": "0"}))
    run = run_deploy_stage(
        {"AWS_ENDPOINT_URL_CLOUDFORMATION": cloudformation.url},
        rolloutSteps="10,50",
        rolloutBake="0",
        rolloutMinCanaryRequests="0",
        rolloutVerifyRequests="200",
    )
    assert run.code == 2 and run.argv == []
    assert run.err.strip() == "rollout: error: stack CrystalCanary has no 'Url' output to probe and verify against"


@pytest.mark.parametrize(
    "variables, fragment",
    [
        ({"rolloutSteps": "10,50;touch pwned", "rolloutBake": "0"}, "rolloutSteps (ROLLOUT_STEPS) must be"),
        ({"rolloutSteps": "$(touch pwned)", "rolloutBake": "0"}, "rolloutSteps (ROLLOUT_STEPS) must be"),
        ({"rolloutSteps": "10,50", "rolloutBake": "`touch pwned`"}, "rolloutBake (ROLLOUT_BAKE) must be"),
        ({"rolloutSteps": "10,50", "rolloutBake": "-1"}, "rolloutBake (ROLLOUT_BAKE) must be"),
        # 3 bakes of 3 hours and 4 deploys cannot finish in the 8-hour build: refused up front.
        ({"rolloutSteps": "10,50,100", "rolloutBake": "10800"}, "cannot finish in the Deploy build"),
        ({"rolloutSteps": "10,50", "canaryWeight": "40"}, "canaryWeight and rolloutSteps are both set"),
        (
            {"rolloutSteps": "10,50", "rolloutBake": "0", "rolloutVerifyRequests": "$(touch pwned)"},
            "rolloutVerifyRequests (ROLLOUT_VERIFY_REQUESTS) must be",
        ),
        (
            {"rolloutSteps": "10,50", "rolloutBake": "0", "rolloutVerifyRequests": "-5"},
            "rolloutVerifyRequests (ROLLOUT_VERIFY_REQUESTS) must be",
        ),
        ({"rolloutVerifyRequests": "200"}, "rolloutVerifyRequests=200 verifies the steps of a rollout"),
        ({"canaryWeight": "40\n50"}, "canaryWeight (CANARY_WEIGHT) must be one line of printable text"),
    ],
)
@pytest.mark.parametrize("stage", ["TestAndDiff", "Deploy"])
def test_both_builds_refuse_bad_variables_before_anything_runs(run_stage, source_copy, stage, variables, fragment):
    """One line naming the variable, exit 2 (usage), no test, no diff, no deploy; no value reaches a shell."""
    run = run_stage(stage, **variables)
    assert run.code == 2, run.out + run.err
    assert run.argv == [] and run.make == []
    errors = run.err.strip().splitlines()
    assert len(errors) == 1 and fragment in errors[0], run.err
    step = "test" if stage == "TestAndDiff" else "deploy"
    assert errors[0].startswith(f"pipeline {step}: error: ")
    assert run.out.endswith("[Container] command 0 exit status 2\n")
    assert not (source_copy / "pwned").exists()


def test_test_stage_runs_make_test_with_the_wrapper_as_crystal_then_cdk_diff_of_the_committed_weight(
    run_stage, source_copy
):
    run = run_stage("TestAndDiff")
    assert run.code == 0, run.out + run.err
    (make,) = run.make
    assert make["argv"] == ["test"]
    # ci/crystal-in-docker as `crystal`, first on PATH for make test (Ubuntu 22.04 has no crystal).
    assert Path(make["crystal"]).resolve() == (source_copy / "ci" / "crystal-in-docker").resolve()
    # ... and none of the build's AWS credentials: the tests run as on a laptop without an account.
    assert make["aws"] == ["AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL"]
    # Then what the approver reads: the deployed stack against the committed weight, by the lookup role.
    assert run.argv == [["diff", "CrystalCanary", "--method", "template", "--no-notices", "-c", "canaryWeight=25"]]
    head = git(source_copy, "rev-parse", "HEAD").strip()
    assert f"=== for the approver: what this run changes in CrystalCanary (us-east-1), source {head} ===" in run.out
    assert "this run deploys CrystalCanary once at canary weight 25% (canaryWeight=committed" in run.out
    assert "fake cdk: diff canaryWeight=25" in run.out


def test_test_stage_shows_the_real_change_of_every_rollout_step(run_stage):
    run = run_stage("TestAndDiff", rolloutSteps="10,50,100", rolloutBake="60", rolloutVerifyRequests="200")
    assert run.code == 0, run.out + run.err
    assert [argv[-1] for argv in run.argv] == ["canaryWeight=10", "canaryWeight=50", "canaryWeight=100"]
    assert all(argv[:4] == ["diff", "CrystalCanary", "--method", "template"] for argv in run.argv)
    for i, weight in enumerate((10, 50, 100), 1):
        assert (
            f"--- step {i}/3: cdk diff: CrystalCanary as deployed now -> canary weight {weight}% from this commit ---"
            in run.out
        )
    assert "200 requests to the stack's Url output" in run.out


def test_test_stage_fails_without_a_diff_when_the_tests_fail(run_stage):
    run = run_stage("TestAndDiff", {"FAKE_MAKE_EXIT": "2"})
    assert run.code == 1
    assert run.argv == []  # no diff, no approval of an untested commit
    assert "make test failed (exit 2): nothing is deployed" in run.out


def test_test_stage_fails_when_cdk_diff_fails(run_stage):
    run = run_stage("TestAndDiff", {"FAKE_CDK_FAIL_AT": "25"})
    assert run.code == 1
    assert "cdk diff failed (exit 1)" in run.out
