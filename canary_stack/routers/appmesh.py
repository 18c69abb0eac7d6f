"""The workshop's router (`-c trafficRouter=appmesh`): App Mesh, kept as a tested reproduction.

AWS App Mesh reached end of support on 2026-09-30, so this router is never deployed: its template
carries a Rule that fails every change set (`refuse_every_change_set`), and the tools refuse it
before they build anything. What it builds: the mesh, a virtual node per version (each version's
task gets an Envoy sidecar through `membership`), the weighted virtual router, the virtual service
and its Cloud Map name, a virtual gateway behind the public load balancer (appmesh_tasks.py), and
each Envoy's stats exported to CloudWatch for the alarms.
"""

from __future__ import annotations

import re

from aws_cdk import Annotations, CfnParameter, CfnResource, CfnRule, CfnRuleAssertion, Duration, Fn, Stack
from aws_cdk import aws_appmesh as appmesh
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from canary_stack.constants import (
    APP_MESH_END_OF_SUPPORT_DATE,
    APP_MESH_REFUSAL,
    APP_PORT,
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    CANARY_NODE,
    GATEWAY_NAME,
    GATEWAY_PORT,
    HEALTH_PATH,
    MESH_NAME,
    NAMESPACE_NAME,
    PRODUCTION_NODE,
    ROUTE_NAME,
    ROUTER_NAME,
    VIRTUAL_SERVICE_NAME,
    WORKSHOP_CANARY_HEADER,
)
from canary_stack.observability import PERIOD, VersionSignals
from canary_stack.routers.appmesh_tasks import (
    CODE_CLASS_DIMENSION,
    CONNECTION_MANAGER_DIMENSION,
    INGRESS,
    NODE_DIMENSION,
    EnvoyStatsExport,
    MeshGateway,
)
from canary_stack.routers.base import CANARY, PRODUCTION, CanaryRouter, Version
from canary_stack.service import CrystalService, MeshMembership

APP_MESH_END_OF_SUPPORT = (
    f"AWS App Mesh reached end of support on {APP_MESH_END_OF_SUPPORT_DATE}: this template reproduces the "
    "workshop for review and tests, and its AppMeshEndOfSupportRule fails any deploy of it. The default "
    "router (-c trafficRouter=alb) is the same canary without App Mesh."
)

# The virtual service's name must resolve inside the VPC, or a meshed client fails its DNS lookup
# before Envoy ever sees the connection. Envoy then routes by name, not by this address, so it is
# a placeholder (the workshop used the same trick) that nothing listens on.
VIRTUAL_SERVICE_PLACEHOLDER_IP = "10.10.10.10"


def _retries() -> appmesh.HttpRetryPolicy:
    # Bounded: two more tries within the request's timeout, only for failures a retry can fix.
    return appmesh.HttpRetryPolicy(
        retry_attempts=2,
        retry_timeout=Duration.seconds(2),
        http_retry_events=[appmesh.HttpRetryEvent.SERVER_ERROR, appmesh.HttpRetryEvent.GATEWAY_ERROR],
        tcp_retry_events=[appmesh.TcpRetryEvent.CONNECTION_ERROR],
    )


REQUEST_TIMEOUT = Duration.seconds(15)


def _health_check() -> appmesh.HealthCheck:
    # The workshop's health check.
    return appmesh.HealthCheck.http(
        path=HEALTH_PATH,
        interval=Duration.seconds(10),
        timeout=Duration.seconds(5),
        healthy_threshold=3,
        unhealthy_threshold=3,
    )


def refuse_every_change_set(stack: Stack) -> CfnRule:
    """Makes every change set of `stack` fail before CloudFormation creates anything.

    CloudFormation evaluates a template's Rules when it makes a change set, before it touches a
    resource, and fails the operation when an assertion is false
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html),
    as CDK's own CheckBootstrapVersion rule does. Here the assertion is "the parameter is not its
    only allowed value": false for every value CloudFormation accepts, so no `--parameters`
    override gets past it. `cdk deploy` publishes the assets (the image build and push) before it
    makes the change set, so those still happen; the Makefile and the rollout refuse earlier.
    """
    end_of_support = CfnParameter(
        stack,
        "AppMeshEndOfSupport",
        type="String",
        default=APP_MESH_END_OF_SUPPORT_DATE,
        allowed_values=[APP_MESH_END_OF_SUPPORT_DATE],
        description="The day AWS App Mesh stopped serving; fixed, so that the AppMeshEndOfSupport rule always fails",
    )
    return CfnRule(
        stack,
        "AppMeshEndOfSupportRule",
        assertions=[
            CfnRuleAssertion(
                assert_=Fn.condition_not(
                    Fn.condition_equals(end_of_support.value_as_string, APP_MESH_END_OF_SUPPORT_DATE)
                ),
                assert_description=APP_MESH_REFUSAL,
            )
        ],
    )


def envoy_namespace(stack: Stack) -> str:
    return f"{stack.stack_name}/Envoy"


def envoy_signals(namespace: str, node_name: str) -> VersionSignals:
    """A version in App Mesh, from the stats its Envoy sidecar exports (see EnvoyStatsExport)."""

    def metric(name: str, statistic: str, **dimensions: str) -> cloudwatch.Metric:
        # Ingress only: the requests callers sent to this version, not Envoy's own admin and
        # health-check traffic (which would dilute the 5xx rate) nor the app's outbound calls.
        return cloudwatch.Metric(
            namespace=namespace,
            metric_name=name,
            dimensions_map={NODE_DIMENSION: node_name, CONNECTION_MANAGER_DIMENSION: INGRESS, **dimensions},
            statistic=statistic,
            period=PERIOD,
        )

    ms = "ms_" + re.sub(r"[^a-z0-9]", "_", node_name.lower())
    return VersionSignals(
        requests=metric("envoy.http.downstream_rq_total", "Sum"),
        errors=metric("envoy.http.downstream_rq_xx", "Sum", **{CODE_CLASS_DIMENSION: "5"}),
        # Envoy measures in milliseconds; the alarms compare seconds, as with the ALB.
        # The id names the node: the vs-production alarm nests both versions' expressions in one.
        latency_p99=cloudwatch.MathExpression(
            expression=f"{ms} / 1000",
            using_metrics={ms: metric("envoy.http.downstream_rq_time", "p99")},
            period=PERIOD,
            label="p99 (s)",
        ),
    )


class MeshCanary(Construct):
    """Everything in App Mesh that splits `crystal`'s traffic between production and canary."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        namespace: servicediscovery.INamespace,
        canary_weight: int,
    ) -> None:
        super().__init__(scope, id)
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be 0..100, got {canary_weight}")

        # DROP_ALL: a meshed task reaches only the backends the mesh declares.
        self.mesh = appmesh.Mesh(self, "Mesh", mesh_name=MESH_NAME, egress_filter=appmesh.MeshFilterType.DROP_ALL)

        self.production = self._version("Production", PRODUCTION_NODE, namespace)
        self.canary = self._version("Canary", CANARY_NODE, namespace)

        self.router = appmesh.VirtualRouter(
            self,
            "Router",
            mesh=self.mesh,
            virtual_router_name=ROUTER_NAME,
            listeners=[appmesh.VirtualRouterListener.http(APP_PORT)],
        )
        # Testers reach the canary at any weight, 0 included. Through the load balancer and the
        # gateway only `canary-fleet` arrives (the load balancer drops `canary_fleet`, see
        # constants.py); callers inside the mesh may still send the workshop's `canary_fleet`.
        self.header_route = self._header_route("CanaryHeaderRoute", "canary-header", CANARY_HEADER, priority=0)
        self.workshop_header_route = self._header_route(
            "WorkshopHeaderRoute", "workshop-header", WORKSHOP_CANARY_HEADER, priority=1
        )
        # The canary's traffic step: the only resource a change of canaryWeight touches.
        self.route = appmesh.Route(
            self,
            "WeightedRoute",
            mesh=self.mesh,
            virtual_router=self.router,
            route_name=ROUTE_NAME,
            route_spec=appmesh.RouteSpec.http(
                weighted_targets=[
                    appmesh.WeightedTarget(virtual_node=self.production.virtual_node, weight=100 - canary_weight),
                    appmesh.WeightedTarget(virtual_node=self.canary.virtual_node, weight=canary_weight),
                ],
                match=appmesh.HttpRouteMatch(path=appmesh.HttpRoutePathMatch.starts_with("/")),
                priority=10,
                retry_policy=_retries(),
                timeout=appmesh.HttpTimeout(per_request=REQUEST_TIMEOUT),
            ),
        )

        route = self.route.node.default_child
        assert isinstance(route, CfnResource)
        self.cfn_route = route

        self.virtual_service = appmesh.VirtualService(
            self,
            "VirtualService",
            virtual_service_name=VIRTUAL_SERVICE_NAME,
            virtual_service_provider=appmesh.VirtualServiceProvider.virtual_router(self.router),
        )
        name_record = servicediscovery.Service(
            self,
            "VirtualServiceName",
            namespace=namespace,
            name=VIRTUAL_SERVICE_NAME.split(".")[0],
            dns_record_type=servicediscovery.DnsRecordType.A,
            dns_ttl=Duration.seconds(300),
        )
        name_record.register_ip_instance("Placeholder", ipv4=VIRTUAL_SERVICE_PLACEHOLDER_IP)

        self.gateway = appmesh.VirtualGateway(
            self,
            "Gateway",
            mesh=self.mesh,
            virtual_gateway_name=GATEWAY_NAME,
            listeners=[appmesh.VirtualGatewayListener.http(port=GATEWAY_PORT, health_check=_health_check())],
        )
        self.gateway_route = self.gateway.add_gateway_route(
            "GatewayRoute",
            gateway_route_name=f"{GATEWAY_NAME}-route",
            route_spec=appmesh.GatewayRouteSpec.http(
                route_target=self.virtual_service,
                match=appmesh.HttpGatewayRouteMatch(path=appmesh.HttpGatewayRoutePathMatch.starts_with("/")),
            ),
        )

    def _header_route(self, id: str, name: str, header: str, *, priority: int) -> appmesh.Route:
        return appmesh.Route(
            self,
            id,
            mesh=self.mesh,
            virtual_router=self.router,
            route_name=f"{ROUTE_NAME}-{name}",
            route_spec=appmesh.RouteSpec.http(
                weighted_targets=[appmesh.WeightedTarget(virtual_node=self.canary.virtual_node, weight=1)],
                match=appmesh.HttpRouteMatch(
                    path=appmesh.HttpRoutePathMatch.starts_with("/"),
                    headers=[appmesh.HeaderMatch.value_is(header, CANARY_HEADER_VALUE)],
                ),
                priority=priority,
                retry_policy=_retries(),
                timeout=appmesh.HttpTimeout(per_request=REQUEST_TIMEOUT),
            ),
        )

    def _version(self, id: str, node_name: str, namespace: servicediscovery.INamespace) -> MeshMembership:
        discovery = servicediscovery.Service(
            self,
            f"{id}Discovery",
            namespace=namespace,
            name=node_name,
            dns_record_type=servicediscovery.DnsRecordType.A,
            dns_ttl=Duration.seconds(10),
            custom_health_check=servicediscovery.HealthCheckCustomConfig(failure_threshold=1),
        )
        node = appmesh.VirtualNode(
            self,
            f"{id}Node",
            mesh=self.mesh,
            virtual_node_name=node_name,
            service_discovery=appmesh.ServiceDiscovery.cloud_map(discovery),
            listeners=[
                appmesh.VirtualNodeListener.http(
                    port=APP_PORT,
                    health_check=_health_check(),
                    timeout=appmesh.HttpTimeout(per_request=REQUEST_TIMEOUT),
                    # A task answering 5xx is ejected: with a broken canary task, the callers'
                    # Envoys stop sending it traffic for 30 s (at most half of the hosts at once).
                    outlier_detection=appmesh.OutlierDetection(
                        base_ejection_duration=Duration.seconds(30),
                        interval=Duration.seconds(10),
                        max_ejection_percent=50,
                        max_server_errors=5,
                    ),
                )
            ],
        )
        return MeshMembership(virtual_node=node, discovery=discovery)


class AppMeshRouter(CanaryRouter):
    """The workshop's canary in App Mesh, refused at deploy (see the module's docstring).

    Attributes besides the common ones: `refusal` (the Rule), `namespace` (Cloud Map), `mesh`
    (MeshCanary: the mesh, nodes, routes), and after `route`, `gateway` (MeshGateway).
    `weighted_resource` is the weighted route.
    """

    name = "appmesh"

    def __init__(self, scope: Construct, id: str, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        stack = Stack.of(self)
        Annotations.of(stack).add_warning_v2("crystal-canary:app-mesh-end-of-support", APP_MESH_END_OF_SUPPORT)
        self.refusal = refuse_every_change_set(stack)
        # Only this router uses Cloud Map: the nodes' discovery and the virtual service's name.
        self.namespace = servicediscovery.PrivateDnsNamespace(
            self, "Namespace", name=NAMESPACE_NAME, vpc=self.network.vpc
        )
        self.mesh = MeshCanary(self, "Mesh", namespace=self.namespace, canary_weight=self.canary_weight)
        self.weighted_resource = self.mesh.cfn_route

    def membership(self, version: Version) -> MeshMembership:
        return {PRODUCTION: self.mesh.production, CANARY: self.mesh.canary}[version]

    def route(self, *, production: CrystalService, canary: CrystalService) -> None:
        self.move_traffic_after(production, canary)
        self.gateway = MeshGateway(
            self, "Gateway", cluster=self.network.cluster, gateway=self.mesh.gateway, entrypoint=self.entrypoint
        )
        namespace = envoy_namespace(Stack.of(self))
        for version in (production, canary):
            version.allow_from(self.gateway.security_group, "From the App Mesh gateway")
            assert version.envoy_container is not None  # a meshed version always has its Envoy
            EnvoyStatsExport(
                version,
                "EnvoyStats",
                task_definition=version.task_definition,
                envoy=version.envoy_container,
                log_group=version.log_group,
                namespace=namespace,
            )
        self.production_signals = envoy_signals(namespace, PRODUCTION_NODE)
        self.canary_signals = envoy_signals(namespace, CANARY_NODE)
