"""What every Fargate service of the stack shares: the private service itself, the hardening of its
containers, and the App Mesh Envoy sidecar.

The Crystal versions (service.py) and the routers' own services (canary_stack/routers/) build on
these, so they live apart from either.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from constructs import Construct

from canary_stack.constants import ENVOY_ADMIN_PORT, ENVOY_IMAGE, ENVOY_UID
from canary_stack.nag import acknowledge


def envoy_container(
    task: ecs.TaskDefinition, *, resource_arn: str, log_group: logs.ILogGroup
) -> ecs.ContainerDefinition:
    """The App Mesh Envoy, as a sidecar or as a gateway's only container.

    Its root file system is writable, the one exception to the stack's read-only rule: App Mesh's
    agent writes Envoy's bootstrap configuration to /tmp at start-up (`mktemp
    /tmp/envoycfg.XXXXXX.yaml`) and Envoy its admin access log there, as Envoy's user (1337). A
    scratch volume on /tmp does not help: ECS mounts it root-owned, 0755, and Envoy crashes the
    same way. App Mesh documents no other writable path; its issues record the crash and the
    workaround of a writable root file system (aws/aws-app-mesh-roadmap#433, #265;
    aws/aws-app-mesh-controller-for-k8s#351). Envoy still runs without root and without any
    Linux capability.
    """
    envoy = task.add_container(
        "envoy",
        container_name="envoy",
        image=ecs.ContainerImage.from_registry(ENVOY_IMAGE),
        essential=True,
        user=str(ENVOY_UID),
        memory_reservation_mib=128,
        readonly_root_filesystem=False,
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
    return envoy


def no_capabilities(scope: Construct, id: str) -> ecs.LinuxParameters:
    """Drops every Linux capability (none of our processes needs one) and runs an init process
    that forwards SIGTERM to the main process and reaps zombies."""
    params = ecs.LinuxParameters(scope, id, init_process_enabled=True)
    params.drop_capabilities(ecs.Capability.ALL)
    return params


# The capabilities a container starts with unless dropped (Docker's defaults, which ECS's
# KernelCapabilities add to and drop from: https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_KernelCapabilities.html).
DEFAULT_CAPABILITIES = (
    ecs.Capability.AUDIT_WRITE,
    ecs.Capability.CHOWN,
    ecs.Capability.DAC_OVERRIDE,
    ecs.Capability.FOWNER,
    ecs.Capability.FSETID,
    ecs.Capability.KILL,
    ecs.Capability.MKNOD,
    ecs.Capability.NET_BIND_SERVICE,
    ecs.Capability.NET_RAW,
    ecs.Capability.SETFCAP,
    ecs.Capability.SETGID,
    ecs.Capability.SETPCAP,
    ecs.Capability.SETUID,
    ecs.Capability.SYS_CHROOT,
)


def only_capability(scope: Construct, id: str, capability: ecs.Capability) -> ecs.LinuxParameters:
    """Like no_capabilities, but keeps one default capability a process cannot do without.

    It drops every other default instead of dropping ALL and adding the one back: "Tasks launched
    on AWS Fargate only support adding the SYS_PTRACE kernel capability" (KernelCapabilities, above).
    """
    if capability not in DEFAULT_CAPABILITIES:
        raise ValueError(f"{capability} is not a default capability; Fargate cannot add it")
    params = ecs.LinuxParameters(scope, id, init_process_enabled=True)
    params.drop_capabilities(*(c for c in DEFAULT_CAPABILITIES if c != capability))
    return params


def private_fargate_service(
    scope: Construct,
    *,
    cluster: ecs.ICluster,
    task_definition: ecs.FargateTaskDefinition,
    security_group: ec2.ISecurityGroup,
) -> ecs.FargateService:
    """Every service of the stack: one task (a demo's canary), private subnets, no public IP, full
    capacity during a deployment, and the circuit breaker rolling a failed deployment back."""
    return ecs.FargateService(
        scope,
        "Service",
        cluster=cluster,
        task_definition=task_definition,
        desired_count=1,
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
