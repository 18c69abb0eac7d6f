"""`make system-deps` installs only the tools that are missing: where `crystal` is already on PATH
(ci/crystal-in-docker in the pipeline, on an Ubuntu 22.04 without a crystal package), apt-get is
never asked for it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def installed(tool: str) -> str:
    path = shutil.which(tool)
    assert path is not None, f"{tool} is not installed"
    return path


@pytest.fixture
def fake_path(tmp_path: Path):
    """A PATH of stand-ins only: `crystal`/`wrk`/`nginx` exist when asked for, `apt-get` records its argv."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "id").symlink_to(installed("id"))
    log = tmp_path / "apt-get.log"
    apt = bin_ / "apt-get"
    apt.write_text(f'#!/bin/bash\necho "$*" >> {log}\n')
    (bin_ / "sudo").write_text('#!/bin/bash\n"$@"\n')
    for tool in (apt, bin_ / "sudo"):
        tool.chmod(0o755)

    def run(*present: str) -> list[str]:
        for tool in present:
            stub = bin_ / tool
            stub.write_text("#!/bin/bash\n")
            stub.chmod(0o755)
        result = subprocess.run(
            [installed("make"), "-s", "-C", str(ROOT), "system-deps"],
            env={"PATH": str(bin_), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return log.read_text().splitlines() if log.exists() else []

    return run


def test_nothing_is_installed_when_all_are_on_path(fake_path):
    assert fake_path("crystal", "wrk", "nginx") == []


def test_with_crystal_on_path_only_the_others_are_installed(fake_path):
    assert fake_path("crystal") == ["update -qq", "install -y -qq wrk nginx"]


def test_nginx_alone_missing_installs_debians_nginx(fake_path):
    # tests/proxy/ runs the lattice router's nginx.conf with it.
    assert fake_path("crystal", "wrk") == ["update -qq", "install -y -qq nginx"]


def test_all_missing_installs_all(fake_path):
    assert fake_path() == ["update -qq", "install -y -qq crystal wrk nginx"]
