#!/usr/bin/env python3
"""The CDK app's entry point, and the only place that reads context or the environment.

It parses the context once into a typed `CanaryConfig` (canary_stack/config.py) and hands plain
values down. A bad value stops synthesis with one line, exit code 2 and no template; a synthesis
that fails validation (cdk-nag) exits 1. Either way the output folder is left with nothing that
`cdk deploy --app <folder>` could ship: a previous run's templates are removed too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from canary_stack.constants import PROJECT_ROOT as ROOT  # imports nothing heavy


def prepare_toolchain(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Sets up the Node.js side of the CDK before jsii starts it (that is, before aws_cdk is imported).

    cdk-docker-image-deployment bundles its Lambda handlers with esbuild at synth time:
    * esbuild comes from this project's node_modules (package-lock.json pins it), so it is put on
      PATH even when the app is run as `python app.py` rather than through `npx cdk`;
    * the handler sources live in jsii's temporary directory and package cache, and bundling refuses
      an entry point outside the project root (the one holding package-lock.json): "entryPath ...
      should be under projectRoot". Both are therefore kept inside the project, in .cdk-tmp/.
    """
    tmp = ROOT / ".cdk-tmp"
    tmp.mkdir(exist_ok=True)
    environ["TMPDIR"] = str(tmp)
    # The bundle records its sources by their path relative to the project. With jsii's package
    # cache in the home directory that path depends on where the checkout is (a CI clone, a
    # worktree), and so would the handlers' asset hashes; inside the project it does not.
    environ["JSII_RUNTIME_PACKAGE_CACHE_ROOT"] = str(tmp / "jsii-package-cache")
    node_bin = str(ROOT / "node_modules" / ".bin")
    if node_bin not in environ.get("PATH", "").split(os.pathsep):
        environ["PATH"] = node_bin + os.pathsep + environ.get("PATH", "")
    # The library calls a deprecated CDK API (GrantOnPrincipalOptions#scope) on every synth; that
    # is its to fix, and the warning would bury ours.
    environ.setdefault("JSII_DEPRECATED", "quiet")
    # jsii prints a banner on Node.js 20 (out of its support since 2026-10-30) on every run. Synthesis
    # works on it; the README recommends Node.js 22+. The variable is a list of majors: the running one
    # is added to whatever the user set (`1` would otherwise bring the banner back over our one-line errors).
    name, node = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", environ.get("JSII_NODE", "node")
    argv = [node, "-p", "process.versions.node.split('.')[0]"]
    major = subprocess.run(argv, capture_output=True, text=True).stdout if shutil.which(node) else ""
    environ[name] = ",".join(filter(None, [environ.get(name, ""), major.strip()]))


prepare_toolchain()

import aws_cdk as cdk  # noqa: E402  (must come after prepare_toolchain)
from aws_cdk import cx_api  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from canary_stack.config import CanaryConfig, ConfigError  # noqa: E402
from canary_stack.constants import CRYSTAL_SRC, PIPELINE_STACK_NAME, STACK_NAME  # noqa: E402
from canary_stack.ops.deployable import remove_deployable  # noqa: E402
from canary_stack.pipeline import PipelineStack  # noqa: E402
from canary_stack.stack import CanaryStack  # noqa: E402


def create_app(*, context: dict | None = None, outdir: str | None = None) -> cdk.App:
    """The App every synthesis uses, `cdk synth` and the tests alike (they pass cdk.json's context)."""
    return cdk.App(
        context=context,
        outdir=outdir,
        # CDK's built-in validator costs ~10 s of WASM start-up on every synth (every weight step);
        # cfn-lint checks every synthesized template in the test run instead, with the same rules.
        builtin_cloud_formation_validation=False,
    )


def build(app: cdk.App, *, image_directory: Path | None = None) -> CanaryStack:
    """Parses the app's context and adds the stacks to it. Raises ConfigError on bad input.

    `image_directory` replaces crystal_src/ (tests use it to change the image).
    """
    config = CanaryConfig.from_context(app.node.try_get_context, keys=list(app.node.get_all_context()))
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
    try:
        return app.synth()
    except BaseException:
        remove_deployable(Path(app.outdir))
        raise


def main() -> int:
    # Under the CLI the output folder is CDK_OUTDIR (cdk.out, or -o). Read here, not left to the
    # CDK: it is the folder that must be cleaned when synthesis fails.
    app = create_app(outdir=os.environ.get("CDK_OUTDIR") or None)
    try:
        build(app)
    except ConfigError as err:
        remove_deployable(Path(app.outdir))
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BaseException:
        remove_deployable(Path(app.outdir))  # a construct that throws fails the synth all the same
        raise
    try:
        synth(app)
    except Exception as err:
        if not str(err).startswith("ValidationFailed"):
            raise  # a bug: keep its traceback
        # The validation report (every unacknowledged finding, each with its fix), not a traceback.
        print(str(err), file=sys.stderr)
        print("error: synthesis failed validation; no template was left in " + app.outdir, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
