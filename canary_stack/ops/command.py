"""One core for the operator tools' command lines, in the shape of pip's cli/base_command.py.

A tool is a `Command`: it declares its arguments (`add_arguments`) and does its job in
`run(options, args)`. `main(argv)` parses the arguments and turns every outcome into an exit code
and at most one line on stderr, the same for every tool:

    run returns N                          exit N
    UsageError, ConfigError                exit 2    `NAME: error: MESSAGE` (bad input; nothing changed)
    `failures` (Failed, OSError,           exit 1    `NAME: error: MESSAGE` (a child's output is above)
      subprocess timeout)
    Ctrl-C, SIGINT, SIGTERM                exit 130  `interrupted()`: `NAME: interrupted: ...`
    anything else                          a bug: its traceback, unless `unexpected_exit` is set
    --help                                 exit 0    the usage on stdout

Three hooks say what the table means for one tool, so no tool keeps a try/except of its own:
`failures` (verify, whose exit 1 is a verdict, takes none), `unexpected_exit` with
`unexpected_line` (verify: any failure is a failed check, exit 2, never a traceback) and
`interrupted()` (the rollout says which weight the stack is left at).

With `defer_signals` (the default), SIGTERM and SIGINT only set a flag (`INTERRUPTION`); the waits
for child processes (cdk_cli.communicate) look at it and raise KeyboardInterrupt there, so a signal
never lands between starting a child and recording it, or in the middle of a clean-up. A failure
while the flag is set (a synth killed by the same signal) is reported as the interruption.

    class Hello(Command):
        name, prog = "hello", "python -m canary_stack.ops.hello"

        def add_arguments(self, parser):
            parser.add_argument("--to", required=True)

        def run(self, options, args):
            self.out.write(f"hello {options.to}\\n")
            return EXIT_OK

    def main(argv=None, *, stdout=None, stderr=None):
        return Hello(stdout=stdout, stderr=stderr).main(argv)
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TextIO

from canary_stack.config import ConfigError
from canary_stack.ops.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Failed,
    OneLineArgumentParser,
    UsageError,
    one_line,
    usage_line,
)


class Interruption:
    """SIGTERM (from CI, `timeout`, a process manager) and SIGINT stop a run like Ctrl-C.

    The handler only notes the signal; the waits for children look at it (`check`) and raise
    KeyboardInterrupt there. `happened` stays true, so a child that died of the same signal (sent
    to the whole process group) reads as an interruption, not as a failure: the exit code is 130
    every time. Nested runs (promote runs offline_diff's command) share the outermost handlers.
    """

    def __init__(self) -> None:
        self.happened = False
        self._previous: dict[int, object] = {}
        self._depth = 0

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


class Command:
    """An operator tool. Subclasses set `name` and `prog` and implement `run`."""

    name = "tool"  # the start of every line it prints about itself: `NAME: error: ...`
    prog = "python -m canary_stack.ops.tool"
    description = ""
    epilog = ""
    # After `NAME: interrupted: ` on Ctrl-C or SIGTERM: what the user must know (what was left);
    # empty: the line is `NAME: interrupted`.
    interrupted_message = "nothing was changed"
    # Positional arguments it takes (shown in usage); none: any is refused.
    positional: str | None = None
    # The exceptions that mean the tool's job failed: exit 1, `NAME: error: MESSAGE`. A tool whose
    # exit 1 is a verdict (verify: the weight lies outside the interval) takes none, and leaves
    # them to `unexpected_exit`.
    failures: tuple[type[Exception], ...] = (Failed, OSError, subprocess.TimeoutExpired)
    # What any other exception means. None: a bug, which keeps its traceback. An exit code: a
    # failed run, reported in one line (`unexpected_line`), never a traceback (verify, issue 16.12:
    # a failed check, exit 2; the rollout: a failure before any deploy, exit 2).
    unexpected_exit: int | None = None
    # True: SIGINT and SIGTERM only set INTERRUPTION's flag, which the waits for child processes
    # (cdk_cli) check. False: Python's own handling stays: Ctrl-C raises KeyboardInterrupt wherever
    # it lands and SIGTERM ends the process. For tools that wait on things that know no flag
    # (verify's requests must close at once; the rollout's bake sleeps and `cdk deploy` waits).
    defer_signals = True

    def __init__(self, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declares the tool's options (none by default)."""

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        raise NotImplementedError

    def unexpected_line(self, exc: Exception) -> str:
        """The message (after `NAME: error: `) for an exception `unexpected_exit` covers."""
        return f"unexpected failure: {type(exc).__name__}: {one_line(exc)}"

    def interrupted(self) -> int:
        """Ctrl-C or SIGTERM, wherever it landed: says what was left and returns the exit code."""
        left = f": {self.interrupted_message}" if self.interrupted_message else ""
        self.err.write(f"{self.name}: interrupted{left}\n")
        return EXIT_INTERRUPTED

    def parser(self) -> argparse.ArgumentParser:
        parser = OneLineArgumentParser(
            prog=self.prog,
            usage=f"{self.prog} [options]{' ' + self.positional if self.positional else ''}",
            description=self.description,
            epilog=self.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.add_arguments(parser)
        return parser

    def parse(self, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
        """The options and positional arguments in `argv`. UsageError for bad ones, SystemExit after
        --help (argparse's way)."""
        parser = self.parser()
        options, args = parser.parse_known_args(argv)
        if args and self.positional is None:
            parser.error(f"unrecognized arguments: {' '.join(args)}")  # raises UsageError, long words cut
        return options, args

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Runs the tool on `argv` (default: sys.argv[1:]) and returns its exit code."""
        with INTERRUPTION if self.defer_signals else contextlib.nullcontext():
            try:
                code = self._main(list(sys.argv[1:] if argv is None else argv))
                self._check()  # a signal during the last clean-up still means "interrupted"
                return code
            except KeyboardInterrupt:
                return self.interrupted()
            except (UsageError, ConfigError) as exc:
                if self._signalled():
                    return self.interrupted()
                self.err.write(usage_line(self.name, exc))
                return EXIT_USAGE
            except self.failures as exc:
                if self._signalled():
                    return self.interrupted()
                self.err.write(f"{self.name}: error: {one_line(exc) or type(exc).__name__}\n")
                return EXIT_FAILED
            except Exception as exc:
                if self.unexpected_exit is None:
                    raise  # a bug: its traceback
                if self._signalled():
                    return self.interrupted()
                self.err.write(f"{self.name}: error: {self.unexpected_line(exc)}\n")
                return self.unexpected_exit

    def _main(self, argv: list[str]) -> int:
        try:
            options, args = self.parse(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        return self.run(options, args)

    def _signalled(self) -> bool:
        """A signal arrived during this run (the flag of an earlier run, or of a run this one is
        nested in, says nothing about a tool that does not defer signals)."""
        return self.defer_signals and INTERRUPTION.happened

    def _check(self) -> None:
        if self.defer_signals:
            INTERRUPTION.check()


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "INTERRUPTION", "Command", "Failed"]
