"""The suite's git-dependent tests pass on a plain export of the project (a downloaded zip, or the
files CodePipeline hands CodeBuild): no .git, and no repository above it. Each of them builds the
repository it needs (tests/support/git_repo.py); this runs them in an export, in a pytest of its own."""

from __future__ import annotations

import os
import subprocess
import sys

from support.git_repo import project_export

# Every test that runs git, and nothing slow (the SIGTERM runs synthesize: tests/e2e/test_offline_diff.py).
GIT_DEPENDENT = [
    "tests/tools/test_promote.py",
    "tests/tools/test_committed.py",
    "tests/tools/test_bad_input.py::test_offline_diff",
    "tests/tools/test_bad_input.py::test_promote",
    "tests/e2e/test_offline_diff.py::test_base_worktree_shares_the_toolchain_and_is_removed_even_on_failure",
    "tests/deploy_check/test_make_integ.py::test_make_integ_empties_no_folder_outside_build",
]


def test_the_git_dependent_tests_pass_on_a_plain_export(tmp_path):
    export = project_export(tmp_path)
    assert not (export / ".git").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "GIT_"))}
    # git must not find a repository above the export (a temporary folder may sit inside a checkout).
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *GIT_DEPENDENT],
        cwd=export,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1] and "failed" not in result.stdout.splitlines()[-1]
