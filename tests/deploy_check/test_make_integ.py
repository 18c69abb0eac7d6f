"""`make integ` around the deployment: the preflight that refuses without an AWS account, the
verdict read from the assertion outputs, and the recipe's order (destroy whatever happened)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest
from moto import mock_aws
from support.git_repo import project_repository
from support.synthesis import ROOT

from integ import preflight, results
from integ.names import ASSERTIONS_STACK_NAME, STACK_NAME

# An environment in which the AWS SDK finds no credentials, without touching the network.
NO_AWS = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}
# `-o`: treat the installed toolchain as current, whatever requirements files changed.
MAKE = ["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "-o", "node_modules/.installed"]


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_make_integ_refuses_without_credentials_in_one_line_before_anything_runs(tmp_path):
    result = run([*MAKE, "integ", "INTEG_OUT=build/integ-refused"], NO_AWS)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert lines == [
        "error: make integ deploys to a real AWS account and found no AWS credentials: "
        "set AWS_PROFILE (or run `aws configure` / `aws sso login`) and try again"
    ]
    assert result.stdout == ""
    assert not (ROOT / "build" / "integ-refused").exists()  # no synthesis, no deploy


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project with a .git of its own (the checkout may be a plain export without one)."""
    return project_repository(tmp_path_factory.mktemp("repository"))


@pytest.mark.parametrize("folder", ["/", "..", ".", "build", "build/../.git", "$HOME", "crystal_src"])
def test_make_integ_empties_no_folder_outside_build(project, folder):
    # The recipe empties INTEG_OUT before deploying: only a folder of the check's own, inside build/.
    result = subprocess.run(
        [*MAKE, "integ", f"INTEG_OUT={folder}"], cwd=project, env=NO_AWS, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert line.startswith("error: INTEG_OUT must be a folder inside build/ (it is emptied first), got ")
    assert (project / "crystal_src").is_dir() and (project / ".git" / "HEAD").is_file()


@pytest.mark.parametrize(
    "router, line",
    [
        ("appmesh", "error: ROUTER=appmesh: AWS App Mesh reached end of support on 2026-09-30"),
        ("linkerd", "error: ROUTER must be alb or lattice for make integ (or left out: alb), got 'linkerd'"),
    ],
)
def test_make_integ_refuses_a_router_it_cannot_deploy_before_anything_runs(router, line):
    # Before the credentials: no account is needed to say so, and nothing is built or deployed.
    result = run([*MAKE, "integ", f"ROUTER={router}", "INTEG_OUT=build/integ-refused"], NO_AWS)
    assert result.returncode == 2
    (shown,) = [entry for entry in result.stderr.splitlines() if not entry.startswith("make: ***")]
    assert shown.startswith(line)
    assert result.stdout == ""
    assert not (ROOT / "build" / "integ-refused").exists()


def test_make_integ_router_lattice_gets_as_far_as_the_credentials(tmp_path):
    result = run([*MAKE, "integ", "ROUTER=lattice", "INTEG_OUT=build/integ-refused"], NO_AWS)
    assert result.returncode == 2
    assert "found no AWS credentials" in result.stderr and "ROUTER" not in result.stderr


@mock_aws
def test_preflight_names_the_router_it_will_deploy(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    line = preflight.check(
        session_factory=boto3.session.Session, which=lambda _: "/usr/bin/docker", traffic_router="lattice"
    )
    assert f"deploys {STACK_NAME} (lattice router)" in line


def test_preflight_refuses_without_a_region():
    env = {**NO_AWS, "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    result = run([sys.executable, "-m", "integ.preflight"], env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: make integ needs an AWS region: set AWS_REGION or a region in your AWS profile\n"


def test_preflight_refuses_without_docker(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    with pytest.raises(preflight.Refused, match="builds the canary image with Docker"):
        preflight.check(which=lambda _: None)


@mock_aws
def test_preflight_names_the_account_and_region_it_will_deploy_to(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    line = preflight.check(session_factory=boto3.session.Session, which=lambda _: "/usr/bin/docker")
    assert line.startswith("deploy check: account 123456789012, region eu-west-1: ")
    assert STACK_NAME in line and ASSERTIONS_STACK_NAME in line and "destroys both" in line


def success() -> str:
    return json.dumps({"status": "success"})


def outputs(*values: str) -> dict:
    return {
        STACK_NAME: {"Url": "http://example"},
        ASSERTIONS_STACK_NAME: {f"AssertionResultsCall{i}": v for i, v in enumerate(values)},
    }


def test_the_verdict_passes_only_when_all_three_assertions_succeeded():
    assert results.verdict(outputs(success(), success(), success()))[0] is True


@pytest.mark.parametrize(
    "data, shown",
    [
        (
            outputs(success(), json.dumps({"status": "fail", "message": "Expected 10 but got 0"}), success()),
            "Expected 10",
        ),
        (outputs(success(), success()), "expected 3 assertion results, found 2"),
        (outputs(success(), success(), "garbage"), "'garbage'"),
        ({STACK_NAME: {}}, f"no outputs of {ASSERTIONS_STACK_NAME}"),
        (None, f"no outputs of {ASSERTIONS_STACK_NAME}"),
    ],
)
def test_the_verdict_fails_and_says_why(data, shown):
    passed, lines = results.verdict(data)
    assert passed is False
    assert any(line.startswith("FAIL") and shown in line for line in lines), lines


def test_results_exits_1_when_the_deploy_left_no_outputs_file(tmp_path):
    result = run([sys.executable, "-m", "integ.results", str(tmp_path / "missing.json")], dict(os.environ))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "deploy check FAILED"


def test_the_recipe_destroys_after_any_outcome_with_the_pinned_cli():
    result = run([*MAKE, "-n", "integ"], dict(os.environ))
    assert result.returncode == 0, result.stderr
    script = result.stdout
    preflight_at = script.index("-m integ.preflight")
    deploy_at = script.index("node_modules/.bin/cdk deploy --app '.venv/bin/python -m integ.integ_canary'")
    results_at = script.index("-m integ.results")
    destroy_at = script.index("node_modules/.bin/cdk destroy --app '.venv/bin/python -m integ.integ_canary'")
    assert preflight_at < deploy_at < results_at < destroy_at
    # The deploy and the verdict only record a failure; the destroy runs regardless, and the exit
    # status reports the worst of the three.
    # INTEG_OUT (default build/integ) reaches the recipe only through the environment, quoted.
    assert '--outputs-file "$CANARY_MAKE_INTEG_OUT/outputs.json" || failed=1;' in script
    assert '"$CANARY_MAKE_INTEG_OUT/outputs.json" || failed=1;' in script[results_at:destroy_at]
    assert "--all" in script[destroy_at:] and "--force" in script[destroy_at:]
    assert script.rstrip().endswith("exit $failed")
    assert "trap " in script[:deploy_at]


def test_the_steps_around_the_deploy_start_no_node_js():
    # A fresh interpreter: the refusal must come in well under a second, not after jsii starts.
    code = (
        "import json, sys\n"
        "import integ.preflight, integ.results\n"
        "print(json.dumps(sorted(m for m in ('aws_cdk', 'jsii', 'constructs') if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


FAKE_CDK = """#!/bin/bash
# Stands in for the CDK CLI: records its arguments, plays the outcome the test asks for.
echo "$*" >> "$FAKE_LOG"
case "$1" in
  deploy)
    while [ $# -gt 0 ]; do
      if [ "$1" = --outputs-file ] && [ -n "$FAKE_OUTPUTS" ]; then printf '%s' "$FAKE_OUTPUTS" > "$2"; fi
      shift
    done
    exit "${FAKE_DEPLOY_RC:-0}";;
  destroy) exit "${FAKE_DESTROY_RC:-0}";;
esac
exit 64
"""
# Stands in for the preflight only (it would call STS); every other step runs the real module.
FAKE_PY = """#!/bin/bash
if [ "$1 $2" = "-m integ.preflight" ]; then echo "deploy check: account 123456789012 (fake)"; exit 0; fi
exec "$REAL_PY" "$@"
"""


@pytest.fixture
def fake_run(tmp_path):
    cdk, py, log = tmp_path / "cdk", tmp_path / "python", tmp_path / "cdk.log"
    cdk.write_text(FAKE_CDK)
    py.write_text(FAKE_PY)
    cdk.chmod(0o755)
    py.chmod(0o755)

    def go(**env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        log.write_text("")
        full_env = {**os.environ, "FAKE_LOG": str(log), "REAL_PY": sys.executable, **env}
        argv = [*MAKE, "integ", f"CDK={cdk}", f"PY={py}", f"INTEG_OUT={tmp_path / 'out'}"]
        result = run(argv, full_env)
        return result, [line.split()[0] for line in log.read_text().splitlines()]

    return go


def all_passed() -> str:
    return json.dumps(outputs(success(), success(), success()))


def test_a_passing_run_deploys_checks_and_destroys(fake_run):
    result, calls = fake_run(FAKE_OUTPUTS=all_passed())
    assert calls == ["deploy", "destroy"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy check passed" in result.stdout


@pytest.mark.parametrize(
    "env",
    [
        {"FAKE_DEPLOY_RC": "1"},  # the deploy failed: no outputs
        {"FAKE_OUTPUTS": json.dumps(outputs(success(), json.dumps({"status": "fail", "message": "x"}), success()))},
        {"FAKE_OUTPUTS": all_passed(), "FAKE_DESTROY_RC": "1"},  # everything passed but something is left
    ],
)
def test_a_failing_run_still_destroys_and_fails(fake_run, env):
    result, calls = fake_run(**env)
    assert calls == ["deploy", "destroy"]
    assert result.returncode != 0
    if "FAKE_DESTROY_RC" in env:
        assert "error: cdk destroy failed: delete the stacks" in result.stderr
    else:
        assert "deploy check FAILED" in result.stdout


def test_a_bad_committed_value_stops_the_integ_app_with_one_line():
    # The CDK CLI hands the app its context in CDK_CONTEXT_JSON, cdk.json's included.
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"imageTag": "same", "productionTag": "same"})}
    result = run([sys.executable, "-m", "integ.integ_canary"], env)
    assert result.returncode == 2
    assert result.stderr == (
        "error: productionTag must differ from imageTag, both are 'same': the canary would overwrite what production runs\n"
    )
