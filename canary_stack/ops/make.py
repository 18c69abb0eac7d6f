"""The Makefile's targets that take variables: `make synth|diff|deploy` with WEIGHT, ROUTER, FROM, TO, BASE.

    python -m canary_stack.ops.make synth|diff|deploy

The Makefile never pastes a variable into recipe text: it exports each variable that was given
(on the command line or in the environment, even empty) raw, unexpanded, as CANARY_MAKE_<NAME>
(e.g. CANARY_MAKE_WEIGHT), and this module turns them into the argv of the CDK CLI or of a tool,
run without a shell. So no character of a value (quotes, `$(...)`, backticks, `;`, line breaks)
is ever interpreted by make or a shell.

A variable given but blank (`make deploy WEIGHT=`, or an unset CI variable) is refused: without
this, it would silently deploy the committed weight. `make deploy` refuses the App Mesh router
before anything is built. Bad values get the app's own one-line error (exit 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TextIO

from canary_stack.config import ConfigError
from canary_stack.constants import CDK_CLI, PROJECT_ROOT, STACK_NAME
from canary_stack.ops import offline_diff
from canary_stack.ops.cli import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, usage_line
from canary_stack.ops.deployable import app_config, deploy_argv, deploy_config, remove_deployable, require_credentials
from canary_stack.text import shorten

PREFIX = "CANARY_MAKE_"
VARIABLES = ("WEIGHT", "ROUTER", "FROM", "TO", "BASE")
CDK_FLAGS = ["--no-notices"]
SYNTH_OUTDIR = PROJECT_ROOT / "cdk.out"  # where `cdk synth` writes without -o

# What esbuild prints when cdk-docker-image-deployment bundles its handlers on a synth: the same
# lines every time, burying the one a user must read. Anything else (errors, warnings) is shown.
_BUNDLING = (
    re.compile(r"^Bundling asset \S+\.\.\.$"),
    re.compile(r"^\s+\S*index\.js(\.map)?\s+[\d.]+\s?[kmg]?b\s*$", re.IGNORECASE),
    re.compile(r"^\W*Done in \d+(\.\d+)?m?s$"),
    # After the app's own one-line error, the CLI only repeats that it failed (make says so too).
    re.compile(r"^\S+ app\.py: Subprocess exited with error \d+$"),
)


def given(environ: Mapping[str, str]) -> dict[str, str]:
    """The make variables that were given, by name, raw. A blank one is refused with one line."""
    values = {name: environ[PREFIX + name] for name in VARIABLES if PREFIX + name in environ}
    for name, value in values.items():
        if not value.strip():
            example = {"WEIGHT": "10", "ROUTER": "alb", "FROM": "10", "TO": "50", "BASE": "main"}[name]
            raise UsageError(
                f"{name} is empty ({shorten(value)}): give a value ({name}={example}) or leave {name} out"
                + (" to use the weight committed in cdk.json" if name == "WEIGHT" else "")
            )
    return values


def app_context(values: Mapping[str, str]) -> dict[str, str]:
    """The -c context for the CDK CLI from WEIGHT and ROUTER, as typed (the app parses them)."""
    context = {}
    if "WEIGHT" in values:
        context["canaryWeight"] = values["WEIGHT"]
    if "ROUTER" in values:
        context["trafficRouter"] = values["ROUTER"]
    return context


def context_args(context: Mapping[str, str]) -> list[str]:
    return [arg for key, value in context.items() for arg in ("-c", f"{key}={value}")]


def synth_argv(values: Mapping[str, str]) -> list[str]:
    """`cdk synth` with WEIGHT and ROUTER. The app checks them itself (not this module): on a bad
    value it also clears cdk.out, so no earlier template stays deployable."""
    return [CDK_CLI, "synth", "-q", *CDK_FLAGS, *context_args(app_context(values))]


def diff_argv(values: Mapping[str, str]) -> list[str]:
    """offline_diff's arguments: a weight step with FROM and TO, else BASE (default main) against
    the working tree. One of FROM/TO alone is offline_diff's to refuse."""
    argv: list[str] = []
    if "FROM" in values or "TO" in values:
        if "BASE" in values:
            raise UsageError("BASE compares the working tree; it does not go with FROM/TO")
        if "WEIGHT" in values:
            raise UsageError("WEIGHT does not go with make diff: FROM and TO are the weights")
        argv += [f"--from={values[n]}" if n == "FROM" else f"--to={values[n]}" for n in ("FROM", "TO") if n in values]
    else:
        argv += [f"--base={values.get('BASE', 'main')}"]
        argv += context_args({"canaryWeight": values["WEIGHT"]} if "WEIGHT" in values else {})
    if "ROUTER" in values:
        argv += context_args({"trafficRouter": values["ROUTER"]})
    return argv


def deploy_command(
    values: Mapping[str, str], out: TextIO, credentials: Callable[[str], None] = require_credentials
) -> list[str]:
    """`cdk deploy` of the canary stack, after the app's checks, the App Mesh refusal and a look for
    AWS credentials; says what it is about to deploy (the weight a plain `make deploy` takes from
    cdk.json)."""
    context = app_context(values)
    config = deploy_config(PROJECT_ROOT, context)  # raises ConfigError/UsageError before anything is built
    credentials("make deploy")
    source = "" if "WEIGHT" in values else ", committed in cdk.json"
    out.write(f"deploying {STACK_NAME}: canaryWeight {config.canary_weight}{source}, {config.traffic_router} router\n")
    out.flush()
    return deploy_argv(STACK_NAME, context)


def quiet_lines(lines: Iterable[str], write: Callable[[str], object]) -> None:
    """Passes the CLI's output on without esbuild's bundling lines and without a warning block
    printed before (the same annotation for several constructs); blank runs fold to one."""
    seen: set[str] = set()
    skipping = False
    blank = True  # no blank line first
    for line in lines:
        text = line.rstrip("\n")
        if any(pattern.match(text) for pattern in _BUNDLING):
            continue
        if text.startswith(("WARNING ", "[Warning")):
            skipping = text in seen
            seen.add(text)
        elif not text.startswith((" ", "\t")) and text.strip():
            skipping = False
        if skipping:
            continue
        if not text.strip():
            if blank:
                continue
            blank = True
        else:
            blank = False
        write(text + "\n")


def cli_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The CLI's environment: on Node.js 20 the AWS SDK inside it prints a nine-line notice (newer SDKs
    will need Node.js 22, which the README recommends) whenever it makes a client: on every synth
    with credentials around. It changes nothing here and would bury the line a user must read."""
    return {**environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}


def run_cdk(argv: Sequence[str], *, filtered: bool, out: TextIO) -> int:
    """Runs the CDK CLI from the project root. `filtered` (synth): offline, as offline_diff runs it
    (no credentials, so no account lookup and no SDK at all), its output through quiet_lines."""
    env = offline_diff.offline_env(os.environ) if filtered else cli_env(os.environ)
    if not filtered:
        return subprocess.run(list(argv), cwd=PROJECT_ROOT, env=env).returncode
    process = subprocess.Popen(
        list(argv),
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    assert process.stdout is not None
    try:
        quiet_lines(process.stdout, lambda text: (out.write(text), out.flush()))
    finally:
        process.stdout.close()
    return process.wait()


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    run: Callable[..., int] = run_cdk,
    credentials: Callable[[str], None] = require_credentials,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if len(args) != 1 or args[0] not in ("synth", "diff", "deploy"):
            raise UsageError(f"expected synth, diff or deploy, got {shorten(' '.join(args))}")
        target = args[0]
        values = given(os.environ if environ is None else environ)
        if target == "synth":
            # The app's own check first (one line, no Node.js start): the CLI would also cut a
            # value at its first line break before the app saw it.
            app_config(PROJECT_ROOT, app_context(values))
            code = run(synth_argv(values), filtered=True, out=err)  # the CLI's messages, on stderr as it writes them
            if code != 0:
                remove_deployable(SYNTH_OUTDIR)  # e.g. a cdk.json the CLI could not read: no app ran to clean up
                return code
            out.write("templates in cdk.out/\n")
            return code
        if target == "diff":
            return offline_diff.main(diff_argv(values), stdout=out, stderr=err)
        return run(deploy_command(values, out, credentials), filtered=False, out=out)
    except (UsageError, ConfigError) as exc:
        if args == ["synth"]:
            remove_deployable(SYNTH_OUTDIR)  # a refused synth leaves no earlier template deployable
        err.write(usage_line(f"make {args[0] if args else ''}".strip(), exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
