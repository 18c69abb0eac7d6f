"""canary_stack/context.py: one reader of context that agrees with the CDK CLI for every source
(cdk.json, cdk.context.json, ~/.cdk.json, -c), and the tools that use it. Each test has its own HOME."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from canary_stack.config import DEFAULTS, ConfigError
from canary_stack.constants import PROJECT_ROOT
from canary_stack.context import ContextError, parse_environment, read_context
from canary_stack.ops import committed, make, promote, rollout

IMAGE = "0" * 64
DEEP = "[" * 1500 + "]" * 1500


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so ~/.cdk.json is the test's."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write(folder / "cdk.json", {"app": "true", "context": {"productionImage": IMAGE}})
    return folder


def record(ran: list[list[str]], argv: list[str]) -> int:
    ran.append(argv)
    return 0


def write(path: Path, document: object) -> None:
    path.write_text(json.dumps(document))


def context_file(project: Path, **values: object) -> None:
    write(project / "cdk.context.json", values)


def user_file(home: Path, **values: object) -> None:
    write(home / ".cdk.json", {"context": values})


def cdk_json(project: Path, **values: object) -> None:
    write(project / "cdk.json", {"app": "true", "context": {"productionImage": IMAGE, **values}})


# ------------------------------------------------------------------ precedence


def test_each_source_and_the_clis_precedence(home, project):
    user_file(home, a="home", b="home", c="home", d="home")
    context_file(project, a="context", b="context", c="context")
    cdk_json(project, a="cdk", b="cdk")
    context = read_context(project, {"a": "cli"})
    assert {k: context.values[k] for k in "abcd"} == {"a": "cli", "b": "cdk", "c": "context", "d": "home"}
    assert {k: context.origin(k) for k in "abcd"} == {
        "a": "-c",
        "b": "cdk.json",
        "c": "cdk.context.json",
        "d": "~/.cdk.json",
    }


def test_a_null_in_a_file_is_a_value_and_hides_the_ones_below(home, project):
    # Context.get takes the first bag whose value is not `undefined`: JSON null counts.
    user_file(home, canaryWeight=50)
    cdk_json(project, canaryWeight=None)
    assert read_context(project).values["canaryWeight"] is None
    assert read_context(project).config().canary_weight == 0  # the app's default for null


def test_json_files_give_json_and_c_gives_strings(home, project):
    context_file(project, canaryWeight=10.0)
    assert read_context(project).values["canaryWeight"] == 10 and read_context(project).config().canary_weight == 10
    assert read_context(project, {"canaryWeight": "10"}).values["canaryWeight"] == "10"


DUMP_APP = "import os, sys; open(sys.argv[1], 'w').write(os.environ['CDK_CONTEXT_JSON']); sys.exit(3)"


def test_the_reader_agrees_with_the_real_cdk_cli(home, project, tmp_path):
    """`cdk synth` in a folder with every source: the app it starts records what it was given."""
    user_file(home, a="home", b="home", c="home", d="home", n=1e2)
    context_file(project, a="context", b="context", c="context", f=10.0)
    cdk_json(project, a="cdk", b="cdk", big=12345678901234567890)
    dump = tmp_path / "given.json"
    app = f'{sys.executable} -c "{DUMP_APP}" {dump}'
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(HOME=str(home), CDK_DISABLE_CLI_TELEMETRY="true", AWS_EC2_METADATA_DISABLED="true")
    cli = PROJECT_ROOT / "node_modules" / ".bin" / "cdk"
    result = subprocess.run(
        [str(cli), "synth", "--no-notices", "--app", app, "-c", "a=cli", "-c", "e=x=y"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dump.exists(), result.stderr
    given = json.loads(dump.read_text())
    ours = read_context(project, {"a": "cli", "e": "x=y"}).values
    # The CLI adds its own settings (contextFromSettings in the pinned CLI): metadata switches and this flag.
    cli_own = {k for k in given if k.startswith("aws:cdk:")} | {"@aws-cdk/core:failSynthOnValidationErrors"}
    assert {k: v for k, v in given.items() if k not in cli_own} == ours
    assert ours["big"] == 12345678901234567000 and ours["f"] == 10 and ours["n"] == 100 and ours["e"] == "x=y"


# ------------------------------------------------------------------ errors name the file


@pytest.mark.parametrize(
    "where, line",
    [
        ("cdk.json", "cdk.json: canaryWeight must be a whole number from 0 to 100, got 150"),
        ("cdk.context.json", "cdk.context.json: canaryWeight must be a whole number from 0 to 100, got 150"),
        ("~/.cdk.json", "~/.cdk.json: canaryWeight must be a whole number from 0 to 100, got 150"),
    ],
)
def test_a_bad_value_names_the_file_it_came_from(home, project, where, line):
    {
        "cdk.json": lambda: cdk_json(project, canaryWeight=150),
        "cdk.context.json": lambda: context_file(project, canaryWeight=150),
        "~/.cdk.json": lambda: user_file(home, canaryWeight=150),
    }[where]()
    with pytest.raises(ConfigError) as raised:
        read_context(project).config()
    assert str(raised.value) == line
    # A -c value wins and is the user's own: its error is the app's line, with no file.
    with pytest.raises(ConfigError, match=r"^canaryWeight must be a whole number from 0 to 100, got '-1'$"):
        read_context(project, {"canaryWeight": "-1"}).config()
    assert read_context(project, {"canaryWeight": "10"}).config().canary_weight == 10


@pytest.mark.parametrize("key", sorted(set(DEFAULTS) - {"productionImage"}))  # cdk.json's would win
def test_every_parameter_refused_from_a_file_names_the_file(home, project, key):
    # A value no parser takes (a JSON array), in cdk.context.json: the line names the file, then the key.
    context_file(project, **{key: [1]})
    with pytest.raises(ConfigError) as raised:
        read_context(project).config()
    assert str(raised.value).startswith(f"cdk.context.json: {key} "), raised.value


def test_an_unknown_key_from_home_is_refused_naming_the_file_exit_2(home, project, monkeypatch, tmp_path):
    user_file(home, canaryWeigth=10)
    monkeypatch.setattr(make, "SYNTH_OUTDIR", tmp_path / "cdk.out")
    ran: list[list[str]] = []
    err = io.StringIO()
    code = make.main(["synth"], root=project, environ={}, run=lambda argv, **o: record(ran, argv), stderr=err)
    assert code == 2 and ran == []
    assert err.getvalue().startswith("make synth: error: ~/.cdk.json: unknown context parameter 'canaryWeigth'; ")
    assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize("where", ["cdk.json", "cdk.context.json", "~/.cdk.json"])
def test_a_malformed_source_is_one_line_naming_it(home, project, where):
    path = {
        "cdk.json": project / "cdk.json",
        "cdk.context.json": project / "cdk.context.json",
        "~/.cdk.json": home / ".cdk.json",
    }[where]
    path.write_text('{"context": {"a": 1,}}')
    with pytest.raises(
        ContextError, match=rf"^{where.replace('.', r'[.]')} is not valid JSON: Expecting property name"
    ):
        read_context(project)


# ------------------------------------------------------------------ the tools use it


def deploy(project: Path, environ: dict[str, str]) -> tuple[int, str, str, list[list[str]]]:
    ran: list[list[str]] = []
    out, err = io.StringIO(), io.StringIO()
    code = make.main(
        ["deploy"],
        root=project,
        environ=environ,
        run=lambda argv, **o: record(ran, argv),
        stdout=out,
        stderr=err,
        credentials=lambda command: None,
    )
    return code, out.getvalue(), err.getvalue(), ran


def test_make_deploy_announces_the_weight_cdk_context_json_sets(home, project):
    context_file(project, canaryWeight=50)
    code, out, err, ran = deploy(project, {})
    assert code == 0, err
    assert out == "deploying CrystalCanary: canaryWeight 50, from cdk.context.json, alb router\n"
    user_file(home, canaryWeight=20)
    (project / "cdk.context.json").unlink()
    assert deploy(project, {})[1] == "deploying CrystalCanary: canaryWeight 20, from ~/.cdk.json, alb router\n"
    assert deploy(project, {"CANARY_MAKE_WEIGHT": "5"})[1] == "deploying CrystalCanary: canaryWeight 5, alb router\n"


@pytest.mark.parametrize("where", ["cdk.context.json", "~/.cdk.json"])
def test_app_mesh_from_any_source_is_refused_before_anything_runs(home, project, where):
    if where == "cdk.context.json":
        context_file(project, trafficRouter="appmesh")
    else:
        user_file(home, trafficRouter="appmesh")
    code, out, err, ran = deploy(project, {})
    assert (code, out, ran) == (2, "", [])
    assert err.startswith(f"make deploy: error: {where}: trafficRouter=appmesh: AWS App Mesh reached end of support")
    # The rollout refuses it from the same reader, before its first deploy.
    err_io = io.StringIO()
    assert rollout.main(["--steps", "10", "--bake", "0"], repo_root=project, stdout=io.StringIO(), stderr=err_io) == 2
    assert f"{where}: trafficRouter=appmesh" in err_io.getvalue()


def test_the_pipelines_committed_weight_reads_cdk_context_json(home, project):
    context_file(project, canaryWeight=30)
    out = io.StringIO()
    assert committed.main(["canaryWeight"], root=project, stdout=out) == 0
    assert out.getvalue() == "30\n"


# ------------------------------------------------------------------ depth and the environment (issue 16.14)


@pytest.mark.parametrize("tool", ["make synth", "promote", "committed"])
def test_a_1500_deep_array_in_cdk_json_is_one_line(home, project, tool, monkeypatch, tmp_path):
    (project / "cdk.json").write_text('{"context": {"@x": ' + DEEP + ', "productionImage": "' + IMAGE + '"}}')
    err = io.StringIO()
    if tool == "make synth":
        monkeypatch.setattr(make, "SYNTH_OUTDIR", tmp_path / "cdk.out")
        code = make.main(["synth"], root=project, environ={}, run=lambda argv, **o: 0, stderr=err)
    elif tool == "promote":
        code = promote.main([], root=project, stdout=io.StringIO(), stderr=err)
    else:
        code = committed.main(["canaryWeight"], root=project, stdout=io.StringIO(), stderr=err)
    assert code == 2
    assert (
        err.getvalue()
        == f"{tool}: error: cdk.json nests JSON arrays or objects deeper than Python reads (about 1,000 levels)\n"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "CDK_CONTEXT_JSON is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        ("[]", "CDK_CONTEXT_JSON must hold a JSON object, got []"),
        ('{"a": ' + DEEP + "}", "CDK_CONTEXT_JSON nests JSON arrays or objects deeper than Python reads"),
    ],
)
def test_the_apps_context_from_the_environment_is_one_line_error(text, message):
    with pytest.raises(ContextError) as raised:
        parse_environment({"CDK_CONTEXT_JSON": text})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_the_apps_context_overflow_file_is_read_too(tmp_path):
    overflow = tmp_path / "context-overflow.json"
    overflow.write_text('{"b": 10.0}')
    env = {"CDK_CONTEXT_JSON": '{"a": 1}', "CDK_CONTEXT_OVERFLOW_LOCATION": str(overflow)}
    assert parse_environment(env) == {"a": 1, "b": 10}


@pytest.mark.parametrize(
    "item, message",
    [
        ("canaryWeight", "-c must be key=value, got 'canaryWeight'"),
        ("aws:cdk:x=1", "-c keys starting with 'aws:' are the CDK's own"),
        ("canaryWeight=1\n0", "a value is one line (the CDK CLI would cut it)"),
    ],
)
def test_c_values_the_cli_would_ignore_refuse_or_cut_are_refused(item, message):
    from canary_stack.context import parse_command_line

    with pytest.raises(ContextError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_command_line([item])
