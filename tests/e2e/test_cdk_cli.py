"""The real CDK CLI on the app, and the app's own error exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from synthesis import ROOT, cdk_json_context

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


@pytest.mark.parametrize(
    "context, line",
    [
        ({"canaryWeight": "1e1"}, "error: canaryWeight must be a whole number from 0 to 100, got '1e1'"),
        ({"trafficRouter": "linkerd"}, "error: trafficRouter must be one of alb, appmesh, lattice, got 'linkerd'"),
        ({"canaryWeigth": "10"}, "error: unknown context parameter 'canaryWeigth'; known parameters: canaryWeight, "),
        ({"productionImage": "vanilla"}, "error: productionImage must be the 64-character lowercase hex asset hash"),
        ({"canaryWeight": "10"}, "error: productionImage must be the 64-character lowercase hex asset hash"),
        ({"productionImage": "f" * 64, "cpuArchitecture": "aarch64"}, "error: cpuArchitecture must be one of"),
    ],
)
def test_app_exits_2_with_exactly_one_line(monkeypatch, capfd, tmp_path, context, line):
    """main() as `python app.py` runs it, given only `context` (as in CDK_CONTEXT_JSON: no cdk.json).
    In-process: the real processes (`cdk synth`, `python app.py`) are run by the tests below and by
    test_a_rejected_synth_leaves_no_earlier_template_behind."""
    import app as cdk_app

    create_app = cdk_app.create_app
    monkeypatch.setattr(cdk_app, "create_app", lambda **kw: create_app(context=context, **kw))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    assert cdk_app.main() == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), err
    assert out == ""
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


def test_a_rejected_synth_leaves_no_earlier_template_behind(cli_w37, tmp_path):
    """`cdk synth -c canaryWeight=37` then `cdk synth -c canaryWeight=abc` into the same folder: the
    second fails with the app's one line and no traceback, and must not leave the first's template for
    `cdk deploy --app <folder>` to ship. (Every other bad value: tests/stack/test_config.py.)"""
    good, _ = cli_w37
    out = tmp_path / "cdk.out"
    shutil.copytree(good, out)
    assert (out / "CrystalCanary.template.json").exists() and (out / "manifest.json").exists()
    result = run([str(CDK), "synth", "-q", "--no-notices", "-o", str(out), "-c", "canaryWeight=abc"])
    assert result.returncode != 0
    assert "error: canaryWeight must be a whole number from 0 to 100, got 'abc'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.template.json"))
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.assets.json"))


def test_app_that_fails_validation_exits_1_with_the_report_and_no_template(monkeypatch, tmp_path, capsys):
    """main() as the CLI runs it (the output folder from CDK_OUTDIR), on an app whose stack has an
    unacknowledged cdk-nag finding: exit 1, the report, no traceback, no template."""
    from aws_cdk import aws_s3 as s3

    import app as cdk_app

    build = cdk_app.build

    def careless_build(app, **kwargs):
        stack = build(app, **kwargs)
        s3.CfnBucket(stack, "CarelessBucket")
        return stack

    monkeypatch.setattr(cdk_app, "build", careless_build)
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    # What the CLI hands the app (through the Node.js process's environment, which this test
    # cannot change any more): cdk.json's context, productionImage included.
    create_app = cdk_app.create_app
    monkeypatch.setattr(cdk_app, "create_app", lambda **kw: create_app(context=cdk_json_context(), **kw))
    assert cdk_app.main() == 1
    err = capsys.readouterr().err
    assert "CrystalCanary/CarelessBucket" in err and "AwsSolutions-S1" in err
    assert err.rstrip().splitlines()[-1] == f"error: synthesis failed validation; no template was left in {tmp_path}"
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.template.json")) and not (tmp_path / "manifest.json").exists()


def test_a_construct_that_throws_leaves_no_earlier_template_either(monkeypatch, tmp_path):
    import app as cdk_app

    for name in ("manifest.json", "CrystalCanary.template.json", "CrystalCanary.assets.json", "tree.json"):
        (tmp_path / name).write_text("{}")  # an earlier run's assembly

    def broken_build(app, **kwargs):
        raise RuntimeError("a construct's own check failed")

    monkeypatch.setattr(cdk_app, "build", broken_build)
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="a construct's own check failed"):
        cdk_app.main()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.json"]
