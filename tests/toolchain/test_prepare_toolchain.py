"""prepare_toolchain's environment for jsii: the same however often a process prepares it.

The tests' conftest, the deploy check's app and the tools each prepare the toolchain; the environment
they leave decides what jsii prints, and it is part of what a kept synthesis is keyed on
(tests/support/synthesis_cache.py): a variable that grew with every call made the key depend on how
many modules of the session prepared it.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from canary_stack import toolchain

BANNER = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"


@pytest.fixture
def environ(tmp_path, monkeypatch) -> dict[str, str]:
    monkeypatch.setattr(toolchain, "TMP_ROOT", tmp_path / ".cdk-tmp")
    return {"PATH": os.environ["PATH"]}


def node_major() -> str:
    return subprocess.run(
        ["node", "-p", "process.versions.node.split('.')[0]"], capture_output=True, text=True
    ).stdout.strip()


def test_preparing_again_names_the_running_node_major_once(environ):
    toolchain.prepare_toolchain(environ)
    first = dict(environ)
    toolchain.prepare_toolchain(environ)
    toolchain.prepare_toolchain(environ)
    assert environ[BANNER] == first[BANNER] == node_major()


@pytest.mark.parametrize("user_set", ["18, 22", "1", "18,,22"])
def test_the_user_s_own_majors_stay_and_the_running_one_is_added_once(environ, user_set):
    environ[BANNER] = user_set
    toolchain.prepare_toolchain(environ)
    toolchain.prepare_toolchain(environ)
    listed = [v.strip() for v in environ[BANNER].split(",")]
    assert listed == [v.strip() for v in user_set.split(",") if v.strip()] + [node_major()]


def test_a_user_value_that_names_the_running_major_is_left_as_it_is(environ):
    environ[BANNER] = f"18,{node_major()}"
    toolchain.prepare_toolchain(environ)
    assert environ[BANNER] == f"18,{node_major()}"
