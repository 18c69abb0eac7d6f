"""Measure the canary's share of live traffic and compare it with the expected weight.

    python -m canary_stack.ops.verify URL [--requests N] [--expect W]
        [--concurrency C] [--timeout S] [--deadline S] [--canary-commit CANARY]
        [--canary-image HASH --production-image HASH]

Sends N GET requests to URL/crystal/api and classifies each answer by the
``commit`` field of the service's JSON
(``{"from": "Crystal backend", "message": ..., "commit": ...}``).  Prints the
number of answers per commit, the observed canary share and its 95 % Wilson
score interval.  With ``--expect W`` the verdict is whether W lies inside that
interval (bounds inclusive).

Which answers are the canary's: those carrying --canary-commit, by default the
commit the source embeds (crystal_src/code_hash.txt: the canary runs the
checkout it was deployed from). A canary commit that no answer carries is said
so, with the commits that did answer (a mistyped --canary-commit would otherwise
read as a 0 % share); with --expect above 0 that is a FAIL.

The split cannot be measured (exit 3, neither pass nor fail) when both versions
run the same image (--canary-image and --production-image, the stack's
CanaryImage and ProductionImage outputs, are equal: after a promotion), or when
every answer carries the canary's commit while --expect is below 100 (production
answers the same commit).

Time is bounded: --timeout S bounds each whole request (connect, headers and
body: a server that sends a byte every few seconds cannot hold a request past
S; redirects are followed to http and https only), so a run takes at most
ceil(N / C) x (S + 1); --deadline D bounds the whole run more tightly (exit 2
when it is reached before every answer arrived). Ctrl-C stops at once (open
connections are closed) and exits 130.

Failed requests (connection errors, timeouts, non-200 status, a body that is
not the service's JSON) are counted and reported, and left out of the share.
Policy:

* up to 5 % of the requests may fail (at least 1): the result is still
  computed from the answers that did arrive and the failures are listed;
* if more fail, or none succeeds, the run stops as soon as that is certain
  and exits 2 -- an endpoint that cannot be measured reliably is not a
  passed check.

Exit codes: 0 = measured (and W inside the interval, if given);
1 = W outside the interval; 2 = bad arguments, endpoint unreachable or not
the Crystal service, too many failed requests, or any unexpected failure
inside verify (a failed check: one line, never a traceback); 3 = the split
cannot be measured; 130 = interrupted.

A URL is never printed with a user name or password: one that carries them is
refused (the tools send no credentials).

Results go to stdout; progress goes to stderr (a live counter when stderr is
a terminal, otherwise one line per 10 % for runs of 1000 requests or more).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from canary_stack.constants import PROJECT_ROOT
from canary_stack.ops.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, bounded_float, bounded_int, cut
from canary_stack.ops.command import Command
from canary_stack.ops.probe import DeadlineReached, NotTheService, Watchdog, classify, fetch, message, run_requests
from canary_stack.ops.report import EXIT_OUTSIDE, EXIT_UNMEASURABLE, Progress, report_lines, verdict
from canary_stack.ops.stats import MAX_ERROR_FRACTION, max_errors, summarize
from canary_stack.ops.urls import API_PATH, RedactingParser, api_url, parse_url
from canary_stack.ops.versions import CODE_HASH, UnknownCanary, Versions, parse_commit, parse_image, source_commit

DEFAULT_REQUESTS = 200
MAX_REQUESTS = 100_000
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0
MAX_DEADLINE = 24 * 3600.0

EXIT_ERROR = EXIT_USAGE  # bad arguments, an endpoint that cannot be measured, an unexpected failure

__all__ = [
    "API_PATH",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTSIDE",
    "EXIT_UNMEASURABLE",
    "MAX_REQUESTS",
    "NotTheService",
    "Progress",
    "build_parser",
    "classify",
    "fetch",
    "main",
    "parse_commit",
    "parse_url",
    "summarize",
]


def build_parser() -> argparse.ArgumentParser:
    parser = RedactingParser(
        prog="python -m canary_stack.ops.verify",
        description=(
            "Send N GETs to URL/crystal/api, count answers per commit and report the canary's "
            "share with a 95% Wilson interval. With --expect W, exit 1 unless W lies inside "
            "the interval."
        ),
        epilog=(
            "Failed requests (unreachable, timeout, non-200, not the service's JSON) are "
            f"reported and left out of the share. Up to {round(MAX_ERROR_FRACTION * 100)}% of the requests "
            "(at least 1) may fail; more, or no answer at all, stops the run with exit 2. Exit codes: "
            "0 ok, 1 expected weight outside the interval, 2 error (bad arguments, endpoint not measurable, "
            "any unexpected failure), 3 the split cannot be measured (both versions run the same image, or "
            "every answer carries the canary's commit while --expect is below 100), 130 interrupted."
        ),
    )
    parser.add_argument("url", type=parse_url, metavar="URL", help="base URL of the service")
    parser.add_argument(
        "--requests",
        type=bounded_int(1, MAX_REQUESTS),
        default=DEFAULT_REQUESTS,
        metavar="N",
        help=f"number of requests, 1..{MAX_REQUESTS} (default {DEFAULT_REQUESTS})",
    )
    parser.add_argument(
        "--expect",
        type=bounded_float(0, 100),
        default=None,
        metavar="W",
        help="expected canary share in percent, 0..100",
    )
    parser.add_argument(
        "--concurrency",
        type=bounded_int(1, MAX_CONCURRENCY),
        default=DEFAULT_CONCURRENCY,
        metavar="C",
        help=f"parallel requests, 1..{MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--timeout",
        type=bounded_float(0, MAX_TIMEOUT, low_inclusive=False),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"bound on each whole request (connect, headers, body) in seconds (default {DEFAULT_TIMEOUT:g}); "
        "a run takes at most ceil(N/C) times (S + 1)",
    )
    parser.add_argument(
        "--deadline",
        type=bounded_float(0, MAX_DEADLINE, low_inclusive=False),
        default=None,
        metavar="S",
        help="bound on the whole run in seconds (default: none beyond ceil(N/C) x (--timeout + 1)); "
        "reaching it before every answer arrived exits 2",
    )
    parser.add_argument(
        "--canary-commit",
        type=parse_commit,
        default=None,
        metavar="CANARY",
        help=f"commit value that identifies the canary (default: the one the source embeds, {CODE_HASH})",
    )
    parser.add_argument(
        "--canary-image",
        type=parse_image,
        metavar="HASH",
        help="image the canary runs (the stack's CanaryImage output); with --production-image",
    )
    parser.add_argument(
        "--production-image",
        type=parse_image,
        metavar="HASH",
        help="image production runs (the stack's ProductionImage output); the same as --canary-image: "
        "the split cannot be measured (exit 3)",
    )
    return parser


class Verify(Command):
    """verify on the tools' one core. Its exit codes are verdicts, so nothing it raises is a plain
    failure (exit 1 would read as "outside the interval"): bad input and anything unexpected are a
    failed check, exit 2 and one line, never a traceback (issue 16.12)."""

    name = "verify"
    prog = "python -m canary_stack.ops.verify"
    interrupted_message = ""  # `verify: interrupted`: a measurement changes nothing
    failures = ()
    unexpected_exit = EXIT_ERROR
    defer_signals = False  # Ctrl-C stops at once, wherever it lands: the open connections close now

    def __init__(self, root: Path = PROJECT_ROOT, **streams: TextIO | None) -> None:
        super().__init__(**streams)
        self.root = root

    def parser(self) -> argparse.ArgumentParser:
        return build_parser()

    def unexpected_line(self, exc: Exception) -> str:
        return f"unexpected failure, the check failed: {type(exc).__name__}: {message(exc)}"

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        versions = versions_from(options, self.root)
        try:
            return measure(options, versions, self.out, self.err)
        except BaseException:  # Ctrl-C or a failure: no request goes on after the check is over
            Watchdog.cancel_all()
            raise


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    root: Path | None = None,
) -> int:
    """`root`: the checkout whose source says the canary's commit (default: this one)."""
    return Verify(root or PROJECT_ROOT, stdout=stdout, stderr=stderr).main(argv)


def versions_from(args: argparse.Namespace, root: Path) -> Versions:
    if (args.canary_image is None) != (args.production_image is None):
        given = "--canary-image" if args.canary_image is not None else "--production-image"
        raise UsageError(f"argument {given}: give --canary-image and --production-image together")
    images = (args.canary_image, args.production_image)
    if args.canary_commit is not None:
        return Versions(args.canary_commit, "--canary-commit", *images)
    try:
        return Versions(source_commit(root), str(CODE_HASH), *images)
    except UnknownCanary as exc:
        raise UsageError(f"{exc}; give --canary-commit") from None


def measure(args: argparse.Namespace, versions: Versions, out: TextIO, err: TextIO) -> int:
    target = api_url(args.url)
    shown = cut(target) if len(target) > 60 else target  # error lines name the URL, cut if it is long
    try:
        outcomes = run_requests(
            target,
            args.requests,
            args.concurrency,
            args.timeout,
            Progress(args.requests, err),
            fetcher=fetch,
            deadline=args.deadline,
            error_budget=max_errors(args.requests),
        )
    except DeadlineReached as exc:  # the endpoint could not be measured in time: a failed check
        err.write(f"verify: error: {shown}: {exc}\n")
        return EXIT_ERROR

    summary = summarize(outcomes, args.requests, versions.canary_commit)
    if summary.too_many_errors:
        reason = next(iter(summary.errors), "no request ended")
        if summary.answered == 0:
            err.write(f"verify: error: {shown}: {reason} (no answer to any of {summary.failed} requests)\n")
        else:
            err.write(
                f"verify: error: {shown}: {summary.failed} of {summary.failed + summary.answered} "
                f"requests failed, more than the {max_errors(args.requests)} tolerated "
                f"(most common: {reason})\n"
            )
        return EXIT_ERROR

    for line in report_lines(summary):
        out.write(line + "\n")
    code, message = verdict(summary, args.expect, versions)
    if message:
        out.write(message + "\n")
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
