"""What every Fargate service of the stack shares: the private service itself, the hardening of its
containers, the App Mesh Envoy and the export of Envoy's stats to CloudWatch.

The Crystal versions (service.py) and the App Mesh gateway (gateway.py) both build on these, so
they live apart from either.
"""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from canary_stack.constants import ENVOY_ADMIN_PORT, ENVOY_IMAGE, ENVOY_UID
from canary_stack.nag import acknowledge

# Pinned like Envoy: an agent that changes under a running canary changes what the alarms see.
CLOUDWATCH_AGENT_IMAGE = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300062.0b1304"
# Where the agent writes at run time, each a scratch volume under a read-only root file system.
# ECS creates a task's scratch (bind mount) volumes owned by root, mode 0755, so the agent, which
# runs as Envoy's user, could not write them: SCRATCH_OWNER_IMAGE hands them over first (below).
AGENT_SCRATCH = {
    "cwagent-etc": "/opt/aws/amazon-cloudwatch-agent/etc",
    "cwagent-var": "/opt/aws/amazon-cloudwatch-agent/var",
    "cwagent-logs": "/opt/aws/amazon-cloudwatch-agent/logs",
    "cwagent-tmp": "/tmp",
}
# A one-shot container that only runs `chown` on the agent's scratch volumes: busybox, from ECR
# Public's copy of Docker's official images (no Docker Hub pull limit), pinned.
SCRATCH_OWNER_IMAGE = "public.ecr.aws/docker/library/busybox:1.37.0"
SCRATCH_OWNER = "scratch-owner"
STATSD_PORT = 8125  # App Mesh Envoy's default DogStatsD port, set explicitly on both sides

# The agent's statsd input (Telegraf's) joins the parts of a metric name with `metric_separator`,
# `_` by default, so Envoy's `envoy.http.downstream_rq_xx` would arrive in CloudWatch as
# `envoy_http_downstream_rq_xx`. The agent passes the key through to Telegraf
# (aws/amazon-cloudwatch-agent: translator/translate/metrics/metrics_collect/statsd/
# ruleMetricSeparator.go, statsd_test.go TestStatsD_MetricSeparator); `.` keeps Envoy's names, which
# the alarms (observability.py) ask for.
STATSD_METRIC_SEPARATOR = "."

# Envoy tag names with ENABLE_ENVOY_STATS_TAGS=1 (App Mesh adds the node's name to every stat).
NODE_DIMENSION = "appmesh.virtual_node"
CODE_CLASS_DIMENSION = "envoy.response_code_class"
# Envoy's tag for the HTTP connection manager a stat belongs to (its stat prefix; Envoy's
# well-known tag names, source/common/config/well_known_names.h). App Mesh names the connection
# manager of a virtual node's (single) listener `ingress`: requests from callers to the app.
# Envoy's own admin interface (/ready, /stats, the ECS health check) counts under `admin`, and the
# app's outbound calls under `egress` (https://docs.aws.amazon.com/app-mesh/latest/userguide/metrics.html,
# https://docs.aws.amazon.com/app-mesh/latest/userguide/envoy-metrics.html).
CONNECTION_MANAGER_DIMENSION = "envoy.http_conn_manager_prefix"
INGRESS = "ingress"


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


class EnvoyStatsExport(Construct):
    """A CloudWatch agent sidecar that receives a version's Envoy stats and publishes them.

    Envoy sends DogStatsD to the agent on localhost. The agent rolls the stats up to the node, the
    HTTP connection manager (ingress, egress or admin) and the response code class, so the alarms'
    dimensions are exactly those, whatever other tags Envoy adds. It runs as Envoy's user: App
    Mesh's iptables rules let that user's traffic past the proxy, which would otherwise drop the
    agent's calls to CloudWatch (egress filter DROP_ALL).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        task_definition: ecs.TaskDefinition,
        envoy: ecs.ContainerDefinition,
        log_group: logs.ILogGroup,
        namespace: str,
    ) -> None:
        super().__init__(scope, id)
        if envoy.task_definition is not task_definition:
            raise ValueError("envoy must be a container of task_definition: the agent reads its stats on localhost")
        for name, value in (
            ("ENABLE_ENVOY_STATS_TAGS", "1"),
            ("ENABLE_ENVOY_DOG_STATSD", "1"),
            ("STATSD_PORT", str(STATSD_PORT)),
        ):
            envoy.add_environment(name, value)

        config = {
            # No host dimension: a replaced task would start a new series the alarms never see.
            "agent": {"omit_hostname": True},
            "metrics": {
                "namespace": namespace,
                "metrics_collected": {
                    "statsd": {
                        "service_address": f":{STATSD_PORT}",
                        "metrics_collection_interval": 10,
                        "metrics_aggregation_interval": 60,
                        "metric_separator": STATSD_METRIC_SEPARATOR,
                    }
                },
                "aggregation_dimensions": [
                    [NODE_DIMENSION, CONNECTION_MANAGER_DIMENSION],
                    [NODE_DIMENSION, CONNECTION_MANAGER_DIMENSION, CODE_CLASS_DIMENSION],
                ],
            },
        }
        self.container = task_definition.add_container(
            "cwagent",
            container_name="cwagent",
            image=ecs.ContainerImage.from_registry(CLOUDWATCH_AGENT_IMAGE),
            # Serving does not stop when monitoring does; the alarms then see no data (not
            # breaching) and the dashboard shows the gap.
            essential=False,
            user=str(ENVOY_UID),
            memory_reservation_mib=64,
            linux_parameters=no_capabilities(self, "Linux"),
            environment={"CW_CONFIG_CONTENT": json.dumps(config, sort_keys=True, separators=(",", ":"))},
            readonly_root_filesystem=True,
            logging=ecs.LogDriver.aws_logs(stream_prefix="cwagent", log_group=log_group),
        )
        for volume, path in AGENT_SCRATCH.items():
            task_definition.add_volume(name=volume)
            self.container.add_mount_points(ecs.MountPoint(container_path=path, source_volume=volume, read_only=False))
        self.scratch_owner = self._scratch_owner(task_definition, log_group)
        self.container.add_container_dependencies(
            ecs.ContainerDependency(container=self.scratch_owner, condition=ecs.ContainerDependencyCondition.SUCCESS)
        )

        # PutMetricData has no resource-level permissions; the namespace condition is the
        # tightest scope CloudWatch offers.
        self.policy = iam.Policy(
            self,
            "PutMetrics",
            statements=[
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
                )
            ],
        )
        self.policy.attach_to_role(task_definition.task_role)
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions; the statement is limited to "
            "this stack's Envoy namespace by the cloudwatch:namespace condition key",
        )

    def _scratch_owner(self, task_definition: ecs.TaskDefinition, log_group: logs.ILogGroup) -> ecs.ContainerDefinition:
        """Gives the agent's scratch volumes to Envoy's user before the agent starts.

        ECS mounts a task's bind-mount volumes owned by root (mode 0755) and has no setting for
        their owner; AWS's answer is a non-essential init container that changes the owner and
        that the other containers wait for with condition SUCCESS (aws/containers-roadmap#938).
        Changing an owner needs root and CAP_CHOWN: this container keeps that one capability, has
        a read-only root file system, no network use and no command but `chown`, and exits.
        """
        owner = task_definition.add_container(
            SCRATCH_OWNER,
            container_name=SCRATCH_OWNER,
            image=ecs.ContainerImage.from_registry(SCRATCH_OWNER_IMAGE),
            essential=False,
            user="0",
            memory_reservation_mib=16,
            entry_point=["chown"],
            command=[f"{ENVOY_UID}:{ENVOY_UID}", *(f"/scratch/{volume}" for volume in AGENT_SCRATCH)],
            readonly_root_filesystem=True,
            linux_parameters=only_capability(self, "OwnerLinux", ecs.Capability.CHOWN),
            logging=ecs.LogDriver.aws_logs(stream_prefix=SCRATCH_OWNER, log_group=log_group),
        )
        owner.add_mount_points(
            *(
                ecs.MountPoint(container_path=f"/scratch/{volume}", source_volume=volume, read_only=False)
                for volume in AGENT_SCRATCH
            )
        )
        return owner
