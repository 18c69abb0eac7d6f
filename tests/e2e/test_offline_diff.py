"""`python -m canary_stack.ops.offline_diff`: the real CDK CLI's diff of a weight step, with no AWS
credentials; the base worktree is always removed, also on SIGTERM. (Bad input: tests/tools/test_bad_input.py.)"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from synthesis import ROOT

from canary_stack.ops import offline_diff


def run(*args: str) -> subprocess.CompletedProcess:
    # No AWS_* at all (no credentials, profile or region) and a HOME without ~/.aws.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "canary_stack.ops.offline_diff", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def step_10_to_50():
    return run("--from", "10", "--to", "50")  # the only two CLI synths of this module


def resource_lines(diff: str) -> list[str]:
    """The [+]/[-]/[~] lines of the diff's Resources section (one per changed resource)."""
    section = diff.split("\nResources\n", 1)[1].split("\nOutputs\n", 1)[0]
    return [line for line in section.splitlines() if re.match(r"^\[[-+~]\] ", line)]


def test_weight_step_diff_shows_the_weighted_rule_and_nothing_else(step_10_to_50):
    result = step_10_to_50
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("CrystalCanary: canaryWeight 10 -> 50\nStack CrystalCanary\n")
    # The default router: the ALB's weighted listener rule is the one resource a step changes.
    (rule,) = resource_lines(out)
    assert rule.startswith("[~] AWS::ElasticLoadBalancingV2::ListenerRule Router/WeightedRule ")
    removed = re.findall(r'\[-\]\s+"Weight": (\d+)', out)
    added = re.findall(r'\[\+\]\s+"Weight": (\d+)', out)
    assert (removed, added) == (["90", "10"], ["50", "50"])
    assert re.search(r'Output CanaryWeight .*"Value":"10"\} to \{.*"Value":"50"\}', out)
    assert "Number of stacks with differences: 1" in out
    # The synthesis warnings are not part of the diff: they go to stderr.
    assert "WARNING" not in out and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def lattice_step_10_to_50():
    return run("--from", "10", "--to", "50", "-c", "trafficRouter=lattice")


def test_lattice_weight_step_diff_shows_the_weighted_lattice_rule_and_nothing_else(lattice_step_10_to_50):
    result = lattice_step_10_to_50
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("CrystalCanary: canaryWeight 10 -> 50 -c trafficRouter=lattice\nStack CrystalCanary\n")
    (rule,) = resource_lines(out)
    assert rule.startswith("[~] AWS::VpcLattice::Rule Router/WeightedRule ")
    removed = re.findall(r'\[-\]\s+"Weight": (\d+)', out)
    added = re.findall(r'\[\+\]\s+"Weight": (\d+)', out)
    assert (removed, added) == (["90", "10"], ["50", "50"])
    assert "Number of stacks with differences: 1" in out


def test_cli_environment_cannot_reach_an_aws_account():
    env = offline_diff.offline_env(
        {"AWS_PROFILE": "prod", "AWS_ACCESS_KEY_ID": "AKIA", "CDK_CONTEXT_JSON": "{}", "PATH": "/bin"}
    )
    assert env["PATH"] == "/bin"
    assert not {"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "CDK_CONTEXT_JSON"} & set(env)
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull


def worktrees() -> str:
    return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


def test_base_worktree_shares_the_toolchain_and_is_removed_even_on_failure(tmp_path):
    commit = offline_diff.resolve_base(ROOT, "HEAD")
    with pytest.raises(RuntimeError):
        with offline_diff.base_worktree(ROOT, commit, tmp_path) as base:
            assert (base / "cdk.json").is_file() and str(base) in worktrees()
            for name in offline_diff.SHARED_TOOLCHAIN:
                assert (base / name).resolve() == (ROOT / name).resolve()
            raise RuntimeError("synthesis failed")
    assert not Path(base).exists()
    assert str(base) not in worktrees()


def processes_with(marker: str) -> list[int]:
    """Every live process whose environment holds `marker` (all that a run started inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass  # gone, or not ours to read
    return found


def test_sigterm_stops_every_child_removes_every_temporary_folder_and_exits_130(tmp_path):
    marker = f"OFFLINE_DIFF_TEST_RUN={uuid.uuid4().hex}"
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(TMPDIR=str(temp), OFFLINE_DIFF_TEST_RUN=marker.split("=")[1])
    process = subprocess.Popen(
        [sys.executable, "-m", "canary_stack.ops.offline_diff", "--base", "HEAD"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until both synths run their Python app (the CLI's child): the moment that leaked before.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        apps = [pid for pid in processes_with(marker) if b"app.py" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if len(apps) >= 2:
            break
        time.sleep(0.1)
    assert len(apps) >= 2, "the synths did not start"
    worktree = next(temp.glob("offline-diff-*/base"))
    assert str(worktree) in worktrees()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "offline_diff: interrupted: nothing was deployed; temporary files removed"
    assert processes_with(marker) == []  # cdk synth, the Python app, Node.js: all gone
    assert list(temp.iterdir()) == []  # the assemblies and the base worktree's folder
    assert str(worktree) not in worktrees()
