"""What every operator tool's command line shares: one-line usage errors, exit codes, number parsers."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from canary_stack.text import HEAD, shorten

LONG_WORD = re.compile(r"\S{61,}")  # longer than text.shorten's limit of 60

EXIT_OK = 0
EXIT_FAILED = 1  # verify: the expected weight lies outside the interval; rollout: rolled back
EXIT_USAGE = 2  # bad input or an unmet precondition: nothing was changed
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports it


class UsageError(Exception):
    """Bad input or an unmet precondition; the message is one line for the user (exit 2)."""


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises UsageError(message) as one line instead of printing the
    usage block and exiting, so main() reports it like every other usage error (`usage_line`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse's own messages ("unrecognized arguments: ...") quote whole values: cut long ones.
        raise UsageError(LONG_WORD.sub(lambda m: cut(m.group(0)), one_line(message)))


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


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value: int | None = int(raw.strip(), 10)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {shorten(raw)}")
        return value

    return parse


def bounded_float(low: float, high: float, *, low_inclusive: bool = True) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and value <= high and (value >= low if low_inclusive else value > low)
        if not ok:
            if not math.isfinite(high):
                allowed = f"{low:g} or more" if low_inclusive else f"greater than {low:g}"
            elif low_inclusive:
                allowed = f"from {low:g} to {high:g}"
            else:
                allowed = f"greater than {low:g} and at most {high:g}"
            raise argparse.ArgumentTypeError(f"must be a number {allowed}, got {shorten(raw)}")
        return value

    return parse
