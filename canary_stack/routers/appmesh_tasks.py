"""The App Mesh router's Fargate parts: the virtual gateway's Envoy behind the public load balancer,
and the export of each Envoy's stats to CloudWatch (what the alarms read with App Mesh)."""

from __future__ import annotations

import json

from aws_cdk import aws_appmesh as appmesh
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from constructs import Construct

from canary_stack.constants import ENVOY_ADMIN_PORT, ENVOY_UID, GATEWAY_PORT
from canary_stack.fargate import (
    acknowledge_task_findings,
    envoy_container,
    no_capabilities,
    only_capability,
    private_fargate_service,
)
from canary_stack.ingress import PublicEntrypoint, target_health_check
from canary_stack.log_groups import log_group
from canary_stack.nag import acknowledge

ENVOY_READY_PATH = "/ready"

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
        entrypoint.reach(
            self.security_group,
            GATEWAY_PORT,
            inbound="From the public load balancer",
            outbound="To the App Mesh gateway",
        )
        entrypoint.reach(
            self.security_group,
            ENVOY_ADMIN_PORT,
            inbound="Health checks of the public load balancer",
            outbound="Health checks of the App Mesh gateway's Envoy",
        )
        self.service = private_fargate_service(
            self,
            cluster=cluster,
            task_definition=self.task_definition,
            security_group=self.security_group,
        )
        # Envoy itself: its admin interface's /ready answers 200 once the server is LIVE
        # (https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--ready). A check
        # through the gateway (/health on 8080) would go through the mesh's weighted route, so
        # w% of the checks would hit the canary, and a bad canary would take the gateway, and
        # with it every request, out of the load balancer. The versions' health is the
        # virtual nodes' own check (mesh.py) and the canary alarms'. App Mesh's Envoy serves
        # its admin interface on the task's address (IPv4 unless ENVOY_ADMIN_ACCESS_ENABLE_IPV6:
        # https://docs.aws.amazon.com/app-mesh/latest/userguide/envoy-config.html), which only
        # the load balancer's security group may reach, and no listener forwards to.
        self.target_group = entrypoint.forward_to(
            self,
            self.service,
            container="envoy",
            port=GATEWAY_PORT,
            health_check=target_health_check(ENVOY_READY_PATH, port=ENVOY_ADMIN_PORT),
            action="Gateway",
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
