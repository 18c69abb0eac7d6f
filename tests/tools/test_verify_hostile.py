"""verify against hostile servers and careless input (issue 16, points 11 to 13), and which answers are the
canary's (issue 18, points 3 and 5): real servers on 127.0.0.1, real processes where exit matters."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.ops import probe, verify
from canary_stack.ops.probe import NotTheService, classify, run_requests

IMAGE = "ab" * 32
NESTED = b"[" * 30_000 + b"]" * 30_000  # valid JSON, 60 kB, far deeper than Python's recursion limit


@pytest.fixture(autouse=True)
def canary_source(tmp_path, monkeypatch) -> Path:
    """A checkout whose source embeds CANARY, whatever this repository's own file says."""
    (tmp_path / "crystal_src").mkdir()
    (tmp_path / "crystal_src" / "code_hash.txt").write_text("CANARY\n")
    monkeypatch.setattr(verify, "PROJECT_ROOT", tmp_path)
    return tmp_path


def run(*argv: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = verify.main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


class _Silent(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator:
    """Factory: a server whose /crystal/api answers 302 to `location`; /real answers as the service."""
    servers: list[ThreadingHTTPServer] = []

    def start(location: str) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/real":
                    body = b'{"from": "Crystal backend", "commit": "CANARY"}'
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(302)
                port = self.server.server_address[1]  # type: ignore[index]  # an AF_INET server: (host, port)
                self.send_header("Location", location.replace("SELF", f"127.0.0.1:{port}"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = _Silent(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dripping_ftp() -> Iterator[tuple[int, list[int]]]:
    """An "FTP server" that drips its greeting a byte every 0.2 s and never ends the line: a client
    bounded only by per-read timeouts waits for ever. Yields its port and its connection count."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.1)
    connections = [0]
    closed = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            while not closed.wait(0.2):
                try:
                    conn.sendall(b"2")
                except OSError:
                    return

    def accept() -> None:
        while not closed.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            connections[0] += 1
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield sock.getsockname()[1], connections
    closed.set()
    sock.close()


# ------------------------------------------------------------------- 16.11 redirects and bounds


def test_a_redirect_to_ftp_is_not_followed_and_the_process_ends_within_its_bounds(redirecting, dripping_ftp):
    port, connections = dripping_ftp
    url = redirecting(f"ftp://127.0.0.1:{port}/crystal/api")
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "canary_stack.ops.verify", url, "--requests", "4", "--timeout", "1", "--deadline", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert time.monotonic() - started < 10  # urllib's ftp handler would hold the process for ever
    assert process.returncode == 2 and out == ""
    assert "redirects to a 'ftp' URL; only http and https redirects are followed" in one_line(err)
    assert connections[0] == 0  # not even a connection to it


def test_a_redirect_to_http_is_still_followed(redirecting):
    url = redirecting("http://SELF/real")
    code, out, err = run(url, "--requests", 10, "--expect", 100)
    assert code == 0, err
    assert out.splitlines()[-1].startswith("PASS")


def test_a_request_stuck_outside_its_socket_does_not_hold_the_run():
    # As a name lookup that never returns: no socket, so the watchdog has nothing to shut down.
    release = threading.Event()

    def stuck(url: str, timeout: float, budget: float | None) -> tuple[str, str]:
        release.wait()
        return "ok", "CANARY"

    result: list = []
    thread = threading.Thread(target=lambda: result.append(run_requests("http://x/", 3, 3, 0.3, fetcher=stuck)))
    started = time.monotonic()
    thread.start()
    thread.join(timeout=10)
    release.set()
    assert result, "run_requests never returned"
    assert time.monotonic() - started < 0.3 + probe.GRACE + 5  # bounded: without the bound it never returns
    assert result[0] == [("error", "timed out after 0.3s")] * 3


# verify in a process of its own whose every request blocks where no socket can be shut down (as a name
# lookup that never returns): the process still ends within --deadline, --timeout (+ GRACE) or Ctrl-C.
STUCK = (
    "import sys, threading\n"
    "from canary_stack.ops import verify\n"
    "def stuck(url, timeout, budget=None, headers=None):\n"
    # One write per thread: print() writes the text and the line break apart, so four threads could
    # interleave them ("stuckstuck\n").
    "    sys.stdout.write('stuck\\n'); sys.stdout.flush()\n"
    "    threading.Event().wait()\n"
    "verify.fetch = stuck\n"
    "sys.exit(verify.main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize(
    "flags, interrupt, code, line",
    [
        (["--timeout", "60", "--deadline", "1"], False, 2, "the run's deadline of 1s passed after 0 of 4 answers"),
        (["--timeout", "1"], False, 2, "timed out after 1s (no answer to any of 4 requests)"),
        (["--timeout", "60"], True, 130, "verify: interrupted"),
    ],
)
def test_requests_stuck_outside_a_socket_hold_neither_the_run_nor_the_process(flags, interrupt, code, line):
    argv = [sys.executable, "-c", STUCK, "http://127.0.0.1:9", "--requests", "4", "--concurrency", "4"]
    process = subprocess.Popen(
        [*argv, "--canary-commit", "CANARY", *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "stuck\n"  # the requests are under way
    started = time.monotonic()
    if interrupt:
        process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert time.monotonic() - started < 10  # (under load: a process that outlived its bounds would not end)
    assert process.returncode == code and set(out.split()) <= {"stuck"}
    assert line in one_line(err)


# ------------------------------------------------------------- 16.12 a failed check, never a traceback


def test_a_deeply_nested_json_answer_is_a_failed_request_not_a_traceback(http_server):
    with pytest.raises(NotTheService, match="nested too deeply"):
        classify(200, NESTED)
    server = http_server(lambda n: (200, "application/json", NESTED))
    code, out, err = run(server.url, "--requests", 5, "--expect", 10)
    assert code == verify.EXIT_ERROR == 2 and out == ""  # not 1: nothing was measured outside an interval
    assert "not the Crystal service: answer is JSON nested too deeply" in one_line(err)


def test_an_unexpected_failure_inside_a_request_is_a_failed_request(http_server, answers, monkeypatch):
    def broken(status: int, body: bytes) -> str:
        raise KeyError("a bug")

    monkeypatch.setattr(probe, "classify", broken)
    server = http_server(answers.every_nth_canary(10))
    code, out, err = run(server.url, "--requests", 5)
    assert (code, out) == (2, "")
    assert "unexpected failure: KeyError: 'a bug'" in one_line(err)


def test_an_unexpected_failure_anywhere_in_verify_is_a_failed_check_with_exit_2(http_server, answers, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(verify, "summarize", broken)
    server = http_server(answers.every_nth_canary(10))
    code, out, err = run(server.url, "--requests", 5, "--expect", 10)
    assert (code, out) == (2, "")
    assert one_line(err) == ("verify: error: unexpected failure, the check failed: ZeroDivisionError: division by zero")


# --------------------------------------------------------------- 16.13 credentials and bad URLs


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (
            ["http://user:s3cret@127.0.0.1:9"],
            "must not carry a user name or password (the tools send no credentials), got 'http://***@127.0.0.1:9'",
        ),
        (["http://us:s3cret@er@127.0.0.1:9/x"], "got 'http://***@127.0.0.1:9/x'"),
        (["ftp://user:s3cret@example"], "must be an http:// or https:// URL with a host"),
        (["user:s3cret@example"], "got '***@example'"),
        (["http://127.0.0.1:9", "http://user:s3cret@example/"], "unrecognized arguments: http://***@example/"),
        (["https://user:s3cret@" + "h" * 3000 + ".example"], "got 'https://***@hhhhhhh"),
    ],
)
def test_a_url_s_credentials_are_never_printed(argv, fragment):
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    line = one_line(err)
    assert fragment in line and "s3cret" not in line


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1/crystal", "http://::1]:80/"])
def test_a_malformed_ipv6_url_is_explained_in_the_user_s_terms(url):
    code, _, err = run(url)
    line = one_line(err)
    assert code == 2 and "invalid parse_url value" not in line
    assert "an IPv6 address goes in square brackets, as in http://[::1]:8080/" in line


# ------------------------------------------------------------ 18.3 / 18.5 which version is which


def test_the_canary_is_the_commit_the_source_embeds_not_a_constant(http_server, answers, canary_source):
    # The README's walkthrough: the canary's source says CANARY2; production still answers CANARY.
    (canary_source / "crystal_src" / "code_hash.txt").write_text("CANARY2\n")

    def answer(n: int):
        return 200, "application/json", answers.json("CANARY2" if n % 10 == 0 else "CANARY")

    server = http_server(answer)
    code, out, _ = run(server.url, "--requests", 200, "--expect", 10)
    assert code == 0
    assert "canary share (CANARY2): 10.0%" in out and out.splitlines()[-1].startswith("PASS")


def test_without_a_readable_source_verify_asks_for_the_canary_commit(canary_source, http_server, answers):
    (canary_source / "crystal_src" / "code_hash.txt").unlink()
    server = http_server(answers.every_nth_canary(10))
    code, out, err = run(server.url, "--requests", 5)
    assert (code, out, server.count) == (2, "", 0)
    assert one_line(err) == (
        "verify: error: cannot read the canary's commit from crystal_src/code_hash.txt: FileNotFoundError; "
        "give --canary-commit"
    )
    assert run(server.url, "--requests", 5, "--canary-commit", "CANARY")[0] == 0


@pytest.mark.parametrize("expect", ["0", "10", "100", None])
def test_when_both_versions_run_the_same_image_the_split_cannot_be_measured(http_server, answers, expect):
    server = http_server(lambda n: (200, "application/json", answers.json("CANARY")))
    argv = [server.url, "--requests", 40, "--canary-image", IMAGE, "--production-image", IMAGE]
    code, out, _ = run(*argv, *(["--expect", expect] if expect else []))
    assert code == verify.EXIT_UNMEASURABLE == 3
    assert out.splitlines()[-1] == (
        f"CANNOT MEASURE: production and the canary run the same image ({IMAGE}), so their answers cannot be "
        "told apart; the split is neither passed nor failed"
    )
    assert "PASS" not in out and "FAIL" not in out


@pytest.mark.parametrize("expect, code", [("10", 3), ("99.5", 3), ("0", 3), ("100", 0)])
def test_one_commit_in_every_answer_below_100_percent_cannot_be_measured(http_server, answers, expect, code):
    # After a promotion production answers the canary's commit too: 100 % "canary" at weight 10 says
    # nothing about the split. At 100 % the observation is what was expected.
    server = http_server(lambda n: (200, "application/json", answers.json("CANARY")))
    got, out, _ = run(server.url, "--requests", 40, "--expect", expect)
    assert got == code
    verdict = out.splitlines()[-1]
    assert verdict.startswith("CANNOT MEASURE: every one of the 40 answers carries the canary's commit CANARY") == (
        code == 3
    )


def test_different_images_are_measured_as_usual(http_server, answers):
    server = http_server(answers.every_nth_canary(10))
    argv = ["--canary-image", IMAGE, "--production-image", "cd" * 32, "--expect", 10]
    code, out, _ = run(server.url, "--requests", 200, *argv)
    assert code == 0 and out.splitlines()[-1].startswith("PASS")


def test_an_image_needs_the_other_one():
    code, _, err = run("http://127.0.0.1:9", "--canary-image", IMAGE)
    assert code == 2
    assert one_line(err) == (
        "verify: error: argument --canary-image: give --canary-image and --production-image together"
    )


def test_help_documents_exit_3_and_the_source_of_the_canary_commit(capsys):
    with pytest.raises(SystemExit):
        verify.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 the split cannot be measured" in text
    assert "crystal_src/code_hash.txt" in text
    assert "3 = the split" in verify.__doc__ or "3 = the split\ncannot be measured" in verify.__doc__
