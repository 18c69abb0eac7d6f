"""HTTP requests to the service, each bounded in time, and a pool that bounds a whole run.

Used by verify (N requests, then a verdict) and by the rollout's bake traffic (steady requests
while the alarms are watched). What bounds what:

* a request: a watchdog shuts its socket down when its time is up, which ends any read or write
  it is blocked in (a socket timeout alone bounds each read: a server dripping a byte every few
  seconds would hold a request forever);
* a run: a request that has not ended GRACE seconds after its own bound is given up on (counted as
  timed out) and its thread left behind: the threads are daemons, so nothing that blocks outside a
  socket (a slow name lookup) holds the run or the process;
* redirects: only to http and https, whose sockets the watchdog knows (urllib would follow ftp://
  too, through a connection nothing here can shut down).
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from canary_stack.ops.cli import cut, one_line
from canary_stack.ops.urls import redact
from canary_stack.text import shorten

SERVICE_NAME = "Crystal backend"
# Answers larger than this are certainly not the service's small JSON document.
MAX_BODY_BYTES = 64 * 1024
# How long past its own bound a request's thread is waited for before it is given up on.
GRACE = 1.0

Outcome = tuple[str, str]  # ("ok", commit) or ("error", reason)
# The outcome of a request the run itself ended (an early stop, Ctrl-C): neither answer nor failure.
CANCELLED: Outcome = ("cancelled", "")


class NotTheService(Exception):
    """An answer arrived, but it is not the Crystal service's JSON."""


def classify(status: int, body: bytes) -> str:
    """Return the commit that produced an answer, or raise NotTheService."""
    if status != 200:
        raise NotTheService(f"HTTP {status}")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotTheService("answer is not JSON") from None
    except RecursionError:  # `[[[[...]]]]` thousands deep: JSON, but certainly not the service's
        raise NotTheService("answer is JSON nested too deeply to be the service's") from None
    if not isinstance(doc, dict):
        raise NotTheService("answer is not a JSON object")
    if doc.get("from") != SERVICE_NAME:
        raise NotTheService(f'"from" is {shorten(doc.get("from"))}, not {SERVICE_NAME!r}')
    commit = doc.get("commit")
    if not isinstance(commit, str) or not commit.strip():
        raise NotTheService('answer has no "commit"')
    return commit.strip()


class Watchdog:
    """Bounds one whole request: when its time is up it shuts the request's socket down."""

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


_current = threading.local()  # the watchdog of the request this thread is making


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


class RefusedRedirect(NotTheService):
    """A redirect to anything but http or https."""


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            raise RefusedRedirect(
                f"HTTP {code} redirects to a {shorten(scheme)} URL; only http and https redirects are followed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """urllib's opener with proxies from the environment as usual, but only watched http and https
    connections: no ftp, file or data handler (build_opener adds them all)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.UnknownHandler(),
        _HTTPHandler(),
        _HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _RedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


_OPENER = _opener()


def fetch(url: str, timeout: float, budget: float | None = None, headers: Mapping[str, str] | None = None) -> Outcome:
    """One GET, all of it within `timeout` seconds (or `budget`, the run's time left, if sooner);
    returns ("ok", commit) or ("error", reason). Never raises for what a server does."""
    seconds = timeout if budget is None else min(timeout, budget)
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "canary-verify", **(headers or {})}
    )
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
            return CANCELLED if watchdog.cancelled else ("error", _reason(err, watchdog, seconds))
        finally:
            _current.watchdog = None


def _reason(err: Exception, watchdog: Watchdog, seconds: float) -> str:
    if watchdog.expired or isinstance(err, TimeoutError) or _timed_out(err):
        return f"timed out after {seconds:g}s"
    if isinstance(err, NotTheService):
        return f"not the Crystal service: {err}"
    if isinstance(err, urllib.error.URLError):
        return f"cannot connect: {redact(one_line(err.reason))}"
    if isinstance(err, (http.client.HTTPException, OSError, ValueError)):
        return f"connection failed: {redact(one_line(err)) or type(err).__name__}"
    # Anything else is a failure of this request all the same, never a traceback.
    return f"unexpected failure: {type(err).__name__}: {message(err)}"


def message(err: BaseException) -> str:
    """An exception's message for a one-line report: folded onto one line, unprintable characters
    escaped, a URL's credentials masked, cut when long."""
    text = redact(one_line(err))
    text = text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 200 else cut(text)


def _timed_out(err: Exception) -> bool:
    return isinstance(err, urllib.error.URLError) and isinstance(err.reason, (socket.timeout, TimeoutError))


class RequestPool:
    """Runs requests in daemon threads, at most `size` at once. A request still running GRACE
    seconds past `timeout` is given up on: its outcome is a timeout, its thread is left behind."""

    def __init__(self, size: int, timeout: float):
        self.size = size
        self.timeout = timeout
        self._results: queue.SimpleQueue[tuple[int, Any, Outcome]] = queue.SimpleQueue()
        self._running: dict[int, tuple[float, Any]] = {}  # id -> (started, tag)
        self._next = 0

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def full(self) -> bool:
        return len(self._running) >= self.size

    def start(self, call: Callable[[], Outcome], tag: Any = None) -> None:
        ident = self._next
        self._next += 1
        self._running[ident] = (time.monotonic(), tag)

        def work() -> None:
            try:
                outcome = call()
            except Exception as err:  # a bug in `call`: that request failed, the run goes on
                outcome = ("error", f"unexpected failure: {type(err).__name__}: {message(err)}")
            self._results.put((ident, tag, outcome))

        threading.Thread(target=work, name="canary-request", daemon=True).start()

    def wait(self, until: float | None = None) -> list[tuple[Any, Outcome]]:
        """Waits for at least one request to end (or to be given up on), or for `until` (a time on
        `time.monotonic`); returns the (tag, outcome) of every request that ended."""
        if not self._running:
            return []
        give_up = min(started for started, _ in self._running.values()) + self.timeout + GRACE
        wake = give_up if until is None else min(give_up, until)
        ended: list[tuple[Any, Outcome]] = []
        try:
            ident, tag, outcome = self._results.get(timeout=max(0.0, wake - time.monotonic()))
            if self._running.pop(ident, None) is not None:
                ended.append((tag, outcome))
            while True:  # everything else that ended meanwhile
                ident, tag, outcome = self._results.get_nowait()
                if self._running.pop(ident, None) is not None:
                    ended.append((tag, outcome))
        except queue.Empty:
            pass
        now = time.monotonic()
        for ident, (started, tag) in list(self._running.items()):
            if now >= started + self.timeout + GRACE:
                del self._running[ident]
                ended.append((tag, ("error", f"timed out after {self.timeout:g}s")))
        return ended

    def drain(self) -> list[tuple[Any, Outcome]]:
        """Waits for every request in flight (each within its bound)."""
        ended: list[tuple[Any, Outcome]] = []
        while self._running:
            ended += self.wait()
        return ended


class DeadlineReached(Exception):
    """The run's --deadline passed before every request was answered."""


def run_requests(
    url: str,
    requests: int,
    concurrency: int,
    timeout: float,
    progress: Any = None,
    fetcher: Callable[[str, float, float | None], Outcome] = fetch,
    deadline: float | None = None,
    error_budget: int | None = None,
) -> list[Outcome]:
    """Send up to `requests` GETs with `concurrency` workers.

    Stops early once more requests failed than `error_budget`: the result can no longer be used, so
    there is no point waiting for further timeouts. With `deadline` (seconds for the whole run),
    raises DeadlineReached when it passes first. Any exit (Ctrl-C included) shuts the open
    connections, and no thread outlives the run's bound.
    """
    pool = RequestPool(concurrency, timeout)
    outcomes: list[Outcome] = []
    failed = 0
    submitted = 0
    stopped = False
    ends = None if deadline is None else time.monotonic() + deadline

    def one() -> Outcome:
        return fetcher(url, timeout, None if ends is None else ends - time.monotonic())

    try:
        while True:
            while submitted < requests and not stopped and not pool.full:
                pool.start(one)
                submitted += 1
            if not pool.busy:
                break
            if ends is not None and time.monotonic() >= ends:
                raise DeadlineReached(
                    f"the run's deadline of {deadline:g}s passed after {len(outcomes)} of {requests} answers"
                )
            for _, outcome in pool.wait(until=ends):
                if outcome == CANCELLED:
                    continue
                outcomes.append(outcome)
                failed += outcome[0] != "ok"
                if progress:
                    progress.update(len(outcomes), failed)
            if error_budget is not None and failed > error_budget and not stopped:
                stopped = True  # submit nothing more; what is in flight ends now
                Watchdog.cancel_all()
    finally:
        Watchdog.cancel_all()  # requests still in flight end now, not at their timeout
        if progress:
            progress.close()
    return outcomes
