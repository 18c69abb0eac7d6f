"""Bad input, as a user or an attacker gives it: one table per entry point.

Each row: the arguments (or make variables), the exit code, and a fragment of the one line the
user reads. Every row also asserts that nothing ran: no deploy, no synthesis, no file written by
a value that tried to run a command.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.git_repo import git_repository, project_export

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.ops import committed, offline_diff, promote, rollout, verify

LONG = "9" * 3000
# cdk.json's context needs a production image (any asset hash here).
IMAGE = '"productionImage": "' + "0" * 64 + '"'
# Values that would run `touch SENTINEL` if any shell or make expanded them; {s} is the sentinel.
HOSTILE = [
    "1'; touch {s}; echo '",
    '1"; touch {s}; echo "',
    "$(shell touch {s})",
    "$$(touch {s})",
    "`touch {s}`",
    "1; touch {s}",
    "1\ntouch {s}",
]


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ Makefile

MAKE = [
    # (make arguments, exit code, fragment of the tool's one line)
    (
        ["deploy", "WEIGHT="],
        2,
        "make deploy: error: WEIGHT is empty (''): give a value (WEIGHT=10) or leave WEIGHT out",
    ),
    (["deploy", "WEIGHT=   "], 2, "make deploy: error: WEIGHT is empty"),  # make drops the spaces: ''
    (["deploy", "ROUTER="], 2, "make deploy: error: ROUTER is empty"),
    (
        ["deploy", "WEIGHT=10", "ROUTER=appmesh"],
        2,
        "make deploy: error: trafficRouter=appmesh: AWS App Mesh reached end of support on 2026-09-30 and can no "
        "longer be deployed; deploy the same canary with -c trafficRouter=alb",
    ),
    (
        ["deploy", "WEIGHT=abc", "ROUTER=alb"],
        2,
        "make deploy: error: canaryWeight must be a whole number from 0 to 100, got 'abc'",
    ),
    # The app's own message: it shortens the value once config.py uses canary_stack.text.shorten.
    (["deploy", f"WEIGHT={LONG}", "ROUTER=alb"], 2, "canaryWeight must be a whole number from 0 to 100, got '999"),
    (["synth", "WEIGHT="], 2, "make synth: error: WEIGHT is empty"),
    # The app's own line (it also clears cdk.out): one real synthesis, its Node.js start included.
    (["synth", f"WEIGHT={HOSTILE[0]}"], 2, "error: canaryWeight must be a whole number from 0 to 100, got \"1'; touch"),
    (["diff", "FROM=10"], 2, "offline_diff: error: --from and --to go together"),
    (["diff", "FROM= ", "TO=10"], 2, "make diff: error: FROM is empty"),
    (["diff", "BASE="], 2, "make diff: error: BASE is empty"),
    (["diff", "FROM=10", "TO=50", "BASE=main"], 2, "make diff: error: BASE compares the working tree"),
    # "of this repository" in a git checkout; "needs a git repository" in a plain export.
    (["diff", "BASE=no-such-rev"], 2, "offline_diff: error: --base "),
    *[
        (["deploy", f"WEIGHT={v}", "ROUTER=alb"], 2, "canaryWeight must be a whole number from 0 to 100")
        for v in HOSTILE
    ],
    *[(["deploy", "WEIGHT=10", f"ROUTER={v}"], 2, "trafficRouter must be one of") for v in HOSTILE],
    *[(["diff", f"FROM={v}", "TO=10"], 2, "offline_diff: error: canaryWeight must be a whole number") for v in HOSTILE],
    *[(["diff", f"BASE={v}"], 2, "offline_diff: error: --base ") for v in HOSTILE],
    (["integ", "INTEG_OUT="], 2, "error: INTEG_OUT is empty: give a folder or leave it out (build/integ)"),
    # A variable the Makefile does not take is refused before anything runs: make would export it to
    # every recipe, expanding it on the way, and a mistyped name would be ignored (found by a try-out).
    *[
        (
            ["synth", f"X={v}"],
            2,
            "*** unknown variable X; make takes WEIGHT ROUTER FROM TO BASE UNVERIFIED INTEG_OUT PYTHON PY CDK",
        )
        for v in HOSTILE
    ],
    (["deploy", "weight=50"], 2, "*** unknown variable weight; make takes WEIGHT"),
    (["help", "WIEGHT=50"], 2, "*** unknown variable WIEGHT; make takes WEIGHT"),
]


# -o: the toolchain is installed; a fresh checkout's timestamps must not reinstall it here.
KEEP_TOOLCHAIN = ("-o", ".venv/.installed", "-o", "node_modules/.installed", "-o", ".venv-checkov/.installed")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of the project (its toolchain linked) for make to run in: a refused `make synth` clears
    the cdk.out it was given, which in the real checkout would be the developer's last `make synth`."""
    return project_export(tmp_path_factory.mktemp("make"))


def make(checkout: Path, tmp_path: Path, args: list[str], *flags: str) -> tuple[subprocess.CompletedProcess, Path]:
    sentinel = tmp_path / "ran"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CANARY_MAKE_", "AWS_"))}
    # A user's usual shell: credentials and a region (fake; nothing here may reach AWS). With them
    # the CLI's AWS SDK would print its Node.js notice over the one line on every synth.
    env.update(AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="eu-west-1")
    # MAKELEVEL and MAKEFLAGS: under `make test` the user's make would be a sub-make, whose errors read
    # "make[1]: ***"; what a user sees is a top-level make.
    for name in ("WEIGHT", "ROUTER", "FROM", "TO", "BASE", "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"):
        env.pop(name, None)
    argv = ["make", "--no-print-directory", *KEEP_TOOLCHAIN, *flags]
    argv += [arg.replace("{s}", str(sentinel)) for arg in args]
    result = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, timeout=120)
    return result, sentinel


@pytest.mark.parametrize("args, code, fragment", MAKE, ids=[" ".join(a)[:50] for a, _, _ in MAKE])
def test_makefile(checkout, tmp_path, args, code, fragment):
    result, sentinel = make(checkout, tmp_path, args)
    assert not sentinel.exists(), "a variable's value ran as a command"
    assert result.returncode == code, result.stderr
    tool_line, *rest = result.stderr.splitlines()
    assert fragment in tool_line, result.stderr
    assert rest == [line for line in rest if line.startswith("make: *** ")]  # only make's own summary
    assert result.stdout == "" or not fragment.startswith("*** unknown")  # refused before any recipe
    assert "Traceback" not in result.stderr


def test_a_refused_make_synth_clears_the_cdk_out_of_the_checkout_it_ran_in(checkout, tmp_path):
    """The make table runs in `checkout`, so the app's clean-up on a refused synth reaches that copy's
    cdk.out and never the developer's (it did: every `make test` removed the last `make synth`'s template)."""
    template = checkout / "cdk.out" / "CrystalCanary.template.json"
    template.parent.mkdir(exist_ok=True)
    template.write_text("{}")
    result, _ = make(checkout, tmp_path, ["synth", "WEIGHT=abc"])
    assert result.returncode == 2, result.stderr
    assert not template.exists()


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("variable", ["WEIGHT", "ROUTER", "FROM", "BASE", "INTEG_OUT"])
def test_makefile_dry_run_never_expands_a_value(checkout, tmp_path, variable, value):
    # `make -n` prints the recipes: a Makefile that pasted values into them would show (or, for
    # $(shell ...), run) them here already.
    target = {"FROM": "diff", "BASE": "diff", "INTEG_OUT": "integ"}.get(variable, "deploy")
    result, sentinel = make(checkout, tmp_path, [target, f"{variable}={value}"], "-n")
    assert not sentinel.exists()
    assert result.returncode == 0, result.stderr
    assert "touch" not in result.stdout
    if target != "integ":
        assert result.stdout.strip().splitlines()[-1] == f".venv/bin/python -m canary_stack.ops.make {target}"


# -------------------------------------------------------------------- verify

VERIFY = [
    (["--requests", "0"], "argument --requests: must be a whole number from 1 to 100000, got '0'"),
    (["--requests", "100001"], "--requests: must be a whole number from 1 to 100000, got '100001'"),
    (["--requests", "ten"], "--requests: must be a whole number from 1 to 100000, got 'ten'"),
    (["--requests", LONG], "got '9999999999999999999999999999999999999999...' (3000 characters)"),
    (["--expect", "101"], "--expect: must be a number from 0 to 100, got '101'"),
    (["--expect", "-1"], "--expect: must be a number from 0 to 100, got '-1'"),
    (["--expect", "nan"], "--expect: must be a number from 0 to 100, got 'nan'"),
    (["--concurrency", "65"], "--concurrency: must be a whole number from 1 to 64, got '65'"),
    (["--concurrency", "0"], "--concurrency: must be a whole number from 1 to 64, got '0'"),
    (["--timeout", "0"], "--timeout: must be a number greater than 0 and at most 300, got '0'"),
    (["--deadline", "-5"], "--deadline: must be a number greater than 0"),
    (["--canary-commit", ""], "--canary-commit: must be the canary's commit value (printable, not blank), got ''"),
    (["--canary-commit", "  "], "--canary-commit: must be the canary's commit value (printable, not blank), got '  '"),
    (["--url-typo", "x"], "unrecognized arguments: --url-typo x"),
]
VERIFY_URLS = [
    ("ftp://example", "argument URL: must be an http:// or https:// URL with a host"),
    ("http://", "must be an http:// or https:// URL with a host"),
    ("example.com", "got 'example.com'"),
    (
        "http://127.0.0.1:99999",
        "an optional port from 1 to 65535 and path, no query or fragment, got 'http://127.0.0.1:99999'",
    ),
    ("http://127.0.0.1:0", "got 'http://127.0.0.1:0'"),
    ("http://127.0.0.1:port", "got 'http://127.0.0.1:port'"),
    ("http://127.0.0.1/?canary=1", "must have no query or fragment (requests go to URL/crystal/api)"),
    ("http://127.0.0.1/#top", "must have no query or fragment"),
    ("http://127.0.0.1/a b", "got 'http://127.0.0.1/a b'"),
    (
        "http://127.0.0.1:9/" + "a" * 3000,
        "error: http://127.0.0.1:9/aaaaaaaaaaaaaaaaaaaaa... (3031 characters): cannot connect",
    ),
]


@pytest.mark.parametrize(
    "argv, fragment",
    [(["http://127.0.0.1:9", *args], f) for args, f in VERIFY] + [([url], f) for url, f in VERIFY_URLS],
)
def test_verify(argv, fragment):
    out, err = io.StringIO(), io.StringIO()
    assert verify.main(argv, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    line = one_line(err.getvalue())
    assert line.startswith("verify: error: ") and fragment in line, line


# ------------------------------------------------------------------- rollout

ROLLOUT = [
    (
        ["--steps", "10,5", "--bake", "0"],
        "--steps: must be comma-separated whole numbers from 0 to 100, strictly increasing; 5 follows 10",
    ),
    (["--steps", "10,10", "--bake", "0"], "10 follows 10"),
    (["--steps", "10,abc", "--bake", "0"], "'abc' is not, in '10,abc'"),
    (["--steps", "10,101", "--bake", "0"], "'101' is not"),
    (["--steps=-5,10", "--bake", "0"], "'-5' is not"),
    (["--steps", "", "--bake", "0"], "'' is not, in ''"),
    (["--steps", LONG, "--bake", "0"], "(3000 characters)"),
    (["--steps", "10", "--bake", "-1"], "--bake: must be a number from 0 to 604800, got '-1'"),
    (
        ["--steps", "10", "--bake", "0", "--poll", "0"],
        "--poll: must be a number greater than 0 and at most 3600, got '0'",
    ),
    (
        ["--steps", "10", "--bake", "0", "--url", "http://x"],
        "a bake of 0s at --probe-rate 1 sends 0 canary-fleet requests, fewer than the 30 canary answers",
    ),
    (
        ["--steps", "10", "--bake", "0", "--verify-requests", "5"],
        "a bake of 0s at --probe-rate 1 sends 0 canary-fleet requests, fewer than the 30 canary answers",
    ),
    (
        ["--steps", "10", "--bake", "0", "--url", "http://x", "--verify-requests", "0"],
        "--verify-requests: must be a whole number from 1",
    ),
    (
        ["--steps", "10", "--bake", "0", "--url", "http://x/?q", "--verify-requests", "5"],
        "--url: must have no query or fragment",
    ),
    (
        ["--steps", "10", "--bake", "0", "--canary-commit", ""],
        "--canary-commit: must be the canary's commit value (printable, not blank), got ''",
    ),
    (["--steps", "10", "--bake", "0", "--canary-commit", " \t"], "--canary-commit: must be the canary's commit value"),
    (["--steps", "10", "--bake", "0", "--stack-name", "bad name"], "--stack-name: must be a CloudFormation stack name"),
    (
        ["--steps", "10", "--bake", "0", "-c", "trafficRouter=appmesh"],
        "trafficRouter=appmesh: AWS App Mesh reached end of support on 2026-09-30",
    ),
    (
        ["--steps", "10", "--bake", "0", "-c", "trafficRouter=linkerd"],
        "trafficRouter must be one of alb, appmesh, lattice, got 'linkerd'",
    ),
    (["--steps", "10", "--bake", "0", "-c", "canaryWeight=5"], "-c canaryWeight conflicts with --steps"),
    (["--steps", "10", "--bake", "0", "-c", "canaryweight=5"], "unknown context parameter 'canaryweight'"),
    (["--steps", "10", "--bake", "0", "-c", "novalue"], "-c must be key=value, got 'novalue'"),
    (["--steps", "10", "--bake", "0", "--promote"], "unrecognized arguments: --promote"),
    (["--bake", "0"], "the following arguments are required: --steps"),
    (
        ["--steps", "10", "--bake", "0", "--url-from-stack"],
        "a bake of 0s at --probe-rate 1 sends 0 canary-fleet requests, fewer than the 30 canary answers",
    ),
    (
        ["--steps", "10", "--bake", "0", "--url", "http://x", "--url-from-stack", "--verify-requests", "5"],
        "argument --url-from-stack: not allowed with --url",
    ),
    (
        ["--steps", "10", "--bake", "0", "--max-duration", "0"],
        "--max-duration: must be a number greater than 0 and at most 6048000, got '0'",
    ),
    (["--steps", "10,50", "--bake", "3600", "--max-duration", "9899"], "need 9900s, more than 9899s"),
    (
        ["--steps", "10", "--bake", "0", "--max-duration", "1e400"],
        "--max-duration: must be a number greater than 0 and at most 6048000, got '1e400'",
    ),
]


class NoRunner:
    def run(self, argv, *, capture_output=False):
        raise AssertionError(f"nothing may run on bad input, ran {argv}")


@pytest.mark.parametrize("argv, fragment", ROLLOUT)
def test_rollout(tmp_path, argv, fragment):
    (tmp_path / "cdk.json").write_text('{"context": {"canaryWeight": 0, "trafficRouter": "alb", ' + IMAGE + "}}")
    out, err = io.StringIO(), io.StringIO()

    class NoAws:
        def __getattr__(self, name):
            raise AssertionError("AWS may not be called on bad input")

    code = rollout.main(argv, runner=NoRunner(), cloudwatch=NoAws(), repo_root=tmp_path, stdout=out, stderr=err)
    assert code == 2 and out.getvalue() == ""
    line = one_line(err.getvalue())
    assert line.startswith("rollout: error: ") and fragment in line, line


ROLLOUT_CDK_JSON = [
    (
        [],
        '{"context": {"canaryWeight": 10,}}',
        "cdk.json is not valid JSON: Expecting property name enclosed in double quotes",
    ),
    ([], '{"context": []}', 'cdk.json: "context" must be a JSON object, got []'),
    (
        [],
        '{"context": {"trafficRouter": "appmesh", ' + IMAGE + "}}",
        "trafficRouter=appmesh: AWS App Mesh reached end of support",
    ),
    # A deploy's -c canaryWeight overrides a bad committed one; the dry run starts from it.
    (
        ["--dry-run"],
        '{"context": {"canaryWeight": 10.5, "trafficRouter": "alb", ' + IMAGE + "}}",
        "cdk.json: canaryWeight must be a whole number",
    ),
]


@pytest.mark.parametrize("flags, cdk_json, fragment", ROLLOUT_CDK_JSON)
def test_rollout_committed_cdk_json(tmp_path, flags, cdk_json, fragment):
    (tmp_path / "cdk.json").write_text(cdk_json)
    out, err = io.StringIO(), io.StringIO()
    code = rollout.main(
        ["--steps", "10", "--bake", "0", *flags], runner=NoRunner(), repo_root=tmp_path, stdout=out, stderr=err
    )
    assert code == 2 and out.getvalue() == ""
    assert fragment in one_line(err.getvalue())


# -------------------------------------------------------------- offline_diff

OFFLINE_DIFF = [
    (["--from", "10", "--to", "101"], "canaryWeight must be a whole number from 0 to 100, got '101'"),
    (["--from", "abc", "--to", "10"], "canaryWeight must be a whole number from 0 to 100, got 'abc'"),
    (["--from", LONG, "--to", "10"], "canaryWeight must be a whole number from 0 to 100, got '999"),  # the app's line
    (
        ["--from", "10", "--to", "20", "-c", "trafficRouter=linkerd"],
        "trafficRouter must be one of alb, appmesh, lattice, got 'linkerd'",
    ),
    (["--from", "10", "--to", "20", "-c", "canaryWeight=5"], "-c canaryWeight conflicts with --from/--to"),
    (["--from", "10"], "--from and --to go together"),
    (["--from", "10", "--to", "20", "--base", "main"], "--base compares the working tree"),
    (["--base", "no-such-revision"], "--base must be a git revision of this repository, got 'no-such-revision'"),
    (["--base", "--output=x"], "argument --base: expected one argument"),
    (["--base=--output=x"], "--base must be a git revision, got '--output=x'"),
    (["--base", " "], "--base must be a git revision, got ' '"),
    (["--stack-name", "a b"], "--stack-name: must be a CloudFormation stack name"),
    (["-c", "x"], "-c must be key=value, got 'x'"),
]


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """A git repository with the project's cdk.json: --base needs history, which a plain export lacks."""
    return git_repository(tmp_path_factory.mktemp("bad-input"), {"cdk.json": (ROOT / "cdk.json").read_text()})


@pytest.mark.parametrize("argv, fragment", OFFLINE_DIFF)
def test_offline_diff(repository, argv, fragment):
    out, err = io.StringIO(), io.StringIO()
    assert offline_diff.main(argv, root=repository, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    line = one_line(err.getvalue())
    assert line.startswith("offline_diff: error: ") and fragment in line, line


def test_offline_diff_of_a_malformed_cdk_json(tmp_path):
    (tmp_path / "cdk.json").write_text('{"context": []}')
    err = io.StringIO()
    assert offline_diff.main(["--from", "0", "--to", "10"], root=tmp_path, stdout=io.StringIO(), stderr=err) == 2
    assert one_line(err.getvalue()) == 'offline_diff: error: cdk.json: "context" must be a JSON object, got []'


# ------------------------------------------------------- promote, committed

PROMOTE = [
    ([], '{"context": {"canaryWeight": 10,}}', "promote: error: cdk.json is not valid JSON"),
    ([], '{"context": "x"}', "promote: error: cdk.json: \"context\" must be a JSON object, got 'x'"),
    (["--force"], "{}", "promote: error: unrecognized arguments: --force"),
    (["--weight", "101"], "{}", "promote: error: argument --weight: must be a whole number from 0 to 100, got '101'"),
    (
        ["x" * 100],
        "{}",
        "promote: error: unrecognized arguments: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (100 characters)",
    ),
]


@pytest.mark.parametrize("argv, cdk_json, line", PROMOTE)
def test_promote(tmp_path, argv, cdk_json, line):
    (tmp_path / "cdk.json").write_text(cdk_json)
    out, err = io.StringIO(), io.StringIO()
    assert promote.main(argv, root=tmp_path, stdout=out, stderr=err) == 2
    assert out.getvalue() == "" and one_line(err.getvalue()).startswith(line)
    assert (tmp_path / "cdk.json").read_text() == cdk_json  # untouched


COMMITTED = [
    (["canaryweight"], '{"context": {' + IMAGE + "}}", "committed: error: unknown context parameter 'canaryweight'"),
    ([], '{"context": {}}', "committed: error: expected one context key, e.g. canaryWeight, got ''"),
    (
        ["canaryWeight", "x"],
        '{"context": {}}',
        "committed: error: expected one context key, e.g. canaryWeight, got 'canaryWeight x'",
    ),
    (["canaryWeight"], '{"context": {"canaryWeight": 10,}}', "committed: error: cdk.json is not valid JSON"),
    (
        ["canaryWeight"],
        '{"context": {"canaryWeight": true, ' + IMAGE + "}}",
        "committed: error: cdk.json: canaryWeight must be a whole number",
    ),
    (["canaryWeight"], None, "committed: error: no cdk.json in"),
]


@pytest.mark.parametrize("argv, cdk_json, line", COMMITTED)
def test_committed(tmp_path, argv, cdk_json, line):
    if cdk_json is not None:
        (tmp_path / "cdk.json").write_text(cdk_json)
    out, err = io.StringIO(), io.StringIO()
    assert committed.main(argv, root=tmp_path, stdout=out, stderr=err) == 2
    assert out.getvalue() == "" and one_line(err.getvalue()).startswith(line)


def test_the_entry_points_print_one_line_from_a_real_process_too():
    # argv as a shell passes it: the module's own main, sys.argv and exit code.
    result = subprocess.run(
        [sys.executable, "-m", "canary_stack.ops.rollout", "--steps", "10", "--bake", "0", "--canary-commit", ""],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert one_line(result.stderr).startswith("rollout: error: argument --canary-commit:")
