"""The canary stack: network, image, two versions of the service, the traffic router, the alarms.

The router is the load balancer itself (AlbCanary, the default) or App Mesh (MeshCanary +
MeshGateway: the workshop's, kept as a tested reproduction that CloudFormation refuses to deploy),
chosen by `trafficRouter`; everything else is the same construct either way.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Annotations, CfnOutput, CfnParameter, CfnRule, CfnRuleAssertion, Fn, Stack
from constructs import Construct

from canary_stack.alb_router import AlbCanary
from canary_stack.config import CanaryConfig
from canary_stack.constants import (
    APP_MESH_END_OF_SUPPORT_DATE,
    APP_MESH_REFUSAL,
    CANARY_NODE,
    CRYSTAL_SRC,
    PRODUCTION_NODE,
)
from canary_stack.fargate import EnvoyStatsExport
from canary_stack.gateway import MeshGateway
from canary_stack.image import CanaryImages
from canary_stack.ingress import PublicEntrypoint
from canary_stack.mesh import MeshCanary
from canary_stack.network import Network
from canary_stack.observability import CanaryObservability, envoy_namespace, envoy_signals, target_group_signals
from canary_stack.service import CrystalService

APP_MESH_END_OF_SUPPORT = (
    f"AWS App Mesh reached end of support on {APP_MESH_END_OF_SUPPORT_DATE}: this template reproduces the "
    "workshop for review and tests, and its AppMeshEndOfSupportRule fails any deploy of it. The default "
    "router (-c trafficRouter=alb) is the same canary without App Mesh."
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
        )

        # The router is the swappable part: the services and images are the same either way.
        self.mesh: MeshCanary | None = None
        self.gateway: MeshGateway | None = None
        self.alb: AlbCanary | None = None
        self.app_mesh_refusal: CfnRule | None = None
        production_mesh = canary_mesh = None
        if config.traffic_router == "appmesh":
            Annotations.of(self).add_warning_v2("crystal-canary:app-mesh-end-of-support", APP_MESH_END_OF_SUPPORT)
            self.app_mesh_refusal = refuse_every_change_set(self)
            self.mesh = MeshCanary(self, "Mesh", namespace=self.network.namespace, canary_weight=config.canary_weight)
            production_mesh, canary_mesh = self.mesh.production, self.mesh.canary
        self.production = CrystalService(
            self,
            "Production",
            cluster=self.network.cluster,
            version="production",
            image=self.images.production_image,
            cpu_architecture=self.images.cpu_architecture,
            mesh=production_mesh,
        )
        self.canary = CrystalService(
            self,
            "Canary",
            cluster=self.network.cluster,
            version="canary",
            image=self.images.canary_image,
            cpu_architecture=self.images.cpu_architecture,
            mesh=canary_mesh,
        )
        if self.mesh is not None:
            self.mesh.move_traffic_after(self.production.cfn_service, self.canary.cfn_service)
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
                assert version.envoy_container is not None  # a meshed version always has its Envoy
                EnvoyStatsExport(
                    version,
                    "EnvoyStats",
                    task_definition=version.task_definition,
                    envoy=version.envoy_container,
                    log_group=version.log_group,
                    namespace=namespace,
                )
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

        # A version starts only once its image is in the repository. The canary's is the copy;
        # production's was copied by an earlier deploy (or by this one's copy, on a first deploy or a
        # promotion): the `vanilla` mover reads it first and fails the deploy clearly if it is absent.
        self.canary.service.node.add_dependency(self.images.canary_publication.custom_resource)
        self.production.service.node.add_dependency(self.images.production_tag)

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
