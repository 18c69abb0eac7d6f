"""The pipeline's build steps in-process (`python -m canary_stack.ops pipeline STEP`): what each reads
from the environment, what it refuses, and what it runs. tests/stack/test_pipeline.py runs them once
more through the synthesized buildspecs, as CodeBuild does."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.ops import pipeline
from canary_stack.ops.pipeline import Tools
from canary_stack.pipeline_variables import DEFAULT_EVIDENCE, MAX_ROLLOUT_SECONDS

DEFAULTS = {
    "CANARY_WEIGHT": "committed",
    "ROLLOUT_STEPS": "none",
    "ROLLOUT_BAKE": "600",
    "ROLLOUT_VERIFY_REQUESTS": "0",
    "ROLLOUT_MIN_CANARY_REQUESTS": "30",
    "AWS_REGION": "eu-west-1",
    "PATH": "/usr/bin:/bin",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A checkout: cdk.json (committed weight 25) and ci/crystal-in-docker."""
    src = tmp_path / "src"
    (src / "ci").mkdir(parents=True)
    shutil.copy2(ROOT / "ci" / "crystal-in-docker", src / "ci" / "crystal-in-docker")
    cdk_json = json.loads((ROOT / "cdk.json").read_text())
    cdk_json["context"]["canaryWeight"] = 25
    (src / "cdk.json").write_text(json.dumps(cdk_json))
    return src


class Recorder:
    """Stands in for the programs and tools a step runs; `code` is what each returns."""

    def __init__(self, code: int = 0):
        self.code = code
        self.runs: list[tuple[list[str], Path, dict[str, str]]] = []
        self.rollouts: list[list[str]] = []
        self.makes: list[tuple[list[str], dict[str, str]]] = []

    def tools(self) -> Tools:
        def run(argv, *, cwd, env):
            self.runs.append((list(argv), cwd, dict(env)))
            return self.code

        def rollout(argv, *, stdout, stderr):
            self.rollouts.append(list(argv))
            return self.code

        def make(argv, *, environ, stdout, stderr):
            self.makes.append((list(argv), dict(environ)))
            return self.code

        return Tools(run=run, rollout=rollout, make=make)


def step(
    name: str, root: Path, recorder: Recorder | None = None, **environ: str | None
) -> tuple[int, str, str, Recorder]:
    recorder = recorder or Recorder()
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in {**DEFAULTS, **environ}.items() if v is not None}
    code = pipeline.main([name], environ=env, root=root, stdout=out, stderr=err, tools=recorder.tools())
    return code, out.getvalue(), err.getvalue(), recorder


def nothing_ran(recorder: Recorder) -> bool:
    return recorder.runs == [] and recorder.rollouts == [] and recorder.makes == []


# ---------------------------------------------------------------- reading the variables


def test_check_says_what_the_run_does(root):
    code, out, err, _ = step("check", root)
    assert (code, err) == (0, "")
    assert (
        out
        == "this run deploys CrystalCanary once at canary weight 25% (canaryWeight=committed: the weight committed in cdk.json)\n"
    )
    code, out, _, _ = step("check", root, CANARY_WEIGHT="40")
    assert code == 0 and "canary weight 40% (canaryWeight=40, the run's variable)" in out


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"CANARY_WEIGHT": None}, "canaryWeight is not set (CANARY_WEIGHT is missing from the environment)"),
        ({"ROLLOUT_BAKE": None}, "rolloutBake is not set (ROLLOUT_BAKE is missing from the environment)"),
        ({"CANARY_WEIGHT": ""}, "canaryWeight (CANARY_WEIGHT) must be one line of printable text, got ''"),
        (
            {"CANARY_WEIGHT": "10\n$(id)"},
            "canaryWeight (CANARY_WEIGHT) must be one line of printable text, got '10\\n$(id)'",
        ),
        ({"CANARY_WEIGHT": "101"}, "canaryWeight must be a whole number from 0 to 100, got '101'"),
        ({"ROLLOUT_STEPS": "50,10"}, "rolloutSteps (ROLLOUT_STEPS) must be comma-separated whole numbers"),
        (
            {"ROLLOUT_STEPS": "10", "ROLLOUT_BAKE": "soon"},
            "rolloutBake (ROLLOUT_BAKE) must be a number from 0 to 604800",
        ),
        (
            {"ROLLOUT_STEPS": "10", "ROLLOUT_VERIFY_REQUESTS": "x"},
            "rolloutVerifyRequests (ROLLOUT_VERIFY_REQUESTS) must be",
        ),
        ({"ROLLOUT_VERIFY_REQUESTS": "100"}, "rolloutVerifyRequests=100 verifies the steps of a rollout"),
        (
            {"ROLLOUT_STEPS": "10", "ROLLOUT_VERIFY_REQUESTS": "-1"},
            "rolloutVerifyRequests (ROLLOUT_VERIFY_REQUESTS) must be 0 (none) or a whole number from 1 to",
        ),
        ({"ROLLOUT_STEPS": "10,50", "CANARY_WEIGHT": "40"}, "canaryWeight and rolloutSteps are both set"),
        ({"ROLLOUT_STEPS": "10,50,100", "ROLLOUT_BAKE": "10800"}, "need 36000s, more than 27600s"),
        (
            {"ROLLOUT_STEPS": "10", "ROLLOUT_MIN_CANARY_REQUESTS": "-1"},
            "rolloutMinCanaryRequests (ROLLOUT_MIN_CANARY_REQUESTS) must be a whole number from 0 to",
        ),
        (
            {"ROLLOUT_STEPS": "10", "ROLLOUT_MIN_CANARY_REQUESTS": "$(id)"},
            "rolloutMinCanaryRequests (ROLLOUT_MIN_CANARY_REQUESTS) must be a whole number",
        ),
        # The rollout's own rule, through its own parser: a 10 s bake at 1 probe a second cannot
        # see the 30 canary answers each step needs as evidence, so the run would roll back.
        (
            {"ROLLOUT_STEPS": "10", "ROLLOUT_BAKE": "10"},
            "rolloutSteps (ROLLOUT_STEPS), rolloutBake (ROLLOUT_BAKE), rolloutMinCanaryRequests "
            "(ROLLOUT_MIN_CANARY_REQUESTS) make a rollout the rollout tool refuses: argument "
            "--min-canary-requests: a bake of 10s",
        ),
    ],
)
@pytest.mark.parametrize("name", ["check", "test", "diff", "deploy"])
def test_every_step_refuses_a_bad_variable_with_one_line_naming_it_and_runs_nothing(root, name, variables, message):
    code, out, err, recorder = step(name, root, **variables)
    assert code == 2
    assert err.startswith(f"pipeline {name}: error: ") and err.count("\n") == 1, err
    assert message in err
    assert nothing_ran(recorder) and out == ""


def test_app_mesh_in_cdk_json_is_refused_before_the_tests(root):
    cdk_json = json.loads((root / "cdk.json").read_text())
    cdk_json["context"]["trafficRouter"] = "appmesh"
    (root / "cdk.json").write_text(json.dumps(cdk_json))
    for name in ("test", "diff", "deploy"):
        code, _, err, recorder = step(name, root)
        assert code == 2 and "AWS App Mesh reached end of support" in err and nothing_ran(recorder)


@pytest.mark.parametrize("name", ["diff", "deploy"])
def test_diff_and_deploy_need_the_region_codebuild_sets(root, name):
    code, _, err, recorder = step(name, root, AWS_REGION=None)
    assert code == 2 and err.startswith(f"pipeline {name}: error: AWS_REGION is not set") and nothing_ran(recorder)


def test_an_unknown_step_is_refused(root):
    for argv in ([], ["publish"], ["test", "diff"]):
        out, err = io.StringIO(), io.StringIO()
        assert pipeline.main(argv, environ=DEFAULTS, root=root, stdout=out, stderr=err) == 2
        assert err.getvalue().startswith("pipeline: error: expected one step, check, test, diff, deploy")


# ---------------------------------------------------------------- test


def test_test_runs_make_test_with_the_wrapper_first_on_path_for_make_test_only(root):
    code, out, err, recorder = step("test", root)
    assert (code, err) == (0, "")
    ((argv, cwd, env),) = recorder.runs
    assert (argv, cwd) == (["make", "test"], root)
    ci_bin = root / "build" / "ci-bin"
    assert env["PATH"] == f"{ci_bin}:/usr/bin:/bin"
    assert (ci_bin / "crystal").resolve() == (root / "ci" / "crystal-in-docker").resolve()
    assert "make test, with ci/crystal-in-docker as crystal" in out


def test_make_test_gets_none_of_the_build_s_aws_credentials(root):
    """The tests run as on a laptop without an account: the build role's credentials (CodeBuild's
    container credential endpoint, or keys) stay with the build."""
    credentials = {
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_PROFILE": "build",
    }
    code, _, _, recorder = step("test", root, None, **credentials)
    ((_, _, env),) = recorder.runs
    assert code == 0 and not set(credentials) & set(env)
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_REGION"] == "eu-west-1" and env["CANARY_WEIGHT"] == "committed"


def test_a_failed_make_test_fails_the_step(root):
    code, out, _, _ = step("test", root, Recorder(code=2))
    assert code == 1 and "make test failed (exit 2): nothing is deployed" in out


def test_test_needs_the_wrapper(root):
    (root / "ci" / "crystal-in-docker").unlink()
    code, _, err, recorder = step("test", root)
    assert code == 2 and "ci/crystal-in-docker is missing" in err and recorder.runs == []


# ---------------------------------------------------------------- diff


def diff_argv(weight: int) -> list[str]:
    return [
        "node_modules/.bin/cdk",
        "diff",
        "CrystalCanary",
        "--method",
        "template",
        "--no-notices",
        "-c",
        f"canaryWeight={weight}",
    ]


def test_diff_shows_the_deployed_stack_against_the_one_weight(root):
    code, out, err, recorder = step("diff", root, CODEBUILD_RESOLVED_SOURCE_VERSION="4f1c2e9")
    assert (code, err) == (0, "")
    ((argv, cwd, env),) = recorder.runs
    assert (argv, cwd) == (diff_argv(25), root)
    assert env["AWS_REGION"] == "eu-west-1"  # the CLI's credentials and region are the build's
    assert (
        out.splitlines()[0]
        == "=== for the approver: what this run changes in CrystalCanary (eu-west-1), source 4f1c2e9 ==="
    )


def test_diff_shows_every_rollout_step_against_the_deployed_stack(root):
    code, out, _, recorder = step("diff", root, ROLLOUT_STEPS="10,50,100", ROLLOUT_BAKE="300")
    assert code == 0
    assert [argv for argv, _, _ in recorder.runs] == [diff_argv(10), diff_argv(50), diff_argv(100)]
    assert "rolls CrystalCanary out through canary weights 10%, 50%, 100%, watching the canary alarms 300s" in out


def test_a_failed_cdk_diff_fails_the_step(root):
    code, out, _, recorder = step("diff", root, Recorder(code=1), ROLLOUT_STEPS="10,50")
    assert code == 1 and len(recorder.runs) == 1
    assert "cdk diff failed (exit 1): the approver would not see the change; nothing is deployed" in out


# ---------------------------------------------------------------- deploy


def test_deploy_runs_make_deploy_at_the_resolved_weight(root):
    code, _, _, recorder = step("deploy", root)
    ((argv, environ),) = recorder.makes
    assert code == 0 and argv == ["deploy"]
    assert environ["CANARY_MAKE_WEIGHT"] == "25"  # committed, given explicitly: what the diff showed
    code, _, _, recorder = step("deploy", root, CANARY_WEIGHT="40")
    assert recorder.makes[0][1]["CANARY_MAKE_WEIGHT"] == "40"
    assert recorder.rollouts == []


def test_deploy_rolls_out_with_the_stack_name_and_the_build_s_time_budget(root):
    code, _, _, recorder = step(
        "deploy", root, ROLLOUT_STEPS="10,50,100", ROLLOUT_BAKE="300", ROLLOUT_VERIFY_REQUESTS="200"
    )
    assert code == 0 and recorder.makes == []
    # The stack's name lets verify read which version is which from the stack's outputs: no
    # --canary-commit is assumed (a promoted canary's commit is production's too).
    assert recorder.rollouts == [
        [
            "--steps", "10,50,100", "--bake", "300",
            "--verify-requests", "200", "--url-from-stack", "--min-canary-requests", "30",
            "--max-duration", str(MAX_ROLLOUT_SECONDS), "--stack-name", "CrystalCanary",
        ]
    ]  # fmt: skip


def test_deploy_passes_on_the_rollout_s_exit_code(root):
    code, _, _, _ = step("deploy", root, Recorder(code=1), ROLLOUT_STEPS="10")
    assert code == 1


# ---------------------------------------------------------------- the command line


def test_python_m_canary_stack_ops_pipeline_is_the_entry_point(root):
    env = {**DEFAULTS, "CANARY_WEIGHT": "$(touch pwned)", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "canary_stack.ops", "pipeline", "check"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "pipeline check: error: canaryWeight must be a whole number from 0 to 100, got '$(touch pwned)'\n"
    )
    assert not (root / "pwned").exists()
    result = subprocess.run(
        [sys.executable, "-m", "canary_stack.ops", "pipeline", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith(
        "usage: python -m canary_stack.ops pipeline {check,test,diff,deploy}"
    )
    result = subprocess.run([sys.executable, "-m", "canary_stack.ops", "nope"], capture_output=True, text=True)
    assert (
        result.returncode == 2 and result.stderr == "canary_stack.ops: error: expected a tool, pipeline; got 'nope'\n"
    )


def test_the_pipeline_s_default_evidence_is_the_rollout_s():
    # pipeline_variables imports nothing (the CDK app loads it), so it repeats the rollout's default.
    from canary_stack.ops.rollout import DEFAULT_MIN_CANARY_REQUESTS

    assert DEFAULT_EVIDENCE == str(DEFAULT_MIN_CANARY_REQUESTS)


@pytest.mark.parametrize("evidence, said", [("30", True), ("0", False)])
def test_the_plan_says_a_bake_without_evidence_rolls_back(root, evidence, said):
    # What the rollout does (rollout --dry-run says it too): the approver reads it before approving.
    code, out, _, _ = step("check", root, ROLLOUT_STEPS="10,50", ROLLOUT_MIN_CANARY_REQUESTS=evidence)
    assert code == 0
    assert ("fewer than 30 canary answers is no evidence" in out) is said
    assert "on a firing alarm, no evidence, a failed verify or a failed deploy: canary weight 0" in out
