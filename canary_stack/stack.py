"""The canary stack: network, image, two versions of the service, the traffic router, the alarms.

The router is the one swappable part (canary_stack/routers/): `trafficRouter` picks it by name,
and the stack knows nothing else about it. Everything else is the same construct either way.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from canary_stack.config import CanaryConfig
from canary_stack.constants import (
    CRYSTAL_SRC,
    OUTPUT_CANARY_COMMIT,
    OUTPUT_CANARY_IMAGE,
    OUTPUT_CANARY_WEIGHT,
    OUTPUT_CPU_ARCHITECTURE,
    OUTPUT_PRODUCTION_IMAGE,
    OUTPUT_TRAFFIC_ROUTER,
    OUTPUT_URL,
)
from canary_stack.image import CanaryImages
from canary_stack.ingress import PublicEntrypoint
from canary_stack.network import Network
from canary_stack.observability import CanaryObservability
from canary_stack.routers import ROUTERS
from canary_stack.routers.base import CANARY, PRODUCTION
from canary_stack.service import CrystalService


class CanaryStack(Stack):
    """Production and canary of the Crystal backend, with `canary_weight`% of requests to the canary.

    `disposable_repository=True` makes the image repository go with the stack, images included (the
    deploy check's own repository); the default keeps a user-facing repository and its images.
    `production_directory`: build production's image from there instead of running
    `config.production_image` (the deploy check, whose repository starts empty; see CanaryImages).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: CanaryConfig,
        image_directory: Path = CRYSTAL_SRC,
        production_directory: Path | None = None,
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
            production_image=None if production_directory else config.production_image,
            cpu_architecture=config.cpu_architecture,
            adopt_repository=config.adopt_repository,
            directory=image_directory,
            production_directory=production_directory,
            disposable=disposable_repository,
        )
        self.entrypoint = PublicEntrypoint(
            self,
            "Entrypoint",
            vpc=self.network.vpc,
            allowed_cidr=config.allowed_cidr,
            certificate_arn=config.certificate_arn,
            domain_name=config.domain_name,
            hosted_zone_id=config.hosted_zone_id,
        )

        # The router is the swappable part: the services and images are the same either way.
        self.router = ROUTERS[config.traffic_router](
            self,
            "Router",
            network=self.network,
            entrypoint=self.entrypoint,
            canary_weight=config.canary_weight,
            sticky_seconds=config.sticky_seconds,
        )
        self.production = CrystalService(
            self,
            "Production",
            cluster=self.network.cluster,
            version=PRODUCTION,
            image=self.images.production_image,
            cpu_architecture=self.images.cpu_architecture,
            mesh=self.router.membership(PRODUCTION),
        )
        self.canary = CrystalService(
            self,
            "Canary",
            cluster=self.network.cluster,
            version=CANARY,
            image=self.images.canary_image,
            cpu_architecture=self.images.cpu_architecture,
            mesh=self.router.membership(CANARY),
        )
        self.router.route(production=self.production, canary=self.canary)

        # A version starts only once its image is in the repository. The canary's is the copy;
        # production's was copied by an earlier deploy (or by this one's copy, on a first deploy or a
        # promotion): the `vanilla` mover reads it first and fails the deploy clearly if it is absent.
        self.canary.service.node.add_dependency(self.images.canary_publication.custom_resource)
        self.production.service.node.add_dependency(self.images.production_tag)

        CfnOutput(self, OUTPUT_URL, value=self.entrypoint.url, description="curl <Url>/crystal to see the split")
        if config.domain_name is not None and config.hosted_zone_id is None:
            CfnOutput(
                self,
                "LoadBalancerDnsName",
                value=self.entrypoint.load_balancer.load_balancer_dns_name,
                description=f"Point {config.domain_name} here (CNAME, or a Route 53 alias); "
                "-c hostedZoneId=<zone> makes the record",
            )
        CfnOutput(
            self, OUTPUT_CANARY_WEIGHT, value=str(config.canary_weight), description="% of requests to the canary"
        )
        CfnOutput(self, "ProductionWeight", value=str(config.production_weight), description="% to production")
        CfnOutput(self, "Repository", value=self.images.repository.repository_uri)
        # What the operator tools read of the deployed stack (rollout, verify, promote, the pipeline):
        # which image and commit each version runs, on which CPU, behind which router.
        CfnOutput(self, OUTPUT_TRAFFIC_ROUTER, value=config.traffic_router, description="-c trafficRouter")
        CfnOutput(
            self, OUTPUT_CANARY_IMAGE, value=self.images.canary_hash, description="The canary's image tag (asset hash)"
        )
        CfnOutput(
            self,
            OUTPUT_PRODUCTION_IMAGE,
            value=self.images.production_hash,
            description="Production's image tag (asset hash)",
        )
        CfnOutput(
            self,
            OUTPUT_CANARY_COMMIT,
            value=self.images.canary_commit,
            description="The commit the canary answers with",
        )
        CfnOutput(
            self, OUTPUT_CPU_ARCHITECTURE, value=config.cpu_architecture, description="The tasks' CPU and the images'"
        )

        self.observability = CanaryObservability(
            self,
            "Observability",
            production=self.router.production_signals,
            canary=self.router.canary_signals,
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
