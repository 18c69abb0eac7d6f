"""The App Mesh ingress: a virtual gateway's Envoy on Fargate behind the public load balancer."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_appmesh as appmesh
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from canary_stack.constants import ENVOY_ADMIN_PORT, GATEWAY_PORT
from canary_stack.fargate import acknowledge_task_findings, envoy_container, private_fargate_service
from canary_stack.ingress import PublicEntrypoint
from canary_stack.log_groups import log_group

ENVOY_READY_PATH = "/ready"


class MeshGateway(Construct):
    """Runs the virtual gateway's Envoy and makes it the load balancer's default target."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.ICluster,
        gateway: appmesh.IVirtualGateway,
        entrypoint: PublicEntrypoint,
        desired_count: int = 1,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = log_group(self, "Logs")
        self.task_definition = ecs.FargateTaskDefinition(self, "Task", cpu=256, memory_limit_mib=512)
        self.envoy = envoy_container(
            self.task_definition,
            resource_arn=gateway.virtual_gateway_arn,
            log_group=self.log_group,
        )
        self.envoy.add_port_mappings(ecs.PortMapping(container_port=GATEWAY_PORT, name="gateway"))
        gateway.grant_stream_aggregated_resources(self.task_definition.task_role)
        acknowledge_task_findings(self.task_definition, pulls_from_ecr=False)

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=cluster.vpc, description="App Mesh gateway tasks", allow_all_outbound=True
        )
        self.security_group.add_ingress_rule(
            entrypoint.security_group, ec2.Port.tcp(GATEWAY_PORT), "From the public load balancer"
        )
        self.security_group.add_ingress_rule(
            entrypoint.security_group, ec2.Port.tcp(ENVOY_ADMIN_PORT), "Health checks of the public load balancer"
        )
        self.service = private_fargate_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            security_group=self.security_group,
            desired_count=desired_count,
        )
        entrypoint.security_group.add_egress_rule(
            self.security_group, ec2.Port.tcp(GATEWAY_PORT), "To the App Mesh gateway"
        )
        entrypoint.security_group.add_egress_rule(
            self.security_group, ec2.Port.tcp(ENVOY_ADMIN_PORT), "Health checks of the App Mesh gateway's Envoy"
        )
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=cluster.vpc,
            port=GATEWAY_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[self.service.load_balancer_target(container_name="envoy", container_port=GATEWAY_PORT)],
            # Envoy itself: its admin interface's /ready answers 200 once the server is LIVE
            # (https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--ready). A check
            # through the gateway (/health on 8080) would go through the mesh's weighted route, so
            # w% of the checks would hit the canary, and a bad canary would take the gateway, and
            # with it every request, out of the load balancer. The versions' health is the
            # virtual nodes' own check (mesh.py) and the canary alarms'. App Mesh's Envoy serves
            # its admin interface on the task's address (IPv4 unless ENVOY_ADMIN_ACCESS_ENABLE_IPV6:
            # https://docs.aws.amazon.com/app-mesh/latest/userguide/envoy-config.html), which only
            # the load balancer's security group may reach, and no listener forwards to.
            health_check=elbv2.HealthCheck(
                path=ENVOY_READY_PATH,
                port=str(ENVOY_ADMIN_PORT),
                interval=Duration.seconds(10),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
                timeout=Duration.seconds(5),
            ),
            deregistration_delay=Duration.seconds(30),
        )
        entrypoint.listener.add_target_groups("Gateway", target_groups=[self.target_group])
