"""The real CDK CLI on the app, and the app's own error exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from synthesis import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"


def run(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true", **env},
    )


@pytest.fixture(scope="module")
def cli_w37(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-w37")
    result = run([str(CDK), "synth", "-q", "--no-notices", "-o", str(out), "-c", "canaryWeight=37"])
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_cdk_synth_writes_what_the_tests_assert_on(cli_w37, synth):
    out, _ = cli_w37
    from_cli = json.loads((out / "CrystalCanary.template.json").read_text())
    assert from_cli == synth(canaryWeight="37").template


def test_cdk_synth_of_the_default_router_has_no_app_mesh(cli_w37):
    # The first thing a newcomer synthesizes is the router AWS still serves (App Mesh ended
    # 2026-09-30; its template's warning and Rule: tests/stack/test_routers.py).
    out, result = cli_w37
    assert "App Mesh" not in result.stderr + result.stdout
    template = json.loads((out / "CrystalCanary.template.json").read_text())
    assert not [k for k, v in template["Resources"].items() if v["Type"].startswith("AWS::AppMesh::")]


@pytest.mark.parametrize("raw", ["abc"])  # every other bad value: tests/stack/test_config.py
def test_cdk_synth_with_a_bad_weight_fails_with_one_line_and_no_template(tmp_path, raw):
    result = run([str(CDK), "synth", "-q", "--no-notices", "-o", str(tmp_path / "out"), "-c", f"canaryWeight={raw}"])
    assert result.returncode != 0
    assert f"error: canaryWeight must be a whole number from 0 to 100, got '{raw}'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.template.json"))


@pytest.mark.parametrize(
    "context, line",
    [
        ({"canaryWeight": "1e1"}, "error: canaryWeight must be a whole number from 0 to 100, got '1e1'"),
        ({"trafficRouter": "linkerd"}, "error: trafficRouter must be one of alb, appmesh, got 'linkerd'"),
        ({"canaryWeigth": "10"}, "error: unknown context parameter 'canaryWeigth'; known parameters: canaryWeight, "),
        ({"productionImage": "vanilla"}, "error: productionImage must be the 64-character lowercase hex asset hash"),
        ({"canaryWeight": "10"}, "error: productionImage must be the 64-character lowercase hex asset hash"),
        ({"productionImage": "f" * 64, "cpuArchitecture": "aarch64"}, "error: cpuArchitecture must be one of"),
    ],
)
def test_app_exits_2_with_exactly_one_line(tmp_path, context, line):
    result = run([sys.executable, "app.py"], CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), result.stderr
    assert not list(tmp_path.rglob("*.template.json"))


@pytest.mark.parametrize("silenced", ["1", "18, 22", ""])
def test_the_one_line_error_stays_one_line_whatever_the_user_set_for_jsiis_banner(tmp_path, silenced):
    # Users set this variable for their own Node.js versions; jsii's end-of-life banner must not
    # come back over the app's one line.
    result = run(
        [sys.executable, "app.py"],
        CDK_CONTEXT_JSON=json.dumps({"canaryWeight": "abc"}),
        CDK_OUTDIR=str(tmp_path),
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=silenced,
    )
    assert result.returncode == 2
    assert result.stderr == "error: canaryWeight must be a whole number from 0 to 100, got 'abc'\n"
