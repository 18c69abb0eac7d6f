"""A tiny HTTP server on 127.0.0.1 for the pipeline's tests, and the Crystal service's answers behind a router."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHttp:
    """A tiny HTTP server on 127.0.0.1 answering with `handle(method, path, body) -> (status, type, bytes)`."""

    def __init__(self, handle):
        outer = self
        self.requests: list[tuple[str, str, bytes]] = []

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.command, self.path, body))
                status, ctype, payload = handle(self.command, self.path, body, len(outer.requests) - 1)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = answer  # noqa: N815 (http.server naming)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def crystal_service(canary_every: int):
    """/crystal/api of the service behind a router sending every n-th request to the canary."""

    def handle(method, path, body, n):
        if path != "/crystal/api":
            return 404, "text/plain", b"not found"
        commit = "CANARY" if n % canary_every == 0 else "ed106ce"
        doc = {"from": "Crystal backend", "message": "us-east-1a", "commit": commit}
        return 200, "application/json", json.dumps(doc).encode()

    return handle


def describe_stacks(outputs: dict[str, str], *, changing: bool = False):
    """CloudFormation's DescribeStacks (query protocol) for the canary stack, with `outputs`;
    `changing`: every answer shows a later LastUpdatedTime (each call sees a new update)."""
    members = "".join(
        f"<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>" for k, v in outputs.items()
    )
    xml = (
        '<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        "<DescribeStacksResult><Stacks><member><StackName>CrystalCanary</StackName>"
        "<StackId>arn:aws:cloudformation:us-east-1:123456789012:stack/CrystalCanary/1</StackId>"
        "<CreationTime>2026-11-27T00:00:00Z</CreationTime><StackStatus>UPDATE_COMPLETE</StackStatus>"
        f"<Outputs>{members}</Outputs></member></Stacks></DescribeStacksResult>"
        "<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></DescribeStacksResponse>"
    ).encode()

    def handle(method, path, body, n):
        if b"Action=DescribeStacks" not in body or b"StackName=CrystalCanary" not in body:
            return 400, "text/xml", b"<ErrorResponse><Error><Code>InvalidAction</Code></Error></ErrorResponse>"
        if changing:
            updated = f"<LastUpdatedTime>2026-11-27T00:{n // 60 % 60:02d}:{n % 60:02d}Z</LastUpdatedTime>"
            return 200, "text/xml", xml.replace(b"<StackStatus>", updated.encode() + b"<StackStatus>")
        return 200, "text/xml", xml

    return handle
