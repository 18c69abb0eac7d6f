"""Fixtures for the Crystal backend: build the real binary once, run it on loopback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from crystal.support import BUILD_DIR, CRYSTAL_SRC, ServerProcess, crystal_env, free_port, require_crystal


@pytest.fixture(scope="session")
def crystal_bin() -> Path:
    """Compile src/server.cr once per session (debug build; release is for the image)."""
    crystal = require_crystal()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    target = BUILD_DIR / "server-test"
    tmp = BUILD_DIR / f"server-test.{os.getpid()}.tmp"
    proc = subprocess.run(
        [crystal, "build", "src/server.cr", "-o", str(tmp)],
        cwd=CRYSTAL_SRC,
        env=crystal_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        pytest.fail(f"crystal build failed:\n{proc.stdout}\n{proc.stderr}")
    os.replace(tmp, target)  # atomic: concurrent sessions never see half a binary
    return target


@pytest.fixture
def start_server(crystal_bin, tmp_path):
    """Factory: start_server(AZ=..., log=True, wait=True) -> ServerProcess."""
    started: list[ServerProcess] = []

    def _start(log: bool = True, wait: bool = True, **env: str) -> ServerProcess:
        env = {"PORT": str(free_port()), "LOG_LEVEL": "info", **env}
        log_path = tmp_path / f"server-{len(started)}.log" if log else None
        server = ServerProcess(crystal_bin, env, log_path)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield _start
    for server in started:
        server.close()
