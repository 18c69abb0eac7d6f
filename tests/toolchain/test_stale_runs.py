"""A run killed outright (SIGKILL, a power cut) cannot remove its folder in .cdk-tmp/ (jsii's runtime,
the Node.js kernel's folders, ~2 MB each); the next app run or offline CLI run removes it once it is
a day old, and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

from canary_stack import toolchain
from canary_stack.ops import cdk_cli

DAY = 24 * 3600


def aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def run_folder(parent: Path, name: str, age: float) -> Path:
    folder = parent / name
    (folder / "jsii-kernel-abc").mkdir(parents=True)
    (folder / "jsii-kernel-abc" / "program.js").write_text("// jsii's runtime\n")
    return aged(folder, age)


def test_only_run_folders_untouched_for_a_day_are_removed(tmp_path):
    tmp = tmp_path / ".cdk-tmp"
    killed = [run_folder(tmp, "run-killed", 2 * DAY), run_folder(tmp, "cli-killed", DAY + 60)]
    live = [run_folder(tmp, "run-live", 60), run_folder(tmp, "cli-live", DAY - 600)]
    kept = [run_folder(tmp, toolchain.PACKAGE_CACHE, 30 * DAY), run_folder(tmp, "node_modules", 30 * DAY)]
    not_a_folder = tmp / "run-notes.txt"
    not_a_folder.write_text("a user's file")
    aged(not_a_folder, 30 * DAY)
    elsewhere = run_folder(tmp_path, "outside", 30 * DAY)
    link = tmp / "run-link"
    link.symlink_to(elsewhere, target_is_directory=True)

    assert toolchain.remove_stale_runs(tmp) == sorted(killed)
    assert sorted(tmp.iterdir()) == sorted([*live, *kept, not_a_folder, link])
    assert (elsewhere / "jsii-kernel-abc" / "program.js").is_file()  # a link is never followed


def test_a_missing_folder_is_nothing_to_remove(tmp_path):
    assert toolchain.remove_stale_runs(tmp_path / "none") == []


def test_an_offline_cli_run_removes_a_killed_run_s_folder(tmp_path):
    killed = run_folder(tmp_path / ".cdk-tmp", "cli-killed", 2 * DAY)
    fresh = cdk_cli.run_folder(tmp_path)
    assert not killed.exists()
    assert [p.name for p in (tmp_path / ".cdk-tmp").iterdir()] == [fresh.name]


def test_every_app_run_removes_a_killed_run_s_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain, "TMP_ROOT", tmp_path / ".cdk-tmp")
    killed = run_folder(tmp_path / ".cdk-tmp", "run-killed", 2 * DAY)
    environ = {"PATH": os.environ["PATH"]}
    fresh = toolchain.prepare_toolchain(environ)
    assert not killed.exists()
    assert fresh.parent == tmp_path / ".cdk-tmp" and fresh.is_dir()
    assert environ["TMPDIR"] == str(fresh)
