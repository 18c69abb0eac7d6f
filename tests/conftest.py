"""Shared fixtures. The synthesis itself lives in tests/synthesis.py (importable by test modules)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from synthesis import Synthesis, cdk_json_context, synthesize

from canary_stack.config import DEFAULTS


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
    committed = cdk_json_context()
    implied = {key: as_cli_value(committed.get(key, DEFAULTS.get(key))) for key in cli_context}
    return tuple(sorted((k, v) for k, v in cli_context.items() if v != implied[k]))


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synthesis]:
    """Returns `synth(**context)`; each distinct configuration is synthesized once per test session."""
    cache: dict[tuple, Synthesis] = {}

    def get(**cli_context: str) -> Synthesis:
        key = configuration_key(cli_context)
        if key not in cache:
            name = "synth-" + ("-".join(f"{k}-{v}" for k, v in key) or "default")
            safe = re.sub(r"[^A-Za-z0-9=-]+", "_", name)[:60]
            cache[key] = synthesize(tmp_path_factory.mktemp(safe), **dict(key))
        return cache[key]

    return get
