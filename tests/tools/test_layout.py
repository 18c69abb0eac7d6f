"""The operator tools stand apart from the constructs: they never start Node.js (jsii)."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest

import canary_stack.ops
from canary_stack.constants import PROJECT_ROOT as ROOT

TOOLS = sorted(m.name for m in pkgutil.iter_modules(canary_stack.ops.__path__))
HEAVY = ("aws_cdk", "jsii", "constructs", "cdk_nag", "cdk_docker_image_deployment")


def test_the_tools_are_where_the_readme_says():
    assert {
        "cdk_cli",
        "cli",
        "command",
        "committed",
        "deployable",
        "files",
        "git",
        "make",
        "offline_diff",
        "promote",
        "rollout",
        "stats",
        "verify",
    } <= set(TOOLS)


def test_importing_every_tool_loads_no_cdk():
    # A fresh interpreter: this test process has aws_cdk loaded already.
    code = (
        "import importlib, json, sys\n"
        f"for name in {TOOLS!r}: importlib.import_module('canary_stack.ops.' + name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize("tool", ["verify", "rollout", "offline_diff", "promote", "committed"])
def test_help_is_the_documented_entry_point(tool):
    result = subprocess.run(
        [sys.executable, "-m", f"canary_stack.ops.{tool}", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m canary_stack.ops.{tool}")
