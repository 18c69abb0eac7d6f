"""A canary deployment in miniature for the rollout's tests: one real HTTP server on 127.0.0.1 that
routes like the stack's routers do. `canary-fleet: true` always reaches the canary; other requests
are split by `weight`, deterministically (exactly `weight` of every 100, spread evenly), so a test
can say how many answers each version gives. A test's deploy sets `weight`, as `cdk deploy` would."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from canary_stack.constants import CANARY_HEADER, CANARY_HEADER_VALUE

PRODUCTION_COMMIT = "ed106ce"
CANARY_COMMIT = "CANARY"

# (status, body) for a request the canary serves; None: the canary answers normally.
Answer = Callable[[], tuple[int, bytes]]


def crystal_json(commit: str) -> bytes:
    return json.dumps({"from": "Crystal backend", "message": "us-east-1a", "commit": commit}).encode()


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address) -> None:
        pass  # clients that give up early are expected


class RoutedService:
    def __init__(self, weight: int = 0, canary_commit: str = CANARY_COMMIT, production_commit: str = PRODUCTION_COMMIT):
        self.weight = weight
        self.canary_commit = canary_commit
        self.production_commit = production_commit
        self.canary_answer: Answer | None = None  # how a broken canary answers
        self.header_rule = True  # False: a router that lost its canary-fleet rule splits those requests too
        self.weighted = 0  # requests without the header, so far
        self.requests: list[tuple[str, bool, str]] = []  # (path, with the header, version that answered)
        self.agents: set[str] = set()  # the User-Agent headers seen
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                header = self.headers.get(CANARY_HEADER) == CANARY_HEADER_VALUE
                with service._lock:
                    if header and service.header_rule:
                        canary = True
                    else:
                        n, w = service.weighted, service.weight
                        canary = (n + 1) * w // 100 > n * w // 100
                        service.weighted += 1
                    service.requests.append((self.path, header, "canary" if canary else "production"))
                    service.agents.add(self.headers.get("User-Agent", ""))
                    commit = service.canary_commit if canary else service.production_commit
                    broken = service.canary_answer if canary else None
                status, body = broken() if broken else (200, crystal_json(commit))
                if self.path != "/crystal/api":
                    status, body = 404, b"not found"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def served(self, *, header: bool, version: str | None = None) -> int:
        """How many requests (with or without the header) reached `version` (any, if None)."""
        with self._lock:
            return sum(1 for _, h, v in self.requests if h == header and version in (None, v))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
