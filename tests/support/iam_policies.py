"""An offline judge of identity policies: does a role's policy allow one (action, resource) call?

moto's IAM access control is no judge for this project: it asks for `monitoring:DescribeAlarms` (the
CloudWatch endpoint's name), so it denies `cloudwatch:DescribeAlarms` even when granted on "*". This
evaluates a synthesized template's policies the way IAM's documentation says, for what they use:

* an explicit Deny wins, then an Allow, else the call is denied
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html);
* Action and NotAction: "The prefix and the action name are case insensitive", with `*` and `?`
  wildcards (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html);
* Resource and NotResource: `*` "any combination of characters", `?` "any single character", within an
  ARN segment; "If the * wildcard is the last character of a resource ARN segment, it can expand to
  match beyond the colon boundaries"
  (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html);
* a statement with a Condition is refused (ValueError): this judge does not evaluate conditions, and
  no statement of the roles it judges has one.

Template values are resolved with fixed pseudo parameters; a resource's Ref or GetAtt becomes a
placeholder (`<LogicalId>`) inside the ARN its type has, so a grant on "this pipeline's bucket"
matches only calls on that bucket.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PARTITION, REGION, ACCOUNT = "aws", "us-east-1", "123456789012"
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}

# The Arn attribute of the resource types the pipeline's policies name, by the type's ARN format.
_ARN_OF_TYPE = {
    "AWS::S3::Bucket": "arn:{p}:s3:::<{id}>",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:<{id}>:*",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role/<{id}>",
    "AWS::CodeBuild::Project": "arn:{p}:codebuild:{r}:{a}:project/<{id}>",
}


def resolve(value: Any, resources: dict[str, Any]) -> Any:
    """A template value with Ref, Fn::GetAtt and Fn::Join resolved (lists element by element)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [resolve(v, resources) for v in value]
    ((fn, arg),) = value.items()
    if fn == "Ref":
        return PSEUDO.get(arg, f"<{arg}>")
    if fn == "Fn::GetAtt":
        logical, attr = arg
        pattern = _ARN_OF_TYPE.get(resources[logical]["Type"]) if attr == "Arn" else None
        return pattern.format(p=PARTITION, r=REGION, a=ACCOUNT, id=logical) if pattern else f"<{logical}.{attr}>"
    if fn == "Fn::Join":
        separator, parts = arg
        return separator.join(resolve(p, resources) for p in parts)
    raise ValueError(f"cannot resolve {fn} in a policy")


def substitute(text: str) -> str:
    """A cloud assembly's `${AWS::AccountId}`-style placeholders, with the same pseudo parameters."""
    return re.sub(r"\$\{(AWS::\w+)\}", lambda m: PSEUDO[m.group(1)], text)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, *, arn: bool) -> re.Pattern[str]:
    out = []
    for i, c in enumerate(pattern):
        if c == "*":
            last_in_segment = i + 1 == len(pattern) or pattern[i + 1] == ":"
            out.append(".*" if not arn or last_in_segment else "[^:]*")
        elif c == "?":
            out.append("." if not arn else "[^:]")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), 0 if arn else re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    not_actions: bool
    resources: tuple[str, ...]
    not_resources: bool

    @classmethod
    def of(cls, statement: dict[str, Any], resources: dict[str, Any]) -> Statement:
        if "Condition" in statement:
            raise ValueError(f"this judge does not evaluate conditions: {statement}")
        action_key = "Action" if "Action" in statement else "NotAction"
        resource_key = "Resource" if "Resource" in statement else "NotResource"
        return cls(
            effect=statement["Effect"],
            actions=tuple(_as_list(statement[action_key])),
            not_actions=action_key == "NotAction",
            resources=tuple(_as_list(resolve(statement[resource_key], resources))),
            not_resources=resource_key == "NotResource",
        )

    def applies(self, action: str, resource: str) -> bool:
        action_hit = any(_glob(a, arn=False).fullmatch(action) for a in self.actions) != self.not_actions
        resource_hit = any(_glob(r, arn=True).fullmatch(resource) for r in self.resources) != self.not_resources
        return action_hit and resource_hit


ALLOWED, DENIED, NOT_ALLOWED = "allowed", "explicitly denied", "not allowed"


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    @classmethod
    def of_role(cls, template: dict[str, Any], role_id: str) -> Policy:
        """Every statement of the AWS::IAM::Policy resources attached to `role_id` (the role itself
        must have no inline or managed policies: the caller checks that)."""
        resources = template["Resources"]
        role = resources[role_id]["Properties"]
        if role.get("Policies") or role.get("ManagedPolicyArns"):
            raise ValueError(f"{role_id} has inline or managed policies this judge does not read")
        return cls.of_statements(
            (
                st
                for r in resources.values()
                if r["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"]["Roles"]
                for st in r["Properties"]["PolicyDocument"]["Statement"]
            ),
            resources,
        )

    @classmethod
    def of_statements(cls, statements: Iterable[dict[str, Any]], resources: dict[str, Any] | None = None) -> Policy:
        return cls(tuple(Statement.of(st, resources or {}) for st in statements))

    def decide(self, action: str, resource: str) -> str:
        hits = [st for st in self.statements if st.applies(action, resource)]
        if any(st.effect == "Deny" for st in hits):
            return DENIED
        return ALLOWED if any(st.effect == "Allow" for st in hits) else NOT_ALLOWED
