"""The CDK app: the App every synthesis uses, the stacks added to it, and its synthesis.

app.py (what `cdk synth` runs) and the tests call these; importing this module loads aws_cdk (and so
starts jsii's Node.js kernel), so `canary_stack.toolchain.prepare_toolchain` must have run first.
Nothing here reads the environment or the context: app.py parses both once and passes them down.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import cx_api
from cdk_nag import AwsSolutionsChecks

from canary_stack.assembly import remove_deployable
from canary_stack.config import CanaryConfig
from canary_stack.constants import CRYSTAL_SRC, PIPELINE_STACK_NAME, STACK_NAME
from canary_stack.pipeline import PipelineStack
from canary_stack.stack import CanaryStack


def create_app(*, context: dict | None = None, outdir: str | None = None) -> cdk.App:
    """The App every synthesis uses, `cdk synth` and the tests alike (they pass cdk.json's context)."""
    return cdk.App(
        context=context,
        outdir=outdir,
        # CDK's built-in validator costs ~10 s of WASM start-up on every synth (every weight step);
        # cfn-lint checks every synthesized template in the test run instead, with the same rules.
        builtin_cloud_formation_validation=False,
    )


def app_config(app: cdk.App) -> CanaryConfig:
    """The configuration for the app's own context (the tests build Apps with a context)."""
    return CanaryConfig.from_context(app.node.try_get_context, keys=list(app.node.get_all_context()))


def build(app: cdk.App, config: CanaryConfig | None = None, *, image_directory: Path | None = None) -> CanaryStack:
    """Adds the stacks for `config` (default: parsed from the app's context) to the app. Raises
    ConfigError on bad input. `image_directory` replaces crystal_src/ (tests use it to change the image)."""
    if config is None:
        config = app_config(app)
    # AWS Solutions checks on every synthesis: an unacknowledged finding fails it.
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = CanaryStack(
        app,
        STACK_NAME,
        config=config,
        image_directory=image_directory or CRYSTAL_SRC,
        # No weight here: a step must change the route and the weight outputs, nothing else.
        description=f"Crystal canary on ECS Fargate ({config.traffic_router} router)",
    )
    if config.pipeline is not None:
        # Its own stack, only with -c pipeline=true: the canary stack never depends on it.
        PipelineStack(
            app,
            PIPELINE_STACK_NAME,
            source=config.pipeline,
            target_stack=STACK_NAME,
            description=f"Delivery pipeline of {STACK_NAME} from {config.pipeline.repository}@{config.pipeline.branch}",
        )
    return stack


def synth(app: cdk.App) -> cx_api.CloudAssembly:
    """`app.synth()`, leaving nothing deployable behind if it fails.

    The CDK writes the templates first and runs the validation plugins (cdk-nag) after: a failed
    validation would leave this run's templates, and a failed run any earlier run's, in the folder
    that `cdk deploy --app cdk.out` deploys.
    """
    folder = Path(app.outdir)  # read now: after an interruption the Node.js side may be gone
    try:
        return app.synth()
    except BaseException:
        remove_deployable(folder)
        raise


class ValidationFailed(Exception):
    """cdk-nag refused the templates; `report` lists every finding, `outdir` holds no template."""

    def __init__(self, report: str, outdir: str) -> None:
        super().__init__(report)
        self.report, self.outdir = report, outdir


def synthesize(config: CanaryConfig, *, context: Mapping[str, Any], outdir: str | None) -> cx_api.CloudAssembly:
    """Builds and synthesizes the app for `config` into `outdir` (None: the CDK's default).

    `context` is all the context the app was given (the feature flags with it), handed to the CDK's
    App as it is: the App would otherwise read CDK_CONTEXT_JSON from the environment of the Node.js
    process, which is the environment jsii started with, not necessarily this process's now.

    Raises ValidationFailed when cdk-nag refuses the templates. A construct that throws leaves
    nothing deployable either, and keeps its traceback (a bug).
    """
    app = create_app(context=dict(context), outdir=outdir)
    # Read once, now: a SIGTERM mid-synthesis ends the process from inside a jsii call, and a
    # clean-up that asked jsii for the folder then would fail with a traceback of its own.
    folder = app.outdir
    try:
        build(app, config)
    except BaseException:
        remove_deployable(Path(folder))
        raise
    try:
        return synth(app)
    except Exception as err:
        if not str(err).startswith("ValidationFailed"):
            raise
        raise ValidationFailed(str(err), folder) from None
