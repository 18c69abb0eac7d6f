"""The default router (`-c trafficRouter=alb`): the public load balancer splits traffic across two
target groups, one per version. The services run the app alone (no sidecar).

The listener holds three things, and only one of them moves with the weight:
* its default action forwards to production (fixed: it attaches production's target group);
* the header rule (priority 10) forwards `canary-fleet: true` to the canary at any weight (fixed:
  it attaches the canary's target group);
* the weighted rule (priority 20, every path) forwards `100-w`/`w` across both. A weight step
  changes this rule and nothing else, and it DependsOn both ECS services: on a deploy that also
  changes an image (a promotion: production's image becomes the canary's, weight 0), CloudFormation
  updates the services, and waits for them to be stable, before it moves any traffic.

Why the split: CDK makes each ECS service depend on the listener or rule that attaches its target
group. If that were the weighted rule, the rule could not depend on the services (a cycle), so the
attachments are the two fixed resources, and the weighted rule is an L1 resource attaching nothing.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2

from canary_stack.constants import APP_PORT, CANARY_HEADER, CANARY_HEADER_VALUE, HEALTH_PATH
from canary_stack.ingress import DEREGISTRATION_DELAY, target_health_check
from canary_stack.observability import PERIOD, VersionSignals
from canary_stack.routers.base import CanaryRouter
from canary_stack.service import CrystalService

# Listener rules are evaluated by priority, lowest first, before the default action: testers'
# header first, then the weighted split of everything else. The gap leaves room for rules that
# must come between them.
CANARY_HEADER_PRIORITY = 10
WEIGHTED_PRIORITY = 20


def target_group_signals(target_group: elbv2.ApplicationTargetGroup) -> VersionSignals:
    """A version behind the ALB router, from its target group's metrics (`AWS/ApplicationELB`).

    Per target group, CloudWatch has the targets' own answers, their health and the connections
    the load balancer failed to open; the load balancer's own 5xx (HTTPCode_ELB_5XX_Count and its
    500/502/503/504 counts) are among the "metrics for load balancers", published per load balancer
    and Availability Zone, with no TargetGroup dimension, so no version can be charged with them
    (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).
    What a crashing canary causes is seen per target group instead: the refused connections behind
    its 502s (TargetConnectionErrorCount) and the failed health checks behind its 503s
    (UnHealthyHostCount). A 504 (a target that accepts and never answers) has no per-target-group
    count; the p99 latency alarms see the slow answers that still come.
    """
    metrics = target_group.metrics
    return VersionSignals(
        requests=metrics.request_count(period=PERIOD, statistic="Sum"),
        errors=metrics.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=PERIOD, statistic="Sum"),
        latency_p99=metrics.target_response_time(period=PERIOD, statistic="p99"),
        # "Reported if health checks are enabled" (the same page), traffic or not; Maximum: a node's
        # highest count in the minute (each load balancer node reports its own).
        unhealthy_targets=metrics.unhealthy_host_count(period=PERIOD, statistic="Maximum"),
        connection_errors=metrics.target_connection_error_count(period=PERIOD, statistic="Sum"),
    )


class AlbRouter(CanaryRouter):
    """Weighted forwarding from the public load balancer to production and canary target groups.

    `sticky_seconds`: 0 leaves each request free to land on either version; above 0, the load
    balancer keeps a client on the version it first reached for that long (target group
    stickiness on the forward action), so a user does not flip between versions mid-session.
    Attributes besides the common ones: `production_targets`, `canary_targets`, `header_rule`,
    `weighted_rule` (= `weighted_resource`).
    """

    name = "alb"
    supports_stickiness = True

    def route(self, *, production: CrystalService, canary: CrystalService) -> None:
        entrypoint, vpc, canary_weight = self.entrypoint, self.network.vpc, self.canary_weight
        self.production_targets = self._target_group("ProductionTargets", vpc, production)
        self.canary_targets = self._target_group("CanaryTargets", vpc, canary)
        for version in (production, canary):
            # Explicit, so the rule's description says where the traffic comes from; the target
            # group would otherwise add the same rule with a generic one.
            version.allow_from(entrypoint.security_group, "From the public load balancer")

        # Attaches production's target group; serves only what no rule matches (nothing, while
        # the weighted rule matches every path).
        entrypoint.listener.add_target_groups("Production", target_groups=[self.production_targets])
        # Testers reach the canary at any weight, 0 included. The name passes the load balancer's
        # header check (ingress.py), unlike the workshop's canary_fleet.
        self.header_rule = elbv2.ApplicationListenerRule(
            self,
            "CanaryHeaderRule",
            listener=entrypoint.listener,
            priority=CANARY_HEADER_PRIORITY,
            conditions=[elbv2.ListenerCondition.http_header(CANARY_HEADER, [CANARY_HEADER_VALUE])],
            action=elbv2.ListenerAction.forward([self.canary_targets]),
        )

        # The canary's traffic step: the only resource a change of canaryWeight touches.
        rule = elbv2.CfnListenerRule
        self.weighted_rule = rule(
            self,
            "WeightedRule",
            listener_arn=entrypoint.listener.listener_arn,
            priority=WEIGHTED_PRIORITY,
            conditions=[
                rule.RuleConditionProperty(
                    field="path-pattern", path_pattern_config=rule.PathPatternConfigProperty(values=["/*"])
                )
            ],
            actions=[
                rule.ActionProperty(
                    type="forward",
                    forward_config=rule.ForwardConfigProperty(
                        target_groups=[
                            rule.TargetGroupTupleProperty(
                                target_group_arn=self.production_targets.target_group_arn,
                                weight=100 - canary_weight,
                            ),
                            rule.TargetGroupTupleProperty(
                                target_group_arn=self.canary_targets.target_group_arn, weight=canary_weight
                            ),
                        ],
                        target_group_stickiness_config=rule.TargetGroupStickinessConfigProperty(
                            enabled=True, duration_seconds=self.sticky_seconds
                        )
                        if self.sticky_seconds
                        else None,
                    ),
                )
            ],
        )
        self.weighted_resource = self.weighted_rule
        self.move_traffic_after(production, canary)
        self.production_signals = target_group_signals(self.production_targets)
        self.canary_signals = target_group_signals(self.canary_targets)

    def _target_group(self, id: str, vpc: ec2.IVpc, version: CrystalService) -> elbv2.ApplicationTargetGroup:
        return elbv2.ApplicationTargetGroup(
            self,
            id,
            vpc=vpc,
            port=APP_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[version.service.load_balancer_target(container_name="app", container_port=APP_PORT)],
            health_check=target_health_check(HEALTH_PATH),  # the app's own /health
            deregistration_delay=DEREGISTRATION_DELAY,
        )
