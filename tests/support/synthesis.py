"""Synthesize the app in-process exactly as `cdk synth` does (the `synth` fixture caches it per configuration).

`cdk synth` gives the app cdk.json's context (the feature flags and the committed canaryWeight),
the CLI's own switches (path and asset metadata, version reporting), and `-c` values as strings.
`synthesize` does the same, so what the tests assert is what a reviewer reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.constants import STACK_NAME
from canary_stack.ops.committed import committed_context

# What the CDK CLI adds to the context of every `cdk synth` (its defaults for --path-metadata,
# --asset-metadata, --version-reporting and the stacks to bundle).
CLI_CONTEXT: dict[str, Any] = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
    "aws:cdk:bundling-stacks": ["**"],
}


def cdk_json_context() -> dict[str, Any]:
    """cdk.json's context as the CDK CLI hands it to the app (the tools read it the same way)."""
    return committed_context(ROOT)


@dataclass(frozen=True)
class Synthesis:
    """One synthesized configuration: the templates by stack name, and the cloud assembly folder."""

    outdir: Path
    templates: dict[str, dict]

    @property
    def template(self) -> dict:
        return self.templates[STACK_NAME]

    def resources(self, type_: str, stack: str = STACK_NAME) -> dict[str, dict]:
        return {k: v for k, v in self.templates[stack]["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str, stack: str = STACK_NAME) -> dict:
        found = self.resources(type_, stack)
        assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
        return next(iter(found.values()))


def app_context(**cli_context: str) -> dict[str, Any]:
    """All the context `cdk synth -c key=value ...` gives the app: cdk.json's, the CLI's own, the -c values."""
    return {**cdk_json_context(), **CLI_CONTEXT, **cli_context}


def synthesize(outdir: Path, **cli_context: str) -> Synthesis:
    """`cdk synth -c key=value ...` in-process: `cli_context` values are strings, as from the CLI."""
    # Here, not at the top: importing aws_cdk starts jsii's Node.js kernel, which a test module that
    # only needs ROOT or CLI_CONTEXT (the tools' tests, the export's pytest) should not pay for.
    from canary_stack import cdk_app

    app = cdk_app.create_app(context=app_context(**cli_context), outdir=str(outdir))
    cdk_app.build(app)
    assembly = app.synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return Synthesis(outdir=outdir, templates=templates)
