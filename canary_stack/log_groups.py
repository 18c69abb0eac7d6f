"""Every log group of the app: one retention, long enough to compare a canary with production."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from canary_stack.nag import skip_checkov

RETENTION = logs.RetentionDays.ONE_MONTH


def log_group(scope: Construct, id: str, *, removal_policy: RemovalPolicy = RemovalPolicy.DESTROY) -> logs.LogGroup:
    """A log group kept for RETENTION; by default deleted with the stack (the logs are diagnostics)."""
    group = logs.LogGroup(scope, id, retention=RETENTION, removal_policy=removal_policy)
    skip_checkov(group, "CKV_AWS_158", LOGS_AT_REST)
    return group


# Why no log group of this app has its own KMS key (checkov CKV_AWS_158).
LOGS_AT_REST = (
    "CloudWatch Logs encrypts every log group at rest; the lines are requests and diagnostics, no secrets, "
    "and a customer managed key would add a key policy and cost"
)
