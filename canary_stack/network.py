"""The VPC and the ECS cluster every version runs in."""

from __future__ import annotations

from aws_cdk import CfnResource, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from canary_stack.log_groups import give_log_group, log_group
from canary_stack.nag import skip_checkov_for_deploy_time_function


class Network(Construct):
    """Two AZs, tasks in private subnets, one cluster. (A router that needs a private DNS namespace
    or zone creates its own: the ALB router needs none, and an unused one costs a hosted zone.)"""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)

        # Egress: one NAT gateway for both AZs. The tasks need ECR, CloudWatch Logs and the App
        # Mesh control plane; interface endpoints for those cost about twice a NAT gateway in a
        # two-AZ demo, and a NAT per AZ doubles the bill for resilience a canary demo does not need.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="Private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=24),
            ],
        )
        # CDK's handler that empties the default security group (present with the feature flag
        # @aws-cdk/aws-ec2:restrictDefaultSecurityGroup): a stack-wide singleton run at deploy time only.
        restrict_default_sg = Stack.of(self).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
        if restrict_default_sg is not None:
            handler = restrict_default_sg.node.find_child("Handler")
            assert isinstance(handler, CfnResource)
            skip_checkov_for_deploy_time_function(handler)
            give_log_group(handler, self, "RestrictDefaultSgLogs")  # not /aws/lambda/<name>, kept forever
        flow_logs = log_group(self, "FlowLogs")
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
