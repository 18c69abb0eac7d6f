"""Acknowledging cdk-nag findings: one finding, one construct, one reason.

cdk-nag 3 reports through CDK's validation framework: an unacknowledged finding fails synthesis.
Acknowledgments are made on the construct that owns the finding (they reach its children), with
the exact finding id synthesis prints ("Acknowledge with '...'").
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str | Sequence[str], reason: str) -> None:
    """`finding` is an AwsSolutions rule id, with its `[...]` detail where the rule has one, or a
    sequence of them that share the reason."""
    findings = [finding] if isinstance(finding, str) else list(finding)
    if not findings:
        raise ValueError("acknowledge needs at least one finding")
    Validations.of(scope).acknowledge(*(Acknowledgment(id=f"AwsSolutions::{f}", reason=reason) for f in findings))


def arn_of(resource: IConstruct) -> str:
    """How cdk-nag writes `Fn::GetAtt <resource>.Arn` in a finding id."""
    cfn = resource.node.default_child if not isinstance(resource, CfnResource) else resource
    assert isinstance(cfn, CfnResource)
    stack = Stack.of(cfn)
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.Arn>"
