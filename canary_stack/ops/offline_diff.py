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
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
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
from canary_stack.ops.committed import committed_context
from canary_stack.text import shorten

# The main tree's toolchain, reused by the base worktree instead of reinstalling it.
SHARED_TOOLCHAIN = (".venv", "node_modules")

SYNTH_TIMEOUT = 900  # a cold synth bundles Lambda handlers; far below this
DIFF_TIMEOUT = 300
STOP_GRACE = 5.0  # seconds a stopped process group gets to exit before SIGKILL
POLL = 0.2  # how often a wait for a child looks whether the run was interrupted


class Interruption:
    """SIGTERM (from CI, `timeout`, a process manager) and SIGINT stop a run like Ctrl-C.

    The handler only notes the signal; the waits for children look at it every POLL seconds and
    raise KeyboardInterrupt there. An exception raised at an arbitrary point could instead land
    between starting a child and recording it, or in the middle of the clean-up (killing the
    synths, removing the worktree and the temporary folders). `happened` stays true, so a synth
    that died of the same signal (sent to the whole process group) reads as an interruption, not
    as a failed synthesis: the exit code is 130 every time.
    """

    def __init__(self) -> None:
        self.happened = False
        self._previous: dict[int, object] = {}
        self._depth = 0  # promote runs offline_diff inside its own run: the outermost one owns the handlers

    def handler(self, signum: int, frame: object) -> None:
        self.happened = True

    def check(self) -> None:
        if self.happened:
            raise KeyboardInterrupt

    def __enter__(self) -> Interruption:
        self._depth += 1
        if self._depth == 1:
            self.happened = False
            if threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._previous[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            for sig, previous in self._previous.items():
                signal.signal(sig, previous)  # type: ignore[arg-type]
            self._previous = {}


INTERRUPTION = Interruption()


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
        # The AWS SDK's notice about Node.js versions (on Node.js 20) is not about this diff.
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED="true",
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
            raise UsageError(f"-c must be key=value, got {shorten(item)}")
        context[key] = value
    return context


def validate(root: Path, context: Mapping[str, str]) -> None:
    """Raises ConfigError with the line `cdk synth` would print for this context.

    The app's own parser decides, before any synthesis is started, so a bad weight costs no time
    and reads the same as from `cdk synth -c canaryWeight=...`.
    """
    merged = {**committed_context(root), **context}
    CanaryConfig.from_context(merged.get, keys=list(merged))


def parse_stack_name(raw: str) -> str:
    """A CloudFormation stack name: a letter, then letters, digits or '-', 128 at most."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", raw):
        raise argparse.ArgumentTypeError(
            f"must be a CloudFormation stack name (a letter, then up to 127 letters, digits or '-'), got {shorten(raw)}"
        )
    return raw


def start(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], **kwargs) -> subprocess.Popen:
    """Starts a CLI command in a process group of its own, so `stop` reaches what it starts too
    (`cdk synth` runs the Python app, which runs Node.js through jsii and esbuild)."""
    return subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), text=True, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
    )


def stop(process: subprocess.Popen) -> None:
    """Ends a process started by `start` and everything in its group: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break  # the whole group is gone
        if sig == signal.SIGTERM:
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
    process.wait()


def communicate(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """`process.communicate(timeout)`, but raising KeyboardInterrupt within POLL seconds of a signal."""
    waited = 0.0
    while True:
        INTERRUPTION.check()
        try:
            stdout, stderr = process.communicate(timeout=min(POLL, max(timeout - waited, 0.001)))
            return stdout or "", stderr or ""
        except subprocess.TimeoutExpired:
            waited += POLL
            if waited >= timeout:
                raise


def synth_argv(outdir: Path, context: Mapping[str, str]) -> list[str]:
    argv = [CDK_CLI, "synth", "--quiet", "--no-notices", "--output", str(outdir)]
    for key, value in context.items():
        argv += ["--context", f"{key}={value}"]
    return argv


def diff_argv(new_assembly: Path, old_template: Path, stack: str = STACK_NAME) -> list[str]:
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
        stack,
    ]


class Synths:
    """Runs `cdk synth`s in parallel (each is mostly a single-threaded Node/Python start-up)."""

    def __init__(self, env: Mapping[str, str], err: TextIO, stack: str = STACK_NAME):
        self.env = dict(env)
        self.err = err
        self.stack = stack
        self.running: list[tuple[str, Path, subprocess.Popen]] = []

    def start(self, label: str, cwd: Path, outdir: Path, context: Mapping[str, str]) -> None:
        process = start(
            synth_argv(outdir, context), cwd=cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.running.append((label, outdir, process))

    def wait(self) -> None:
        failures = []
        for label, outdir, process in self.running:
            try:
                output, _ = communicate(process, SYNTH_TIMEOUT)
            except subprocess.TimeoutExpired:
                stop(process)
                output, _ = process.communicate()
                failures.append((label, f"timed out after {SYNTH_TIMEOUT}s", output))
                continue
            if process.returncode != 0:
                failures.append((label, f"cdk synth exit {process.returncode}", output))
            elif not (outdir / f"{self.stack}.template.json").is_file():
                failures.append((label, f"the app has no stack {self.stack}", output))
        self.running = []
        if failures:
            for label, why, output in failures:
                self.err.write(f"--- cdk synth of {label} ({why}) ---\n{output.rstrip()}\n")
            raise Failed("synthesis of " + " and ".join(label for label, _, _ in failures) + " failed (output above)")

    def kill(self) -> None:
        for _, _, process in self.running:
            stop(process)  # even when the CLI has exited, the app it started may not have
        self.running = []


def run_diff(
    new_assembly: Path,
    old_template: Path,
    env: Mapping[str, str],
    cwd: Path,
    out: TextIO,
    err: TextIO,
    stack: str = STACK_NAME,
) -> None:
    process = start(
        diff_argv(new_assembly, old_template, stack), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = communicate(process, DIFF_TIMEOUT)
    finally:
        stop(process)
    # The CLI writes everything to stderr: first the assembly's warnings (the same on every
    # step; `cdk synth` shows them too), then the diff from the "Stack NAME" line on.
    lines = (stdout + stderr).splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith(f"Stack {stack}")), 0)
    preamble = "".join(lines[:first])
    if preamble.strip():  # not the CLI's lone blank line
        err.write(preamble)
    if process.returncode != 0:
        err.write("".join(lines[first:]))
        raise Failed(f"cdk diff exit {process.returncode} (output above)")
    # The CLI ends with three blank lines before its summary: one reads the same.
    out.write(re.sub(r"\n{3,}", "\n\n", "".join(lines[first:]).rstrip()) + "\n")


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, text=True, capture_output=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise Failed(f"git {' '.join(args)}: {one_line(result.stderr) or f'exit {result.returncode}'}")
    return result.stdout.strip()


def resolve_base(root: Path, rev: str) -> str:
    if rev.startswith("-") or not rev.strip() or any(not c.isprintable() for c in rev):
        raise UsageError(f"--base must be a git revision, got {shorten(rev)}")
    try:
        return git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except Failed:
        raise UsageError(f"--base must be a git revision of this repository, got {shorten(rev)}") from None


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


def diff_weights(
    root: Path,
    previous: str,
    weight: str,
    context: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    stack: str = STACK_NAME,
) -> None:
    env = offline_env(os.environ)
    synths = Synths(env, err, stack)
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        old, new = Path(tmp) / "from", Path(tmp) / "to"
        try:
            synths.start(f"canaryWeight={previous}", root, old, {**context, "canaryWeight": previous})
            synths.start(f"canaryWeight={weight}", root, new, {**context, "canaryWeight": weight})
            synths.wait()
        finally:
            synths.kill()
        out.write(f"{stack}: canaryWeight {previous} -> {weight}{describe(context)}\n")
        run_diff(new, old / f"{stack}.template.json", env, root, out, err, stack)


def diff_working_tree(
    root: Path, rev: str, context: Mapping[str, str], out: TextIO, err: TextIO, stack: str = STACK_NAME
) -> None:
    commit = resolve_base(root, rev)
    env = offline_env(os.environ)
    synths = Synths(env, err, stack)
    with tempfile.TemporaryDirectory(prefix="offline-diff-") as tmp:
        old, new = Path(tmp) / "base.out", Path(tmp) / "work.out"
        with base_worktree(root, commit, Path(tmp)) as base:
            try:
                synths.start(f"{rev} ({commit[:12]})", base, old, context)
                synths.start("the working tree", root, new, context)
                synths.wait()
            finally:
                synths.kill()
        out.write(f"{stack}: {rev} ({commit[:12]}) -> working tree{describe(context)}\n")
        run_diff(new, old / f"{stack}.template.json", env, root, out, err, stack)


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
    parser.add_argument(
        "--stack-name",
        type=parse_stack_name,
        default=STACK_NAME,
        metavar="NAME",
        help=f"the app's stack to diff (default {STACK_NAME})",
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    with INTERRUPTION:  # from the start: a SIGTERM at any point exits 130 after cleaning up
        try:
            return run(argv, root, out, err)
        except KeyboardInterrupt:
            err.write(INTERRUPTED)
            return EXIT_INTERRUPTED


INTERRUPTED = "offline_diff: interrupted: nothing was deployed; temporary files removed\n"


def run(argv: Sequence[str] | None, root: Path, out: TextIO, err: TextIO) -> int:
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

    try:
        if args.previous is not None:
            diff_weights(root, args.previous.strip(), args.weight.strip(), context, out, err, args.stack_name)
        else:
            diff_working_tree(root, args.base or "main", context, out, err, args.stack_name)
        INTERRUPTION.check()  # a signal during the last clean-up still means "interrupted"
    except UsageError as exc:
        err.write(usage_line("offline_diff", exc))
        return EXIT_USAGE
    except (Failed, subprocess.TimeoutExpired, OSError) as exc:
        INTERRUPTION.check()  # e.g. the synth died of the same SIGTERM first: still "interrupted"
        err.write(f"offline_diff: error: {one_line(exc)}\n")
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
