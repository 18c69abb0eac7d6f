"""Measure the canary's share of live traffic and compare it with the expected weight.

    python -m canary_stack.ops.verify URL [--requests N] [--expect W]
        [--concurrency C] [--timeout S] [--deadline S] [--canary-commit CANARY]

Sends N GET requests to URL/crystal/api and classifies each answer by the
``commit`` field of the service's JSON
(``{"from": "Crystal backend", "message": ..., "commit": ...}``).  Prints the
number of answers per commit, the observed canary share and its 95 % Wilson
score interval.  With ``--expect W`` the verdict is whether W lies inside that
interval (bounds inclusive). A canary commit that no answer carries is said so,
with the commits that did answer (a mistyped --canary-commit would otherwise read
as a 0 % share); with --expect above 0 that is a FAIL.

Time is bounded: --timeout S bounds each whole request (connect, headers and
body: a server that sends a byte every few seconds cannot hold a request past
S), so a run takes at most ceil(N / C) x S; --deadline D bounds the whole run
more tightly (exit 2 when it is reached before every answer arrived). Ctrl-C
stops at once (open connections are closed) and exits 130.

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
import re
import socket
import sys
import threading
import time
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
    cut,
    one_line,
    usage_line,
)
from canary_stack.ops.stats import wilson_interval
from canary_stack.text import shorten

API_PATH = "crystal/api"
SERVICE_NAME = "Crystal backend"
DEFAULT_CANARY_COMMIT = "CANARY"

DEFAULT_REQUESTS = 200
MAX_REQUESTS = 100_000
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 300.0
MAX_DEADLINE = 24 * 3600.0
# Largest share of failed requests that still yields a measurement.
MAX_ERROR_FRACTION = 0.05
# Answers larger than this are certainly not the service's small JSON document.
MAX_BODY_BYTES = 64 * 1024

EXIT_OUTSIDE = EXIT_FAILED  # the expected weight lies outside the measured interval
EXIT_ERROR = EXIT_USAGE  # bad arguments, or an endpoint that cannot be measured


class NotTheService(Exception):
    """An answer arrived, but it is not the Crystal service's JSON."""


def parse_url(raw: str) -> str:
    """The service's base URL: http(s), a host, an optional port (1-65535) and path; requests go to
    URL/crystal/api, so a query or fragment would end up in the middle of that path: refused."""
    allowed = "an http:// or https:// URL with a host, an optional port from 1 to 65535 and path, no query or fragment"
    url = raw.strip()
    if not url or any(not c.isprintable() or c.isspace() for c in url):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {shorten(raw)}")
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port in (-1, 0):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {shorten(raw)}")
    if "?" in url or "#" in url:
        raise argparse.ArgumentTypeError(
            f"must have no query or fragment (requests go to URL/{API_PATH}), got {shorten(raw)}"
        )
    return url


def parse_commit(raw: str) -> str:
    """The commit value the canary's answers carry: any non-blank printable text."""
    value = raw.strip()
    if not value or any(not c.isprintable() for c in value):
        raise argparse.ArgumentTypeError(
            f"must be the canary's commit value (printable, not blank), got {shorten(raw)}"
        )
    return value


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
        raise NotTheService(f'"from" is {shorten(doc.get("from"))}, not {SERVICE_NAME!r}')
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


# What a server sent is shown, never obeyed: a commit is printed bare only when it is a plain word,
# else quoted with anything unprintable escaped (an answer could carry terminal escape sequences,
# or lines that look like a PASS), and at most this many commits are listed, most answers first.
PLAIN_COMMIT = re.compile(r"[A-Za-z0-9._-]{1,80}")
MAX_COMMITS_SHOWN = 10


def shown(commit: str) -> str:
    return commit if PLAIN_COMMIT.fullmatch(commit) else shorten(commit)


def most_common(summary: Summary) -> tuple[list[tuple[str, int]], str | None]:
    """The commits to list, and a line saying how many more there were (None if none)."""
    ranked = sorted(summary.counts.items(), key=lambda item: (-item[1], item[0]))
    listed, rest = ranked[:MAX_COMMITS_SHOWN], ranked[MAX_COMMITS_SHOWN:]
    more = f"{len(rest)} more commits ({sum(count for _, count in rest)} answers)" if rest else None
    return listed, more


def seen(summary: Summary) -> str:
    listed, more = most_common(summary)
    return ", ".join([f"{shown(commit)} ({count})" for commit, count in listed] + ([more] if more else []))


def verdict(summary: Summary, expect: float | None) -> tuple[int, str | None]:
    if summary.canary == 0 and summary.answered and (expect is None or expect > 0):
        # No answer carries the canary's commit: a wrong --canary-commit, or no canary at all.
        line = f"canary commit {shorten(summary.canary_commit)} is in none of the {summary.answered} answers; commits seen: {seen(summary)}"
        return (
            (EXIT_OK, f"NOTE: {line}") if expect is None else (EXIT_OUTSIDE, f"FAIL: expected {expect:g}%, but {line}")
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
    listed, more = most_common(summary)
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


# ------------------------------------------------------------------ network


# The outcome of a request the run itself ended (an early stop, Ctrl-C): neither answer nor failure.
CANCELLED = ("cancelled", "")


class Watchdog:
    """Bounds one whole request: when its time is up it shuts the request's socket down, which
    ends whatever read or write the worker thread is blocked in. (A socket timeout alone bounds
    each read: a server dripping a byte every few seconds would hold the request forever.)"""

    active: set[Watchdog] = set()  # every running request's, so Ctrl-C can end them all at once
    _registry_lock = threading.Lock()

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self.cancelled = False  # ended by the run (stopped, interrupted), not by its own time
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self.expire)
        self._timer.daemon = True

    def __enter__(self) -> Watchdog:
        with Watchdog._registry_lock:
            Watchdog.active.add(self)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with Watchdog._registry_lock:
            Watchdog.active.discard(self)

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)

    @classmethod
    def cancel_all(cls) -> None:
        """Ends every request in flight now; their outcomes are CANCELLED, not timeouts."""
        with cls._registry_lock:
            running = list(cls.active)
        for watchdog in running:
            watchdog.cancelled = True
            watchdog.expire()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


_current = threading.local()  # the watchdog of the request this worker thread is making


class _WatchedHTTP(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _current.watchdog.attach(self.sock)


class _WatchedHTTPS(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _current.watchdog.attach(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_WatchedHTTP, req, **kwargs)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_WatchedHTTPS, req, **kwargs)


# urllib as usual (proxy variables included), with every connection under the thread's watchdog.
_OPENER = urllib.request.build_opener(_HTTPHandler, _HTTPSHandler)


def fetch(url: str, timeout: float, budget: float | None = None) -> tuple[str, str]:
    """One GET, all of it within `timeout` seconds (or `budget`, the run's time left, if sooner);
    returns ("ok", commit) or ("error", reason)."""
    seconds = timeout if budget is None else min(timeout, budget)
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "canary-verify"})
    with Watchdog(seconds) as watchdog:
        _current.watchdog = watchdog
        try:
            try:
                with _OPENER.open(request, timeout=max(seconds, 0.001)) as response:
                    status, body = response.status, response.read(MAX_BODY_BYTES + 1)
            except urllib.error.HTTPError as err:  # a non-2xx answer is still an answer
                status, body = err.code, b""
                err.close()
            if watchdog.expired:
                raise TimeoutError
            if len(body) > MAX_BODY_BYTES:
                raise NotTheService(f"answer is larger than {MAX_BODY_BYTES} bytes")
            return "ok", classify(status, body)
        except Exception as err:
            if watchdog.cancelled:
                return CANCELLED
            if watchdog.expired or isinstance(err, TimeoutError) or _timed_out(err):
                return "error", f"timed out after {seconds:g}s"
            if isinstance(err, NotTheService):
                return "error", f"not the Crystal service: {err}"
            if isinstance(err, urllib.error.URLError):
                return "error", f"cannot connect: {one_line(err.reason)}"
            if isinstance(err, (http.client.HTTPException, OSError, ValueError)):
                return "error", f"connection failed: {one_line(err) or type(err).__name__}"
            raise
        finally:
            _current.watchdog = None


def _timed_out(err: Exception) -> bool:
    return isinstance(err, urllib.error.URLError) and isinstance(err.reason, (socket.timeout, TimeoutError))


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


class DeadlineReached(Exception):
    """The run's --deadline passed before every request was answered."""


def run_requests(
    url: str,
    requests: int,
    concurrency: int,
    timeout: float,
    progress: Progress | None = None,
    fetcher: Callable[[str, float, float | None], tuple[str, str]] = fetch,
    deadline: float | None = None,
) -> list[tuple[str, str]]:
    """Send up to `requests` GETs with `concurrency` workers.

    Stops early once more requests failed than the error budget allows:
    the result can no longer be used, so there is no point waiting for
    further timeouts. With `deadline` (seconds for the whole run), raises
    DeadlineReached when it passes first. Any exit (Ctrl-C included) shuts
    the open connections, so no worker thread outlives the run.
    """
    budget = max_errors(requests)
    outcomes: list[tuple[str, str]] = []
    failed = 0
    stop = threading.Event()
    ends = None if deadline is None else time.monotonic() + deadline

    def one() -> tuple[str, str] | None:
        if stop.is_set():
            return None
        return fetcher(url, timeout, None if ends is None else ends - time.monotonic())

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
            left = None if ends is None else ends - time.monotonic()
            if left is not None and left <= 0:
                raise DeadlineReached(
                    f"the run's deadline of {deadline:g}s passed after {len(outcomes)} of {requests} answers"
                )
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                if outcome is None or outcome == CANCELLED:
                    continue
                outcomes.append(outcome)
                if outcome[0] != "ok":
                    failed += 1
                if progress:
                    progress.update(len(outcomes), failed)
            if failed > budget:
                stop.set()
                submitted = requests  # submit nothing more; drain what is in flight
                Watchdog.cancel_all()  # the run is lost already: end the requests in flight now
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        Watchdog.cancel_all()  # requests still in flight end now, not at their timeout
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
        help=f"bound on each whole request (connect, headers, body) in seconds (default {DEFAULT_TIMEOUT:g}); "
        "a run takes at most ceil(N/C) times this",
    )
    parser.add_argument(
        "--deadline",
        type=bounded_float(0, MAX_DEADLINE, low_inclusive=False),
        default=None,
        metavar="S",
        help="bound on the whole run in seconds (default: none beyond ceil(N/C) x --timeout); "
        "reaching it before every answer arrived exits 2",
    )
    parser.add_argument(
        "--canary-commit",
        type=parse_commit,
        default=DEFAULT_CANARY_COMMIT,
        metavar="CANARY",
        help=f"commit value that identifies the canary (default {DEFAULT_CANARY_COMMIT})",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        return measure(argv, out, err)
    except KeyboardInterrupt:  # wherever it lands: no traceback, no further request
        Watchdog.cancel_all()
        err.write("verify: interrupted\n")
        return EXIT_INTERRUPTED


def measure(argv: Sequence[str] | None, out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        err.write(usage_line("verify", exc))
        return EXIT_ERROR
    except SystemExit as exc:  # --help
        return int(exc.code or 0)

    target = api_url(args.url)
    shown = cut(target) if len(target) > 60 else target  # error lines name the URL, cut if it is long
    try:
        outcomes = run_requests(
            target,
            args.requests,
            args.concurrency,
            args.timeout,
            Progress(args.requests, err),
            deadline=args.deadline,
        )
    except DeadlineReached as exc:
        err.write(f"verify: error: {shown}: {exc}\n")
        return EXIT_ERROR

    summary = summarize(outcomes, args.requests, args.canary_commit)
    if summary.too_many_errors:
        reason, _ = next(iter(summary.errors.items()))
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
    code, message = verdict(summary, args.expect)
    if message:
        out.write(message + "\n")
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
