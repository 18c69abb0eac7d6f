"""One version of the Crystal service on Fargate: task definition, containers, ECS service."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_appmesh as appmesh
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from canary_stack.constants import (
    APP_PORT,
    ENVOY_EGRESS_IGNORED_IPS,
    ENVOY_EGRESS_PORT,
    ENVOY_INGRESS_PORT,
    ENVOY_UID,
)
from canary_stack.fargate import acknowledge_task_findings, envoy_container, no_capabilities, private_fargate_service
from canary_stack.log_groups import log_group

# The non-root user and group of crystal_src/Dockerfile, repeated so ECS enforces them too. The group
# is explicit: the image is `scratch`, with no /etc/passwd to give a bare uid a group, so it would be 0.
APP_USER = "10001:10001"


@dataclass(frozen=True)
class MeshMembership:
    """How a version joins App Mesh: its virtual node and the Cloud Map service the node watches."""

    virtual_node: appmesh.IVirtualNode
    discovery: servicediscovery.IService


class CrystalService(Construct):
    """A Fargate service running one version of the Crystal backend.

    `mesh`: what the router asks of the tasks (`CanaryRouter.membership`): when given, the task gets
    an Envoy sidecar and the APPMESH proxy configuration, and registers in the node's Cloud Map
    service; when None, it runs the app alone.
    `image`: named by an immutable tag (canary_stack/image.py), so the task definition changes, and
    ECS rolls the service, exactly when the image does.
    `cpu_architecture`: the tasks' CPU; the image is built for the same one (CanaryImages).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        cluster: ecs.ICluster,
        version: str,
        image: ecs.ContainerImage,
        cpu_architecture: ecs.CpuArchitecture = ecs.CpuArchitecture.X86_64,
        mesh: MeshMembership | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.version = version

        self.log_group = log_group(self, "Logs")

        proxy = None
        if mesh is not None:
            proxy = ecs.AppMeshProxyConfiguration(
                container_name="envoy",
                properties=ecs.AppMeshProxyConfigurationProps(
                    app_ports=[APP_PORT],
                    proxy_ingress_port=ENVOY_INGRESS_PORT,
                    proxy_egress_port=ENVOY_EGRESS_PORT,
                    ignored_uid=ENVOY_UID,
                    egress_ignored_i_ps=list(ENVOY_EGRESS_IGNORED_IPS),
                ),
            )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=256 if mesh is None else 512,
            memory_limit_mib=512 if mesh is None else 1024,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=cpu_architecture,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
            proxy_configuration=proxy,
        )

        self.app_container = self.task_definition.add_container(
            "app",
            container_name="app",
            image=image,
            essential=True,
            user=APP_USER,
            readonly_root_filesystem=True,
            linux_parameters=no_capabilities(self, "AppLinux"),
            port_mappings=[ecs.PortMapping(container_port=APP_PORT, name="http")],
            environment={"PORT": str(APP_PORT), "LOG_LEVEL": "info"},
            # The binary checks itself: the image has no shell or curl.
            health_check=ecs.HealthCheck(
                command=["CMD", "/server", "--health-check"],
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(10),
            ),
            logging=ecs.LogDriver.aws_logs(stream_prefix="app", log_group=self.log_group),
        )
        self.app_container.add_ulimits(ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65536, hard_limit=65536))

        self.envoy_container: ecs.ContainerDefinition | None = None
        if mesh is not None:
            self.envoy_container = envoy_container(
                self.task_definition,
                resource_arn=mesh.virtual_node.virtual_node_arn,
                log_group=self.log_group,
            )
            # Envoy must be HEALTHY before the app starts: the proxy configuration redirects the
            # app's traffic into Envoy, which drops it until it has its config from App Mesh.
            self.app_container.add_container_dependencies(
                ecs.ContainerDependency(
                    container=self.envoy_container, condition=ecs.ContainerDependencyCondition.HEALTHY
                )
            )
            # Least privilege: the task may stream the configuration of its own node only.
            mesh.virtual_node.grant_stream_aggregated_resources(self.task_definition.task_role)

        acknowledge_task_findings(self.task_definition, pulls_from_ecr=True)

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=cluster.vpc,
            description=f"Crystal {version} tasks",
            allow_all_outbound=True,
        )
        self.service = private_fargate_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            security_group=self.security_group,
        )
        if mesh is not None:
            self.service.associate_cloud_map_service(
                service=mesh.discovery, container=self.app_container, container_port=APP_PORT
            )

    @property
    def cfn_service(self) -> ecs.CfnService:
        """The AWS::ECS::Service itself, for the resources that must be created or updated after it."""
        child = self.service.node.default_child
        assert isinstance(child, ecs.CfnService)
        return child

    def allow_from(self, peer: ec2.ISecurityGroup, description: str) -> None:
        """Opens the app port, and only it, to one security group."""
        self.security_group.add_ingress_rule(peer, ec2.Port.tcp(APP_PORT), description)
