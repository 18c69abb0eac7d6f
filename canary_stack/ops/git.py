"""git, run the one way every tool runs it: no shell, no prompt, stdin closed, one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from canary_stack.ops.cli import Failed, UsageError, one_line
from canary_stack.text import shorten
from canary_stack.toolchain import PACKAGE_CACHE, TMP_ROOT

# The main tree's toolchain, reused by a worktree of another revision instead of reinstalling it.
SHARED_TOOLCHAIN = (".venv", "node_modules")


class GitError(Failed):
    """git failed (or is not there); the message is one line."""


def git(root: Path, *args: str) -> str:
    """`git ARGS` in `root`; its stdout without the final line break. GitError (one line) on failure."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=root,
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    if result.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {one_line(result.stderr) or f'exit {result.returncode}'}")
    return result.stdout.rstrip("\n")


def is_repository(root: Path) -> bool:
    """Whether `root` is inside a git work tree (a plain export of the project is not)."""
    try:
        return git(root, "rev-parse", "--is-inside-work-tree") == "true"
    except GitError:
        return False


def resolve_commit(root: Path, rev: str, option: str = "--base") -> str:
    """The commit `rev` names; UsageError naming `option` for anything else (never read as an option)."""
    if rev.startswith("-") or not rev.strip() or any(not c.isprintable() for c in rev):
        raise UsageError(f"{option} must be a git revision, got {shorten(rev)}")
    if not is_repository(root):
        raise UsageError(f"{option} needs a git repository: {root} is not one (a plain export has no history)")
    try:
        return git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    except GitError:
        raise UsageError(f"{option} must be a git revision of this repository, got {shorten(rev)}") from None


@contextmanager
def worktree(root: Path, commit: str, parent: Path) -> Iterator[Path]:
    """A detached worktree of `commit` in `parent`/base sharing the main tree's .venv and node_modules,
    and jsii's package cache (`link_package_cache`).

    Removed afterwards whatever happens (`git worktree prune` catches a half-added one).
    """
    path = parent / "base"
    try:
        git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
        for name in SHARED_TOOLCHAIN:
            if (root / name).exists() and not (path / name).exists():
                (path / name).symlink_to(root / name, target_is_directory=True)
        link_package_cache(root, path)
        yield path
    finally:
        _quietly(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(path, ignore_errors=True)
        _quietly(root, "worktree", "prune")


def link_package_cache(root: Path, worktree: Path) -> None:
    """Gives `worktree` the main tree's jsii package cache as hard links, so its synth does not extract
    aws-cdk-lib again (about 300 MB, 3 s of a `make diff`). The cache must sit inside the worktree
    itself, not behind a symlink: the bundled handlers' asset hashes depend on its path relative to
    the project (canary_stack/toolchain.py). jsii never changes an entry it has completed and only
    trusts one with its completion mark, so a half-extracted entry is extracted again, in the worktree
    alone. Another filesystem (no hard links) or a file removed meanwhile: jsii extracts what it needs."""
    source = root / TMP_ROOT.name / PACKAGE_CACHE
    if not source.is_dir():
        return
    target = worktree / TMP_ROOT.name / PACKAGE_CACHE
    try:
        shutil.copytree(source, target, symlinks=True, copy_function=os.link)
    except OSError:  # shutil.Error included
        shutil.rmtree(target, ignore_errors=True)


def _quietly(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, capture_output=True, stdin=subprocess.DEVNULL)


def unclean_paths(root: Path, pathspecs: list[str]) -> list[str]:
    """Paths matching `pathspecs` whose content git does not vouch for: changed, staged, untracked,
    ignored, or hidden from `git status` (skip-worktree, assume-unchanged). Empty: they are HEAD's."""
    status = git(root, "status", "--porcelain", "--untracked-files=all", "--ignored=matching", "--", *pathspecs)
    paths = [line[3:] for line in status.splitlines() if line.strip()]
    # `git ls-files -v`: a lowercase tag is assume-unchanged, `S` is skip-worktree; git status shows neither.
    for line in git(root, "ls-files", "-v", "--", *pathspecs).splitlines():
        tag, _, path = line.partition(" ")
        if tag == "S" or tag.islower():
            paths.append(path)
    return sorted(set(paths))
