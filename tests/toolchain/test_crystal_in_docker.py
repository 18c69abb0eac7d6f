"""ci/crystal-in-docker: `crystal` run in the Dockerfile's Crystal image, tested with a recording
`docker` on PATH (no Docker daemon here): the exact `docker run` argv, for every command line the
Crystal tests use and for hostile arguments, which no shell may ever read."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "ci" / "crystal-in-docker"

FAKE_DOCKER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_DOCKER_EXIT", "0")))
"""


def dockerfile_build_image(root: Path = ROOT) -> str:
    (image,) = re.findall(
        r"^FROM (crystallang/crystal:\S+) AS build$", (root / "crystal_src/Dockerfile").read_text(), re.M
    )
    return image


class Crystal:
    """`crystal` as the pipeline installs it: a symlink to the wrapper, first on PATH."""

    def __init__(self, tmp_path: Path, wrapper: Path = WRAPPER):
        self.tmp = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "crystal").symlink_to(wrapper)
        docker = self.bin / "docker"
        docker.write_text(FAKE_DOCKER)
        docker.chmod(0o755)
        self.log = tmp_path / "docker-argv.jsonl"

    def __call__(self, *args: str, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        self.log.unlink(missing_ok=True)
        full_env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.tmp), "FAKE_DOCKER_LOG": str(self.log), **env}
        result = subprocess.run(["crystal", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=30)
        calls = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        return result, calls


@pytest.fixture
def crystal(tmp_path: Path) -> Crystal:
    return Crystal(tmp_path)


def docker_run(workdir: Path, *crystal_args: str, root: Path = ROOT, cache: str | None = None, extra_mounts=()):
    mounts = ["--volume", f"{root}:{root}"]
    for mount in extra_mounts:
        mounts += ["--volume", f"{mount}:{mount}"]
    return [
        "run",
        "--rm",
        "--interactive",
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        f"{os.getuid()}:{os.getgid()}",
        "--env",
        "HOME=/tmp",
        "--env",
        f"CRYSTAL_CACHE_DIR={cache or root / 'build/crystal/cache'}",
        *mounts,
        "--workdir",
        str(workdir),
        dockerfile_build_image(root),
        "crystal",
        *crystal_args,
    ]


SRC = ROOT / "crystal_src"


def test_the_image_is_the_one_the_dockerfile_builds_with(crystal):
    assert dockerfile_build_image() == "crystallang/crystal:1.14.0-alpine"
    result, calls = crystal("--version", cwd=SRC)
    assert result.returncode == 0, result.stderr
    assert calls == [docker_run(SRC, "--version")]


def test_build_links_statically_so_the_binary_runs_on_the_host(crystal):
    # The command line of tests/crystal/conftest.py's crystal_bin fixture.
    out = str(ROOT / "build/crystal/server-test.1234.tmp")
    env = {"CRYSTAL_CACHE_DIR": str(ROOT / "build/crystal/cache")}
    result, calls = crystal("build", "src/server.cr", "-o", out, cwd=SRC, **env)
    assert result.returncode == 0, result.stderr
    assert calls == [docker_run(SRC, "build", "--static", "src/server.cr", "-o", out)]
    # Already static: not twice.
    _, calls = crystal("build", "--static", "src/server.cr", cwd=SRC)
    assert calls == [docker_run(SRC, "build", "--static", "src/server.cr")]


@pytest.mark.parametrize(
    "args",
    [
        ("spec", "--no-color"),
        ("tool", "format", "--check", "--no-color"),
        ("run", "src/server.cr"),  # only `build` writes a binary for the host
        ("spec", "spec/app_spec.cr", "--example", "build"),
        (),
    ],
)
def test_other_commands_pass_through_unchanged(crystal, args):
    result, calls = crystal(*args, cwd=SRC)
    assert result.returncode == 0, result.stderr
    assert calls == [docker_run(SRC, *args)]


HOSTILE = (
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "a b",
    "*",
    "",
    "line\nbreak",
    "--",
    "'quoted'",
    '"double"',
    "$HOME",
    "-o",
    "--static=no",
)


@pytest.mark.parametrize("first", ["build", "spec", "tool"])
def test_no_argument_is_ever_read_by_a_shell(crystal, tmp_path, first):
    result, calls = crystal(first, *HOSTILE, cwd=SRC)
    assert result.returncode == 0, result.stderr
    expected = (first, "--static", *HOSTILE) if first == "build" else (first, *HOSTILE)
    assert calls == [docker_run(SRC, *expected)]
    assert not list(SRC.glob("pwned")) and not list(tmp_path.rglob("pwned"))


def test_docker_s_exit_status_is_crystal_s(crystal):
    result, _ = crystal("spec", cwd=SRC, FAKE_DOCKER_EXIT="7")
    assert result.returncode == 7


def test_a_working_directory_outside_the_checkout_is_mounted_too(crystal, tmp_path):
    elsewhere = (tmp_path / "elsewhere").resolve()
    elsewhere.mkdir()
    result, calls = crystal("build", "x.cr", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert calls == [docker_run(elsewhere, "build", "--static", "x.cr", extra_mounts=[elsewhere])]


def test_a_cache_outside_every_mount_stays_in_the_container(crystal):
    _, calls = crystal("spec", cwd=SRC, CRYSTAL_CACHE_DIR="/var/cache/somewhere")
    assert calls == [docker_run(SRC, "spec", cache="/tmp/crystal-cache")]


def test_a_pull_through_cache_prefix_replaces_docker_hub(crystal):
    registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/docker-hub"
    _, calls = crystal("spec", cwd=SRC, CRYSTAL_IMAGE_REGISTRY=registry)
    (call,) = calls
    assert call[call.index("crystal") - 1] == f"{registry}/{dockerfile_build_image()}"


@pytest.mark.parametrize("registry", ["x;touch pwned", "a b", "reg/", "$(touch pwned)", "-v", "x" * 300])
def test_a_bad_registry_prefix_is_refused_with_one_line(crystal, registry):
    result, calls = crystal("spec", cwd=SRC, CRYSTAL_IMAGE_REGISTRY=registry)
    assert result.returncode == 2
    assert calls == []
    assert len(result.stderr.splitlines()) == 1 and "CRYSTAL_IMAGE_REGISTRY" in result.stderr
    assert not list(SRC.glob("pwned"))


def test_the_image_follows_the_dockerfile(tmp_path):
    copy = tmp_path / "repo"
    (copy / "ci").mkdir(parents=True)
    (copy / "crystal_src").mkdir()
    shutil.copy2(WRAPPER, copy / "ci" / "crystal-in-docker")
    dockerfile = (ROOT / "crystal_src/Dockerfile").read_text()
    (copy / "crystal_src/Dockerfile").write_text(
        dockerfile.replace(dockerfile_build_image(), "crystallang/crystal:1.99.0-alpine")
    )
    (tmp_path / "run").mkdir()
    crystal = Crystal(tmp_path / "run", copy / "ci" / "crystal-in-docker")
    _, calls = crystal("spec", cwd=copy / "crystal_src")
    (call,) = calls
    assert "crystallang/crystal:1.99.0-alpine" in call
    # No build stage image at all: a clear refusal, nothing run.
    (copy / "crystal_src/Dockerfile").write_text("FROM scratch\n")
    result, calls = crystal("spec", cwd=copy / "crystal_src")
    assert result.returncode == 2 and calls == [] and "AS build" in result.stderr
