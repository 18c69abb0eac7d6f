"""What may be deployed, checked the same way by `make deploy`, rollout and the pipeline.

AWS App Mesh reached its end of support on 2026-09-30: the `appmesh` router stays a complete,
synthesized and tested reproduction of the workshop, but a deploy of it cannot succeed, so every
deploying tool refuses it before anything is built or uploaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from canary_stack.config import CanaryConfig, ConfigError
from canary_stack.constants import APP_MESH_REFUSAL as END_OF_SUPPORT
from canary_stack.constants import CDK_CLI
from canary_stack.ops.cli import UsageError
from canary_stack.ops.committed import committed_context

APP_MESH_REFUSAL = f"trafficRouter=appmesh: {END_OF_SUPPORT}"

# What makes a folder a deployable cloud assembly: the manifest, and the templates and asset
# manifests it points at. Only the folder's top level: `-o` may name a folder holding other files.
DEPLOYABLE = ("manifest.json", "*.template.json", "*.assets.json")


def remove_deployable(outdir: Path) -> list[Path]:
    """Deletes the cloud assembly's manifest, templates and asset manifests from `outdir`: after a
    failed synthesis nothing there may be deployed with `cdk deploy --app <outdir>`."""
    removed = [path for pattern in DEPLOYABLE for path in sorted(outdir.glob(pattern)) if path.is_file()]
    for path in removed:
        path.unlink()
    return removed


def require_credentials(command: str, session_factory: Callable[[], Any] | None = None) -> None:
    """UsageError when the AWS SDK's credential chain (environment, AWS_PROFILE, SSO, container or
    instance role: the chain the CDK CLI walks) finds nothing, so a deploy that cannot reach an
    account stops before the CLI builds and stages every asset. Expired credentials still get as
    far as the CLI, which says so."""
    import boto3  # here: `make synth` and `make diff` never need it

    session = (session_factory or boto3.session.Session)()
    if session.get_credentials() is None:
        raise UsageError(
            f"{command} deploys to an AWS account and found no AWS credentials: nothing was built; "
            "set AWS_PROFILE (or run `aws configure` / `aws sso login`) and try again"
        )


def app_config(root: Path, context: Mapping[str, str]) -> CanaryConfig:
    """The app's configuration for cdk.json's context overridden by `context` (the -c values), as
    `cdk synth` would build it. Raises ConfigError for a value the app refuses (the app's own line)
    and UsageError for an unreadable cdk.json."""
    merged = {**committed_context(root), **context}
    return CanaryConfig.from_context(merged.get, keys=list(merged))


def deploy_config(root: Path, context: Mapping[str, str]) -> CanaryConfig:
    """`app_config`, and UsageError for a router that cannot be deployed."""
    config = app_config(root, context)
    if config.traffic_router == "appmesh":
        raise UsageError(APP_MESH_REFUSAL)
    return config


def deploy_argv(stack: str, context: Mapping[str, str]) -> list[str]:
    """`cdk deploy` of one stack, no approval prompt (the caller decided), context as -c values."""
    argv = [CDK_CLI, "deploy", stack, "--require-approval", "never", "--no-notices"]
    for key, value in context.items():
        argv += ["-c", f"{key}={value}"]
    return argv


__all__ = ["APP_MESH_REFUSAL", "ConfigError", "app_config", "deploy_argv", "deploy_config"]
