"""Every log group of the app: one retention, long enough to compare a canary with production."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

RETENTION = logs.RetentionDays.ONE_MONTH


def log_group(scope: Construct, id: str, *, removal_policy: RemovalPolicy = RemovalPolicy.DESTROY) -> logs.LogGroup:
    """A log group kept for RETENTION; by default deleted with the stack (the logs are diagnostics)."""
    return logs.LogGroup(scope, id, retention=RETENTION, removal_policy=removal_policy)
