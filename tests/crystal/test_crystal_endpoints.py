"""End-to-end checks of the compiled Crystal backend, as a client sees it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from crystal.support import free_port

HELLO_RE = re.compile(r"^Crystal backend: Hello! from (?P<az>\S+) commit (?P<hash>\S+) at (?P<ms>\d{13})$")


@pytest.fixture
def server(start_server):
    return start_server(AZ="us-east-1a")


def epoch_ms(body: bytes, az: str = "us-east-1a") -> int:
    match = HELLO_RE.match(body.decode())
    assert match, body
    assert match["az"] == az
    assert match["hash"] == "CANARY"
    return int(match["ms"])


@pytest.mark.parametrize("path", ["/crystal", "/crystal/"])
def test_hello_text(server, path):
    before = time.time() * 1000
    status, headers, body = server.get(path)
    after = time.time() * 1000
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert int(headers["Content-Length"]) == len(body)
    ms = epoch_ms(body)
    assert before - 2000 <= ms <= after + 2000


def test_hello_epoch_ms_increases(server):
    first = epoch_ms(server.get("/crystal")[2])
    time.sleep(0.01)
    second = epoch_ms(server.get("/crystal")[2])
    assert second > first


@pytest.mark.parametrize("path", ["/crystal/api", "/crystal/api/"])
def test_api_json(server, path):
    status, headers, body = server.get(path)
    assert status == 200
    assert headers["Content-Type"].split(";")[0] == "application/json"
    assert json.loads(body) == {"from": "Crystal backend", "message": "us-east-1a", "commit": "CANARY"}


def test_health(server):
    status, _, body = server.get("/health")
    assert status == 200
    assert body == b"OK\n"


@pytest.mark.parametrize("path", ["/", "/crystalx", "/crystal/api/x", "/health/x", "/../etc/passwd"])
def test_unknown_path_is_404(server, path):
    assert server.get(path)[0] == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/crystal", "/crystal/api", "/health"])
def test_other_methods_are_405_with_allow(server, method, path):
    status, headers, _ = server.get(path, method=method, body=b"x=1" if method in ("POST", "PUT") else None)
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/crystal", "/crystal/api", "/health"])
def test_head(server, path):
    status, headers, body = server.get(path, method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 0


def test_get_body_is_ignored(server):
    status, _, body = server.get("/crystal/api", body=b"a" * 10_000, headers={"Content-Type": "text/plain"})
    assert status == 200
    assert json.loads(body)["commit"] == "CANARY"


def test_access_log_line_per_request(server):
    server.get("/crystal/api?x=1")
    server.get("/nope")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        entries = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
        access = [e for e in entries if e.get("source") == "access"]
        if any(e["path"] == "/nope" for e in access):
            break
        time.sleep(0.05)
    api = [e for e in access if e["path"] == "/crystal/api"]
    assert api and api[0]["method"] == "GET" and api[0]["status"] == 200
    assert isinstance(api[0]["duration_ms"], (int, float))
    assert [e["status"] for e in access if e["path"] == "/nope"] == [404]


def test_log_level_warn_silences_access_log(start_server):
    server = start_server(AZ="x", LOG_LEVEL="warn")
    server.get("/crystal")
    assert server.terminate() == 0
    assert '"access"' not in server.log_text()


def test_health_check_mode(server, crystal_bin):
    up = subprocess.run([str(crystal_bin), "--health-check"], env={"PORT": str(server.port)}, timeout=10)
    assert up.returncode == 0
    started = time.monotonic()
    down = subprocess.run([str(crystal_bin), "--health-check"], env={"PORT": str(free_port())}, timeout=10)
    assert down.returncode != 0
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero(start_server, sig):
    server = start_server(AZ="x")
    started = time.monotonic()
    assert server.terminate(sig) == 0
    assert time.monotonic() - started < 5


def test_bad_port_fails_fast(start_server):
    server = start_server(wait=False, PORT="not-a-port")
    assert server.proc.wait(timeout=5) == 2
    assert "PORT" in server.log_text()


# --- Availability Zone from the ECS task metadata endpoint v4 -----------------


class FakeMetadata:
    """A loopback stand-in for ${ECS_CONTAINER_METADATA_URI_V4}."""

    def __init__(self, body: bytes, status: int = 200, delay: float = 0.0):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                fake.paths.append(self.path)
                time.sleep(delay)
                try:
                    self.send_response(status if self.path == "/v4/task-id/task" else 404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the server under test gave up waiting, as intended

            def log_message(self, *args):
                pass

        self.paths: list[str] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), daemon=True
        )  # shutdown() waits out a poll
        self.thread.start()
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}/v4/task-id"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def metadata():
    fakes: list[FakeMetadata] = []

    def _make(body: bytes, **kw) -> FakeMetadata:
        fakes.append(FakeMetadata(body, **kw))
        return fakes[-1]

    yield _make
    for fake in fakes:
        fake.close()


TASK = {
    "Cluster": "demo",
    "TaskARN": "arn:aws:ecs:us-east-1:111111111111:task/demo/abc",
    "AvailabilityZone": "us-east-1c",
}


def az_of(server) -> str:
    api = json.loads(server.get("/crystal/api")[2])
    assert epoch_ms(server.get("/crystal")[2], az=api["message"])
    return api["message"]


def test_az_from_task_metadata(start_server, metadata):
    fake = metadata(json.dumps(TASK).encode())
    server = start_server(AZ="env-az", ECS_CONTAINER_METADATA_URI_V4=fake.uri)
    assert az_of(server) == "us-east-1c"
    assert fake.paths == ["/v4/task-id/task"]


@pytest.mark.parametrize(
    "body,status",
    [
        (b"<html>not json</html>", 200),
        (b'{"Cluster":"demo"}', 200),
        (b'{"AvailabilityZone":7}', 200),
        (b"[1,2,3]", 200),
        (json.dumps(TASK).encode(), 500),
    ],
    ids=["not-json", "missing-field", "wrong-type", "not-object", "http-500"],
)
def test_az_falls_back_to_env_on_junk(start_server, metadata, body, status):
    fake = metadata(body, status=status)
    server = start_server(AZ="env-az", ECS_CONTAINER_METADATA_URI_V4=fake.uri)
    assert az_of(server) == "env-az"


def test_az_falls_back_when_metadata_down(start_server):
    server = start_server(AZ="env-az", ECS_CONTAINER_METADATA_URI_V4=f"http://127.0.0.1:{free_port()}/v4/x")
    assert az_of(server) == "env-az"


def test_az_slow_metadata_does_not_block_start(start_server, metadata):
    fake = metadata(json.dumps(TASK).encode(), delay=10)
    server = start_server(wait=False, AZ="env-az", ECS_CONTAINER_METADATA_URI_V4=fake.uri)
    assert server.wait_ready() < 5
    assert az_of(server) == "env-az"


def test_az_unknown_without_any_source(start_server):
    server = start_server(ECS_CONTAINER_METADATA_URI_V4=f"http://127.0.0.1:{free_port()}/v4/x")
    assert az_of(server) == "unknown"
