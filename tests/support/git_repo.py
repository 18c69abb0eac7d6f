"""Git repositories the tests build themselves, so the suite passes on a plain export of the project
(the zip a user downloads, or what CodePipeline hands CodeBuild): no test needs the checkout's .git.

* `git_repository(folder, files)`: a repository holding `files` in one commit;
* `project_repository(folder)`: a copy of the project (its files, not its history) in one commit,
  sharing the checkout's toolchain (.venv, node_modules), for a tool that synthesizes;
* `project_export(folder)`: the same copy without git, as a downloaded zip has it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from canary_stack.constants import PROJECT_ROOT

# Not part of the project's files: the toolchain (linked instead), caches and outputs.
SKIPPED = {".git", ".venv", ".venv-checkov", "node_modules", ".cdk-tmp", "cdk.out", "build", ".mypy_cache"}
SKIPPED_ANYWHERE = {"__pycache__", ".pytest_cache", "bin", "lib", ".crystal-cache"}
TOOLCHAIN = (".venv", ".venv-checkov", "node_modules")
# A fixed author and date: the commit is the same on every machine, and git needs no configuration.
IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
}


def git(folder: Path, *args: str) -> str:
    env = {**os.environ, **IDENTITY, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    result = subprocess.run(["git", *args], cwd=folder, env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def commit_all(folder: Path, message: str = "test") -> str:
    """`git init` (if needed), add everything and commit; returns the commit."""
    if not (folder / ".git").exists():
        git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "--allow-empty", "-m", message)
    return git(folder, "rev-parse", "HEAD")


def git_repository(folder: Path, files: Mapping[str, str]) -> Path:
    """A repository in `folder`/repo holding `files` (path -> text) in one commit."""
    repository = folder / "repo"
    for name, text in files.items():
        path = repository / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    repository.mkdir(parents=True, exist_ok=True)
    commit_all(repository)
    return repository


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == PROJECT_ROOT
    return {n for n in names if n in SKIPPED_ANYWHERE or (top and n in SKIPPED)}


def project_export(folder: Path) -> Path:
    """The project's files copied into `folder`/project, as a plain export has them (no .git), with
    the toolchain linked."""
    copy = folder / "project"
    shutil.copytree(PROJECT_ROOT, copy, ignore=_ignore, symlinks=True)
    for name in TOOLCHAIN:
        if (PROJECT_ROOT / name).exists():
            (copy / name).symlink_to((PROJECT_ROOT / name).resolve(), target_is_directory=True)
    return copy


def project_repository(folder: Path) -> Path:
    """The project's files copied into `folder`/project and committed, the toolchain linked."""
    copy = project_export(folder)
    commit_all(copy, "the project")  # .gitignore keeps the toolchain's links out
    return copy
