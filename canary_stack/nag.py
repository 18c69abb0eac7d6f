"""Acknowledging scanner findings: one finding, one construct, one reason.

cdk-nag 3 reports through CDK's validation framework: an unacknowledged finding fails synthesis.
Acknowledgments are made on the construct that owns the finding (they reach its children), with
the exact finding id synthesis prints ("Acknowledge with '...'").

checkov (tests/stack/test_checkov.py) scans the synthesized templates; an accepted check is
skipped on the one resource it is about with `skip_checkov`, which writes the resource's
`Metadata.checkov.skip` entry checkov reads (https://www.checkov.io/2.Basics/Suppressing%20and%20Skipping%20Policies.html;
checkov/cloudformation/context_parser.py, collect_skip_comments: a list of {id, comment}).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str | Sequence[str], reason: str) -> None:
    """`finding` is an AwsSolutions rule id, with its `[...]` detail where the rule has one, or a
    sequence of them that share the reason."""
    findings = [finding] if isinstance(finding, str) else list(finding)
    if not findings:
        raise ValueError("acknowledge needs at least one finding")
    Validations.of(scope).acknowledge(*(Acknowledgment(id=f"AwsSolutions::{f}", reason=reason) for f in findings))


def cfn_resource(construct: IConstruct) -> CfnResource:
    """The CloudFormation resource a finding is about: `construct` itself, or its default child."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return resource


def logical_id_of(construct: IConstruct) -> str:
    """The resource's logical id, as cdk-nag writes `Ref <resource>` in a finding id (without `<>`)."""
    resource = cfn_resource(construct)
    stack = Stack.of(resource)
    return str(stack.resolve(stack.get_logical_id(resource)))


def arn_of(resource: IConstruct) -> str:
    """How cdk-nag writes `Fn::GetAtt <resource>.Arn` in a finding id."""
    return f"<{logical_id_of(resource)}.Arn>"


def skip_checkov(scope: IConstruct, check_id: str, reason: str) -> None:
    """Skips checkov's `check_id` (e.g. "CKV_AWS_91") on `scope`'s CloudFormation resource, with why.

    `scope` is the resource itself or an L2 construct (its default child is used). Unlike a cdk-nag
    acknowledgment this does not reach children: checkov reads the metadata of each resource.
    """
    try:
        resource = cfn_resource(scope)
    except TypeError:
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to skip {check_id} on") from None
    if not reason.strip():
        raise ValueError(f"skipping {check_id} on {scope.node.path} needs a reason")
    current = resource.get_metadata("checkov") or {}
    skips = [skip for skip in current.get("skip", []) if skip["id"] != check_id]
    resource.add_metadata("checkov", {"skip": [*skips, {"id": check_id, "comment": reason}]})


# checkov's Lambda checks, for a function that runs only while CloudFormation deploys (a custom
# resource handler or its provider framework), not in the request path.
DEPLOY_TIME_FUNCTION: Mapping[str, str] = {
    "CKV_AWS_115": "Runs only during a deployment, a few invocations per change; reserved concurrency "
    "would take capacity from the account for nothing",
    "CKV_AWS_116": "Invoked synchronously by CloudFormation's custom resource framework: a failure fails "
    "and rolls back the deployment; there is no event for a dead-letter queue to keep",
    "CKV_AWS_117": "Calls AWS APIs only and holds no data; inside the VPC it would need the NAT gateway "
    "or endpoints for the same calls",
    "CKV_AWS_173": "Its environment holds names and ARNs, no secrets; Lambda encrypts it at rest with an "
    "AWS managed key",
}


def skip_checkov_for_deploy_time_function(function: IConstruct) -> None:
    """The DEPLOY_TIME_FUNCTION skips on `function` (a lambda.Function or its CfnResource)."""
    resource = cfn_resource(function)
    has_environment = getattr(resource, "environment", None) is not None
    for check_id, reason in DEPLOY_TIME_FUNCTION.items():
        if check_id != "CKV_AWS_173" or has_environment:
            skip_checkov(function, check_id, reason)
