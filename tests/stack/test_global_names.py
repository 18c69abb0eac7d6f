"""Two regions of one account: no name that is unique per account (not per region) may be equal.

The app is region-agnostic (env-less: `${AWS::Region}` in the template), so the stacks are built
here with explicit environments, as `cdk deploy` would resolve them in each region, and every name
is read with the pseudo parameters replaced by that environment's values.

Which names are account-global is decided per resource type and name property (NAME_SCOPES), each
with its reason; a named resource of a type not in the table fails the audit until someone decides.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.configurations import PIPELINE_CONTEXT
from support.synthesis import CLI_CONTEXT, cdk_json_context

from canary_stack import cdk_app
from canary_stack.config import CanaryConfig
from canary_stack.constants import PIPELINE_STACK_NAME, STACK_NAME
from canary_stack.pipeline import PipelineStack
from canary_stack.stack import CanaryStack

ACCOUNT = "123456789012"
REGIONS = ("eu-west-1", "us-east-1")

GLOBAL = "global"
REGIONAL = "regional"
# (resource type, top-level property naming it) -> whether the name is unique per account or per
# region (or narrower), and why.
NAME_SCOPES: dict[tuple[str, str], tuple[str, str]] = {
    # "All dashboards in your account are global, not region-specific."
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html
    ("AWS::CloudWatch::Dashboard", "DashboardName"): (GLOBAL, "dashboards are account-wide"),
    # Alarms, repositories and log groups live in a region: their ARNs carry it
    # (arn:aws:cloudwatch:REGION:ACCOUNT:alarm:NAME, arn:aws:ecr:REGION:..., arn:aws:logs:REGION:...).
    ("AWS::CloudWatch::Alarm", "AlarmName"): (REGIONAL, "arn:aws:cloudwatch:<region>:<account>:alarm:<name>"),
    ("AWS::CloudWatch::Alarm", "MetricName"): (REGIONAL, "names the metric it reads"),
    ("AWS::ECR::Repository", "RepositoryName"): (REGIONAL, "a registry per account and region"),
    ("AWS::Logs::LogGroup", "LogGroupName"): (REGIONAL, "arn:aws:logs:<region>:<account>:log-group:<name>"),
    # An inline policy's name is unique within its role only; the role's own name is generated.
    ("AWS::IAM::Policy", "PolicyName"): (REGIONAL, "inline: unique within its role, whose name is generated"),
    # Names of other resources, not of this one.
    ("AWS::EC2::FlowLog", "LogGroupName"): (REGIONAL, "names its destination log group"),
    ("AWS::CloudFormation::CustomResource", "DestinationRepositoryName"): (REGIONAL, "names the repository"),
    ("AWS::CloudFormation::CustomResource", "projectName"): (REGIONAL, "names the CodeBuild project"),
    ("Custom::ImageTag", "RepositoryName"): (REGIONAL, "names the repository"),
    # App Mesh and Cloud Map are regional services (arn:aws:appmesh:<region>:..., a namespace's
    # private hosted zone is tied to the VPC); the mesh's children are named inside the mesh.
    ("AWS::AppMesh::Mesh", "MeshName"): (REGIONAL, "arn:aws:appmesh:<region>:<account>:mesh/<name>"),
    ("AWS::AppMesh::VirtualNode", "MeshName"): (REGIONAL, "names its mesh"),
    ("AWS::AppMesh::VirtualNode", "VirtualNodeName"): (REGIONAL, "unique within the mesh"),
    ("AWS::AppMesh::VirtualRouter", "MeshName"): (REGIONAL, "names its mesh"),
    ("AWS::AppMesh::VirtualRouter", "VirtualRouterName"): (REGIONAL, "unique within the mesh"),
    ("AWS::AppMesh::Route", "MeshName"): (REGIONAL, "names its mesh"),
    ("AWS::AppMesh::Route", "RouteName"): (REGIONAL, "unique within the virtual router"),
    ("AWS::AppMesh::Route", "VirtualRouterName"): (REGIONAL, "names its router"),
    ("AWS::AppMesh::VirtualService", "MeshName"): (REGIONAL, "names its mesh"),
    ("AWS::AppMesh::VirtualService", "VirtualServiceName"): (REGIONAL, "unique within the mesh"),
    ("AWS::AppMesh::VirtualGateway", "MeshName"): (REGIONAL, "names its mesh"),
    ("AWS::AppMesh::VirtualGateway", "VirtualGatewayName"): (REGIONAL, "unique within the mesh"),
    ("AWS::AppMesh::GatewayRoute", "MeshName"): (REGIONAL, "names its mesh"),
    ("AWS::AppMesh::GatewayRoute", "GatewayRouteName"): (REGIONAL, "unique within the gateway"),
    ("AWS::AppMesh::GatewayRoute", "VirtualGatewayName"): (REGIONAL, "names its gateway"),
    ("AWS::ServiceDiscovery::PrivateDnsNamespace", "Name"): (REGIONAL, "a private zone of one VPC"),
    ("AWS::ServiceDiscovery::Service", "Name"): (REGIONAL, "unique within its namespace"),
    # Route 53 is global, but the record's name is the user's -c domainName: two regions take two
    # names (docs/cleanup.md); the stack adds nothing to it. Not in the defaults synthesized here.
    ("AWS::Route53::RecordSet", "Name"): (GLOBAL, "the user's domainName, one per region"),
}
# Account-global names the stack must never fix, whatever the configuration: CloudFormation then
# generates a unique one (a bucket's name is even unique across all accounts).
NEVER_NAMED = {
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Group": "GroupName",
    "AWS::S3::Bucket": "BucketName",
}

CONFIGURATIONS = {
    # The ALB router with the pipeline stack, and the App Mesh router (its mesh and namespace).
    "alb-and-pipeline": PIPELINE_CONTEXT,
    "appmesh": {"trafficRouter": "appmesh"},
}


def synthesize_in(region: str, context: dict[str, str], outdir: str) -> dict[str, dict]:
    """The app's stacks as `cdk deploy` builds them with credentials for ACCOUNT in `region`."""
    from aws_cdk import Environment  # here: `app` must set up the Node.js toolchain before aws_cdk loads

    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT, **context}, outdir=outdir)
    config = CanaryConfig.from_context(app.node.try_get_context)
    env = Environment(account=ACCOUNT, region=region)
    CanaryStack(app, STACK_NAME, config=config, env=env)
    if config.pipeline is not None:
        PipelineStack(app, PIPELINE_STACK_NAME, source=config.pipeline, target_stack=STACK_NAME, env=env)
    return {stack.stack_name: stack.template for stack in app.synth().stacks}


def resolved(value: Any, region: str, stack: str) -> str:
    """A name with the pseudo parameters of `region` substituted; a reference to a resource stays
    a placeholder (it is the same in both regions, so a name made only of one is not unique)."""
    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackName": stack,
    }
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return pseudo.get(value["Ref"], f"<{value['Ref']}>")
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(resolved(part, region, stack) for part in parts)
    return f"<{sorted(value)[0] if isinstance(value, dict) else value}>"


def names(templates: dict[str, dict], region: str) -> dict[tuple[str, str, str, str], str]:
    """(stack, logical id, type, property) -> the resolved name, for every top-level *Name property."""
    found = {}
    for stack, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            for prop, value in resource.get("Properties", {}).items():
                if prop.endswith("Name") or prop == "Name":
                    found[(stack, logical_id, resource["Type"], prop)] = resolved(value, region, stack)
    return found


@pytest.fixture(scope="module", params=list(CONFIGURATIONS))
def two_regions(request, tmp_path_factory) -> dict[str, dict[str, dict]]:
    context = CONFIGURATIONS[request.param]
    return {
        region: synthesize_in(region, context, str(tmp_path_factory.mktemp(f"{request.param}-{region}")))
        for region in REGIONS
    }


def test_every_name_in_the_templates_is_classified_global_or_regional(two_regions):
    unclassified = {
        (type_, prop)
        for templates in two_regions.values()
        for (_, _, type_, prop) in names(templates, REGIONS[0])
        if (type_, prop) not in NAME_SCOPES and not type_.startswith("AWS::CDK::")
    }
    assert not unclassified, f"decide whether these names are unique per account or per region: {unclassified}"


def test_no_account_global_name_is_the_same_in_two_regions(two_regions):
    first, second = (names(two_regions[region], region) for region in REGIONS)
    global_names = {key: name for key, name in first.items() if NAME_SCOPES.get(key[2:], ("",))[0] == GLOBAL}
    assert global_names, "the audit found no account-global name at all (the dashboard has one)"
    clashes = {key: name for key, name in global_names.items() if second.get(key) == name}
    assert not clashes, f"account-global names equal in {REGIONS}: {clashes}"


def test_the_dashboard_is_named_for_its_region(two_regions):
    for region, templates in two_regions.items():
        (dashboard,) = [
            r["Properties"]["DashboardName"]
            for r in templates[STACK_NAME]["Resources"].values()
            if r["Type"] == "AWS::CloudWatch::Dashboard"
        ]
        assert dashboard == f"{STACK_NAME}-canary-{region}"


def test_no_account_global_name_is_fixed_at_all(two_regions):
    for templates in two_regions.values():
        for template in templates.values():
            for logical_id, resource in template["Resources"].items():
                prop = NEVER_NAMED.get(resource["Type"])
                assert prop is None or prop not in resource.get("Properties", {}), (logical_id, prop)
