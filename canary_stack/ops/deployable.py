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
from canary_stack.context import COMMAND_LINE, read_context
from canary_stack.ops.cli import UsageError

APP_MESH_REFUSAL = f"trafficRouter=appmesh: {END_OF_SUPPORT}"


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
    """The app's configuration for every context source the CDK CLI reads in `root` (cdk.json,
    cdk.context.json, ~/.cdk.json) under `context` (the -c values), as `cdk synth` would build it.
    Raises ConfigError for a value the app refuses (naming the file it came from) or a context file
    that cannot be read."""
    return read_context(root, context).config()


def deploy_config(root: Path, context: Mapping[str, str]) -> CanaryConfig:
    """`app_config`, and UsageError for a router that cannot be deployed (naming where it was set)."""
    merged = read_context(root, context)
    config = merged.config()
    if config.traffic_router == "appmesh":
        origin = merged.origin("trafficRouter")
        raise UsageError(APP_MESH_REFUSAL if origin in (None, COMMAND_LINE) else f"{origin}: {APP_MESH_REFUSAL}")
    return config


__all__ = ["APP_MESH_REFUSAL", "ConfigError", "app_config", "deploy_config", "require_credentials"]
