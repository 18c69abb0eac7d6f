"""The canary stack: network, image, two versions of the service, the traffic router, the alarms.

The router is App Mesh (default; MeshCanary + MeshGateway) or the load balancer itself (AlbCanary),
chosen by `trafficRouter`; everything else is the same construct either way.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, CfnOutput, Stack
from constructs import Construct

from canary_stack.alb_router import AlbCanary
from canary_stack.config import CanaryConfig
from canary_stack.constants import CANARY_NODE, CRYSTAL_SRC, PRODUCTION_NODE
from canary_stack.gateway import MeshGateway
from canary_stack.image import CanaryImages
from canary_stack.ingress import PublicEntrypoint
from canary_stack.mesh import MeshCanary
from canary_stack.network import Network
from canary_stack.observability import (
    CanaryObservability,
    EnvoyStatsExport,
    envoy_namespace,
    envoy_signals,
    target_group_signals,
)
from canary_stack.service import CrystalService

APP_MESH_END_OF_SUPPORT = (
    "AWS App Mesh reached end of support on 2026-09-30: accounts that never used it cannot create a "
    "mesh, and it gets no fixes. Deploy the same canary without it with -c trafficRouter=alb "
    "(README: 'Without App Mesh')."
)


class CanaryStack(Stack):
    """Production and canary of the Crystal backend, with `canary_weight`% of requests to the canary.

    `disposable_repository=True` makes the image repository go with the stack, images included (the
    deploy check's own repository); the default keeps a user-facing repository and its images.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: CanaryConfig,
        image_directory: Path = CRYSTAL_SRC,
        disposable_repository: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)
        self.config = config

        self.network = Network(self, "Network")
        self.images = CanaryImages(
            self,
            "Images",
            repository_name=config.repository_name,
            canary_tag=config.image_tag,
            production_tag=config.production_tag,
            promote=config.promote,
            directory=image_directory,
            disposable=disposable_repository,
        )
        self.entrypoint = PublicEntrypoint(self, "Entrypoint", vpc=self.network.vpc, allowed_cidr=config.allowed_cidr)

        # The router is the swappable part: the services and images are the same either way.
        self.mesh: MeshCanary | None = None
        self.gateway: MeshGateway | None = None
        self.alb: AlbCanary | None = None
        production_mesh = canary_mesh = None
        if config.traffic_router == "appmesh":
            Annotations.of(self).add_warning_v2("crystal-canary:app-mesh-end-of-support", APP_MESH_END_OF_SUPPORT)
            self.mesh = MeshCanary(self, "Mesh", namespace=self.network.namespace, canary_weight=config.canary_weight)
            production_mesh, canary_mesh = self.mesh.production, self.mesh.canary
        self.production = CrystalService(
            self,
            "Production",
            cluster=self.network.cluster,
            version="production",
            image=self.images.production_image,
            image_revision=self.images.production_revision,
            mesh=production_mesh,
        )
        self.canary = CrystalService(
            self,
            "Canary",
            cluster=self.network.cluster,
            version="canary",
            image=self.images.canary_image,
            image_revision=self.images.canary_revision,
            mesh=canary_mesh,
        )
        if self.mesh is not None:
            self.gateway = MeshGateway(
                self,
                "Gateway",
                cluster=self.network.cluster,
                gateway=self.mesh.gateway,
                entrypoint=self.entrypoint,
            )
            for version in (self.production, self.canary):
                version.allow_from(self.gateway.security_group, "From the App Mesh gateway")
            namespace = envoy_namespace(self)
            signals = {
                self.production: envoy_signals(namespace, PRODUCTION_NODE),
                self.canary: envoy_signals(namespace, CANARY_NODE),
            }
            for version in (self.production, self.canary):
                EnvoyStatsExport(version, "EnvoyStats", version=version, namespace=namespace)
        else:
            # Services accept the app port from the load balancer only (AlbCanary opens it).
            self.alb = AlbCanary(
                self,
                "Router",
                vpc=self.network.vpc,
                entrypoint=self.entrypoint,
                production=self.production,
                canary=self.canary,
                canary_weight=config.canary_weight,
                sticky_seconds=config.sticky_seconds,
            )
            signals = {
                self.production: target_group_signals(self.alb.production_targets),
                self.canary: target_group_signals(self.alb.canary_targets),
            }

        # A version starts only once its image is in the repository under its tag.
        self.canary.service.node.add_dependency(self.images.canary_publication.custom_resource)
        if self.images.production_publication is not None:
            self.production.service.node.add_dependency(self.images.production_publication.custom_resource)

        CfnOutput(self, "Url", value=self.entrypoint.url, description="curl <Url>/crystal to see the split")
        CfnOutput(self, "CanaryWeight", value=str(config.canary_weight), description="% of requests to the canary")
        CfnOutput(self, "ProductionWeight", value=str(config.production_weight), description="% to production")
        CfnOutput(self, "Repository", value=self.images.repository.repository_uri)

        self.observability = CanaryObservability(
            self,
            "Observability",
            production=signals[self.production],
            canary=signals[self.canary],
            production_service=self.production.service,
            canary_service=self.canary.service,
            router=config.traffic_router,
        )
        CfnOutput(
            self,
            "CanaryAlarms",
            value=",".join(self.observability.alarm_names),
            description="The canary's alarms; rollout.py rolls back when one is in ALARM",
        )
        CfnOutput(
            self,
            "DashboardUrl",
            value=self.observability.dashboard_url,
            description="Production and canary side by side",
        )
