"""The Crystal backend in a hostile environment: a closed stdout, a port in use, no file descriptors left.

Each test runs the real binary on loopback, bounded in requests and time.
"""

from __future__ import annotations

import http.client
import resource
import signal
import socket
import subprocess
import time

from crystal.support import ServerProcess, free_port, http_get

# More lines than the log queue holds (LOG_QUEUE_SIZE = 2048 in config.cr):
# with the stdlib async log dispatcher, request 2049 was the first to hang.
REQUESTS_PAST_LOG_QUEUE = 2200


def test_closed_stdout_never_stops_serving(crystal_bin, tmp_path):
    server = ServerProcess(
        crystal_bin,
        {"PORT": str(free_port()), "AZ": "x", "LOG_LEVEL": "info"},
        tmp_path / "stderr.log",
        stdout=subprocess.PIPE,
    )
    try:
        # What `server | head -c 1` does: read one byte of the first log line, then go away.
        assert server.proc.stdout is not None
        assert server.proc.stdout.read(1) == b"{"
        server.proc.stdout.close()
        server.wait_ready()

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=3)
        try:
            for n in range(REQUESTS_PAST_LOG_QUEUE):
                conn.request("GET", "/crystal")
                response = conn.getresponse()
                assert response.status == 200, f"request {n}: {response.status}"
                response.read()
        except TimeoutError:
            raise AssertionError(f"request {n} hung: logging stopped serving") from None
        finally:
            conn.close()
        # New connections too.
        assert http_get(server.port, "/health", timeout=3)[0] == 200

        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        exit_code = server.proc.wait(timeout=10)
        assert exit_code == 0
        # Drain grace (0.5 s) plus at most the log close timeout (1 s); never waits for stdout.
        assert time.monotonic() - started < 4
        # The lines that could not be written are counted, and the count lands on stderr.
        dropped = [e for e in server.log_entries() if e.get("msg") == "log lines dropped"]
        assert len(dropped) == 1, server.log_text()
        assert dropped[0]["level"] == "WARN" and dropped[0]["source"] == "crystal_backend.log"
        assert dropped[0]["dropped"] >= REQUESTS_PAST_LOG_QUEUE
        assert "Unhandled exception" not in server.log_text()
    finally:
        server.close()


def test_port_in_use_is_one_line_and_exit_2(crystal_bin):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # the server binds 0.0.0.0, which overlaps
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [str(crystal_bin)],
            env={"PORT": str(port), "AZ": "x", "LOG_LEVEL": "info"},
            capture_output=True,
            text=True,
            timeout=10,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"PORT {port}" in proc.stderr and "Address already in use" in proc.stderr
    assert "listening" not in proc.stdout


# Low enough that a few dozen connections exhaust it (the idle server holds
# 9 descriptors: stdio, the listener, epoll and two signal pipes).
FD_LIMIT = 24
EXHAUSTED_SECONDS = 2.5


def test_fd_exhaustion_logs_accept_failed_rate_limited(crystal_bin, tmp_path):
    def low_fd_limit() -> None:  # in the child, before exec: only the server gets the low limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    server = ServerProcess(
        crystal_bin,
        {"PORT": str(free_port()), "AZ": "x", "LOG_LEVEL": "info"},
        tmp_path / "server.log",
        preexec_fn=low_fd_limit,
    )
    clients: list[socket.socket] = []
    try:
        server.wait_ready()
        # Connections past the limit complete in the kernel and wait in the
        # listen backlog; each accept attempt then fails with EMFILE.
        for _ in range(2 * FD_LIMIT):
            clients.append(socket.create_connection(("127.0.0.1", server.port), timeout=3))
        time.sleep(EXHAUSTED_SECONDS)
        for client in clients:
            client.close()
        clients.clear()
        # The server gets its descriptors back and serves again.
        server.wait_ready(timeout=5)
        assert server.terminate() == 0
    finally:
        for client in clients:
            client.close()
        server.close()

    entries = server.log_entries()
    failed = [e for e in entries if e.get("msg") == "accept failed"]
    # What was held back after the last "accept failed" line: told at the next accept a
    # second later, or at shutdown.
    tail = [e for e in entries if e.get("msg") == "accept failures not logged"]
    # One line per second (ACCEPT_ERROR_INTERVAL) instead of one per retry (every 10 ms).
    assert 1 <= len(failed) <= EXHAUSTED_SECONDS + 2, server.log_text()[-2000:]
    assert all("Too many open files" in e["error"] for e in failed), failed
    assert len(tail) <= 1, tail
    suppressed = sum(e["suppressed"] for e in failed + tail)
    assert suppressed >= 20, (failed, tail)  # retries held back, and counted
