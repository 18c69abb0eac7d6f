"""The real CDK CLI on the app, and the app's own error exits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support.synthesis import CLI_CONTEXT, ROOT, cdk_json_context

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


# An `npx` first on PATH that leaves a mark and fails: the synth must not need it.
FAKE_NPX = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/npx-called"\nexit 1\n'


@pytest.fixture(scope="module")
def cli_w37(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-w37")
    fake_bin = tmp_path_factory.mktemp("fake-npx")
    (fake_bin / "npx").write_text(FAKE_NPX)
    (fake_bin / "npx").chmod(0o755)
    path = f"{fake_bin}{os.pathsep}{os.environ['PATH']}"
    # A TMPDIR inside the project holds the app's run folder (canary_stack/toolchain.py): this run's own.
    tmp = ROOT / ".cdk-tmp" / f"test-cli-w37-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        argv = [str(CDK), "synth", "-q", "--no-notices", "-o", str(out), "-c", "canaryWeight=37"]
        result = run(argv, PATH=path, TMPDIR=str(tmp))
        left = sorted(p.name for p in tmp.iterdir())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result, fake_bin / "npx-called", left


def test_a_synth_leaves_no_run_folder_behind(cli_w37):
    # The app ends without the interpreter's teardown (toolchain.exit_now), after its exit handlers:
    # jsii's runtime and the Node.js kernel's folders are gone; the esbuild stub stays, on purpose.
    *_, left = cli_w37
    assert left == ["node_modules"]


def test_cdk_synth_bundles_the_library_s_handlers_without_npx(cli_w37):
    # npm's start-up cost about a second of every synth (canary_stack/toolchain.py,
    # hide_workspace_esbuild); the bundle is the same, so the templates are (test above and below).
    _, _, npx_calls, _ = cli_w37
    assert not npx_calls.exists(), npx_calls.read_text()


def test_cdk_synth_writes_what_the_tests_assert_on(cli_w37, synth):
    out, _, _, _ = cli_w37
    from_cli = json.loads((out / "CrystalCanary.template.json").read_text())
    assert from_cli == synth(canaryWeight="37").template


def test_cdk_synth_of_the_default_router_has_no_app_mesh(cli_w37):
    # The first thing a newcomer synthesizes is the router AWS still serves (App Mesh ended
    # 2026-09-30; its template's warning and Rule: tests/stack/test_routers.py).
    out, result, _, _ = cli_w37
    assert "App Mesh" not in result.stderr + result.stdout
    template = json.loads((out / "CrystalCanary.template.json").read_text())
    assert not [k for k, v in template["Resources"].items() if v["Type"].startswith("AWS::AppMesh::")]


@pytest.fixture
def in_process_app(monkeypatch, tmp_path):
    """app.main() as `python app.py` runs it, in this process: the toolchain is already prepared
    (tests/conftest.py), so its preparation and exit handlers stay out of the test process."""
    import app

    monkeypatch.setattr(app, "prepare_toolchain", lambda environ: tmp_path)
    monkeypatch.setattr(app, "remove_at_exit", lambda folder: None)
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    return app


@pytest.mark.parametrize(
    "context, line",
    [
        ({"canaryWeight": "1e1"}, "error: canaryWeight must be a whole number from 0 to 100, got '1e1'"),
        ({"trafficRouter": "linkerd"}, "error: trafficRouter must be one of alb, appmesh, lattice, got 'linkerd'"),
        ({"canaryWeigth": "10"}, "error: unknown context parameter 'canaryWeigth'; known parameters: canaryWeight, "),
        ({"productionImage": "vanilla"}, "error: productionImage must be the 64-character lowercase hex asset hash"),
        ({"canaryWeight": "10"}, "error: productionImage must be the 64-character lowercase hex asset hash"),
        ({"productionImage": "f" * 64, "cpuArchitecture": "aarch64"}, "error: cpuArchitecture must be one of"),
        # What cdk.json gives (the CLI merged it in): the error names the file.
        ({"productionImage": "f" * 64, "canaryWeight": 0, "stickySeconds": -1}, "error: stickySeconds must be"),
    ],
)
def test_app_exits_2_with_exactly_one_line(in_process_app, monkeypatch, capfd, tmp_path, context, line):
    """Given only `context` in CDK_CONTEXT_JSON: one line, exit 2, no template, before Node.js starts.
    The real processes (`cdk synth`, `python app.py`) are run by the tests below."""
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps(context))
    assert in_process_app.main() == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), err
    assert out == ""
    assert not list(tmp_path.rglob("*.template.json"))


@pytest.mark.parametrize("where", ["cdk.json", "cdk.context.json"])
def test_a_value_from_a_file_that_the_app_refuses_names_the_file(in_process_app, monkeypatch, capfd, tmp_path, where):
    # The CLI merges the files (and -c) into CDK_CONTEXT_JSON; the app finds where a bad value came from.
    project = tmp_path / "project"
    project.mkdir()
    image = {"productionImage": "f" * 64}
    (project / "cdk.json").write_text(
        json.dumps({"context": {**image, "canaryWeight": 150} if where == "cdk.json" else image})
    )
    if where == "cdk.context.json":
        (project / "cdk.context.json").write_text(json.dumps({"canaryWeight": 150}))
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps({**image, "canaryWeight": 150}))
    assert in_process_app.main() == 2
    assert capfd.readouterr().err == f"error: {where}: canaryWeight must be a whole number from 0 to 100, got 150\n"
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps({**image, "canaryWeight": "150"}))  # `-c canaryWeight=150`
    assert in_process_app.main() == 2
    assert capfd.readouterr().err == "error: canaryWeight must be a whole number from 0 to 100, got '150'\n"


@pytest.mark.parametrize(
    "value, line",
    [
        ("not json", "error: CDK_CONTEXT_JSON is not valid JSON: Expecting value: line 1 column 1 (char 0)\n"),
        (
            '{"a": ' + "[" * 1500 + "]" * 1500 + "}",
            "error: CDK_CONTEXT_JSON nests JSON arrays or objects deeper than Python reads (about 1,000 levels)\n",
        ),
    ],
)
def test_a_context_the_app_cannot_read_is_one_line_not_a_jsii_traceback(tmp_path, value, line):
    result = run([sys.executable, "app.py"], CDK_CONTEXT_JSON=value, CDK_OUTDIR=str(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line)


def test_importing_the_app_runs_nothing_and_the_runtime_imports_no_tool():
    code = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import app\n"
        "from canary_stack import cdk_app\n"
        "print(json.dumps([dict(os.environ) == before, sorted(m for m in sys.modules if m.startswith('canary_stack.ops'))]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [True, []]


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
    good, *_ = cli_w37
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


def test_app_that_fails_validation_exits_1_with_the_report_and_no_template(
    in_process_app, monkeypatch, tmp_path, capsys
):
    """main() as the CLI runs it (the output folder from CDK_OUTDIR), on an app whose stack has an
    unacknowledged cdk-nag finding: exit 1, the report, no traceback, no template."""
    from aws_cdk import aws_s3 as s3

    from canary_stack import cdk_app

    build = cdk_app.build

    def careless_build(app, config=None, **kwargs):
        stack = build(app, config, **kwargs)
        s3.CfnBucket(stack, "CarelessBucket")
        return stack

    monkeypatch.setattr(cdk_app, "build", careless_build)
    # What the CLI hands the app: cdk.json's context, productionImage included.
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps({**cdk_json_context(), **CLI_CONTEXT}))
    assert in_process_app.main() == 1
    err = capsys.readouterr().err
    assert "CrystalCanary/CarelessBucket" in err and "AwsSolutions-S1" in err
    assert err.rstrip().splitlines()[-1] == f"error: synthesis failed validation; no template was left in {tmp_path}"
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.template.json")) and not (tmp_path / "manifest.json").exists()


def test_a_construct_that_throws_leaves_no_earlier_template_either(in_process_app, monkeypatch, tmp_path):
    from canary_stack import cdk_app

    for name in ("manifest.json", "CrystalCanary.template.json", "CrystalCanary.assets.json", "tree.json"):
        (tmp_path / name).write_text("{}")  # an earlier run's assembly

    def broken_build(app, config=None, **kwargs):
        raise RuntimeError("a construct's own check failed")

    monkeypatch.setattr(cdk_app, "build", broken_build)
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps(cdk_json_context()))
    with pytest.raises(RuntimeError, match="a construct's own check failed"):
        in_process_app.main()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree.json"]
