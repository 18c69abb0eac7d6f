"""App Mesh: the mesh, a virtual node per version, the weighted router, the virtual service.

AWS App Mesh reached end of support on 2026-09-30; see canary_stack/alb_router.py for the same
canary without it (`-c trafficRouter=alb`).
"""

from __future__ import annotations

from aws_cdk import CfnResource, Duration
from aws_cdk import aws_appmesh as appmesh
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_servicediscovery as servicediscovery
from constructs import Construct

from canary_stack.constants import (
    APP_PORT,
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    CANARY_NODE,
    GATEWAY_NAME,
    GATEWAY_PORT,
    HEALTH_PATH,
    MESH_NAME,
    PRODUCTION_NODE,
    ROUTE_NAME,
    ROUTER_NAME,
    VIRTUAL_SERVICE_NAME,
    WORKSHOP_CANARY_HEADER,
)
from canary_stack.service import MeshMembership

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

    def move_traffic_after(self, *services: ecs.CfnService) -> None:
        """Promotion safety: the weighted route changes only after these services are updated and
        stable, so on a deploy that changes production's image and sets the weight to 0,
        production rolls first."""
        route = self.route.node.default_child
        assert isinstance(route, CfnResource)
        for service in services:
            route.add_dependency(service)

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
