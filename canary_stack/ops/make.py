"""The Makefile's targets that take variables: `make synth|diff|deploy|promote` with WEIGHT, ROUTER,
FROM, TO, BASE, UNVERIFIED.

    python -m canary_stack.ops.make synth|diff|deploy|promote

The Makefile never pastes a variable into recipe text: it exports each variable that was given
(on the command line or in the environment, even empty) raw, unexpanded, as CANARY_MAKE_<NAME>
(e.g. CANARY_MAKE_WEIGHT), and this module turns them into the argv of the CDK CLI or of a tool,
run without a shell. So no character of a value (quotes, `$(...)`, backticks, `;`, line breaks)
is ever interpreted by make or a shell.

A variable given but blank (`make deploy WEIGHT=`, or an unset CI variable) is refused: without
this, it would silently deploy the committed weight. `make deploy` refuses the App Mesh router
before anything is built. Bad values get the app's own one-line error (exit 2), naming the context
file (cdk.json, cdk.context.json, ~/.cdk.json) a bad committed value came from.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from canary_stack.assembly import remove_deployable
from canary_stack.constants import PROJECT_ROOT, STACK_NAME
from canary_stack.context import CDK_CONTEXT_JSON, CDK_JSON, COMMAND_LINE, USER_CDK_JSON, read_context
from canary_stack.ops import cdk_cli, offline_diff, promote
from canary_stack.ops.cli import UsageError
from canary_stack.ops.command import Command
from canary_stack.ops.deployable import deploy_config, require_credentials
from canary_stack.text import shorten

PREFIX = "CANARY_MAKE_"
VARIABLES = ("WEIGHT", "ROUTER", "FROM", "TO", "BASE", "UNVERIFIED")
EXAMPLES = {"WEIGHT": "10", "ROUTER": "alb", "FROM": "10", "TO": "50", "BASE": "main", "UNVERIFIED": "1"}
TARGETS = ("synth", "diff", "deploy", "promote")
SYNTH_OUTDIR = PROJECT_ROOT / "cdk.out"  # where `cdk synth` writes without -o
# How `make deploy` says where the weight it deploys comes from.
ORIGINS = {
    CDK_JSON: "committed in cdk.json",
    CDK_CONTEXT_JSON: "from cdk.context.json",
    USER_CDK_JSON: "from ~/.cdk.json",
}


def given(environ: Mapping[str, str]) -> dict[str, str]:
    """The make variables that were given, by name, raw. A blank one is refused with one line."""
    values = {name: environ[PREFIX + name] for name in VARIABLES if PREFIX + name in environ}
    for name, value in values.items():
        if not value.strip():
            raise UsageError(
                f"{name} is empty ({shorten(value)}): give a value ({name}={EXAMPLES[name]}) or leave {name} out"
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


def refuse(values: Mapping[str, str], target: str, allowed: Sequence[str]) -> None:
    for name in values:
        if name not in allowed:
            raise UsageError(f"{name} does not go with make {target} (it takes {', '.join(allowed) or 'no variable'})")


SYNTH_OUT = Path("cdk.out")  # what `make synth` says it wrote, whatever `output` a cdk.json or ~/.cdk.json sets


def synth_argv(values: Mapping[str, str]) -> list[str]:
    """`cdk synth` with WEIGHT and ROUTER, into cdk.out/. The app checks them itself too: on a bad
    value it also clears cdk.out, so no earlier template stays deployable."""
    return cdk_cli.synth_argv(app_context(values), SYNTH_OUT)


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
        argv += cdk_cli.context_args({"canaryWeight": values["WEIGHT"]} if "WEIGHT" in values else {})
    if "ROUTER" in values:
        argv += cdk_cli.context_args({"trafficRouter": values["ROUTER"]})
    return argv


def promote_argv(values: Mapping[str, str]) -> list[str]:
    """promote's arguments: WEIGHT the canary's deployed weight (default 100), UNVERIFIED=1 to skip
    the look at the deployed stack."""
    argv = [f"--weight={values['WEIGHT']}"] if "WEIGHT" in values else []
    if "UNVERIFIED" in values:
        if values["UNVERIFIED"].strip() != "1":
            raise UsageError(f"UNVERIFIED must be 1 or left out, got {shorten(values['UNVERIFIED'])}")
        argv.append("--unverified")
    return argv


def deploy_command(
    root: Path, values: Mapping[str, str], out: TextIO, credentials: Callable[[str], None] = require_credentials
) -> list[str]:
    """`cdk deploy` of the canary stack, after the app's checks, the App Mesh refusal and a look for
    AWS credentials; says what it is about to deploy, and where each value comes from."""
    context = app_context(values)
    config = deploy_config(root, context)  # raises ConfigError/UsageError before anything is built
    credentials("make deploy")
    origin = read_context(root, context).origin("canaryWeight")
    source = "" if origin == COMMAND_LINE else ", " + ORIGINS.get(origin or "", "the default")
    out.write(f"deploying {STACK_NAME}: canaryWeight {config.canary_weight}{source}, {config.traffic_router} router\n")
    out.flush()
    return cdk_cli.deploy_argv(STACK_NAME, context)


class Make(Command):
    name = "make"
    prog = "python -m canary_stack.ops.make"
    positional = "synth|diff|deploy|promote"

    def __init__(
        self,
        *,
        root: Path = PROJECT_ROOT,
        environ: Mapping[str, str] | None = None,
        run: Callable[..., int] = cdk_cli.run_cdk,
        credentials: Callable[[str], None] = require_credentials,
        **streams: TextIO | None,
    ) -> None:
        super().__init__(**streams)
        self.root, self.environ, self.run_cli, self.credentials = root, environ, run, credentials

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        if len(args) != 1 or args[0] not in TARGETS:
            raise UsageError(f"expected {', '.join(TARGETS[:-1])} or {TARGETS[-1]}, got {shorten(' '.join(args))}")
        target = args[0]
        self.name = f"make {target}"
        if target == "synth":
            return self.synth()
        values = given(os.environ if self.environ is None else self.environ)
        if target == "diff":
            refuse(values, target, ("WEIGHT", "ROUTER", "FROM", "TO", "BASE"))
            return offline_diff.main(diff_argv(values), root=self.root, stdout=self.out, stderr=self.err)
        if target == "promote":
            refuse(values, target, ("WEIGHT", "UNVERIFIED"))
            return promote.main(promote_argv(values), root=self.root, stdout=self.out, stderr=self.err)
        refuse(values, target, ("WEIGHT", "ROUTER"))
        argv = deploy_command(self.root, values, self.out, self.credentials)
        return self.run_cli(argv, root=self.root, offline=False, out=self.out)

    def synth(self) -> int:
        """`cdk synth` into cdk.out/, offline; a refused or failed synth leaves no template there."""
        try:
            values = given(os.environ if self.environ is None else self.environ)
            refuse(values, "synth", ("WEIGHT", "ROUTER"))
            # The app's own check first (one line, no Node.js start), every context source included.
            read_context(self.root, app_context(values)).config()
            # The CLI's messages go to stderr as it writes them.
            code = self.run_cli(synth_argv(values), root=self.root, offline=True, out=self.err)
        except BaseException:
            remove_deployable(SYNTH_OUTDIR)  # a refused synth leaves no earlier template deployable
            raise
        if code != 0:
            remove_deployable(SYNTH_OUTDIR)  # e.g. a cdk.json the CLI could not read: no app ran to clean up
            return code
        self.out.write(f"templates in {SYNTH_OUT}/\n")
        return code


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    run: Callable[..., int] = cdk_cli.run_cdk,
    credentials: Callable[[str], None] = require_credentials,
) -> int:
    return Make(root=root, environ=environ, run=run, credentials=credentials, stdout=stdout, stderr=stderr).main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
