"""The split probe (integ/share_probe.js) run under Node.js against a local HTTP server that plays the
load balancer: the exact code the deploy check ships inline to Lambda (nodejs24.x)."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from synthesis import ROOT

from integ.integ_canary import CANARY_COMMIT

PROBE = ROOT / "integ" / "share_probe.js"
PRODUCTION_COMMIT = "CANARY"  # what crystal_src/code_hash.txt reads: the real image's commit

# request number (1-based) -> (status, body)
Answer = Callable[[int], tuple[int, str]]


def api(commit: str) -> str:
    return json.dumps({"from": "Crystal backend", "message": "us-east-1a", "commit": commit})


def every_nth_canary(n: int) -> Answer:
    return lambda i: (200, api(CANARY_COMMIT if i % n == 0 else PRODUCTION_COMMIT))


@pytest.fixture
def serve() -> Iterator[Callable[[Answer], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        lock = threading.Lock()
        count = [0]

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with lock:
                    count[0] += 1
                    status, body = answer(count[0])
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/crystal/api"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def run_probe(event: dict, entry: str = "handler") -> dict:
    script = (
        f"require({json.dumps(str(PROBE))}).{entry}(JSON.parse(process.argv[1]))"
        ".then(r => console.log(JSON.stringify(r)), e => { console.error(e.message); process.exit(3); });"
    )
    result = subprocess.run(["node", "-e", script, json.dumps(event)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip())
    return json.loads(result.stdout)


def event(url: str, **overrides: object) -> dict:
    return {
        "url": url,
        "requests": 400,
        "concurrency": 8,
        "canaryCommit": CANARY_COMMIT,
        "weight": 10,
        "tolerance": 7,
        "timeoutMs": 2000,
        **overrides,
    }


def test_a_split_at_the_weight_passes(serve):
    result = run_probe(event(serve(every_nth_canary(10))))
    assert result == {
        "requests": 400,
        "answered": 400,
        "failed": 0,
        "canary": 40,
        "share": 10,
        "weight": 10,
        "tolerance": 7,
        "withinTolerance": True,
        "errors": {},
    }


@pytest.mark.parametrize(
    "nth, share, within",
    [
        (6, 16.5, True),  # 66/400: 6.5 points over, inside the band
        (5, 20, False),  # 10 points over
        (400, 0.25, False),  # the canary barely answers
    ],
)
def test_the_band_is_seven_points_either_side(serve, nth, share, within):
    result = run_probe(event(serve(every_nth_canary(nth))))
    assert (result["share"], result["withinTolerance"]) == (share, within)


def test_only_the_canarys_commit_counts_as_canary(serve):
    # Production running the same code after a promotion still reports its own commit.
    result = run_probe(event(serve(lambda i: (200, api(PRODUCTION_COMMIT)))))
    assert (result["canary"], result["share"], result["withinTolerance"]) == (0, 0, False)


@pytest.mark.parametrize(
    "answer, error",
    [
        (lambda i: (502, "Bad Gateway") if i % 10 == 0 else (200, api(PRODUCTION_COMMIT)), "HTTP 502"),
        (lambda i: (200, "<html>") if i % 10 == 0 else (200, api(PRODUCTION_COMMIT)), "not JSON"),
        (lambda i: (200, "{}") if i % 10 == 0 else (200, api(PRODUCTION_COMMIT)), "no commit"),
    ],
)
def test_a_failing_canary_fails_the_check_instead_of_looking_small(serve, answer, error):
    result = run_probe(event(serve(answer)))
    assert result["failed"] == 40 and result["errors"] == {error: 40}
    assert result["withinTolerance"] is False


def test_an_unreachable_load_balancer_fails_every_request():
    # Nothing listens on port 9 of the loopback address: each request fails at once.
    result = run_probe(event("http://127.0.0.1:9/crystal/api", requests=20))
    assert result["answered"] == 0 and result["failed"] == 20 and result["withinTolerance"] is False


def test_a_malformed_event_is_an_error_not_a_pass(serve):
    with pytest.raises(RuntimeError, match="probe needs url, canaryCommit"):
        run_probe(event(serve(every_nth_canary(10)), requests=0))
    with pytest.raises(RuntimeError, match="probe needs url, canaryCommit"):
        run_probe({"url": "http://127.0.0.1:9/"})
