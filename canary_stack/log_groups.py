"""Every log group of the app: one retention, long enough to compare a canary with production.

Each log group in a template states its retention and its removal policy on purpose:
* ours (`log_group`): RETENTION, deleted with the stack by default. The lines are requests and
  diagnostics, not records: nothing needs them once the stack is gone, and a retained group would
  outlive every `cdk destroy` (docs/cleanup.md). A group that must outlive the stack says so
  (the pipeline's build logs: RETAIN, canary_stack/pipeline.py).
* the ones libraries make for their functions (`settle`): the same, instead of the library's
  default (CDK's managed Lambda log groups: Retain for 731 days).
* a function CloudFormation knows only as a bare AWS::Lambda::Function (`give_log_group`): "By
  default, CloudWatch automatically creates a log group named /aws/lambda/<function name> for your
  function when it's first invoked" (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-loggroups.html),
  never expiring and unknown to the stack, so `cdk destroy` would leave it; it logs to a log group
  of the stack's instead.
"""

from __future__ import annotations

from aws_cdk import CfnResource, RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

from canary_stack.nag import skip_checkov

RETENTION = logs.RetentionDays.ONE_MONTH
RETENTION_DAYS = 30  # RETENTION as CloudFormation's RetentionInDays (jsii's enum value is its name)


def log_group(scope: Construct, id: str, *, removal_policy: RemovalPolicy = RemovalPolicy.DESTROY) -> logs.LogGroup:
    """A log group kept for RETENTION; by default deleted with the stack (the logs are diagnostics)."""
    group = logs.LogGroup(scope, id, retention=RETENTION, removal_policy=removal_policy)
    skip_checkov(group, "CKV_AWS_158", LOGS_AT_REST)
    return group


def settle(group: logs.LogGroup, *, removal_policy: RemovalPolicy = RemovalPolicy.DESTROY) -> None:
    """A log group a library made, kept for RETENTION and removed with the stack like ours."""
    resource = group.node.default_child
    assert isinstance(resource, logs.CfnLogGroup)
    resource.retention_in_days = RETENTION_DAYS
    group.apply_removal_policy(removal_policy)
    skip_checkov(group, "CKV_AWS_158", LOGS_AT_REST)


def give_log_group(function: CfnResource, scope: Construct, id: str) -> logs.LogGroup:
    """Sends a bare AWS::Lambda::Function's logs to a log group of the stack (`log_group`).

    Lambda's LoggingConfig.LogGroup (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-lambda-function-loggingconfig.html):
    the function references the group, so the group exists before the function first runs. The
    function's role must allow logs:CreateLogStream and logs:PutLogEvents on it (AWS's
    AWSLambdaBasicExecutionRole, which CDK's provider roles carry, allows them on every group).
    """
    if function.cfn_resource_type != "AWS::Lambda::Function":
        raise TypeError(f"{function.node.path} is a {function.cfn_resource_type}, not a Lambda function")
    group = log_group(scope, id)
    function.add_property_override("LoggingConfig.LogGroup", group.log_group_name)
    return group


# Why no log group of this app has its own KMS key (checkov CKV_AWS_158).
LOGS_AT_REST = (
    "CloudWatch Logs encrypts every log group at rest; the lines are requests and diagnostics, no secrets, "
    "and a customer managed key would add a key policy and cost"
)
