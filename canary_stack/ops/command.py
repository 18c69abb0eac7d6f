"""One core for the operator tools' command lines, in the shape of pip's cli/base_command.py.

A tool is a `Command`: it declares its arguments (`add_arguments`) and does its job in
`run(options, args)`. `main(argv)` parses the arguments and turns every outcome into an exit code
and at most one line on stderr, the same for every tool:

    run returns N                          exit N
    UsageError, ConfigError                exit 2    `NAME: error: MESSAGE` (bad input; nothing changed)
    Failed, OSError, subprocess timeout    exit 1    `NAME: error: MESSAGE` (a child's output is above)
    Ctrl-C, SIGINT, SIGTERM                exit 130  `NAME: interrupted: ...` (`interrupted_message`)
    --help                                 exit 0    the usage on stdout

Anything else is a bug and keeps its traceback. SIGTERM and SIGINT only set a flag
(`INTERRUPTION`); the waits for child processes (cdk_cli.communicate) look at it and raise
KeyboardInterrupt there, so a signal never lands between starting a child and recording it, or in
the middle of a clean-up. A failure while the flag is set (a synth killed by the same signal) is
reported as the interruption.

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
    # After `NAME: interrupted` on Ctrl-C or SIGTERM: what the user must know (what was left).
    interrupted_message = "nothing was changed"
    # Positional arguments it takes (shown in usage); none: any is refused.
    positional: str | None = None

    def __init__(self, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declares the tool's options (none by default)."""

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        raise NotImplementedError

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

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Runs the tool on `argv` (default: sys.argv[1:]) and returns its exit code."""
        with INTERRUPTION:
            try:
                code = self._main(list(sys.argv[1:] if argv is None else argv))
                INTERRUPTION.check()  # a signal during the last clean-up still means "interrupted"
                return code
            except KeyboardInterrupt:
                return self._interrupted()
            except (UsageError, ConfigError) as exc:
                if INTERRUPTION.happened:
                    return self._interrupted()
                self.err.write(usage_line(self.name, exc))
                return EXIT_USAGE
            except (Failed, OSError, subprocess.TimeoutExpired) as exc:
                if INTERRUPTION.happened:
                    return self._interrupted()
                self.err.write(f"{self.name}: error: {one_line(exc) or type(exc).__name__}\n")
                return EXIT_FAILED

    def _main(self, argv: list[str]) -> int:
        parser = self.parser()
        try:
            options, args = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        if args and self.positional is None:
            parser.error(f"unrecognized arguments: {' '.join(args)}")  # raises UsageError, long words cut
        return self.run(options, args)

    def _interrupted(self) -> int:
        self.err.write(f"{self.name}: interrupted: {self.interrupted_message}\n")
        return EXIT_INTERRUPTED


__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "INTERRUPTION", "Command", "Failed"]
