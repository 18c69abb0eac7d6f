"""Helpers for the Crystal backend tests: where things are, cached builds, free ports, HTTP, a server process."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.file_digest import add_files

REPO = Path(__file__).resolve().parents[2]
CRYSTAL_SRC = REPO / "crystal_src"
BUILD_DIR = REPO / "build" / "crystal"
START_TIMEOUT = 10.0


def crystal_env() -> dict[str, str]:
    """Environment for the compiler: keep its cache under build/, not $HOME."""
    env = dict(os.environ)
    env["CRYSTAL_CACHE_DIR"] = str(BUILD_DIR / "cache")
    return env


def require_crystal() -> str:
    crystal = shutil.which("crystal")
    if crystal is None:
        # The Crystal service ships in the image; untested is not acceptable.
        pytest.fail("crystal compiler not found on PATH; the Crystal backend cannot be tested")
    return crystal


def source_key(crystal: str, args: list[str], sources: list[Path]) -> str:
    """Hash of what a build depends on: compiler version (with it the stdlib), arguments, source files."""
    digest = hashlib.sha256()
    version = subprocess.run([crystal, "--version"], capture_output=True, text=True, check=True).stdout
    digest.update(f"{version}\0{args}\0".encode())
    add_files(digest, sources, relative_to=CRYSTAL_SRC)
    return digest.hexdigest()[:16]


def cached_build(name: str, args: list[str], sources: list[Path], *, commit: str | None = None) -> Path:
    """`crystal build <args> -o build/crystal/<name>-<key>` unless that file exists already.

    The key covers everything that goes into the binary, so a later run with
    the same sources and compiler reuses it; older builds of *name* are removed.
    `commit`: build from a copy of the sources whose code_hash.txt says this instead (the service
    embeds it at compile time and answers it as its `commit`): a second version to tell apart.
    """
    crystal = require_crystal()
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    key = source_key(crystal, [*args, f"commit={commit}"] if commit else args, sources)
    target = BUILD_DIR / f"{name}-{key}"
    if target.exists():
        return target
    tmp = BUILD_DIR / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    staged = BUILD_DIR / f".{target.name}.{os.getpid()}.{threading.get_ident()}.src"
    cwd = CRYSTAL_SRC
    if commit is not None:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(CRYSTAL_SRC / "src", staged / "src")
        (staged / "code_hash.txt").write_text(commit + "\n")
        cwd = staged
    try:
        proc = subprocess.run(
            [crystal, "build", "--no-color", *args, "-o", str(tmp)],
            cwd=cwd,
            env=crystal_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        pytest.fail(f"crystal build of {name} failed:\n{proc.stdout}\n{proc.stderr}")
    os.replace(tmp, target)  # atomic: concurrent sessions never see half a binary
    for old in BUILD_DIR.glob(f"{name}-*"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


SERVER_SOURCES = [CRYSTAL_SRC / "src", CRYSTAL_SRC / "code_hash.txt"]
# The second version the Lattice proxy's live test routes to (tests/proxy/): built with the others
# before pytest starts (make test), so no test waits for a compiler.
PRODUCTION_COMMIT = "PRODUCTION"


def build_server(commit: str | None = None) -> Path:
    """The test server (debug build; release is for the image), answering `commit` if given."""
    name = "server-test" if commit is None else f"server-{commit.lower()}"
    return cached_build(name, ["src/server.cr"], SERVER_SOURCES, commit=commit)


def build_server_and_specs() -> tuple[Path, Path]:
    """The test server and the spec runner, built side by side (and production's server, for later)."""
    specs = sorted(str(p.relative_to(CRYSTAL_SRC)) for p in (CRYSTAL_SRC / "spec").glob("*_spec.cr"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        server = pool.submit(build_server)
        spec = pool.submit(cached_build, "spec-test", specs, [*SERVER_SOURCES, CRYSTAL_SRC / "spec"])
        production = pool.submit(build_server, PRODUCTION_COMMIT)
        production.result()
        return server.result(), spec.result()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, method: str = "GET", timeout: float = 5.0, body=None, headers=None):
    """One request on a fresh connection; returns (status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


class ServerProcess:
    """The compiled server on a free loopback-reachable port.

    Its stdout and stderr go to *log_path*; with *stdout* (e.g. subprocess.PIPE)
    only stderr does. *preexec_fn* runs in the child before the server starts
    (e.g. to lower a resource limit).
    """

    def __init__(
        self,
        binary: Path,
        env: dict[str, str],
        log_path: Path | None,
        *,
        stdout: int | None = None,
        preexec_fn: Callable[[], object] | None = None,
    ):
        self.port = int(env["PORT"]) if env["PORT"].isdigit() else -1
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        full_env = {k: v for k, v in os.environ.items() if k not in ("AZ", "ECS_CONTAINER_METADATA_URI_V4")}
        full_env.update(env)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [str(binary)],
            env=full_env,
            stdout=self._log if stdout is None else stdout,
            stderr=subprocess.STDOUT if stdout is None else self._log,
            preexec_fn=preexec_fn,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def log_entries(self) -> list[dict]:
        """The JSON log lines written so far (anything else, e.g. a stack trace, is left out)."""
        return [json.loads(line) for line in self.log_text().splitlines() if line.startswith("{")]

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Poll /health until 200; returns seconds from spawn to ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                if http_get(self.port, "/health", timeout=0.5)[0] == 200:
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"server not ready within {timeout}s:\n{self.log_text()}")

    def get(self, path: str, **kw):
        return http_get(self.port, path, **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("VmRSS not found")

    def terminate(self, sig=signal.SIGTERM, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # only our own child, by handle
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if not isinstance(self._log, int):  # a file we opened, not subprocess.DEVNULL
            self._log.close()


def final_stage_user(dockerfile: str) -> str | None:
    """The USER in force in the last stage (each FROM starts a stage with no USER)."""
    user = None
    for line in dockerfile.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction = words[0].upper()
        if instruction == "FROM":
            user = None
        elif instruction == "USER":
            user = words[1]
    return user
