"""Fixtures for the operator tools: real HTTP servers on 127.0.0.1 and moto CloudWatch."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import support.alarms as alarms

PRODUCTION_COMMIT = "ed106ce"
CANARY_COMMIT = "CANARY"

# (status, content type, body) for the n-th request (0-based) to /crystal/api.
Answer = Callable[[int], tuple[int, str, bytes]]


def crystal_json(commit: str) -> bytes:
    return json.dumps({"from": "Crystal backend", "message": "us-east-1a", "commit": commit}).encode()


def every_nth_canary(n: int) -> Answer:
    """Deterministic router: request 0, n, 2n, ... go to the canary (a 100/n % share)."""

    def answer(count: int) -> tuple[int, str, bytes]:
        commit = CANARY_COMMIT if count % n == 0 else PRODUCTION_COMMIT
        return 200, "application/json", crystal_json(commit)

    return answer


class _QuietServer(ThreadingHTTPServer):
    """Client-side aborts (timeouts, early stops) are expected; don't print them into
    whichever test happens to be capturing stderr at the time."""

    daemon_threads = True
    # The default listen backlog of 5 drops SYNs from 8+ concurrent clients,
    # which then retry after a full second.
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        pass


class _Server:
    def __init__(self, answer: Answer):
        self.answer = answer
        self.count = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Headers and body go out as two writes; without this, Nagle plus
            # delayed ACKs add ~40 ms to every request.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                with server._lock:
                    n = server.count
                    server.count += 1
                    server.paths.append(self.path)
                if self.path != "/crystal/api":
                    status, ctype, body = 404, "text/plain", b"not found"
                else:
                    status, ctype, body = server.answer(n)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def http_server() -> Iterator[Callable[[Answer], _Server]]:
    """Factory: start a real HTTP server answering /crystal/api with `answer`."""
    servers: list[_Server] = []

    def start(answer: Answer) -> _Server:
        server = _Server(answer)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


class _DripServer:
    """Answers every connection with a valid HTTP response, one byte every `interval` seconds,
    forever: each socket read gets data long before any per-read timeout."""

    def __init__(self, interval: float):
        self.interval = interval
        self.connections = 0
        self._closed = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        payload = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 100_000
        with conn:
            for byte in payload:
                if self._closed.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self._closed.set()
        self._sock.close()


@pytest.fixture
def drip_server() -> Iterator[Callable[[float], _DripServer]]:
    """Factory: a server that sends its answer one byte every `interval` seconds and never ends."""
    servers: list[_DripServer] = []

    def start(interval: float) -> _DripServer:
        servers.append(_DripServer(interval))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A URL whose port is bound (so nobody else takes it) but not listening: refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours proxy variables; the tests talk to 127.0.0.1 directly.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    """moto-backed AWS with fake credentials; yields a CloudWatch client."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH"):
        monkeypatch.delenv(name, raising=False)
    import boto3
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


@pytest.fixture
def answers():
    """Answer builders for `http_server`, as a fixture so tests need not import conftest."""

    class Answers:
        json = staticmethod(crystal_json)
        every_nth_canary = staticmethod(every_nth_canary)

    return Answers


@pytest.fixture
def put_alarm(aws):
    """Create a metric alarm in moto (moto starts it in state OK)."""

    def put(name: str) -> None:
        alarms.put_alarm(aws, name)

    return put
