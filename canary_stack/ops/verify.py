"""Measure the canary's share of live traffic and compare it with the expected weight.

    python -m canary_stack.ops.verify URL [--requests N] [--expect W]
        [--concurrency C] [--timeout S] [--canary-commit CANARY]

Sends N GET requests to URL/crystal/api and classifies each answer by the
``commit`` field of the service's JSON
(``{"from": "Crystal backend", "message": ..., "commit": ...}``).  Prints the
number of answers per commit, the observed canary share and its 95 % Wilson
score interval.  With ``--expect W`` the verdict is whether W lies inside that
interval (bounds inclusive).

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
the Crystal service, too many failed requests; 130 = interrupted.

Results go to stdout; progress goes to stderr (a live counter when stderr is
a terminal, otherwise one line per 10 % for runs of 1000 requests or more).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TextIO

from canary_stack.ops.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineArgumentParser,
    UsageError,
    bounded_float,
    bounded_int,
    one_line,
    usage_line,
)
from canary_stack.ops.stats import wilson_interval

API_PATH = "crystal/api"
SERVICE_NAME = "Crystal backend"
DEFAULT_CANARY_COMMIT = "CANARY"

DEFAULT_REQUESTS = 200
MAX_REQUESTS = 100_000
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0
# Largest share of failed requests that still yields a measurement.
MAX_ERROR_FRACTION = 0.05
# Answers larger than this are certainly not the service's small JSON document.
MAX_BODY_BYTES = 64 * 1024

EXIT_OUTSIDE = EXIT_FAILED  # the expected weight lies outside the measured interval
EXIT_ERROR = EXIT_USAGE  # bad arguments, or an endpoint that cannot be measured


class NotTheService(Exception):
    """An answer arrived, but it is not the Crystal service's JSON."""


def parse_url(raw: str) -> str:
    parts = urllib.parse.urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL with a host, got {raw!r}")
    return raw.strip()


def api_url(base: str) -> str:
    """URL/crystal/api, whether or not URL ends with '/'."""
    return base.rstrip("/") + "/" + API_PATH


# ---------------------------------------------------------------- pure logic


def classify(status: int, body: bytes) -> str:
    """Return the commit that produced an answer, or raise NotTheService."""
    if status != 200:
        raise NotTheService(f"HTTP {status}")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotTheService("answer is not JSON") from None
    if not isinstance(doc, dict):
        raise NotTheService("answer is not a JSON object")
    if doc.get("from") != SERVICE_NAME:
        raise NotTheService(f'"from" is {doc.get("from")!r}, not {SERVICE_NAME!r}')
    commit = doc.get("commit")
    if not isinstance(commit, str) or not commit.strip():
        raise NotTheService('answer has no "commit"')
    return commit.strip()


def max_errors(requests: int) -> int:
    """How many failed requests a run of `requests` tolerates."""
    return max(1, math.floor(requests * MAX_ERROR_FRACTION))


@dataclass
class Summary:
    requests: int
    counts: dict[str, int]
    errors: dict[str, int]
    canary_commit: str
    answered: int = 0
    canary: int = 0
    share: float | None = None
    interval: tuple[float, float] | None = None
    failed: int = 0

    @property
    def too_many_errors(self) -> bool:
        return self.answered == 0 or self.failed > max_errors(self.requests)


def summarize(outcomes: Iterable[tuple[str, str]], requests: int, canary_commit: str) -> Summary:
    """Aggregate ("ok", commit) / ("error", reason) outcomes.

    `requests` is the number that was planned (the run may have been cut
    short); the error budget is relative to it.
    """
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for kind, value in outcomes:
        (counts if kind == "ok" else errors)[value] += 1
    summary = Summary(
        requests=requests,
        counts=dict(sorted(counts.items())),
        errors=dict(errors.most_common()),
        canary_commit=canary_commit,
        answered=sum(counts.values()),
        canary=counts.get(canary_commit, 0),
        failed=sum(errors.values()),
    )
    if summary.answered:
        summary.share = summary.canary / summary.answered
        summary.interval = wilson_interval(summary.canary, summary.answered)
    return summary


def pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def verdict(summary: Summary, expect: float | None) -> tuple[int, str | None]:
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
    for commit, count in summary.counts.items():
        lines.append(f"commit {commit}: {count}")
    if summary.errors:
        lines.append("errors: " + "; ".join(f"{reason} x{count}" for reason, count in summary.errors.items()))
    if summary.interval is not None:
        low, high = summary.interval
        lines.append(
            f"canary share ({summary.canary_commit}): {pct(summary.share or 0.0)} "
            f"({summary.canary}/{summary.answered}), 95% Wilson interval "
            f"[{pct(low)}, {pct(high)}]"
        )
    return lines


# ------------------------------------------------------------------ network


def fetch(url: str, timeout: float) -> tuple[str, str]:
    """One GET; returns ("ok", commit) or ("error", reason)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "canary-verify"})
    try:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, body = response.status, response.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as err:  # a non-2xx answer is still an answer
            status, body = err.code, b""
            err.close()
        if len(body) > MAX_BODY_BYTES:
            raise NotTheService(f"answer is larger than {MAX_BODY_BYTES} bytes")
        return "ok", classify(status, body)
    except NotTheService as err:
        return "error", f"not the Crystal service: {err}"
    except urllib.error.URLError as err:
        reason = err.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return "error", f"timed out after {timeout:g}s"
        return "error", f"cannot connect: {one_line(reason)}"
    except TimeoutError:
        return "error", f"timed out after {timeout:g}s"
    except (http.client.HTTPException, OSError, ValueError) as err:
        return "error", f"connection failed: {one_line(err) or type(err).__name__}"


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


def run_requests(
    url: str,
    requests: int,
    concurrency: int,
    timeout: float,
    progress: Progress | None = None,
    fetcher: Callable[[str, float], tuple[str, str]] = fetch,
) -> list[tuple[str, str]]:
    """Send up to `requests` GETs with `concurrency` workers.

    Stops early once more requests failed than the error budget allows:
    the result can no longer be used, so there is no point waiting for
    further timeouts.
    """
    budget = max_errors(requests)
    outcomes: list[tuple[str, str]] = []
    failed = 0
    stop = threading.Event()

    def one() -> tuple[str, str] | None:
        return None if stop.is_set() else fetcher(url, timeout)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="verify")
    try:
        pending: set[Future] = set()
        submitted = 0
        while submitted < requests or pending:
            # Keep at most 2*concurrency requests queued so that an early
            # stop does not leave thousands of futures behind.
            while submitted < requests and len(pending) < 2 * concurrency and not stop.is_set():
                pending.add(pool.submit(one))
                submitted += 1
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                if outcome is None:
                    continue
                outcomes.append(outcome)
                if outcome[0] != "ok":
                    failed += 1
                if progress:
                    progress.update(len(outcomes), failed)
            if failed > budget:
                stop.set()
                submitted = requests  # submit nothing more; drain what is in flight
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        if progress:
            progress.close()
    return outcomes


# ---------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
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
            "0 ok, 1 expected weight outside the interval, 2 error, 130 interrupted."
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
        help=f"per-request timeout in seconds (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--canary-commit",
        default=DEFAULT_CANARY_COMMIT,
        metavar="CANARY",
        help=f"commit value that identifies the canary (default {DEFAULT_CANARY_COMMIT})",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        err.write(usage_line("verify", exc))
        return EXIT_ERROR
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if not args.canary_commit.strip():
        err.write(usage_line("verify", UsageError("argument --canary-commit: must not be empty, got ''")))
        return EXIT_ERROR

    target = api_url(args.url)
    try:
        outcomes = run_requests(target, args.requests, args.concurrency, args.timeout, Progress(args.requests, err))
    except KeyboardInterrupt:
        err.write("verify: interrupted\n")
        return EXIT_INTERRUPTED

    summary = summarize(outcomes, args.requests, args.canary_commit.strip())
    if summary.too_many_errors:
        reason, _ = next(iter(summary.errors.items()))
        if summary.answered == 0:
            err.write(f"verify: error: {target}: {reason} (no answer to any of {summary.failed} requests)\n")
        else:
            err.write(
                f"verify: error: {target}: {summary.failed} of {summary.failed + summary.answered} "
                f"requests failed, more than the {max_errors(args.requests)} tolerated "
                f"(most common: {reason})\n"
            )
        return EXIT_ERROR

    for line in report_lines(summary):
        out.write(line + "\n")
    code, message = verdict(summary, args.expect)
    if message:
        out.write(message + "\n")
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
