"""canary_stack/toolchain.py: a run stopped by SIGTERM ends through its exit handlers with no
traceback when jsii's Node.js kernel died first, and still reports any other failure."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support.synthesis import ROOT

# What jsii's exit handler meets when the signal reached its kernel first: a pipe to a dead process
# holding the unsent part of a request. Closing it flushes that, and the write fails.
CHILD = """
import atexit, os, signal, subprocess, sys, tempfile, time
from pathlib import Path
from canary_stack.toolchain import remove_at_exit

folder = Path(tempfile.mkdtemp())
remove_at_exit(folder, exit_on_sigterm={sigterm})
kernel = subprocess.Popen(["sleep", "60"], stdin=subprocess.PIPE)
kernel.stdin.write(b'{{"api": "invoke"')  # buffered, not flushed
kernel.kill()
kernel.wait()
atexit.register(kernel.stdin.close)  # registered last: runs first, as jsii's does
{extra}
print(folder, flush=True)
{end}
"""


def run_child(
    *, sigterm: bool = True, extra: str = "", end: str = "os.kill(os.getpid(), signal.SIGTERM); time.sleep(30)"
):
    code = textwrap.dedent(CHILD).format(sigterm=sigterm, extra=extra, end=end)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_sigterm_after_the_kernel_died_exits_143_without_a_traceback_and_removes_the_folder():
    result = run_child()
    assert result.returncode == 143
    assert result.stderr == ""
    folder = result.stdout.strip()
    assert folder and not __import__("os").path.exists(folder)


def test_any_other_failure_of_an_exit_handler_is_still_reported_after_sigterm():
    result = run_child(extra="atexit.register(lambda: 1 / 0)")
    assert result.returncode == 143
    assert "ZeroDivisionError" in result.stderr and "BrokenPipeError" not in result.stderr


def test_without_sigterm_a_broken_pipe_at_exit_is_still_reported():
    result = run_child(end="sys.exit(0)")
    assert result.returncode == 0
    assert "BrokenPipeError" in result.stderr
