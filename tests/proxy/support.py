"""Running the lattice router's nginx.conf for real on loopback: the documented substitutions that make
it run here, nginx processes that are always stopped, and a second Crystal build (the production
version answers with its own commit, so verify can tell the two apart)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from canary_stack.constants import LATTICE_PROXY_DIR, VIRTUAL_SERVICE_NAME

PROXY_CONF = LATTICE_PROXY_DIR / "nginx.conf"
STAND_IN_CONF = Path(__file__).with_name("stand_in_lattice.conf")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0

# The only changes made to the repository's nginx.conf before it runs here, each (what, replacement
# as a function of the run, how many times it must occur). Anything else in the file runs as shipped.
# * the listener: on loopback, on a free port (the task listens on 8080 on its own interface);
# * the Lattice service's name:port becomes the stand-in's loopback address (no DNS record here);
# * the resolver: the Amazon DNS address exists only in a VPC; loopback, so that even a lookup that
#   should not happen stays on this machine (the upstream above is an address: none happens);
# * /tmp/, the task's scratch volume, becomes a fresh folder of the test's.
SUBSTITUTIONS: Sequence[tuple[str, str, int]] = (
    ("listen 8080;", "listen 127.0.0.1:{port};", 1),
    (
        f"set $lattice_service {VIRTUAL_SERVICE_NAME}:80;",
        "set $lattice_service 127.0.0.1:{lattice_port};",
        1,
    ),
    ("resolver 169.254.169.253 ", "resolver 127.0.0.1 ", 1),
    ("/tmp/", "{scratch}/", 6),
)


def require_nginx() -> str:
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.fail("nginx not found on PATH: `make system-deps` installs Debian's nginx; the proxy cannot be tested")
    return nginx


def adapt(text: str, **values: object) -> str:
    """nginx.conf with SUBSTITUTIONS applied; fails if any of them does not occur as often as documented."""
    for old, new, count in SUBSTITUTIONS:
        found = text.count(old)
        assert found == count, f"nginx.conf has {found} x {old!r}, expected {count}: update SUBSTITUTIONS"
        text = text.replace(old, new.format(**values))
    return text


NOBODY = 65534


def unprivileged() -> list[str]:
    """The argv prefix that runs a program as `nobody`, as the task runs nginx as a non-root user: when
    the tests run as root, through util-linux's setpriv; otherwise nothing (already unprivileged)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) not found: needed to run nginx as a non-root user")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def output_file(path: Path):
    """A file for nginx's stdout and stderr that nginx, unprivileged, may open again by name: it logs to
    /dev/stdout, which opens the file behind the descriptor anew, with the caller's permissions. In a
    task the container runtime gives the container's user its stdio for that reason (runc's
    libcontainer, fixStdioPermissions), which is how the official nginx images log as non-root."""
    handle = open(path, "wb")
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return handle


def nginx_check(nginx: str, conf: Path, output: Path) -> tuple[int, str]:
    """`nginx -t` on `conf`, unprivileged: (exit code, what it printed)."""
    with output_file(output) as out:
        code = subprocess.run(
            [*unprivileged(), nginx, "-t", "-e", "stderr", "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=30,
        ).returncode
    return code, output.read_text(errors="replace")


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A folder nginx (as nobody) can read its configuration from and write its pid and temporary files
    in, removed afterwards. Under the system's /tmp: a pytest tmp_path is private to its user."""
    folder = Path(tempfile.mkdtemp(prefix="lattice-proxy-", dir="/tmp"))
    try:
        folder.chmod(0o777)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_conf(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def children(pid: int) -> set[int]:
    """The direct children of a process (nginx's workers of its master)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Nginx:
    """An nginx master process in the foreground (`daemon off;`), started and always stopped by us."""

    def __init__(self, nginx: str, conf: Path, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self._log = output_file(log)
        self.proc = subprocess.Popen(
            [*unprivileged(), nginx, "-e", "stderr", "-c", str(conf)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.workers: set[int] = set()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    self.workers = children(self.proc.pid)
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(
            f"nginx did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT}s:\n{self.log_text()}"
        )

    def log_text(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGQUIT (graceful: the image's STOPSIGNAL), then SIGKILL if it hangs; workers included."""
        if self.proc.poll() is None:
            self.workers |= children(self.proc.pid)
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by handle
                self.proc.wait(timeout=5)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(alive(pid) for pid in self.workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.workers:
            if alive(pid):  # a worker of our master that outlived it
                os.kill(pid, signal.SIGKILL)
        self._log.close()


@contextmanager
def running(nginx: str, conf: Path, port: int, log: Path) -> Iterator[Nginx]:
    server = Nginx(nginx, conf, port, log)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
