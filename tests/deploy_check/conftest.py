"""The deploy check's app, synthesized once per test session in-process (no AWS credentials), with
the context `cdk deploy --app 'python -m integ.integ_canary'` gives it: cdk.json's and the CLI's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from support.synthesis import CLI_CONTEXT, cdk_json_context


@dataclass(frozen=True)
class IntegSynthesis:
    outdir: Path
    templates: dict[str, dict]


def synthesize_integ(tmp_path_factory: pytest.TempPathFactory, router: str) -> IntegSynthesis:
    from canary_stack import cdk_app
    from integ.integ_canary import build_integ

    outdir = tmp_path_factory.mktemp(f"integ-synth-{router}")
    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT}, outdir=str(outdir))
    build_integ(app, router)
    assembly = app.synth()
    return IntegSynthesis(outdir=outdir, templates={s.stack_name: s.template for s in assembly.stacks})


@pytest.fixture(scope="session")
def integ_synth(tmp_path_factory: pytest.TempPathFactory) -> IntegSynthesis:
    """`make integ`: the default router."""
    return synthesize_integ(tmp_path_factory, "alb")


@pytest.fixture(scope="session")
def integ_synth_lattice(tmp_path_factory: pytest.TempPathFactory) -> IntegSynthesis:
    """`make integ ROUTER=lattice`."""
    return synthesize_integ(tmp_path_factory, "lattice")
