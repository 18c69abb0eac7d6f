"""Shared fixtures. The synthesis itself lives in tests/synthesis.py (importable by test modules)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import pytest
from synthesis import Synthesis, synthesize

# Nothing a test starts may look for credentials at the EC2 instance metadata address: off EC2 it
# is nobody's, and the tests never deploy. (The AWS SDKs, boto3 and the CDK CLI's, honour this.)
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synthesis]:
    """Returns `synth(**context)`; each distinct context is synthesized once per test session."""
    cache: dict[tuple, Synthesis] = {}

    def get(**cli_context: str) -> Synthesis:
        key = tuple(sorted(cli_context.items()))
        if key not in cache:
            name = "synth-" + ("-".join(f"{k}-{v}" for k, v in key) or "default")
            safe = re.sub(r"[^A-Za-z0-9=-]+", "_", name)[:60]
            cache[key] = synthesize(tmp_path_factory.mktemp(safe), **cli_context)
        return cache[key]

    return get
