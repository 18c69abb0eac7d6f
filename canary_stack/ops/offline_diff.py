"""The CloudFormation change of a weight step or of a working tree, offline, with the real CDK CLI.

    python -m canary_stack.ops.offline_diff --from A --to B [-c key=value ...]
    python -m canary_stack.ops.offline_diff [--base REV] [-c key=value ...]

With --from/--to: synthesizes the app at canaryWeight=A and at canaryWeight=B (both with the same
extra -c context) and prints `cdk diff` of B against A's template. `rollout --dry-run` calls this
for every step; `make diff FROM=A TO=B` too.

Without them: synthesizes REV (default: main) in a temporary `git worktree` and the working tree,
then prints the same diff: what a pull request changes in AWS. Each side uses its own cdk.json, so
a changed committed canaryWeight shows up as the route's new weights.

Both synthesize with `cdk synth` of the project's CLI, so the templates are the ones a deploy
would send. No AWS account is needed or contacted: credentials, profiles and the instance metadata
endpoint are hidden from the CLI (it would otherwise look up a default account on every synth).

--stack-name NAME diffs that stack of the app (default CrystalCanary), as rollout deploys it.

The diff goes to stdout; the CLI's synthesis warnings go to stderr. Exit codes: 0 diff printed
(differences or not), 1 synthesis or diff failed, 2 bad input (the same one-line error as
`cdk synth`), 130 interrupted (Ctrl-C or SIGTERM).

Interrupted, it stops every `cdk synth`/`cdk diff` it started with everything they started (each
runs in its own process group: the CLI starts the Python app), removes its temporary folders and
the base worktree, and exits 130, whichever step it was in.

The CLI is run by canary_stack/ops/cdk_cli.py, git by canary_stack/ops/git.py; this module is the
command over them (canary_stack/ops/command.py maps its errors to the exit codes above).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from canary_stack.constants import PROJECT_ROOT, STACK_NAME
from canary_stack.context import read_context
from canary_stack.ops import cdk_cli, git
from canary_stack.ops.cli import EXIT_OK, UsageError, add_context_argument, parse_context, parse_stack_name
from canary_stack.ops.command import Command


def validate(root: Path, context: Mapping[str, str]) -> None:
    """Raises ConfigError with the line `cdk synth` would print for this context (naming the file of
    a bad committed value). The app's own parser decides, before any synthesis is started, so a bad
    weight costs no time and reads the same as from `cdk synth -c canaryWeight=...`."""
    read_context(root, context).config()


def describe(context: Mapping[str, str]) -> str:
    return "".join(f" -c {k}={v}" for k, v in context.items())


def diff_weights(
    root: Path,
    previous: str,
    weight: str,
    context: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    stack: str = STACK_NAME,
) -> None:
    env = cdk_cli.offline_env(os.environ)
    synths = cdk_cli.Synths(env, err, stack)
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        try:
            old = synths.start(
                f"canaryWeight={previous}", root, Path(tmp) / "from", {**context, "canaryWeight": previous}
            )
            new = synths.start(f"canaryWeight={weight}", root, Path(tmp) / "to", {**context, "canaryWeight": weight})
            synths.wait()
        finally:
            synths.kill()
        out.write(f"{stack}: canaryWeight {previous} -> {weight}{describe(context)}\n")
        cdk_cli.run_diff(new, old / f"{stack}.template.json", env, root, out, err, stack)


def diff_working_tree(
    root: Path, rev: str, context: Mapping[str, str], out: TextIO, err: TextIO, stack: str = STACK_NAME
) -> None:
    commit = git.resolve_commit(root, rev)
    env = cdk_cli.offline_env(os.environ)
    synths = cdk_cli.Synths(env, err, stack)
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        with git.worktree(root, commit, Path(tmp)) as base:
            try:
                old = synths.start(f"{rev} ({commit[:12]})", base, Path(tmp) / "base.out", context)
                new = synths.start("the working tree", root, Path(tmp) / "work.out", context)
                synths.wait()
            finally:
                synths.kill()
        out.write(f"{stack}: {rev} ({commit[:12]}) -> working tree{describe(context)}\n")
        cdk_cli.run_diff(new, old / f"{stack}.template.json", env, root, out, err, stack)


class OfflineDiff(Command):
    name = "offline_diff"
    prog = "python -m canary_stack.ops.offline_diff"
    description = (
        "Print the CloudFormation diff between two canary weights (--from/--to), or between a git "
        "revision (--base, default main) and the working tree. Offline: no AWS account or credentials are used."
    )
    epilog = "Exit codes: 0 diff printed, 1 synthesis or diff failed, 2 bad input, 130 interrupted."
    interrupted_message = "nothing was deployed; temporary files removed"

    def __init__(self, root: Path = PROJECT_ROOT, **streams: TextIO | None) -> None:
        super().__init__(**streams)
        self.root = root

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--from", dest="previous", metavar="WEIGHT", help="canary weight before the step")
        parser.add_argument("--to", dest="weight", metavar="WEIGHT", help="canary weight after the step")
        parser.add_argument(
            "--base",
            metavar="REV",
            help="without --from/--to: the git revision to compare the working tree with (default: main)",
        )
        add_context_argument(parser, what="both sides, as for cdk synth")
        parser.add_argument(
            "--stack-name",
            type=parse_stack_name,
            default=STACK_NAME,
            metavar="NAME",
            help=f"the app's stack to diff (default {STACK_NAME})",
        )

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        context = parse_context(options.context)
        if (options.previous is None) != (options.weight is None):
            raise UsageError("--from and --to go together (or give neither, to diff the working tree)")
        if options.previous is not None:
            if options.base is not None:
                raise UsageError("--base compares the working tree; it does not go with --from/--to")
            if "canaryWeight" in context:
                raise UsageError("-c canaryWeight conflicts with --from/--to; they set it")
            validate(self.root, {**context, "canaryWeight": options.previous})
            validate(self.root, {**context, "canaryWeight": options.weight})
            previous, weight = options.previous.strip(), options.weight.strip()
            diff_weights(self.root, previous, weight, context, self.out, self.err, options.stack_name)
        else:
            validate(self.root, context)
            diff_working_tree(self.root, options.base or "main", context, self.out, self.err, options.stack_name)
        return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    return OfflineDiff(root, stdout=stdout, stderr=stderr).main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
