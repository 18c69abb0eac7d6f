"""What the rollout reads from AWS, and nothing else: the canary alarms' states (CloudWatch
DescribeAlarms) and the canary stack's status and outputs (CloudFormation DescribeStacks).
boto3 is imported only where a client is made: `--help` and `--dry-run` never load it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def aws_region(environ: Mapping[str, str] = os.environ, profile_region: Callable[[], str | None] | None = None) -> str:
    """The region the CDK CLI deploys to, found its way (its SdkProvider.region): AWS_REGION,
    AMAZON_REGION, AWS_DEFAULT_REGION, AMAZON_DEFAULT_REGION, the profile's region, else us-east-1.
    boto3 alone reads neither AWS_REGION nor the default, so its clients get this explicitly.
    (The CLI also asks the EC2 instance metadata service before us-east-1; this does not.)"""
    for name in ("AWS_REGION", "AMAZON_REGION", "AWS_DEFAULT_REGION", "AMAZON_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name]
    return (profile_region or _profile_region)() or "us-east-1"


def _profile_region() -> str | None:
    import boto3

    try:
        return boto3.session.Session().region_name
    except Exception:  # an unreadable profile: the CLI would fall back too
        return None


def clients(region: str) -> tuple[Any, Any]:
    """(CloudWatch, CloudFormation) clients for `region`."""
    import boto3

    return boto3.client("cloudwatch", region_name=region), boto3.client("cloudformation", region_name=region)


def alarm_states(cloudwatch: Any, prefix: str) -> list[tuple[str, str]]:
    """(name, state) of every alarm whose name starts with `prefix`, sorted by name."""
    states: list[tuple[str, str]] = []
    paginator = cloudwatch.get_paginator("describe_alarms")
    for page in paginator.paginate(AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            states.append((alarm["AlarmName"], alarm["StateValue"]))
    return sorted(states)


@dataclass(frozen=True)
class StackFacts:
    """What DescribeStacks said about the stack at one moment."""

    status: str
    changed: str  # the time of its last change
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> tuple[str, str]:
        """An update CloudFormation started moves both; a deploy that failed before it (no
        credentials, an asset that did not build, a synthesis error) leaves them as they were."""
        return self.status, self.changed


def describe_stack(cloudformation: Any, name: str) -> StackFacts:
    """The stack's status, last change and outputs; raises whatever the client raises."""
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    changed = stack.get("LastUpdatedTime") or stack.get("CreationTime")
    return StackFacts(str(stack.get("StackStatus")), str(changed), outputs)
