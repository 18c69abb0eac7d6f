"""What verify prints: the answers per commit, the canary's share, the verdict, and progress.

What a server sent is shown, never obeyed: a commit is printed bare only when it is a plain word,
else quoted with anything unprintable escaped (an answer could carry terminal escape sequences, or
lines that look like a PASS), and at most MAX_COMMITS_SHOWN commits are listed, most answers first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TextIO

from canary_stack.ops.cli import EXIT_FAILED, EXIT_OK
from canary_stack.ops.stats import Summary
from canary_stack.ops.versions import Versions
from canary_stack.text import shorten

EXIT_OUTSIDE = EXIT_FAILED  # the expected weight lies outside the measured interval
# The split cannot be measured: both versions run the same image, or (with an expected share below
# 100 %) every answer carries the canary's commit, which production answers too after a promotion.
# Neither a pass nor a failure; distinct from every other code so that callers can tell.
EXIT_UNMEASURABLE = 3

PLAIN_COMMIT = re.compile(r"[A-Za-z0-9._-]{1,80}")
MAX_COMMITS_SHOWN = 10


def pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def shown(commit: str) -> str:
    return commit if PLAIN_COMMIT.fullmatch(commit) else shorten(commit)


def most_common(counts: Mapping[str, int]) -> tuple[list[tuple[str, int]], str | None]:
    """The commits to list, and a line saying how many more there were (None if none)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    listed, rest = ranked[:MAX_COMMITS_SHOWN], ranked[MAX_COMMITS_SHOWN:]
    more = f"{len(rest)} more commits ({sum(count for _, count in rest)} answers)" if rest else None
    return listed, more


def seen_commits(counts: Mapping[str, int]) -> str:
    """`a (3), b (1)`: the answers per commit, most first, bounded."""
    listed, more = most_common(counts)
    return ", ".join([f"{shown(commit)} ({count})" for commit, count in listed] + ([more] if more else []))


def verdict(summary: Summary, expect: float | None, versions: Versions) -> tuple[int, str | None]:
    """The exit code and the verdict line (None when there is nothing to say)."""
    if versions.same_image:
        return EXIT_UNMEASURABLE, (
            f"CANNOT MEASURE: production and the canary run the same image ({shown(versions.canary_image or '')}), "
            "so their answers cannot be told apart; the split is neither passed nor failed"
        )
    if summary.canary == 0 and summary.answered and (expect is None or expect > 0):
        # No answer carries the canary's commit: a wrong --canary-commit, or no canary at all.
        line = (
            f"canary commit {shorten(summary.canary_commit)} ({versions.source}) is in none of the "
            f"{summary.answered} answers; commits seen: {seen_commits(summary.counts)}"
        )
        return (
            (EXIT_OK, f"NOTE: {line}") if expect is None else (EXIT_OUTSIDE, f"FAIL: expected {expect:g}%, but {line}")
        )
    if expect is not None and expect < 100 and summary.only_the_canary_answered:
        return EXIT_UNMEASURABLE, (
            f"CANNOT MEASURE: every one of the {summary.answered} answers carries the canary's commit "
            f"{shown(summary.canary_commit)}, where {expect:g}% was expected: production answers the same "
            "commit (as after a promotion), so the split is neither passed nor failed"
        )
    if expect is None or summary.interval is None:
        return EXIT_OK, None
    low, high = summary.interval
    where = f"[{pct(low)}, {pct(high)}]"
    # Compare in percent with a little slack for float rounding at the bounds.
    if low * 100 - 1e-9 <= expect <= high * 100 + 1e-9:
        return EXIT_OK, f"PASS: expected {expect:g}% lies inside the 95% interval {where}"
    return (
        EXIT_OUTSIDE,
        f"FAIL: expected {expect:g}% lies outside the 95% interval {where} (observed {pct(summary.share or 0.0)})",
    )


def report_lines(summary: Summary) -> list[str]:
    lines = [
        f"requests: {summary.answered + summary.failed} sent, {summary.answered} answered, {summary.failed} failed"
    ]
    listed, more = most_common(summary.counts)
    lines += [f"commit {shown(commit)}: {count}" for commit, count in listed]
    if more:
        lines.append(f"and {more}")
    if summary.errors:
        lines.append("errors: " + "; ".join(f"{reason} x{count}" for reason, count in summary.errors.items()))
    if summary.interval is not None and summary.canary:
        low, high = summary.interval
        lines.append(
            f"canary share ({shown(summary.canary_commit)}): {pct(summary.share or 0.0)} "
            f"({summary.canary}/{summary.answered}), 95% Wilson interval "
            f"[{pct(low)}, {pct(high)}]"
        )
    return lines


class Progress:
    """Request counter on stderr; silent for short non-interactive runs."""

    def __init__(self, total: int, stream: TextIO):
        self.total = total
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.enabled = self.tty or total >= 1000
        self.next_mark = 10
        self.drawn = False

    def update(self, done: int, failed: int) -> None:
        if not self.enabled:
            return
        if self.tty:
            if done == self.total or done % max(1, self.total // 100) == 0:
                self.stream.write(f"\r{done}/{self.total} requests, {failed} failed")
                self.stream.flush()
                self.drawn = True
            return
        percent = done * 100 // self.total
        while percent >= self.next_mark:
            self.stream.write(f"verify: {self.next_mark}% ({done}/{self.total}), {failed} failed\n")
            self.stream.flush()
            self.next_mark += 10

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
