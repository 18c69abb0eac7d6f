"""Runs the Crystal unit specs (crystal_src/spec) once as part of the test run.

The spec runner is what `crystal spec` would build, compiled by the session
fixture next to the server and cached like it; running it is `crystal spec`.
"""

import re
import subprocess

from crystal.support import CRYSTAL_SRC, require_crystal


def test_crystal_spec_passes(crystal_spec_bin):
    proc = subprocess.run(
        [str(crystal_spec_bin), "--no-color"],
        cwd=CRYSTAL_SRC,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    summary = re.search(r"(\d+) examples, (\d+) failures, (\d+) errors, (\d+) pending", output)
    assert summary, output
    examples, failures, errors, _pending = map(int, summary.groups())
    assert examples > 0 and failures == 0 and errors == 0, output


def test_crystal_format_is_clean():
    crystal = require_crystal()
    proc = subprocess.run(
        [crystal, "tool", "format", "--check", "--no-color"],
        cwd=CRYSTAL_SRC,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
