"""The canary without App Mesh: the public load balancer splits traffic across two target groups.

`-c trafficRouter=alb`. The services are the same CrystalService constructs as with App Mesh, run
without Envoy; this construct is the only thing that differs. One listener default action forwards
`100-w`/`w` across a target group per version, so a weight step changes the listener and nothing
else.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from canary_stack.constants import APP_PORT, CANARY_HEADER, CANARY_HEADER_VALUE, HEALTH_PATH
from canary_stack.ingress import PublicEntrypoint
from canary_stack.service import CrystalService

# Listener rules are evaluated by priority before the default action; the header rule is the
# only one, and leaves room below it for anything that must come first.
CANARY_HEADER_PRIORITY = 10


class AlbCanary(Construct):
    """Weighted forwarding from the public load balancer to production and canary target groups.

    `sticky_seconds`: 0 leaves each request free to land on either version; above 0, the load
    balancer keeps a client on the version it first reached for that long (target group
    stickiness on the forward action), so a user does not flip between versions mid-session.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        vpc: ec2.IVpc,
        entrypoint: PublicEntrypoint,
        production: CrystalService,
        canary: CrystalService,
        canary_weight: int,
        sticky_seconds: int = 0,
    ) -> None:
        super().__init__(scope, id)
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be 0..100, got {canary_weight}")
        if sticky_seconds < 0:
            raise ValueError(f"sticky_seconds must be 0 (off) or more, got {sticky_seconds}")

        self.production_targets = self._target_group("ProductionTargets", vpc, production)
        self.canary_targets = self._target_group("CanaryTargets", vpc, canary)
        for version in (production, canary):
            # Explicit, so the rule's description says where the traffic comes from; the target
            # group would otherwise add the same rule with a generic one.
            version.allow_from(entrypoint.security_group, "From the public load balancer")

        # The canary's traffic step: the only resource a change of canaryWeight touches.
        entrypoint.listener.add_action(
            "Weighted",
            action=elbv2.ListenerAction.weighted_forward(
                [
                    elbv2.WeightedTargetGroup(target_group=self.production_targets, weight=100 - canary_weight),
                    elbv2.WeightedTargetGroup(target_group=self.canary_targets, weight=canary_weight),
                ],
                stickiness_duration=Duration.seconds(sticky_seconds) if sticky_seconds else None,
            ),
        )
        # Testers reach the canary at any weight, 0 included, with the workshop's header. The
        # rule does not depend on the weight, so a weight step leaves it alone.
        self.header_rule = elbv2.ApplicationListenerRule(
            self,
            "CanaryHeaderRule",
            listener=entrypoint.listener,
            priority=CANARY_HEADER_PRIORITY,
            conditions=[elbv2.ListenerCondition.http_header(CANARY_HEADER, [CANARY_HEADER_VALUE])],
            action=elbv2.ListenerAction.forward([self.canary_targets]),
        )

    def _target_group(self, id: str, vpc: ec2.IVpc, version: CrystalService) -> elbv2.ApplicationTargetGroup:
        return elbv2.ApplicationTargetGroup(
            self,
            id,
            vpc=vpc,
            port=APP_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[version.service.load_balancer_target(container_name="app", container_port=APP_PORT)],
            # The App Mesh router's check, on the app itself: two passes in 20 s take a new task
            # into service, three failures in 30 s take it out.
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH,
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
                healthy_http_codes="200",
            ),
            # Long enough for in-flight requests of a replaced task; short enough that a rollback
            # of the canary's tasks does not wait the default five minutes.
            deregistration_delay=Duration.seconds(30),
        )
