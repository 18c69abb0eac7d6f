"""Shared fixtures. The synthesis itself lives in tests/support/synthesis.py (importable by test modules)."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from support.aws_models import share_service_models
from support.synthesis_cache import read_inputs, synthesize_once

from canary_stack.config import DEFAULTS
from canary_stack.constants import PROJECT_ROOT
from canary_stack.ops.committed import committed_context
from canary_stack.toolchain import prepare_toolchain, remove_at_exit

# Before any test module imports aws_cdk (canary_stack.cdk_app), as app.py does before it synthesizes.
remove_at_exit(prepare_toolchain(os.environ), exit_on_sigterm=False)

if TYPE_CHECKING:  # synthesis imports aws_cdk: not in pytest-xdist's controller, which runs no test
    from support.synthesis import Synthesis


def as_cli_value(value: Any) -> str | None:
    """How `-c key=value` spells a cdk.json or DEFAULTS value (None: it has no spelling)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def configuration_key(cli_context: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The configuration `cli_context` stands for: a value the app would get anyway (cdk.json's, else
    the default) is left out, so `synth(trafficRouter="alb", canaryWeight="10")` and
    `synth(canaryWeight="10")` are one synthesis while alb is the default. That both parse to the same
    CanaryConfig (the only thing app.build() reads) is proven in tests/stack/test_config.py."""
    committed = committed_context(PROJECT_ROOT)
    implied = {key: as_cli_value(committed.get(key, DEFAULTS.get(key))) for key in cli_context}
    return tuple(sorted((k, v) for k, v in cli_context.items() if v != implied[k]))


# Nothing a test starts may look for credentials at the EC2 instance metadata address: off EC2 it
# is nobody's, and the tests never deploy. (The AWS SDKs, boto3 and the CDK CLI's, honour this.)
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# A suite started with Ctrl-C ignored (a background job of a non-interactive shell, nohup, some CI
# runners) would pass that on to every process a test starts, and the tests of Ctrl-C would fail for
# no fault of the tools: this process takes SIGINT back, so it and what it starts get Python's default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Every mock_aws() makes a new boto3 session: they share botocore's parsed service models.
share_service_models()
# PYTHONDONTWRITEBYTECODE (set on some machines, this project's among them) would make every
# pytest-xdist worker rewrite every test module's asserts again on every run (a worker's collection:
# 3.3 s, 2.1 s with them kept), and every tool a test starts compile the package again: the suite
# and what it starts keep their bytecode, as Python does by default, in __pycache__/ folders
# (.gitignore'd; no asset folder holds Python, and the image's hash leaves __pycache__/ out:
# tests/stack/test_image_context.py).
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# What this session's syntheses read besides their context, read once the environment above is set
# and before any test module imports the app's modules (support/synthesis_cache.py).
SYNTHESIS_INPUTS = read_inputs()


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synthesis]:
    """Returns `synth(**context)`; each distinct configuration is synthesized once per test session,
    or copied from build/synth/ when an earlier session synthesized it from the same inputs
    (support/synthesis_cache.py: the sources, the packages, the context)."""
    cache: dict[tuple, Synthesis] = {}

    def get(**cli_context: str) -> Synthesis:
        key = configuration_key(cli_context)
        if key not in cache:
            name = "synth-" + ("-".join(f"{k}-{v}" for k, v in key) or "default")
            safe = re.sub(r"[^A-Za-z0-9=-]+", "_", name)[:60]
            cache[key] = synthesize_once(SYNTHESIS_INPUTS, tmp_path_factory.mktemp(safe), **dict(key))
        return cache[key]

    return get


# How pytest-xdist splits tests/stack/: two units of work, each on one worker, whose modules share
# configurations through the session-cached `synth` (each is synthesized once per unit). The scanners
# and the pipeline (checkov, cfn-lint, moto) against the template assertions: about even halves.
STACK = "tests/stack/"
SCANNERS_AND_PIPELINE = {
    "test_checkov.py",
    "test_lint_and_nag.py",
    "test_pipeline.py",
    "test_pipeline_iam.py",
    "test_config.py",
}


def work_unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if not path.startswith(STACK):
        return path  # a module of its own: its module fixtures (a CLI synth, a scan, a server) run once
    return STACK + ("scanners and pipeline" if path.removeprefix(STACK) in SCANNERS_AND_PIPELINE else "templates")


# The longest units first (serial seconds, measured per test on each worker), so that none of them
# starts last and keeps one worker busy while the other has nothing left; the rest follow in collection
# order. The two halves of tests/stack/ first: with nothing kept (a fresh clone, a change to the app)
# they synthesize every configuration; with build/scans/ and build/synth/ kept, about 30 s and 15 s.
LONGEST_FIRST = [
    STACK + "scanners and pipeline",  # ~37 s (checkov and cfn-lint cold; ~30 s with build/scans/ and build/synth/)
    STACK + "templates",  # ~35 s (~15 s with build/synth/)
    "tests/e2e/test_offline_diff.py",  # ~18 s: a whole tool run (two CLI synths), three stopped runs
    "tests/e2e/test_cdk_cli.py",  # ~10 s: the real CLI
    "tests/units/test_router_contract.py",  # ~6 s: a bare Stack for every router (and a cold kernel)
    "tests/tools/test_rollout_probe.py",  # ~11 s
    "tests/units/test_service.py",  # ~9 s
    "tests/tools/test_verify_hostile.py",  # ~8 s, mostly waiting out deadlines
    "tests/units/test_observability.py",  # ~7 s
    "tests/deploy_check/test_make_integ.py",
    "tests/tools/test_rollout.py",
    "tests/tools/test_verify.py",
    "tests/e2e/test_export.py",
    "tests/crystal/test_crystal_robustness.py",  # wrk
    "tests/tools/test_bad_input.py",
    "tests/crystal/test_crystal_endpoints.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Orders the work units LONGEST_FIRST (a stable sort: each module stays in one piece, in order)."""
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` (pytest.ini) with tests/stack/ in the two units of `work_unit`, handed out in
    collection order (LONGEST_FIRST), not by number of tests. (`--dist loadgroup` would say this with
    marks, but xdist 3.8.0's grouping is lost on pytest 9.2:
    https://github.com/pytest-dev/pytest-xdist/issues/1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False

    class LoadFileSharingSynthesis(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return LoadFileSharingSynthesis(config, log)
