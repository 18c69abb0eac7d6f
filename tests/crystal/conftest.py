"""Fixtures for the Crystal backend: build the real binary (cached across runs), run it on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from crystal.support import ServerProcess, build_server_and_specs, free_port


@pytest.fixture(scope="session")
def crystal_builds() -> tuple[Path, Path]:
    """(server, spec runner), compiled at most once per source version (cached under build/crystal)."""
    return build_server_and_specs()


@pytest.fixture(scope="session")
def crystal_bin(crystal_builds) -> Path:
    return crystal_builds[0]


@pytest.fixture(scope="session")
def crystal_spec_bin(crystal_builds) -> Path:
    return crystal_builds[1]


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
