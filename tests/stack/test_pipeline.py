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
from alarms import put_alarm
from configurations import CONNECTION, PIPELINE_CONTEXT
from synthesis import ROOT

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
    }
    commands = build_commands(template, pipeline, "Deploy")
    assert (
        "COMMITTED_WEIGHT=$(.venv/bin/python -m canary_stack.ops.committed canaryWeight) && export COMMITTED_WEIGHT"
        in commands
    )
    assert (
        'WEIGHT="$CANARY_WEIGHT"; if [ "$WEIGHT" = committed ]; then WEIGHT="$COMMITTED_WEIGHT"; fi; export WEIGHT'
        in commands
    )


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


def test_variables_reach_both_builds_only_as_environment_variables(template, pipeline):
    # Pipeline variables resolve in action configuration only; the buildspecs read the env vars.
    expected = {
        "CANARY_WEIGHT": "#{variables.canaryWeight}",
        "ROLLOUT_STEPS": "#{variables.rolloutSteps}",
        "ROLLOUT_BAKE": "#{variables.rolloutBake}",
        "ROLLOUT_VERIFY_REQUESTS": "#{variables.rolloutVerifyRequests}",
    }
    for stage in ("TestAndDiff", "Deploy"):
        assert env_vars(action(pipeline, stage)) == expected
        for command in build_commands(template, pipeline, stage):
            assert "#{" not in command
            # Every use of a variable is a double-quoted expansion: no value becomes shell text.
            for name in (*expected, "WEIGHT", "COMMITTED_WEIGHT", "VERIFY"):
                unquoted = re.sub(r'"[^"]*"', "", command)
                assert f"${name}" not in unquoted and f"${{{name}}}" not in unquoted, command


def test_test_stage_runs_every_test_with_the_image_s_crystal_compiler_then_the_diff(template, pipeline):
    test = action(pipeline, "TestAndDiff")
    project = project_of(template, test)
    commands = build_commands(template, pipeline, "TestAndDiff")
    # The wrapper as `crystal`, first on PATH for `make test` only (Ubuntu 22.04 has no crystal).
    install = commands.index('mkdir -p build/ci-bin && ln -sfn "$PWD/ci/crystal-in-docker" build/ci-bin/crystal')
    assert commands[install + 1] == 'PATH="$PWD/build/ci-bin:$PATH" make test'
    # Docker in CodeBuild needs privileged mode.
    assert project["Environment"]["PrivilegedMode"] is True
    assert project["Environment"]["Image"] == "aws/codebuild/standard:7.0"
    assert commands[-1] == (
        'if [ "$ROLLOUT_STEPS" = none ]; then '
        'echo "committed canaryWeight: $COMMITTED_WEIGHT; deploying canaryWeight: $WEIGHT" && '
        '.venv/bin/python -m canary_stack.ops.offline_diff --from "$COMMITTED_WEIGHT" --to "$WEIGHT"; '
        "else " + VERIFY_ARGS + "; .venv/bin/python -m canary_stack.ops.rollout --dry-run "
        '--steps "$ROLLOUT_STEPS" --bake "$ROLLOUT_BAKE" "${VERIFY[@]}" --max-duration 27600 --stack-name CrystalCanary; fi'
    )
    # A bad combination of variables stops the run before the tests.
    assert commands[0].startswith('if [ "$ROLLOUT_STEPS" != none ] && [ "$CANARY_WEIGHT" != committed ]')


def test_deploy_runs_cdk_deploy_at_the_variable_or_the_rollout_tool(template, pipeline):
    commands = build_commands(template, pipeline, "Deploy")
    assert commands[-1] == (
        'if [ "$ROLLOUT_STEPS" = none ]; then '
        'make deploy WEIGHT="$WEIGHT"; '
        "else " + VERIFY_ARGS + "; .venv/bin/python -m canary_stack.ops.rollout "
        '--steps "$ROLLOUT_STEPS" --bake "$ROLLOUT_BAKE" "${VERIFY[@]}" --max-duration 27600 --stack-name CrystalCanary; fi'
    )


def test_the_canary_alarms_are_metric_alarms_which_a_scoped_describe_alarms_returns(piped):
    """A DescribeAlarms permission narrower than "*" returns no composite alarms
    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html): the
    deploy role's grant on CrystalCanary-canary-* sees every canary alarm only while none is composite."""
    alarms = piped.resources("AWS::CloudWatch::Alarm")
    canary = [a for a in alarms.values() if a["Properties"]["AlarmName"].startswith("CrystalCanary-canary-")]
    assert len(canary) >= 2
    composite = piped.resources("AWS::CloudWatch::CompositeAlarm")
    assert not any(
        str(a["Properties"].get("AlarmName", "")).startswith("CrystalCanary-canary-") for a in composite.values()
    )


VERIFY_ARGS = (
    'VERIFY=(); if [ "$ROLLOUT_VERIFY_REQUESTS" != 0 ]; then '
    'VERIFY=(--verify-requests "$ROLLOUT_VERIFY_REQUESTS" --url-from-stack); fi'
)


def test_rollout_verify_is_optional_and_reads_the_stack_s_url_output(template, pipeline, piped):
    for stage in ("TestAndDiff", "Deploy"):
        # In the rollout's own command: an array does not outlive its command's environment.
        assert (
            VERIFY_ARGS + "; .venv/bin/python -m canary_stack.ops.rollout"
            in build_commands(template, pipeline, stage)[-1]
        )
    # The output the rollout reads (rollout.URL_OUTPUT) is the canary stack's service URL.
    assert "Url" in piped.template["Outputs"]


def test_deploy_build_timeout_covers_the_longest_rollout_the_tool_accepts(template, pipeline):
    """CodeBuild builds time out after 5 to 2160 minutes (36 hours)
    (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_CreateProject.html). The rollout
    is given the timeout less 20 minutes of set-up as --max-duration, so a plan that cannot finish
    is refused before its first deploy instead of being killed mid-bake with no rollback."""
    project = project_of(template, action(pipeline, "Deploy"))
    minutes = project["TimeoutInMinutes"]
    assert 5 <= minutes <= 2160
    assert minutes == 480
    (max_duration,) = re.findall(r"--max-duration (\d+)", build_commands(template, pipeline, "Deploy")[-1])
    assert int(max_duration) == minutes * 60 - 20 * 60


def test_deploy_role_may_only_assume_the_bootstrap_roles_and_read_the_canary_alarms(template, pipeline):
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

    # The rollout reads the canary alarms' states: DescribeAlarms on this stack's canary alarms only
    # (the action takes the alarm resource type:
    # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
    (alarms,) = [st for st in statements if any(a.startswith("cloudwatch:") for a in actions(st))]
    assert actions(alarms) == ["cloudwatch:DescribeAlarms"]
    assert alarms["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":cloudwatch:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":alarm:CrystalCanary-canary-*",
            ],
        ]
    }

    # The optional verify reads the canary stack's Url output: DescribeStacks on that stack only
    # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html).
    (outputs,) = [st for st in statements if any(a.startswith("cloudformation:") for a in actions(st))]
    assert actions(outputs) == ["cloudformation:DescribeStacks"]
    assert outputs["Resource"]["Fn::Join"][1][-1] == ":stack/CrystalCanary/*"
    assert outputs["Resource"]["Fn::Join"][1][2] == ":cloudformation:"

    # The rest: writing its build logs and reading the pipeline's artifacts, nothing else.
    for st in statements:
        if st is assume or st is alarms or st is outputs:
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


# ---------------------------------------------------------------------------------------------
# The Deploy stage end to end: its buildspec commands, run by bash as CodeBuild runs them, against
# CloudWatch served by moto on 127.0.0.1 and a recording stand-in for the project's CDK CLI.

ALARM_5XX = "CrystalCanary-canary-5xx"
ALARM_LATENCY = "CrystalCanary-canary-p99-latency"
REGION = "us-east-1"

# Records its argv (one JSON line per run), says what it deployed, and fails when asked to.
FAKE_CDK = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_CDK_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
weight = [a for a in sys.argv if a.startswith("canaryWeight=")][-1].split("=", 1)[1]
print(f"fake cdk: deploy canaryWeight={{weight}}", flush=True)
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


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    """What the Deploy build has of the checked-out source after `make setup`: the package, the
    Makefile and what its set-up depends on (mtimes kept, so `make deploy` finds it done),
    cdk.json (committed weight 25), the venv, and a recording node_modules/.bin/cdk."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(ROOT / "canary_stack", src / "canary_stack", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "package.json", "package-lock.json"):
        shutil.copy2(ROOT / name, src / name)
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    cdk_json["context"]["canaryWeight"] = 25
    (src / "cdk.json").write_text(json.dumps(cdk_json))
    (src / ".venv").symlink_to((ROOT / ".venv").resolve(), target_is_directory=True)
    cdk = src / "node_modules" / ".bin" / "cdk"
    cdk.parent.mkdir(parents=True)
    cdk.write_text(FAKE_CDK)
    cdk.chmod(0o755)
    (src / "node_modules" / ".installed").touch()
    return src


class DeployRun:
    def __init__(self, result: subprocess.CompletedProcess, log: Path):
        self.code = result.returncode
        self.out = result.stdout
        self.err = result.stderr
        self.argv = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    @property
    def weights(self) -> list[str]:
        return [argv[-1].removeprefix("canaryWeight=") for argv in self.argv]


@pytest.fixture
def run_deploy_stage(template, pipeline, source_copy, moto_cloudwatch, tmp_path):
    """Runs the synthesized Deploy buildspec with pipeline variables as CodePipeline resolves them."""
    endpoint, _ = moto_cloudwatch
    defaults = {v["Name"]: v["DefaultValue"] for v in pipeline["Variables"]}
    deploy = action(pipeline, "Deploy")
    commands = build_commands(template, pipeline, "Deploy")
    log = tmp_path / "cdk-argv.jsonl"

    def run(extra_env: dict[str, str] | None = None, **variables: str) -> DeployRun:
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
            "FAKE_CDK_LOG": str(log),
            **(extra_env or {}),
        }
        for name, reference in env_vars(deploy).items():
            match = re.fullmatch(r"#\{variables\.(\w+)\}", reference)
            assert match is not None, reference
            (variable,) = match.groups()
            env[name] = values[variable]
        return DeployRun(run_like_codebuild(commands, cwd=source_copy, env=env), log)

    return run


class LoopbackHttp:
    """A tiny HTTP server on 127.0.0.1 answering with `handle(method, path, body) -> (status, type, bytes)`."""

    def __init__(self, handle):
        outer = self
        self.requests: list[tuple[str, str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.command, self.path, body))
                status, ctype, payload = handle(self.command, self.path, body, len(outer.requests) - 1)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = answer  # noqa: N815 (http.server naming)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def crystal_service(canary_every: int):
    """/crystal/api of the service behind a router sending every n-th request to the canary."""

    def handle(method, path, body, n):
        if path != "/crystal/api":
            return 404, "text/plain", b"not found"
        commit = "CANARY" if n % canary_every == 0 else "ed106ce"
        doc = {"from": "Crystal backend", "message": "us-east-1a", "commit": commit}
        return 200, "application/json", json.dumps(doc).encode()

    return handle


def describe_stacks(outputs: dict[str, str]):
    """CloudFormation's DescribeStacks (query protocol) for the canary stack, with `outputs`."""
    members = "".join(
        f"<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>" for k, v in outputs.items()
    )
    xml = (
        '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        "<DescribeStacksResult><Stacks><member><StackName>CrystalCanary</StackName>"
        "<StackId>arn:aws:cloudformation:us-east-1:123456789012:stack/CrystalCanary/1</StackId>"
        "<CreationTime>2026-11-27T00:00:00Z</CreationTime><StackStatus>UPDATE_COMPLETE</StackStatus>"
        f"<Outputs>{members}</Outputs></member></Stacks></DescribeStacksResult>"
        "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></DescribeStacksResponse>"
    ).encode()

    def handle(method, path, body, n):
        if b"Action=DescribeStacks" not in body or b"StackName=CrystalCanary" not in body:
            return 400, "text/xml", b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>"
        return 200, "text/xml", xml

    return handle


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
    assert "make deploy: error: canaryWeight must be a whole number from 0 to 100, got '$(touch pwned)" in run.err
    assert not (source_copy / "pwned").exists()


def test_deploy_stage_refuses_app_mesh_before_building_anything(run_deploy_stage, source_copy):
    # Both deploy paths (one weight and the rollout) refuse the router AWS no longer serves before
    # the CLI starts, so no image is built or published for a deploy that cannot succeed.
    cdk_json = json.loads((source_copy / "cdk.json").read_text())
    cdk_json["context"]["trafficRouter"] = "appmesh"
    (source_copy / "cdk.json").write_text(json.dumps(cdk_json))
    for variables in ({}, {"rolloutSteps": "10,50,100", "rolloutBake": "0"}):
        run = run_deploy_stage(**variables)
        assert run.code == 2 and run.argv == [], run.out + run.err
        assert "AWS App Mesh reached end of support on 2026-09-30" in run.err


def test_deploy_stage_rollout_deploys_every_step_in_order_watching_the_canary_alarms(run_deploy_stage):
    run = run_deploy_stage(rolloutSteps="10,50,100", rolloutBake="0")
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
        run = run_deploy_stage({"AWS_ENDPOINT_URL_CLOUDWATCH": proxy.url}, rolloutSteps="10,50,100", rolloutBake="1")
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


def test_deploy_stage_rollout_rolls_back_and_fails_when_a_step_s_deploy_fails(run_deploy_stage):
    run = run_deploy_stage({"FAKE_CDK_FAIL_AT": "50"}, rolloutSteps="10,50,100", rolloutBake="0")
    assert run.code == 1, run.out + run.err
    assert run.argv == [deploy_argv(10), deploy_argv(50), deploy_argv(0)]
    assert "ROLLBACK: deploy of 50 failed (exit 1)" in run.out
    assert "rolled back: the stack is at canary weight 0" in run.out


def test_deploy_stage_rollout_verifies_each_step_at_the_stack_s_url(run_deploy_stage, loopback):
    """rolloutVerifyRequests: after each bake, the measured split at the stack's Url output must
    match the step; the router here really sends 10 %, so step 10 passes and step 50 rolls back."""
    service = loopback(crystal_service(canary_every=10))
    cloudformation = loopback(describe_stacks({"Url": service.url, "CanaryWeight": "0"}))
    run = run_deploy_stage(
        {"AWS_ENDPOINT_URL_CLOUDFORMATION": cloudformation.url},
        rolloutSteps="10,50",
        rolloutBake="0",
        rolloutVerifyRequests="200",
    )
    assert run.code == 1, run.out + run.err
    assert run.argv == [deploy_argv(10), deploy_argv(50), deploy_argv(0)]
    # The URL is read once, before the first deploy; the stack's state before each of the three
    # deploys (rollout tells a deploy that failed before CloudFormation from one it rolled back).
    assert len(cloudformation.requests) == 1 + 3
    assert len(service.requests) == 400
    assert "PASS: expected 10%" in run.out and "FAIL: expected 50%" in run.out
    assert "ROLLBACK: verify at weight 50" in run.out


def test_deploy_stage_rollout_without_a_readable_url_deploys_nothing(run_deploy_stage, loopback):
    cloudformation = loopback(describe_stacks({"CanaryWeight": "0"}))
    run = run_deploy_stage(
        {"AWS_ENDPOINT_URL_CLOUDFORMATION": cloudformation.url},
        rolloutSteps="10,50",
        rolloutBake="0",
        rolloutVerifyRequests="200",
    )
    assert run.code == 2 and run.argv == []
    assert run.err.strip() == "rollout: error: stack CrystalCanary has no 'Url' output to verify against"


@pytest.mark.parametrize(
    "variables, fragment",
    [
        ({"rolloutSteps": "10,50;touch pwned", "rolloutBake": "0"}, "--steps"),
        ({"rolloutSteps": "$(touch pwned)", "rolloutBake": "0"}, "--steps"),
        ({"rolloutSteps": "10,50", "rolloutBake": "`touch pwned`"}, "--bake"),
        ({"rolloutSteps": "10,50", "rolloutBake": "-1"}, "--bake"),
        # 3 bakes of 3 hours and 4 deploys cannot finish in the 8-hour build: refused up front.
        ({"rolloutSteps": "10,50,100", "rolloutBake": "10800"}, "--max-duration"),
        ({"rolloutSteps": "10,50", "canaryWeight": "40"}, "canaryWeight and rolloutSteps are both set"),
        ({"rolloutSteps": "10,50", "rolloutBake": "0", "rolloutVerifyRequests": "$(touch pwned)"}, "--verify-requests"),
        ({"rolloutSteps": "10,50", "rolloutBake": "0", "rolloutVerifyRequests": "-5"}, "--verify-requests"),
    ],
)
def test_deploy_stage_refuses_bad_variables_before_any_deploy(run_deploy_stage, source_copy, variables, fragment):
    run = run_deploy_stage(**variables)
    assert run.code != 0
    assert run.argv == []
    errors = run.err.strip().splitlines()
    assert len(errors) == 1 and fragment in errors[0], run.err
    assert not (source_copy / "pwned").exists()


def test_test_stage_puts_the_wrapper_first_on_path_for_make_test_only(template, pipeline, tmp_path):
    commands = build_commands(template, pipeline, "TestAndDiff")
    install = commands.index('mkdir -p build/ci-bin && ln -sfn "$PWD/ci/crystal-in-docker" build/ci-bin/crystal')
    make_test = commands[install + 1]
    src = tmp_path / "src"
    (src / "ci").mkdir(parents=True)
    shutil.copy2(ROOT / "ci" / "crystal-in-docker", src / "ci" / "crystal-in-docker")
    # `make test`, replaced by what it would find as `crystal`; then what the next command finds.
    probe = make_test.replace("make test", "command -v crystal")
    assert probe != make_test
    run = run_like_codebuild(
        [commands[install], probe, "command -v crystal || echo none"],
        cwd=src,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    found, after = run.stdout.splitlines()
    assert Path(found).resolve() == (src / "ci" / "crystal-in-docker").resolve()
    assert after != found  # PATH was changed for `make test` only


def test_test_stage_refuses_a_weight_and_a_rollout_together_before_the_tests(template, pipeline, tmp_path):
    commands = build_commands(template, pipeline, "TestAndDiff")
    env = {"PATH": "/usr/bin:/bin", "CANARY_WEIGHT": "40", "ROLLOUT_STEPS": "10,50"}
    run = run_like_codebuild(commands, cwd=tmp_path, env=env)
    assert run.returncode == 1
    assert run.stdout == "[Container] command 0 exit status 1\n"  # nothing after the check ran
    assert run.stderr.startswith("error: canaryWeight and rolloutSteps are both set")
