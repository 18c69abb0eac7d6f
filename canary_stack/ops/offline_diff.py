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

The diff goes to stdout; the CLI's synthesis warnings go to stderr. Exit codes: 0 diff printed
(differences or not), 1 synthesis or diff failed, 2 bad input (the same one-line error as
`cdk synth`), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from canary_stack.config import CanaryConfig, ConfigError
from canary_stack.constants import CDK_CLI, PROJECT_ROOT, STACK_NAME
from canary_stack.ops.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineArgumentParser,
    UsageError,
    one_line,
    usage_line,
)

# The main tree's toolchain, reused by the base worktree instead of reinstalling it.
SHARED_TOOLCHAIN = (".venv", "node_modules")

SYNTH_TIMEOUT = 900  # a cold synth bundles Lambda handlers; far below this
DIFF_TIMEOUT = 300


class Failed(Exception):
    """A synthesis or the diff failed; the message is one line, the CLI's output was shown."""


def offline_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for the CLI: no way to reach an AWS account, no telemetry.

    Without this, `cdk synth` asks the credential chain for a default account: with no
    credentials it would probe the EC2 instance metadata endpoint (seconds of timeouts off EC2),
    and with a profile it might open an SSO login. None of it changes an env-agnostic template.
    """
    env = {k: v for k, v in environ.items() if not k.startswith("AWS_")}
    # CDK_CONTEXT_JSON / CDK_OUTDIR from a calling shell would override the CLI's -c and -o.
    for key in ("CDK_CONTEXT_JSON", "CDK_OUTDIR", "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
        env.pop(key, None)
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    return env


def parse_context(items: Sequence[str]) -> dict[str, str]:
    context: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-c must be key=value, got {item!r}")
        context[key] = value
    return context


def committed_context(root: Path) -> dict:
    try:
        return json.loads((root / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    except (OSError, ValueError, AttributeError) as err:
        raise UsageError(f"cannot read cdk.json: {one_line(err)}") from None


def validate(root: Path, context: Mapping[str, str]) -> None:
    """Raises ConfigError with the line `cdk synth` would print for this context.

    The app's own parser decides, before any synthesis is started, so a bad weight costs no time
    and reads the same as from `cdk synth -c canaryWeight=...`.
    """
    merged = {**committed_context(root), **context}
    CanaryConfig.from_context(merged.get, keys=list(merged))


def synth_argv(outdir: Path, context: Mapping[str, str]) -> list[str]:
    argv = [CDK_CLI, "synth", "--quiet", "--no-notices", "--output", str(outdir)]
    for key, value in context.items():
        argv += ["--context", f"{key}={value}"]
    return argv


def diff_argv(new_assembly: Path, old_template: Path) -> list[str]:
    # --app with an assembly directory: no synthesis; --template: compare with a file, not with
    # a deployed stack, so no CloudFormation call is made.
    # --no-ci: with CI=true the CLI would print the synthesis warnings into the diff on stdout.
    return [
        CDK_CLI,
        "diff",
        "--no-notices",
        "--no-ci",
        "--app",
        str(new_assembly),
        "--template",
        str(old_template),
        STACK_NAME,
    ]


class Synths:
    """Runs `cdk synth`s in parallel (each is mostly a single-threaded Node/Python start-up)."""

    def __init__(self, env: Mapping[str, str], err: TextIO):
        self.env = dict(env)
        self.err = err
        self.running: list[tuple[str, Path, subprocess.Popen]] = []

    def start(self, label: str, cwd: Path, outdir: Path, context: Mapping[str, str]) -> None:
        process = subprocess.Popen(
            synth_argv(outdir, context),
            cwd=cwd,
            env=self.env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.running.append((label, outdir, process))

    def wait(self) -> None:
        failures = []
        for label, outdir, process in self.running:
            try:
                output, _ = process.communicate(timeout=SYNTH_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                output, _ = process.communicate()
                failures.append((label, f"timed out after {SYNTH_TIMEOUT}s", output))
                continue
            template = outdir / f"{STACK_NAME}.template.json"
            if process.returncode != 0 or not template.is_file():
                failures.append((label, f"cdk synth exit {process.returncode}", output))
        self.running = []
        if failures:
            for label, why, output in failures:
                self.err.write(f"--- cdk synth of {label} ({why}) ---\n{output.rstrip()}\n")
            raise Failed("synthesis of " + " and ".join(label for label, _, _ in failures) + " failed (output above)")

    def kill(self) -> None:
        for _, _, process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running = []


def run_diff(
    new_assembly: Path, old_template: Path, env: Mapping[str, str], cwd: Path, out: TextIO, err: TextIO
) -> None:
    result = subprocess.run(
        diff_argv(new_assembly, old_template),
        cwd=cwd,
        env=dict(env),
        text=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DIFF_TIMEOUT,
    )
    # The CLI writes everything to stderr: first the assembly's warnings (the same on every
    # step; `cdk synth` shows them too), then the diff from the "Stack NAME" line on.
    text = result.stdout + result.stderr
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(f"Stack {STACK_NAME}")), 0)
    err.write("".join(lines[:start]))
    if result.returncode != 0:
        err.write("".join(lines[start:]))
        raise Failed(f"cdk diff exit {result.returncode} (output above)")
    out.write("".join(lines[start:]).rstrip() + "\n")


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, text=True, capture_output=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise Failed(f"git {' '.join(args)}: {one_line(result.stderr) or f'exit {result.returncode}'}")
    return result.stdout.strip()


def resolve_base(root: Path, rev: str) -> str:
    if rev.startswith("-"):
        raise UsageError(f"--base must be a git revision, got {rev!r}")
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except Failed:
        raise UsageError(f"--base must be a git revision of this repository, got {rev!r}") from None


@contextmanager
def base_worktree(root: Path, commit: str, parent: Path) -> Iterator[Path]:
    """A detached worktree of `commit` sharing the main tree's .venv and node_modules.

    Removed afterwards whatever happens (`git worktree prune` catches a half-added one).
    """
    path = parent / "base"
    try:
        git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
        for name in SHARED_TOOLCHAIN:
            if (root / name).exists() and not (path / name).exists():
                (path / name).symlink_to(root / name, target_is_directory=True)
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)], cwd=root, capture_output=True, stdin=subprocess.DEVNULL
        )
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=root, capture_output=True, stdin=subprocess.DEVNULL)


def describe(context: Mapping[str, str]) -> str:
    return "".join(f" -c {k}={v}" for k, v in context.items())


def diff_weights(root: Path, previous: str, weight: str, context: Mapping[str, str], out: TextIO, err: TextIO) -> None:
    env = offline_env(os.environ)
    synths = Synths(env, err)
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        old, new = Path(tmp) / "from", Path(tmp) / "to"
        try:
            synths.start(f"canaryWeight={previous}", root, old, {**context, "canaryWeight": previous})
            synths.start(f"canaryWeight={weight}", root, new, {**context, "canaryWeight": weight})
            synths.wait()
        finally:
            synths.kill()
        out.write(f"{STACK_NAME}: canaryWeight {previous} -> {weight}{describe(context)}\n")
        run_diff(new, old / f"{STACK_NAME}.template.json", env, root, out, err)


def diff_working_tree(root: Path, rev: str, context: Mapping[str, str], out: TextIO, err: TextIO) -> None:
    commit = resolve_base(root, rev)
    env = offline_env(os.environ)
    synths = Synths(env, err)
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        old, new = Path(tmp) / "base.out", Path(tmp) / "work.out"
        with base_worktree(root, commit, Path(tmp)) as base:
            try:
                synths.start(f"{rev} ({commit[:12]})", base, old, context)
                synths.start("the working tree", root, new, context)
                synths.wait()
            finally:
                synths.kill()
        out.write(f"{STACK_NAME}: {rev} ({commit[:12]}) -> working tree{describe(context)}\n")
        run_diff(new, old / f"{STACK_NAME}.template.json", env, root, out, err)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m canary_stack.ops.offline_diff",
        description="Print the CloudFormation diff between two canary weights (--from/--to), or "
        "between a git revision (--base, default main) and the working tree. Offline: no AWS "
        "account or credentials are used.",
        epilog="Exit codes: 0 diff printed, 1 synthesis or diff failed, 2 bad input, 130 interrupted.",
    )
    parser.add_argument("--from", dest="previous", metavar="WEIGHT", help="canary weight before the step")
    parser.add_argument("--to", dest="weight", metavar="WEIGHT", help="canary weight after the step")
    parser.add_argument(
        "--base",
        metavar="REV",
        help="without --from/--to: the git revision to compare the working tree with (default: main)",
    )
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more context for both sides, as for cdk synth (e.g. trafficRouter=alb)",
    )
    return parser


def _raise_interrupt(signum, frame):  # SIGTERM from CI: clean up the worktree like on Ctrl-C
    raise KeyboardInterrupt


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        args = build_parser().parse_args(argv)
        context = parse_context(args.context)
        if (args.previous is None) != (args.weight is None):
            raise UsageError("--from and --to go together (or give neither, to diff the working tree)")
        if args.previous is not None:
            if args.base is not None:
                raise UsageError("--base compares the working tree; it does not go with --from/--to")
            if "canaryWeight" in context:
                raise UsageError("-c canaryWeight conflicts with --from/--to; they set it")
            validate(root, {**context, "canaryWeight": args.previous})
            validate(root, {**context, "canaryWeight": args.weight})
        else:
            validate(root, context)
    except (ConfigError, UsageError) as exc:
        err.write(usage_line("offline_diff", exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt) if argv is None else None
    try:
        if args.previous is not None:
            diff_weights(root, args.previous.strip(), args.weight.strip(), context, out, err)
        else:
            diff_working_tree(root, args.base or "main", context, out, err)
    except UsageError as exc:
        err.write(usage_line("offline_diff", exc))
        return EXIT_USAGE
    except (Failed, subprocess.TimeoutExpired, OSError) as exc:
        err.write(f"offline_diff: error: {one_line(exc)}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        err.write("interrupted: nothing was deployed\n")
        return EXIT_INTERRUPTED
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
