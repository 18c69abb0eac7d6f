"""The split probe (integ/share_probe.js) run under Node.js against local HTTP servers that play the
load balancer: the exact code the deploy check ships inline to Lambda (nodejs24.x).

Every case of the table runs in one Node.js process (`probed`), each against its own server, and
each test asserts on its case's answer."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.synthesis import ROOT

from integ.integ_canary import CANARY_COMMIT

PROBE = ROOT / "integ" / "share_probe.js"
PRODUCTION_COMMIT = "CANARY"  # what crystal_src/code_hash.txt reads: the real image's commit
UNREACHABLE = "http://127.0.0.1:9/crystal/api"  # nothing listens on port 9: each request fails at once

# request number (1-based) -> (status, body)
Answer = Callable[[int], tuple[int, str]]


def api(commit: str) -> str:
    return json.dumps({"from": "Crystal backend", "message": "us-east-1a", "commit": commit})


def every_nth_canary(n: int) -> Answer:
    return lambda i: (200, api(CANARY_COMMIT if i % n == 0 else PRODUCTION_COMMIT))


def serve(answer: Answer) -> ThreadingHTTPServer:
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the load balancer offers it

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
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


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


def failing_every_10th(status: int, body: str) -> Answer:
    return lambda i: (status, body) if i % 10 == 0 else (200, api(PRODUCTION_COMMIT))


# case -> (the load balancer's answers, or None for no server; the event's changes, or a whole event)
CASES: dict[str, tuple[Answer | None, dict]] = {
    "split at the weight": (every_nth_canary(10), {}),
    "band 6": (every_nth_canary(6), {}),
    "band 5": (every_nth_canary(5), {}),
    "band 400": (every_nth_canary(400), {}),
    "production only": (lambda i: (200, api(PRODUCTION_COMMIT)), {}),
    "HTTP 502": (failing_every_10th(502, "Bad Gateway"), {}),
    "not JSON": (failing_every_10th(200, "<html>"), {}),
    "no commit": (failing_every_10th(200, "{}"), {}),
    "unreachable": (None, {"url": UNREACHABLE, "requests": 20}),
    "no requests": (every_nth_canary(10), {"requests": 0}),
    "url only": (None, {"whole": {"url": "http://127.0.0.1:9/"}}),
}

RUN_ALL = """
const probe = require(process.argv[1]);
const cases = JSON.parse(process.argv[2]);
Promise.all(
  Object.entries(cases).map(([name, event]) =>
    probe.handler(event).then((result) => [name, { result }], (e) => [name, { error: e.message }]),
  ),
).then((answers) => console.log(JSON.stringify(Object.fromEntries(answers))));
"""


@pytest.fixture(scope="module")
def probed() -> Iterator[dict[str, dict]]:
    """case -> {"result": what the handler returned} or {"error": the message it threw}."""
    servers: list[ThreadingHTTPServer] = []
    events = {}
    for name, (answer, changes) in CASES.items():
        if "whole" in changes:
            events[name] = changes["whole"]
            continue
        url = UNREACHABLE
        if answer is not None:
            servers.append(serve(answer))
            url = f"http://127.0.0.1:{servers[-1].server_address[1]}/crystal/api"
        events[name] = {**event(url), **changes}
    try:
        result = subprocess.run(
            ["node", "-e", RUN_ALL, str(PROBE), json.dumps(events)], capture_output=True, text=True, timeout=120
        )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert set(answers) == set(CASES)
    yield answers


def test_a_split_at_the_weight_passes(probed):
    assert probed["split at the weight"] == {
        "result": {
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
    }


@pytest.mark.parametrize(
    "case, share, within",
    [
        ("band 6", 16.5, True),  # 66/400: 6.5 points over, inside the band
        ("band 5", 20, False),  # 10 points over
        ("band 400", 0.25, False),  # the canary barely answers
    ],
)
def test_the_band_is_seven_points_either_side(probed, case, share, within):
    result = probed[case]["result"]
    assert (result["share"], result["withinTolerance"]) == (share, within)


def test_only_the_canarys_commit_counts_as_canary(probed):
    # Production running the same code after a promotion still reports its own commit.
    result = probed["production only"]["result"]
    assert (result["canary"], result["share"], result["withinTolerance"]) == (0, 0, False)


@pytest.mark.parametrize("error", ["HTTP 502", "not JSON", "no commit"])
def test_a_failing_canary_fails_the_check_instead_of_looking_small(probed, error):
    result = probed[error]["result"]
    assert result["failed"] == 40 and result["errors"] == {error: 40}
    assert result["withinTolerance"] is False


def test_an_unreachable_load_balancer_fails_every_request(probed):
    result = probed["unreachable"]["result"]
    assert result["answered"] == 0 and result["failed"] == 20 and result["withinTolerance"] is False


@pytest.mark.parametrize("case", ["no requests", "url only"])
def test_a_malformed_event_is_an_error_not_a_pass(probed, case):
    assert probed[case]["error"].startswith("probe needs url, canaryCommit"), probed[case]
