"""Acknowledging cdk-nag findings: one finding, one construct, one reason.

cdk-nag 3 reports through CDK's validation framework: an unacknowledged finding fails synthesis.
Acknowledgments are made on the construct that owns the finding (they reach its children), with
the exact finding id synthesis prints ("Acknowledge with '...'").
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """`finding` is an AwsSolutions rule id, with its `[...]` detail where the rule has one."""
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions::{finding}", reason=reason))


def arn_of(resource: IConstruct) -> str:
    """How cdk-nag writes `Fn::GetAtt <resource>.Arn` in a finding id."""
    cfn = resource.node.default_child if not isinstance(resource, CfnResource) else resource
    assert isinstance(cfn, CfnResource)
    stack = Stack.of(cfn)
    return f"<{stack.resolve(stack.get_logical_id(cfn))}.Arn>"
