"""What every traffic router is: the one shape the stack knows.

A router splits the requests that reach the service between production and canary by weight,
sends testers' `canary-fleet: true` requests to the canary at any weight, and says where the
alarms and the dashboard read each version's requests, errors and latency. The services and the
images are the same whichever router is picked; the router is the only part that differs.

Building one takes two calls, because a router may shape the tasks it routes to (App Mesh adds an
Envoy sidecar to each version) before it can route to them:

    router = RouterClass(stack, "Router", network=..., entrypoint=..., canary_weight=10, sticky_seconds=0)
    production = CrystalService(..., mesh=router.membership(PRODUCTION))
    canary = CrystalService(..., mesh=router.membership(CANARY))
    router.route(production=production, canary=canary)

After `route` every router exposes the same attributes:
* `production_signals`, `canary_signals`: VersionSignals for the alarms and the dashboard;
* `weighted_resource`: the one CloudFormation resource that holds the weights. A change of
  canaryWeight changes that resource and nothing else, and it is updated only after both ECS
  services (a promotion rolls production before traffic moves).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from aws_cdk import CfnResource
from constructs import Construct

from canary_stack.ingress import PublicEntrypoint
from canary_stack.network import Network
from canary_stack.observability import VersionSignals
from canary_stack.service import CrystalService, MeshMembership

Version = Literal["production", "canary"]
PRODUCTION: Version = "production"
CANARY: Version = "canary"


class CanaryRouter(Construct):
    """The base of every router: checks the common arguments and holds the common attributes.

    `canary_weight`: % of requests for the canary, 0..100.
    `sticky_seconds`: 0 (no stickiness) for every router; only a router that can keep a client on
    one version (the ALB's target group stickiness) accepts more.
    """

    name: ClassVar[str]  # the value of -c trafficRouter that picks it
    supports_stickiness: ClassVar[bool] = False

    production_signals: VersionSignals
    canary_signals: VersionSignals
    weighted_resource: CfnResource

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        network: Network,
        entrypoint: PublicEntrypoint,
        canary_weight: int,
        sticky_seconds: int = 0,
    ) -> None:
        super().__init__(scope, id)
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be 0..100, got {canary_weight}")
        if sticky_seconds < 0:
            raise ValueError(f"sticky_seconds must be 0 (off) or more, got {sticky_seconds}")
        if sticky_seconds and not self.supports_stickiness:
            raise ValueError(f"sticky_seconds must be 0 with the {self.name} router, got {sticky_seconds}")
        self.network = network
        self.entrypoint = entrypoint
        self.canary_weight = canary_weight
        self.sticky_seconds = sticky_seconds

    def membership(self, version: Version) -> MeshMembership | None:
        """What a version's tasks need to join this router (None: nothing, the app runs alone)."""
        return None

    def route(self, *, production: CrystalService, canary: CrystalService) -> None:
        """Connects the router to both versions and sets the attributes above."""
        raise NotImplementedError

    def move_traffic_after(self, production: CrystalService, canary: CrystalService) -> None:
        """Promotion safety, the same for every router: services first, traffic second."""
        for version in (production, canary):
            self.weighted_resource.add_dependency(version.cfn_service)
