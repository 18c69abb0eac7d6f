"""`python -m canary_stack.ops.offline_diff`: the real CDK CLI's diff of a weight step, with no AWS
credentials; the base worktree is always removed, also on SIGTERM; a stopped run (offline_diff, promote,
the app itself) leaves no temporary folder and no process. History comes from a repository the tests
build (tests/support/git_repo.py). (Bad input: tests/tools/test_bad_input.py.)"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.git_repo import git_repository
from support.synthesis import ROOT

from canary_stack.context import read_context
from canary_stack.ops import cdk_cli, git, offline_diff
from canary_stack.toolchain import PACKAGE_CACHE, TMP_ROOT


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
    return run("--from", "10", "--to", "50")  # the only two complete CLI synths of this module


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


def test_lattice_weight_step_diff_shows_the_weighted_lattice_rule_and_nothing_else(synth, tmp_path):
    """The same step with the Lattice router, diffed by the tool's own `cdk diff` step (cdk_cli.run_diff,
    the real CLI, offline) on the app synthesized in-process as `cdk synth` does: the test above runs
    the whole tool, whose synths do not depend on the router."""
    before, after = (synth(trafficRouter="lattice", canaryWeight=weight) for weight in ("10", "50"))
    old_template = tmp_path / "from.template.json"
    old_template.write_text(json.dumps(before.template))
    out, err = io.StringIO(), io.StringIO()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cdk_cli.run_diff(after.outdir, old_template, cdk_cli.offline_env(env), ROOT, out, err)
    diff = out.getvalue()
    assert diff.startswith("Stack CrystalCanary\n"), err.getvalue()[-3000:]
    (rule,) = resource_lines(diff)
    assert rule.startswith("[~] AWS::VpcLattice::Rule Router/WeightedRule ")
    removed = re.findall(r'\[-\]\s+"Weight": (\d+)', diff)
    added = re.findall(r'\[\+\]\s+"Weight": (\d+)', diff)
    assert (removed, added) == (["90", "10"], ["50", "50"])
    assert "Number of stacks with differences: 1" in diff


def test_the_extra_context_reaches_both_synths_and_the_header(monkeypatch, tmp_path):
    """What the Lattice test above does not run: the tool's synths of a step with `-c` context."""
    started, diffed = [], []

    class RecordingSynths:
        def __init__(self, env, err, stack):
            assert "AWS_PROFILE" not in env and env["AWS_EC2_METADATA_DISABLED"] == "true"

        def start(self, label, cwd, outdir, context):
            started.append((label, cwd, dict(context)))
            return outdir

        def wait(self):
            pass

        def kill(self):
            pass

    monkeypatch.setattr(cdk_cli, "Synths", RecordingSynths)
    monkeypatch.setattr(cdk_cli, "run_diff", lambda new, old, env, cwd, out, err, stack: diffed.append((new, old)))
    out = io.StringIO()
    offline_diff.diff_weights(tmp_path, "10", "50", {"trafficRouter": "lattice"}, out, io.StringIO())
    assert started == [
        ("canaryWeight=10", tmp_path, {"trafficRouter": "lattice", "canaryWeight": "10"}),
        ("canaryWeight=50", tmp_path, {"trafficRouter": "lattice", "canaryWeight": "50"}),
    ]
    ((new, old),) = diffed
    assert (new.name, old.name, old.parent.name) == ("to", "CrystalCanary.template.json", "from")
    assert out.getvalue() == "CrystalCanary: canaryWeight 10 -> 50 -c trafficRouter=lattice\n"


def test_cli_environment_cannot_reach_an_aws_account():
    env = cdk_cli.offline_env(
        {"AWS_PROFILE": "prod", "AWS_ACCESS_KEY_ID": "AKIA", "CDK_CONTEXT_JSON": "{}", "PATH": "/bin"}
    )
    assert env["PATH"] == "/bin"
    assert not {"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "CDK_CONTEXT_JSON"} & set(env)
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull


CACHE = Path(TMP_ROOT.name) / PACKAGE_CACHE


def worktrees(root: Path) -> str:
    return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=root, capture_output=True, text=True).stdout


def test_base_worktree_shares_the_toolchain_and_is_removed_even_on_failure(tmp_path):
    repository = git_repository(tmp_path, {"cdk.json": "{}\n"})
    for name in git.SHARED_TOOLCHAIN:
        (repository / name).mkdir()  # not committed: each checkout has its own
    extracted = repository / CACHE / "aws-cdk-lib" / "2.0.0" / "0123abcd" / "index.js"
    extracted.parent.mkdir(parents=True)
    extracted.write_text("module.exports = {};\n")
    commit = git.resolve_commit(repository, "HEAD")
    with pytest.raises(RuntimeError):
        with git.worktree(repository, commit, tmp_path) as base:
            assert (base / "cdk.json").is_file() and str(base) in worktrees(repository)
            for name in git.SHARED_TOOLCHAIN:
                assert (base / name).resolve() == (repository / name).resolve()
            # jsii's extracted packages: in the worktree's own folder, the same files (hard links).
            linked = base / extracted.relative_to(repository)
            assert not (base / CACHE).is_symlink() and linked.resolve().is_relative_to(base.resolve())
            assert linked.stat().st_ino == extracted.stat().st_ino
            raise RuntimeError("synthesis failed")
    assert not Path(base).exists()
    assert str(base) not in worktrees(repository)
    assert extracted.read_text() == "module.exports = {};\n"  # the main tree's cache is untouched


def test_a_cache_that_cannot_be_linked_is_left_to_jsii(tmp_path, monkeypatch):
    """Another filesystem (os.link fails with EXDEV): the worktree has no cache folder, and jsii
    extracts what it needs, as before the cache was shared."""
    repository = git_repository(tmp_path, {"cdk.json": "{}\n"})
    (repository / CACHE / "pkg").mkdir(parents=True)
    (repository / CACHE / "pkg" / "file").write_text("x")

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(git.os, "link", cross_device)
    with git.worktree(repository, git.resolve_commit(repository, "HEAD"), tmp_path) as base:
        assert (base / "cdk.json").is_file()
        assert not (base / CACHE).exists()


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


def command_lines(pids: list[int]) -> list[bytes]:
    lines = []
    for pid in pids:
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
        except OSError:
            pass
    return lines


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds:g} s")


# What a run may leave in the project's .cdk-tmp, both kept on purpose for the next run: jsii's
# package cache and the esbuild stub (canary_stack/toolchain.py, hide_workspace_esbuild).
KEPT = {PACKAGE_CACHE, "node_modules"}


def leftovers(project: Path) -> list[str]:
    """What a run left in the project's .cdk-tmp besides what is kept on purpose."""
    folder = project / ".cdk-tmp"
    return sorted(p.name for p in folder.iterdir() if p.name not in KEPT) if folder.exists() else []


def start_tool(project: Path, argv: list[str], tmp_path: Path) -> tuple[subprocess.Popen, str, Path]:
    marker = uuid.uuid4().hex
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TMPDIR"))}
    env.update(TMPDIR=str(temp), OFFLINE_DIFF_TEST_RUN=marker, HOME=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return process, marker, temp


def test_sigterm_stops_every_child_removes_every_temporary_folder_and_exits_130(project, tmp_path):
    process, marker, temp = start_tool(project, ["-m", "canary_stack.ops.offline_diff", "--base", "HEAD"], tmp_path)
    # Wait until both synths run their Python app (the CLI's child): the moment that leaked before.
    wait_for(lambda: sum(b"app.py" in line for line in command_lines(processes_with(marker))) >= 2, "both synths")
    worktree = next(temp.glob("offline-diff-*/base"))
    assert str(worktree) in worktrees(project)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "offline_diff: interrupted: nothing was deployed; temporary files removed"
    assert processes_with(marker) == []  # cdk synth, the Python app, Node.js: all gone
    assert list(temp.iterdir()) == []  # the assemblies and the base worktree's folder
    assert str(worktree) not in worktrees(project)
    assert leftovers(project) == [] and leftovers(worktree) == []


def test_a_promote_stopped_while_it_synthesizes_leaves_nothing_behind(project, tmp_path):
    """SIGTERM once jsii's Node.js kernel runs in the synth's app: no `.cdk-tmp/tmp*` (jsii's runtime),
    no `jsii-kernel-*` folder, no process, and cdk.json as it was (issue 16.15)."""
    before = (project / "cdk.json").read_bytes()
    process, marker, _ = start_tool(project, ["-m", "canary_stack.ops.promote", "--unverified"], tmp_path)
    wait_for(lambda: list((project / ".cdk-tmp").glob("cli-*/run-*/jsii-kernel-*")), "the jsii kernel")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "promote: interrupted: check `git diff cdk.json`"
    assert processes_with(marker) == []
    assert leftovers(project) == []
    assert (project / "cdk.json").read_bytes() == before


def test_the_app_stopped_by_sigterm_removes_its_temporary_folder(project, tmp_path):
    """`python app.py` (as `cdk synth` runs it) and its kernel get SIGTERM together, as from Ctrl-C or a
    CI timeout: the app's exit handlers still remove jsii's runtime and the kernel's folders."""
    from support.synthesis import CLI_CONTEXT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TMPDIR"))}
    context = {**read_context(project).values, **CLI_CONTEXT}
    env.update(CDK_CONTEXT_JSON=json.dumps(context), CDK_OUTDIR=str(tmp_path / "out"), HOME=str(tmp_path))
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    wait_for(lambda: list((project / ".cdk-tmp").glob("run-*/jsii-kernel-*")), "the jsii kernel")
    time.sleep(1.0)  # into the construction, mid-jsii: the kernel dies with the app
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    # No clean-up that asks the dead kernel anything (the output folder was read before).
    assert b"Traceback" not in err, err.decode(errors="replace")[-2000:]
    wait_for(lambda: leftovers(project) == [], "the clean-up", seconds=10)
