"""canary_stack.ops.make: make variables to argv, and the synth output a user reads."""

from __future__ import annotations

import io

import pytest

from canary_stack.ops import cdk_cli, make

# `cdk synth -q` of the appmesh router, as the CLI prints it (cdk-docker-image-deployment bundles
# its handler with esbuild on every synth).
CLI_OUTPUT = """Bundling asset CrystalCanary/Images/Canary/Copy/onEventHandler/Code/Stage...

  ...423476669fc92a069a719e49e0d84596d0f7d191e4a47adf-building/index.js  3.6kb

⚡ Done in 7ms
Bundling asset CrystalCanary/Images/Canary/Copy/isCompleteHandler/Code/Stage...

  ...0d84596d0f7d191e4a47adf423476669fc92a069a719e49e-building/index.js  2.1kb

⚡ Done in 5ms
WARNING AWS App Mesh reached end of support on 2026-09-30: accounts that never used it cannot create a mesh. (Annotation)
   CrystalCanary aws-cdk-lib.Stack
   Acknowledge with 'Annotation::crystal-canary:app-mesh-end-of-support'
WARNING AWS App Mesh reached end of support on 2026-09-30: accounts that never used it cannot create a mesh. (Annotation)
   CrystalCanary aws-cdk-lib.Stack
   Acknowledge with 'Annotation::crystal-canary:app-mesh-end-of-support'
Error: something real went wrong
.venv/bin/python app.py: Subprocess exited with error 1
"""


def test_synth_output_keeps_the_warning_once_and_every_error_but_not_esbuild():
    out = io.StringIO()
    cdk_cli.quiet_lines(io.StringIO(CLI_OUTPUT), out.write)
    assert out.getvalue() == (
        "WARNING AWS App Mesh reached end of support on 2026-09-30: accounts that never used it cannot create a mesh. (Annotation)\n"
        "   CrystalCanary aws-cdk-lib.Stack\n"
        "   Acknowledge with 'Annotation::crystal-canary:app-mesh-end-of-support'\n"
        "Error: something real went wrong\n"
    )


@pytest.mark.parametrize(
    "variables, argv",
    [
        ({}, ["--base=main"]),
        ({"BASE": "HEAD~1"}, ["--base=HEAD~1"]),
        ({"FROM": "10", "TO": "50"}, ["--from=10", "--to=50"]),
        ({"FROM": "-5", "TO": "50"}, ["--from=-5", "--to=50"]),  # a value is never read as an option
        ({"FROM": "10", "TO": "50", "ROUTER": "alb"}, ["--from=10", "--to=50", "-c", "trafficRouter=alb"]),
        ({"WEIGHT": "30"}, ["--base=main", "-c", "canaryWeight=30"]),
    ],
)
def test_diff_arguments(variables, argv):
    assert make.diff_argv(variables) == argv


def test_given_reads_only_the_variables_make_exported():
    environ = {"CANARY_MAKE_WEIGHT": "10", "WEIGHT": "99", "CANARY_MAKE_OTHER": "x"}
    assert make.given(environ) == {"WEIGHT": "10"}


def test_deploy_runs_the_cli_without_a_shell_with_the_values_as_typed(tmp_path, monkeypatch):
    ran = []

    def run(argv, **options):
        ran.append((argv, options))
        return 0

    out = io.StringIO()
    code = make.main(
        ["deploy"],
        environ={"CANARY_MAKE_WEIGHT": " 10", "CANARY_MAKE_ROUTER": "alb"},
        run=run,
        stdout=out,
        credentials=lambda command: None,
    )
    assert code == 0
    assert out.getvalue() == "deploying CrystalCanary: canaryWeight 10, alb router\n"
    (argv, options), *_ = ran
    assert argv == [
        "node_modules/.bin/cdk",
        "deploy",
        "CrystalCanary",
        "--require-approval",
        "never",
        "--no-notices",
        "-c",
        "canaryWeight= 10",  # the app parses it (and accepts the space), as from `cdk deploy -c`
        "-c",
        "trafficRouter=alb",
    ]
    assert options["offline"] is False  # a deploy's progress is shown as the CLI prints it, with credentials


def test_make_help_lists_every_target_on_one_line():
    import subprocess

    from canary_stack.constants import PROJECT_ROOT

    result = subprocess.run(["make", "--no-print-directory", "help"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[1]: line for line in result.stdout.splitlines()}
    for target in ("setup", "synth", "test", "lint", "diff", "deploy", "promote", "snapshot", "integ", "clean"):
        assert target in listed and len(listed[target].split(None, 2)[2]) > 10, result.stdout


def test_a_plain_make_deploy_says_it_takes_the_committed_weight():
    out = io.StringIO()
    ran: list[list[str]] = []

    def run(argv, **options):
        ran.append(argv)
        return 0

    assert make.main(["deploy"], environ={}, run=run, stdout=out, credentials=lambda command: None) == 0
    committed = make.deploy_config(make.PROJECT_ROOT, {})
    assert out.getvalue() == (
        f"deploying CrystalCanary: canaryWeight {committed.canary_weight}, committed in cdk.json, "
        f"{committed.traffic_router} router\n"
    )
    assert not any(arg.startswith("canaryWeight=") for arg in ran[0])  # the CLI reads cdk.json itself


def test_deploy_without_aws_credentials_stops_before_the_cli_with_one_line():
    """No credentials: one line, exit 2, and the CLI (which would build and stage every asset first)
    never starts. The check walks the AWS SDK's chain with nothing in it."""
    import boto3

    ran: list[list[str]] = []
    err = io.StringIO()
    nobody = boto3.session.Session(aws_access_key_id=None, aws_secret_access_key=None)
    nobody.get_credentials = lambda: None  # an empty chain

    def run(argv: list[str], **options: object) -> int:
        ran.append(argv)
        return 0

    code = make.main(
        ["deploy"],
        environ={"CANARY_MAKE_WEIGHT": "10"},
        run=run,
        stderr=err,
        credentials=lambda command: make.require_credentials(command, session_factory=lambda: nobody),
    )
    assert code == 2 and ran == []
    assert err.getvalue() == (
        "make deploy: error: make deploy deploys to an AWS account and found no AWS credentials: nothing was "
        "built; set AWS_PROFILE (or run `aws configure` / `aws sso login`) and try again\n"
    )


def test_a_refused_or_failed_synth_leaves_no_template_in_cdk_out(tmp_path, monkeypatch):
    outdir = tmp_path / "cdk.out"
    outdir.mkdir()
    monkeypatch.setattr(make, "SYNTH_OUTDIR", outdir)

    def earlier_assembly():
        for name in ("manifest.json", "CrystalCanary.template.json", "CrystalCanary.assets.json", "tree.json"):
            (outdir / name).write_text("{}")

    # Refused before the CLI: a blank value, and a value the app refuses (a line break the CLI would cut).
    for environ in ({"CANARY_MAKE_WEIGHT": " "}, {"CANARY_MAKE_WEIGHT": "1\ntouch x"}):
        earlier_assembly()
        assert make.main(["synth"], environ=environ, run=lambda argv, **o: 0, stderr=io.StringIO()) == 2
        assert sorted(p.name for p in outdir.iterdir()) == ["tree.json"]
    # The CLI failed (say it could not read cdk.json): no app ran to clean up, so make.py does.
    earlier_assembly()
    assert make.main(["synth"], environ={}, run=lambda argv, **o: 1, stderr=io.StringIO()) == 1
    assert sorted(p.name for p in outdir.iterdir()) == ["tree.json"]


def test_synth_writes_where_it_says_whatever_output_a_context_file_sets():
    # An `output` in ~/.cdk.json or cdk.json would send the CLI's templates elsewhere while make synth
    # said "templates in cdk.out/" (found by a try-out): the folder is given on the command line.
    ran: list[list[str]] = []

    def record(argv, **options) -> int:
        ran.append(list(argv))
        return 0

    out = io.StringIO()
    code = make.main(["synth"], environ={}, run=record, stdout=out, stderr=io.StringIO())
    assert code == 0
    (argv,) = ran
    assert argv[argv.index("--output") + 1] == "cdk.out"
    assert out.getvalue() == "templates in cdk.out/\n"
