"""The mesh canary on Amazon VPC Lattice (`-c trafficRouter=lattice`), App Mesh's successor for weighted
service-to-service routing on ECS. Deployable, unlike the appmesh reproduction.

Callers inside the VPC reach `crystal.appmeshworkshop.pvt.local` (a CNAME in a private hosted zone to
the Lattice service); the Lattice service's listener sends `canary-fleet: true` to the canary and
splits everything else by weight; each ECS service registers its tasks in its own Lattice target
group (`VpcLatticeConfigurations`). Callers from outside come through the public load balancer and a
small nginx proxy that calls the service by the same name (lattice_proxy.py).

The listener holds three things, and only one of them moves with the weight (as with the ALB router):
* its default action forwards to production (fixed: it attaches production's target group);
* the header rule (priority 10) forwards `canary-fleet: true` to the canary (fixed: it attaches the
  canary's target group);
* the weighted rule (priority 20, every path) forwards `100-w`/`w` across both. A weight step changes
  this rule and nothing else, and it DependsOn both ECS services.
The target groups are attached by the two fixed resources, which the ECS services wait for (a target
group no Lattice service uses reports its targets UNUSED), and which wait for no ECS service.
"""

from __future__ import annotations

from typing import cast

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_vpclattice as lattice
from constructs import Construct

from canary_stack.config import CPU_ARCHITECTURES, CpuArchitecture
from canary_stack.constants import (
    APP_PORT,
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    HEALTH_PATH,
    LATTICE_LISTENER_PORT,
    NAMESPACE_NAME,
    VIRTUAL_SERVICE_NAME,
)
from canary_stack.log_groups import log_group
from canary_stack.nag import acknowledge
from canary_stack.observability import PERIOD, VersionSignals
from canary_stack.routers.base import CANARY, PRODUCTION, CanaryRouter, Version
from canary_stack.routers.lattice_proxy import LatticePrefixList, LatticeProxy
from canary_stack.service import CrystalService

# Listener rules are evaluated by priority, lowest first, before the default action: testers' header
# first, then the weighted split of everything else (Lattice rule priorities are 1 to 100).
CANARY_HEADER_PRIORITY = 10
WEIGHTED_PRIORITY = 20

# Lattice's own metrics, per target group: namespace, metric names, units and the `TargetGroup`
# dimension from https://docs.aws.amazon.com/vpc-lattice/latest/ug/monitoring-cloudwatch.html
# ("Target group metrics"). RequestTime is in milliseconds; HTTPCode_5XX_Count counts the 5xx answers.
METRICS_NAMESPACE = "AWS/VpcLattice"
TARGET_GROUP_DIMENSION = "TargetGroup"
REQUESTS_METRIC = "TotalRequestCount"
ERRORS_METRIC = "HTTPCode_5XX_Count"
LATENCY_METRIC = "RequestTime"

# The managed policy AWS provides for the ECS infrastructure role that registers a service's tasks in
# Lattice target groups, and the principal that assumes it
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/infrastructure_IAM_role.html,
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonECSInfrastructureRolePolicyForVpcLattice.html).
ECS_LATTICE_POLICY = "AmazonECSInfrastructureRolePolicyForVpcLattice"
ECS_PRINCIPAL = "ecs.amazonaws.com"
# The app container's port mapping (service.py) that ECS registers in the target group.
APP_PORT_NAME = "http"


def target_group_signals(target_group: lattice.CfnTargetGroup, version: Version) -> VersionSignals:
    """A version behind the Lattice router, from its target group's metrics in AWS/VpcLattice.

    The dimension's value is the target group's ID (`tg-...`), the attribute the template wires.
    """

    def metric(name: str, statistic: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={TARGET_GROUP_DIMENSION: target_group.attr_id},
            statistic=statistic,
            period=PERIOD,
        )

    # The id names the version: the vs-production alarm nests both versions' expressions in one.
    ms = f"ms_{version}"
    return VersionSignals(
        requests=metric(REQUESTS_METRIC, "Sum"),
        errors=metric(ERRORS_METRIC, "Sum"),
        # Lattice measures in milliseconds; the alarms compare seconds, as with the ALB.
        latency_p99=cloudwatch.MathExpression(
            expression=f"{ms} / 1000",
            using_metrics={ms: metric(LATENCY_METRIC, "p99")},
            period=PERIOD,
            label="p99 (s)",
        ),
    )


def _weighted(*targets: tuple[lattice.CfnTargetGroup, int]) -> list[lattice.CfnRule.WeightedTargetGroupProperty]:
    return [
        lattice.CfnRule.WeightedTargetGroupProperty(target_group_identifier=tg.attr_id, weight=w) for tg, w in targets
    ]


def _rule_forward(*targets: tuple[lattice.CfnTargetGroup, int]) -> lattice.CfnRule.ActionProperty:
    return lattice.CfnRule.ActionProperty(forward=lattice.CfnRule.ForwardProperty(target_groups=_weighted(*targets)))


def cpu_architecture_of(version: CrystalService) -> CpuArchitecture:
    """The CPU a version's tasks run on (as cpuArchitecture spells it), read from its task definition."""
    task = version.task_definition.node.default_child
    assert isinstance(task, ecs.CfnTaskDefinition)
    platform = Stack.of(version).resolve(task.runtime_platform)
    architecture = platform["cpuArchitecture"].lower()
    if architecture not in CPU_ARCHITECTURES:
        raise ValueError(f"unexpected CPU architecture {architecture!r} of {version.node.path}")
    return cast(CpuArchitecture, architecture)


class LatticeRouter(CanaryRouter):
    """Weighted routing in Amazon VPC Lattice, reached from outside through an nginx proxy.

    Attributes besides the common ones: `service_network`, `auth_policy`, `vpc_association`,
    `association_security_group`, `service`, `service_association`, `access_logs` (the log group),
    `zone` and `name_record` (the private DNS name), `listener`, `header_rule`, `weighted_rule`
    (= `weighted_resource`), `production_targets`, `canary_targets`, `infrastructure_role`, after
    `route`: `prefix_list` and `proxy`.
    """

    name = "lattice"

    def __init__(self, scope: Construct, id: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        vpc = self.network.vpc

        # IAM auth on the network: its auth policy decides who may call any service in it.
        self.service_network = lattice.CfnServiceNetwork(self, "ServiceNetwork", auth_type="AWS_IAM")
        # Callers from this VPC only, signed or not: with Principal "*" and no aws:PrincipalType
        # condition the policy admits anonymous (unsigned) requests too, which the auth policy may
        # allow by condition ("allowing anonymous GET requests that match a certain condition",
        # https://docs.aws.amazon.com/vpc-lattice/latest/ug/service-network-access.html). The proxy
        # and the VPC's callers send plain HTTP; vpc-lattice-svcs:SourceVpc is the VPC a request
        # came from (https://docs.aws.amazon.com/vpc-lattice/latest/ug/auth-policies.html).
        self.auth_policy = lattice.CfnAuthPolicy(
            self,
            "AuthPolicy",
            resource_identifier=self.service_network.attr_id,
            policy={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "CallersInThisVpc",
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "vpc-lattice-svcs:Invoke",
                        "Resource": "*",
                        "Condition": {"StringEquals": {"vpc-lattice-svcs:SourceVpc": vpc.vpc_id}},
                    }
                ],
            },
        )
        # The association's security group decides which clients in the VPC reach the network
        # (https://docs.aws.amazon.com/vpc-lattice/latest/ug/security-groups.html): the VPC, on the
        # listener's port only.
        self.association_security_group = ec2.SecurityGroup(
            self,
            "AssociationSecurityGroup",
            vpc=vpc,
            description="Clients of the Lattice service network: this VPC, on the listener port",
            allow_all_outbound=False,
        )
        self.association_security_group.add_ingress_rule(
            ec2.Peer.ipv4(vpc.vpc_cidr_block), ec2.Port.tcp(LATTICE_LISTENER_PORT), "HTTP to Lattice from this VPC"
        )
        acknowledge(
            self.association_security_group,
            "AwsSolutions-EC23",
            "The one ingress rule's source is this VPC's own CIDR block, which cdk-nag cannot read at synth "
            "time (a CloudFormation reference); nothing outside the VPC is admitted",
        )
        self.vpc_association = lattice.CfnServiceNetworkVpcAssociation(
            self,
            "VpcAssociation",
            service_network_identifier=self.service_network.attr_id,
            vpc_identifier=vpc.vpc_id,
            security_group_ids=[self.association_security_group.security_group_id],
        )

        # The service's own auth type is NONE: the network's policy above is the one gate.
        self.service = lattice.CfnService(self, "Service", auth_type="NONE", custom_domain_name=VIRTUAL_SERVICE_NAME)
        self.service_association = lattice.CfnServiceNetworkServiceAssociation(
            self,
            "ServiceAssociation",
            service_network_identifier=self.service_network.attr_id,
            service_identifier=self.service.attr_id,
        )
        self.access_logs = log_group(self, "AccessLogs")
        lattice.CfnAccessLogSubscription(
            self,
            "AccessLogSubscription",
            resource_identifier=self.service.attr_arn,
            destination_arn=self.access_logs.log_group_arn,
        )

        # The workshop's name, resolvable inside the VPC only, for the Lattice service's own DNS name.
        # Only this router creates the zone (a hosted zone is billed monthly).
        self.zone = route53.PrivateHostedZone(self, "Zone", zone_name=NAMESPACE_NAME, vpc=vpc)
        self.name_record = route53.CnameRecord(
            self,
            "ServiceName",
            zone=self.zone,
            record_name=VIRTUAL_SERVICE_NAME,
            domain_name=self.service.attr_dns_entry_domain_name,
            ttl=Duration.seconds(60),
        )

        self.production_targets = self._target_group("ProductionTargets")
        self.canary_targets = self._target_group("CanaryTargets")
        # Attaches production's target group; serves only what no rule matches (nothing, while the
        # weighted rule matches every path).
        self.listener = lattice.CfnListener(
            self,
            "Listener",
            service_identifier=self.service.attr_id,
            protocol="HTTP",
            port=LATTICE_LISTENER_PORT,
            default_action=lattice.CfnListener.DefaultActionProperty(
                forward=lattice.CfnListener.ForwardProperty(
                    target_groups=[
                        lattice.CfnListener.WeightedTargetGroupProperty(
                            target_group_identifier=self.production_targets.attr_id, weight=100
                        )
                    ]
                )
            ),
        )
        # Testers reach the canary at any weight, 0 included.
        self.header_rule = lattice.CfnRule(
            self,
            "CanaryHeaderRule",
            service_identifier=self.service.attr_id,
            listener_identifier=self.listener.attr_id,
            priority=CANARY_HEADER_PRIORITY,
            match=lattice.CfnRule.MatchProperty(
                http_match=lattice.CfnRule.HttpMatchProperty(
                    header_matches=[
                        lattice.CfnRule.HeaderMatchProperty(
                            name=CANARY_HEADER, match=lattice.CfnRule.HeaderMatchTypeProperty(exact=CANARY_HEADER_VALUE)
                        )
                    ]
                )
            ),
            action=_rule_forward((self.canary_targets, 100)),
        )

        # The role ECS uses to register and deregister each version's tasks in its target group.
        self.infrastructure_role = iam.Role(
            self,
            "EcsInfrastructureRole",
            assumed_by=iam.ServicePrincipal(ECS_PRINCIPAL),
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(ECS_LATTICE_POLICY)],
            description="ECS registers the Crystal tasks in their VPC Lattice target groups",
        )
        acknowledge(
            self.infrastructure_role,
            f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{ECS_LATTICE_POLICY}]",
            "AWS's managed policy for the ECS infrastructure role with VPC Lattice: target registration "
            "on Lattice target groups and the EC2 lookups it needs, maintained by AWS with the feature",
        )

    def route(self, *, production: CrystalService, canary: CrystalService) -> None:
        self.prefix_list = LatticePrefixList(self, "PrefixList")
        for version, targets, attachment in (
            (production, self.production_targets, self.listener),
            (canary, self.canary_targets, self.header_rule),
        ):
            # Typed on the L1 service (aws-cdk-lib has no L2 for it).
            version.cfn_service.vpc_lattice_configurations = [
                ecs.CfnService.VpcLatticeConfigurationProperty(
                    port_name=APP_PORT_NAME,
                    role_arn=self.infrastructure_role.role_arn,
                    target_group_arn=targets.attr_arn,
                )
            ]
            # Tasks register once their target group is in use by the service.
            version.cfn_service.add_dependency(attachment)
            # Lattice's requests and health checks come from the region's managed prefix list.
            version.security_group.add_ingress_rule(
                ec2.Peer.prefix_list(self.prefix_list.prefix_list_id),
                ec2.Port.tcp(APP_PORT),
                "From VPC Lattice (requests and health checks)",
            )

        # The canary's traffic step: the only resource a change of canaryWeight touches.
        self.weighted_rule = lattice.CfnRule(
            self,
            "WeightedRule",
            service_identifier=self.service.attr_id,
            listener_identifier=self.listener.attr_id,
            priority=WEIGHTED_PRIORITY,
            match=lattice.CfnRule.MatchProperty(
                http_match=lattice.CfnRule.HttpMatchProperty(
                    path_match=lattice.CfnRule.PathMatchProperty(
                        match=lattice.CfnRule.PathMatchTypeProperty(prefix="/")
                    )
                )
            ),
            action=_rule_forward(
                (self.production_targets, 100 - self.canary_weight), (self.canary_targets, self.canary_weight)
            ),
        )
        self.weighted_resource = self.weighted_rule
        self.move_traffic_after(production, canary)

        self.proxy = LatticeProxy(
            self,
            "Proxy",
            cluster=self.network.cluster,
            entrypoint=self.entrypoint,
            cpu_architecture=cpu_architecture_of(production),
        )
        self.production_signals = target_group_signals(self.production_targets, PRODUCTION)
        self.canary_signals = target_group_signals(self.canary_targets, CANARY)

    def _target_group(self, id: str) -> lattice.CfnTargetGroup:
        return lattice.CfnTargetGroup(
            self,
            id,
            type="IP",
            config=lattice.CfnTargetGroup.TargetGroupConfigProperty(
                port=APP_PORT,
                protocol="HTTP",
                protocol_version="HTTP1",
                ip_address_type="IPV4",
                vpc_identifier=self.network.vpc.vpc_id,
                # The ALB router's check, on the app itself: two passes in 20 s take a new task into
                # service, three failures in 30 s take it out.
                health_check=lattice.CfnTargetGroup.HealthCheckConfigProperty(
                    enabled=True,
                    protocol="HTTP",
                    protocol_version="HTTP1",
                    port=APP_PORT,
                    path=HEALTH_PATH,
                    health_check_interval_seconds=10,
                    health_check_timeout_seconds=5,
                    healthy_threshold_count=2,
                    unhealthy_threshold_count=3,
                    matcher=lattice.CfnTargetGroup.MatcherProperty(http_code="200"),
                ),
            ),
        )
