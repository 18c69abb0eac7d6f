"""Runs the Crystal unit specs (crystal_src/spec) once as part of the test run."""

import re
import subprocess

from crystal.support import CRYSTAL_SRC, crystal_env, require_crystal


def test_crystal_spec_passes():
    crystal = require_crystal()
    proc = subprocess.run(
        [crystal, "spec", "--no-color"],
        cwd=CRYSTAL_SRC,
        env=crystal_env(),
        capture_output=True,
        text=True,
        timeout=900,
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
