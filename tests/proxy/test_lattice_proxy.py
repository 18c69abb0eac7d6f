"""The lattice router's ingress proxy, run for real: Debian's nginx on this machine with the repository's
nginx.conf (only the documented SUBSTITUTIONS of tests/proxy/support.py), as a non-root user.

Live, on loopback only: verify -> the proxy -> a stand-in for the Lattice service (nginx with weighted
upstreams and the header rule, stand_in_lattice.conf) -> two Crystal servers, production and canary,
each answering with its own commit. Every request loop is bounded in count and time, and every
process is stopped by the fixtures that started it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from crystal.support import PRODUCTION_COMMIT, ServerProcess, build_server, free_port, http_get

from canary_stack.constants import (
    CANARY_HEADER,
    LATTICE_PROXY_HEALTH_PATH,
    LATTICE_PROXY_PORT,
    PROJECT_ROOT,
    VIRTUAL_SERVICE_NAME,
)
from proxy.support import (
    PROXY_CONF,
    STAND_IN_CONF,
    SUBSTITUTIONS,
    adapt,
    alive,
    nginx_check,
    require_nginx,
    running,
    scratch_folder,
    write_conf,
)

CANARY_WEIGHT = 10
CANARY_COMMIT = "CANARY"  # crystal_src/code_hash.txt: what the test server reports
REQUESTS = 400  # the deploy check's count
HEADER_REQUESTS = 20


def test_the_substitutions_change_nothing_but_what_they_name():
    original = PROXY_CONF.read_text()
    adapted = adapt(original, port=1, lattice_port=2, scratch="/SCRATCH")
    # Undoing them gives the file back: nothing else was touched.
    undone = adapted
    for old, new, _ in reversed(SUBSTITUTIONS):
        undone = undone.replace(new.format(port=1, lattice_port=2, scratch="/SCRATCH"), old)
    assert undone == original
    assert "8080" not in adapted and VIRTUAL_SERVICE_NAME + ":80" not in adapted and "/tmp/" not in adapted
    assert str(LATTICE_PROXY_PORT) in original


def test_the_repositorys_nginx_conf_passes_nginxs_own_check_as_a_non_root_user():
    with scratch_folder() as scratch:
        conf = write_conf(
            scratch,
            "nginx.conf",
            adapt(PROXY_CONF.read_text(), port=free_port(), lattice_port=free_port(), scratch=scratch),
        )
        code, printed = nginx_check(require_nginx(), conf, scratch / "check.log")
    assert code == 0, printed
    assert "syntax is ok" in printed and "test is successful" in printed


def test_the_check_fails_on_a_broken_conf():
    # The check above can fail: a missing ';' is refused by the same command.
    with scratch_folder() as scratch:
        broken = adapt(PROXY_CONF.read_text(), port=free_port(), lattice_port=free_port(), scratch=scratch)
        conf = write_conf(scratch, "nginx.conf", broken.replace("worker_processes 1;", "worker_processes 1", 1))
        code, printed = nginx_check(require_nginx(), conf, scratch / "check.log")
    assert code != 0 and "emerg" in printed


@pytest.fixture(scope="module")
def path_through(tmp_path_factory):
    """(proxy port, stand-in port, the stand-in's access log) with both Crystal versions behind the stand-in."""
    nginx = require_nginx()
    canary_bin, production_bin = build_server(), build_server(PRODUCTION_COMMIT)
    logs = tmp_path_factory.mktemp("proxy-logs")
    servers = []
    try:
        for name, binary in (("production", production_bin), ("canary", canary_bin)):
            server = ServerProcess(binary, {"PORT": str(free_port()), "AZ": name}, logs / f"{name}.log")
            servers.append(server)
            server.wait_ready()
        production, canary = servers
        with scratch_folder() as scratch:
            stand_in_port, proxy_port = free_port(), free_port()
            stand_in = write_conf(
                scratch,
                "stand-in.conf",
                STAND_IN_CONF.read_text()
                .replace("{scratch}", str(scratch))
                .replace("{port}", str(stand_in_port))
                .replace("{service_name}", VIRTUAL_SERVICE_NAME)
                .replace("{production_port}", str(production.port))
                .replace("{canary_port}", str(canary.port))
                .replace("{production_weight}", str(100 - CANARY_WEIGHT))
                .replace("{canary_weight}", str(CANARY_WEIGHT)),
            )
            proxy = write_conf(
                scratch,
                "nginx.conf",
                adapt(PROXY_CONF.read_text(), port=proxy_port, lattice_port=stand_in_port, scratch=scratch),
            )
            with running(nginx, stand_in, stand_in_port, logs / "stand-in.log"):
                with running(nginx, proxy, proxy_port, logs / "proxy.log"):
                    yield proxy_port, stand_in_port, scratch / "stand-in-access.log"
    finally:
        for server in servers:
            server.terminate()


def commit_of(port: int, headers: dict[str, str] | None = None) -> str:
    status, _, body = http_get(port, "/crystal/api", headers=headers or {}, timeout=5)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["from"] == "Crystal backend"
    return answer["commit"]


def test_verify_measures_the_split_through_the_proxy(path_through):
    proxy_port, *_ = path_through
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "canary_stack.ops.verify",
            f"http://127.0.0.1:{proxy_port}",
            "--requests",
            str(REQUESTS),
            "--expect",
            str(CANARY_WEIGHT),
            "--concurrency",
            "8",
            "--timeout",
            "5",
            "--deadline",
            "60",
            "--canary-commit",
            CANARY_COMMIT,
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Both versions answered, in the stand-in's proportions (its round robin is exact: 360 and 40).
    assert PRODUCTION_COMMIT in result.stdout and CANARY_COMMIT in result.stdout


@pytest.mark.parametrize("name", [CANARY_HEADER, "Canary-Fleet"])
def test_the_test_header_goes_through_the_proxy_and_reaches_the_canary(path_through, name):
    proxy_port, *_ = path_through
    assert {commit_of(proxy_port, {name: "true"}) for _ in range(HEADER_REQUESTS)} == {CANARY_COMMIT}


def test_without_the_header_both_versions_answer(path_through):
    proxy_port, *_ = path_through
    answers = Counter(commit_of(proxy_port) for _ in range(HEADER_REQUESTS))
    assert answers == {PRODUCTION_COMMIT: 18, CANARY_COMMIT: 2}  # 90/10, round robin


def test_the_workshops_underscore_header_is_dropped_as_by_the_load_balancer(path_through):
    # nginx drops header names with '_' (underscores_in_headers off), so `canary_fleet` does not pin
    # the canary: the split decides, as behind the load balancer (drop_invalid_header_fields).
    proxy_port, *_ = path_through
    answers = Counter(commit_of(proxy_port, {"canary_fleet": "true"}) for _ in range(HEADER_REQUESTS))
    assert answers[PRODUCTION_COMMIT] > 0


def test_the_proxy_sends_the_services_name_as_host(path_through):
    # The stand-in answers only for the Lattice service's name (421 otherwise): every request above
    # reached a Crystal server, so the proxy sent that name. Asked directly with another name, it refuses.
    _, stand_in_port, *_ = path_through
    assert http_get(stand_in_port, "/crystal/api", headers={"Host": "elsewhere.example"})[0] == 421
    assert http_get(stand_in_port, "/crystal/api", headers={"Host": VIRTUAL_SERVICE_NAME})[0] == 200


def test_the_proxy_answers_its_health_check_itself(path_through):
    # The load balancer's check never goes through Lattice: the stand-in logs no request for it.
    proxy_port, _, stand_in_access_log = path_through
    status, _, body = http_get(proxy_port, LATTICE_PROXY_HEALTH_PATH)
    assert (status, body) == (200, b"ok\n")
    # nginx logs a request once it is done, which can be after the answer reached the client: a
    # request that does go through, sent after the check, shows when the stand-in's log has caught up.
    marker = f"/crystal/api?after-the-health-check={uuid.uuid4().hex}"
    assert http_get(proxy_port, marker, timeout=5)[0] == 200
    deadline = time.monotonic() + 10
    while marker not in stand_in_access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = stand_in_access_log.read_text()
    assert marker in log
    assert LATTICE_PROXY_HEALTH_PATH not in log


def test_nginx_runs_without_root_and_its_processes_are_stopped(tmp_path):
    nginx = require_nginx()
    with scratch_folder() as scratch:
        port = free_port()
        conf = write_conf(
            scratch, "nginx.conf", adapt(PROXY_CONF.read_text(), port=port, lattice_port=free_port(), scratch=scratch)
        )
        with running(nginx, conf, port, tmp_path / "nginx.log") as proxy:
            pids = {proxy.proc.pid, *proxy.workers}
            assert len(pids) == 2  # worker_processes 1: a master and one worker
            for pid in pids:
                status = dict(
                    line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line
                )
                assert status["Uid"].split()[0] != "0", pid  # real uid: not root
            # It wrote where the scratch volume is, nothing else: the pid file and temporary folders.
            assert (scratch / "nginx.pid").read_text().strip() == str(proxy.proc.pid)
        assert not any(alive(pid) for pid in pids)
