"""One version of the Crystal service on Fargate: task definition, containers, ECS service."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_appmesh as appmesh
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from canary_stack.constants import (
    APP_PORT,
    ENVOY_ADMIN_PORT,
    ENVOY_EGRESS_IGNORED_IPS,
    ENVOY_EGRESS_PORT,
    ENVOY_IMAGE,
    ENVOY_INGRESS_PORT,
    ENVOY_UID,
)
from canary_stack.log_groups import log_group
from canary_stack.nag import acknowledge

ENVOY_SCRATCH_VOLUME = "envoy-tmp"
APP_UID = "10001"  # the non-root user of crystal_src/Dockerfile, repeated so ECS enforces it too


@dataclass(frozen=True)
class MeshMembership:
    """How a version joins App Mesh: its virtual node and the Cloud Map service the node watches."""

    virtual_node: appmesh.IVirtualNode
    discovery: servicediscovery.IService


def envoy_container(
    task: ecs.TaskDefinition, *, resource_arn: str, log_group: logs.ILogGroup
) -> ecs.ContainerDefinition:
    """The App Mesh Envoy, as a sidecar or as a gateway's only container.

    Its root file system is read-only; Envoy writes its bootstrap configuration to /tmp, which is
    a task-local scratch volume.
    """
    task.add_volume(name=ENVOY_SCRATCH_VOLUME)
    envoy = task.add_container(
        "envoy",
        container_name="envoy",
        image=ecs.ContainerImage.from_registry(ENVOY_IMAGE),
        essential=True,
        user=str(ENVOY_UID),
        memory_reservation_mib=128,
        readonly_root_filesystem=True,
        linux_parameters=no_capabilities(task, "EnvoyLinux"),
        environment={
            "APPMESH_RESOURCE_ARN": resource_arn,
            "ENVOY_LOG_LEVEL": "info",
        },
        # App Mesh's documented liveness probe: the admin API reports LIVE once Envoy has its
        # configuration from the control plane.
        health_check=ecs.HealthCheck(
            command=[
                "CMD-SHELL",
                f"curl -s http://localhost:{ENVOY_ADMIN_PORT}/server_info | grep state | grep -q LIVE",
            ],
            interval=Duration.seconds(5),
            timeout=Duration.seconds(2),
            retries=3,
            start_period=Duration.seconds(10),
        ),
        logging=ecs.LogDriver.aws_logs(stream_prefix="envoy", log_group=log_group),
    )
    envoy.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume=ENVOY_SCRATCH_VOLUME, read_only=False))
    return envoy


def no_capabilities(scope: Construct, id: str) -> ecs.LinuxParameters:
    """Drops every Linux capability (none of our processes needs one) and runs an init process
    that forwards SIGTERM to the main process and reaps zombies."""
    params = ecs.LinuxParameters(scope, id, init_process_enabled=True)
    params.drop_capabilities(ecs.Capability.ALL)
    return params


def private_fargate_service(
    scope: Construct,
    *,
    cluster: ecs.ICluster,
    task_definition: ecs.FargateTaskDefinition,
    security_group: ec2.ISecurityGroup,
    desired_count: int,
) -> ecs.FargateService:
    """Every service of the stack: private subnets, no public IP, full capacity during a
    deployment, and the circuit breaker rolling a failed deployment back."""
    return ecs.FargateService(
        scope,
        "Service",
        cluster=cluster,
        task_definition=task_definition,
        desired_count=desired_count,
        min_healthy_percent=100,
        max_healthy_percent=200,
        assign_public_ip=False,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        security_groups=[security_group],
        circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
    )


def acknowledge_task_findings(task: ecs.TaskDefinition, *, pulls_from_ecr: bool) -> None:
    acknowledge(
        task,
        "AwsSolutions-ECS2",
        "The environment holds only non-secret settings (PORT, LOG_LEVEL, APPMESH_RESOURCE_ARN, "
        "Envoy switches); this service has no secrets",
    )
    if pulls_from_ecr:
        acknowledge(
            task,
            "AwsSolutions-IAM5[Resource::*]",
            "Execution role: ecr:GetAuthorizationToken has no resource-level permissions (pulls "
            "themselves are limited to the one repository)",
        )


class CrystalService(Construct):
    """A Fargate service running one version of the Crystal backend.

    `mesh`: when given, the task gets an Envoy sidecar and the APPMESH proxy configuration, and
    registers in the node's Cloud Map service; when None (the ALB router), it runs the app alone.
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
        desired_count: int = 1,
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
            user=APP_UID,
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
            desired_count=desired_count,
        )
        if mesh is not None:
            self.service.associate_cloud_map_service(
                service=mesh.discovery, container=self.app_container, container_port=APP_PORT
            )

    def allow_from(self, peer: ec2.ISecurityGroup, description: str) -> None:
        """Opens the app port, and only it, to one security group."""
        self.security_group.add_ingress_rule(peer, ec2.Port.tcp(APP_PORT), description)
