"""What every operator tool's command line shares: one-line usage errors, exit codes, argument parsers.

The wrapper that turns a tool's exceptions into these exit codes is canary_stack/ops/command.py."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence

from canary_stack.config import ConfigError
from canary_stack.context import parse_command_line
from canary_stack.text import HEAD, shorten

LONG_WORD = re.compile(r"\S{61,}")  # longer than text.shorten's limit of 60

EXIT_OK = 0
EXIT_FAILED = 1  # verify: the expected weight lies outside the interval; rollout: rolled back
EXIT_USAGE = 2  # bad input or an unmet precondition: nothing was changed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports it


class UsageError(Exception):
    """Bad input or an unmet precondition; the message is one line for the user (exit 2)."""


class Failed(Exception):
    """The tool's job failed (a synthesis, a diff, a write); the message is one line (exit 1).
    Whatever a child process printed has been shown above it."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises UsageError(message) as one line instead of printing the
    usage block and exiting, so main() reports it like every other usage error (`usage_line`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own messages ("unrecognized arguments: ...") quote whole values: cut long ones.
        raise UsageError(LONG_WORD.sub(lambda m: cut(m.group(0)), one_line(message)))


def parse_context(items: Sequence[str]) -> dict[str, str]:
    """A tool's `-c key=value` arguments, split as the CDK CLI splits them; UsageError otherwise."""
    try:
        return parse_command_line(items)
    except ConfigError as err:
        raise UsageError(str(err)) from None


def parse_stack_name(raw: str) -> str:
    """A CloudFormation stack name: a letter, then letters, digits or '-', 128 at most."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", raw):
        raise argparse.ArgumentTypeError(
            f"must be a CloudFormation stack name (a letter, then up to 127 letters, digits or '-'), got {shorten(raw)}"
        )
    return raw


def cut(word: str) -> str:
    """A long word of a message (a URL, an argument) as text.shorten cuts a value, unquoted."""
    return f"{word[:HEAD]}... ({len(word)} characters)"


def usage_line(tool: str, error: Exception) -> str:
    """The one line a tool prints for bad input: `TOOL: error: MESSAGE`."""
    return f"{tool}: error: {one_line(error)}\n"


def one_line(text: object) -> str:
    """Any message (an exception included) folded onto one line. Only line breaks fold: spaces
    inside a message are kept, so a value it shows reads as the user wrote it."""
    return re.sub(r"[ \t]*[\r\n]+[ \t]*", " ", str(text)).strip()


# Numbers as a person types them: ASCII digits, an optional fraction. Python's int() and float()
# would also take `1_0`, other scripts' digits, `1e308`, `inf` and `nan`.
_WHOLE = re.compile(r"[0-9]{1,12}")
_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,12})?")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        text = raw.strip()
        if not _WHOLE.fullmatch(text) or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {shorten(raw)}")
        return int(text)

    return parse


def _number(value: float) -> str:
    """A bound as people write it: 604800, 0.5 (not 6.048e+05)."""
    return str(int(value)) if math.isfinite(value) and value == int(value) else f"{value:g}"


def bounded_float(low: float, high: float, *, low_inclusive: bool = True) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        text = raw.strip()
        value = float(text) if _DECIMAL.fullmatch(text) else math.nan
        ok = math.isfinite(value) and value <= high and (value >= low if low_inclusive else value > low)
        if not ok:
            lo, hi = _number(low), _number(high)
            if not math.isfinite(high):
                allowed = f"{lo} or more" if low_inclusive else f"greater than {lo}"
            elif low_inclusive:
                allowed = f"from {lo} to {hi}"
            else:
                allowed = f"greater than {lo} and at most {hi}"
            raise argparse.ArgumentTypeError(f"must be a number {allowed}, got {shorten(raw)}")
        return value

    return parse


def add_context_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """`-c KEY=VALUE` (repeatable), as the CDK CLI spells it; `what` says where the values go.
    The values are checked by `parse_context`."""
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"more context for {what} (e.g. trafficRouter=alb)",
    )
