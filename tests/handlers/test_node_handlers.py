"""The Lambda handlers we own (canary_stack/handlers/*.js) run under Node.js's own test runner
(tests/handlers/*.test.js, no npm packages), so `make test` covers them with the Python suite."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
NODE = shutil.which("node")


def library_tarball() -> str:
    """cdk-docker-image-deployment's jsii tarball, which holds the handler image_copy.js replaces
    (found without importing the package, which would start jsii)."""
    spec = importlib.util.find_spec("cdk_docker_image_deployment")
    assert spec is not None and spec.origin is not None, "cdk-docker-image-deployment is a pinned requirement"
    tarballs = sorted((Path(spec.origin).parent / "_jsii").glob("cdk-docker-image-deployment@*.jsii.tgz"))
    assert len(tarballs) == 1, tarballs
    return str(tarballs[0])


@pytest.mark.skipif(NODE is None, reason="node is not installed: the Lambda handler tests need Node.js >= 20")
def test_node_handler_tests_pass() -> None:
    assert NODE is not None
    files = sorted(str(p.relative_to(ROOT)) for p in HERE.glob("*.test.js"))
    assert {Path(f).name for f in files} >= {"image_copy.test.js", "tag_image.test.js", "library_contract.test.js"}
    # Explicit files, not the directory: Node 20 and Node 22+ read a directory argument differently.
    result = subprocess.run(
        [NODE, "--test", "--test-reporter=tap", *files],
        cwd=ROOT,
        env={**os.environ, "LIBRARY_JSII_TGZ": library_tarball()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = dict(re.findall(r"^# (tests|pass|fail|skipped) (\d+)$", result.stdout, re.M))
    failures = "\n".join(line for line in result.stdout.splitlines() if "not ok" in line)
    assert result.returncode == 0, f"{failures}\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    # A run that found no tests exits 0 too; here the library is installed, so nothing may skip.
    assert int(summary.get("tests", "0")) >= 50, summary
    assert summary.get("fail") == "0" and summary.get("skipped") == "0", summary
    assert summary["pass"] == summary["tests"], summary
