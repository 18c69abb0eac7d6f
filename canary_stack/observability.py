"""Per-version signals, the canary's alarms and a dashboard with production and canary side by side.

The alarms are the rollout's gate: `canary_stack/ops/rollout.py` watches every alarm whose name starts
with `<StackName>-canary-` and rolls back when one is in ALARM. They compare nothing that depends on
the weight, so a weight step does not touch them.

Where the numbers come from is the router's to say (canary_stack/routers/): each hands over one
VersionSignals per version.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from canary_stack.constants import canary_alarm_prefix

PERIOD = Duration.minutes(1)

# The alarm thresholds, one place.
ERROR_RATE_PERCENT = 5  # canary 5xx share of its requests
MIN_REQUESTS = 10  # per minute: below this a single error is no evidence of a bad canary
LATENCY_P99_SECONDS = 1.0
LATENCY_FACTOR = 2  # canary p99 this many times production's p99 ...
LATENCY_FLOOR_SECONDS = 0.2  # ... and above this, so 2 ms against 1 ms is not an alarm


@dataclass(frozen=True)
class VersionSignals:
    """What the alarms and the dashboard read for one version, whichever router serves it.

    Every router provides the first three:
    * `requests` and `errors` (5xx answers) are counts per period;
    * `latency_p99` is in seconds.
    The rest are optional: a router without such a metric leaves it None, and the alarm and the
    graph that would read it are not made (the `CanaryAlarms` output lists only the alarms made).
    * `unhealthy_targets`: the version's targets failing the router's health check, the most in a
      period. A health check runs without any user traffic, so this sees a broken canary at weight 0.
    * `connection_errors`: connections the router could not open to the version, per period (what a
      task that crashed, or closed its port, answers with instead of a 5xx of its own).
    """

    requests: cloudwatch.IMetric
    errors: cloudwatch.IMetric
    latency_p99: cloudwatch.IMetric
    unhealthy_targets: cloudwatch.IMetric | None = None
    connection_errors: cloudwatch.IMetric | None = None


# A latency comparison with production needs production's p99. CloudWatch treats a missing data
# point in a comparison of two time series as 0 ("When comparison operators are used between two
# time series, and only one of the time series has a value for a particular time stamp, the function
# treats the missing value in the other time series as 0":
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html), so without
# the `production > 0` term a minute without production traffic (weight 100) would read as "canary
# slower than 2 x 0" and fire on any canary above the floor.
NO_PRODUCTION_REASON = (
    "Evaluates to 0 in a minute without production latency data (weight 100, or no production "
    "requests): there is nothing to compare with, and CloudWatch would count the missing value as 0. "
    "The absolute p99-latency alarm still applies then"
)


class CanaryObservability(Construct):
    """The canary's alarms (the rollout's gate) and a production-vs-canary dashboard.

    `alarms` are every canary alarm made; `alarm_names` are read from them (the rollout's contract:
    each starts with `canary_alarm_prefix`).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        production: VersionSignals,
        canary: VersionSignals,
        production_service: ecs.FargateService,
        canary_service: ecs.FargateService,
        router: str,
    ) -> None:
        super().__init__(scope, id)
        self.prefix = canary_alarm_prefix(Stack.of(self).stack_name)
        self.router = router
        self.alarms: list[cloudwatch.Alarm] = []

        def rate(signals: VersionSignals) -> cloudwatch.MathExpression:
            # FILL: both metrics are absent in a minute without traffic (or without a 5xx).
            return cloudwatch.MathExpression(
                expression=f"IF(FILL(requests, 0) >= {MIN_REQUESTS}, 100 * FILL(errors, 0) / requests, 0)",
                using_metrics={"requests": signals.requests, "errors": signals.errors},
                period=PERIOD,
                label="5xx %",
            )

        self.error_rate_alarm = self.canary_alarm(
            "ErrorRate",
            name="5xx",
            description=f"Canary 5xx responses above {ERROR_RATE_PERCENT}% of its requests "
            f"(at least {MIN_REQUESTS} a minute) in 2 of 3 minutes",
            metric=rate(canary),
            threshold=ERROR_RATE_PERCENT,
        )
        self.latency_alarm = self.canary_alarm(
            "Latency",
            name="p99-latency",
            description=f"Canary p99 latency above {LATENCY_P99_SECONDS:g} s in 2 of 3 minutes",
            metric=canary.latency_p99,
            threshold=LATENCY_P99_SECONDS,
        )
        self.latency_vs_production_alarm = self.canary_alarm(
            "LatencyVsProduction",
            name="p99-vs-production",
            description=f"Canary p99 latency above {LATENCY_FACTOR}x production's and above "
            f"{LATENCY_FLOOR_SECONDS:g} s in 2 of 3 minutes. {NO_PRODUCTION_REASON}",
            # The same expression at every weight: a weight step changes the router's one resource only.
            metric=cloudwatch.MathExpression(
                expression=f"IF(production > 0 AND canary > {LATENCY_FLOOR_SECONDS} "
                f"AND canary > {LATENCY_FACTOR} * production, 1, 0)",
                using_metrics={"canary": canary.latency_p99, "production": production.latency_p99},
                period=PERIOD,
                label="canary p99 slower than production",
            ),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

        def tasks(service: ecs.FargateService, name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="ECS/ContainerInsights",
                metric_name=name,
                dimensions_map={"ClusterName": service.cluster.cluster_name, "ServiceName": service.service_name},
                statistic="Average",
                period=PERIOD,
            )

        # Container Insights (enabled on the cluster) reports both per service every minute. A
        # deployment replaces tasks within max_healthy_percent=200 and never runs below desired
        # for long; five minutes short is a canary that cannot stay up.
        self.tasks_alarm = self.canary_alarm(
            "RunningTasks",
            name="running-tasks",
            description="Canary service running fewer tasks than desired for 5 minutes",
            metric=cloudwatch.MathExpression(
                expression="desired - running",
                using_metrics={
                    "desired": tasks(canary_service, "DesiredTaskCount"),
                    "running": tasks(canary_service, "RunningTaskCount"),
                },
                period=PERIOD,
                label="tasks short of desired",
            ),
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=5,
        )

        # What only some routers can see (VersionSignals' optional fields).
        self.unhealthy_targets_alarm: cloudwatch.Alarm | None = None
        if canary.unhealthy_targets is not None:
            # A new task is `initial`, not unhealthy, until its first checks pass, and a replaced one
            # is `draining` (target states: https://docs.aws.amazon.com/elasticloadbalancing/latest/application/check-target-health.html):
            # an unhealthy canary target in 2 of 3 minutes is one that keeps failing. (When every
            # canary target is unhealthy the load balancer "fails open" and sends them traffic anyway.)
            self.unhealthy_targets_alarm = self.canary_alarm(
                "UnhealthyTargets",
                name="unhealthy-targets",
                description="A canary target failing the health check in 2 of 3 minutes "
                "(reported with or without traffic, so it sees a broken canary at weight 0 too)",
                metric=canary.unhealthy_targets,
                threshold=0,
            )
        self.connection_errors_alarm: cloudwatch.Alarm | None = None
        if canary.connection_errors is not None:
            # A task that crashed or stopped listening refuses connections, and the client gets the
            # router's own 502, which no 5xx count of the canary's includes. Tasks are drained before
            # they stop, so a healthy rollout opens every connection.
            self.connection_errors_alarm = self.canary_alarm(
                "ConnectionErrors",
                name="connection-errors",
                description="Connections to the canary's targets failing in 2 of 3 minutes "
                "(the clients got the load balancer's 502 instead of the canary's answer)",
                metric=canary.connection_errors,
                threshold=0,
            )

        # The rollout's contract, read from the alarms themselves (no second list to keep in step).
        # Plain strings rather than the alarms' Refs: an output that reads them stays readable.
        self.alarm_names = [alarm_name(alarm) for alarm in self.alarms]

        def pair(
            title: str, production_metric: cloudwatch.IMetric, canary_metric: cloudwatch.IMetric, unit: str
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(
                title=title,
                left=[production_metric, canary_metric],
                left_y_axis=cloudwatch.YAxisProps(label=unit, show_units=False, min=0),
                width=12,
                height=6,
            )

        def labelled(metric: cloudwatch.IMetric, label: str) -> cloudwatch.IMetric:
            # Both kinds the signals hold have `with_`; IMetric itself does not declare it.
            assert isinstance(metric, cloudwatch.Metric | cloudwatch.MathExpression)
            return metric.with_(label=label)

        optional_graphs = [
            pair(title, labelled(production_metric, "production"), labelled(canary_metric, "canary"), unit)
            for title, production_metric, canary_metric, unit in (
                ("Unhealthy targets", production.unhealthy_targets, canary.unhealthy_targets, "targets"),
                ("Connection errors per minute", production.connection_errors, canary.connection_errors, "connections"),
            )
            if production_metric is not None and canary_metric is not None
        ]

        stack = Stack.of(self)
        # Account-global, unlike the alarms: "All dashboards in your account are global, not
        # region-specific" (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html).
        # Without the region, a second region's stack fails on the name, and deleting either stack
        # deletes the other's dashboard. The stack's region: ${AWS::Region} in this env-less app.
        self.dashboard_name = f"{stack.stack_name}-canary-{stack.region}"
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=self.dashboard_name,
            widgets=[
                [
                    pair(
                        "Requests per minute",
                        labelled(production.requests, "production"),
                        labelled(canary.requests, "canary"),
                        "requests",
                    ),
                    pair(
                        "5xx per minute",
                        labelled(production.errors, "production"),
                        labelled(canary.errors, "canary"),
                        "responses",
                    ),
                ],
                [
                    pair(
                        "p99 latency",
                        labelled(production.latency_p99, "production"),
                        labelled(canary.latency_p99, "canary"),
                        "seconds",
                    ),
                    cloudwatch.AlarmStatusWidget(title="Canary alarms", alarms=self.alarms, width=12, height=6),
                ],
                [
                    pair(
                        "CPU utilization",
                        production_service.metric_cpu_utilization(period=PERIOD, label="production"),
                        canary_service.metric_cpu_utilization(period=PERIOD, label="canary"),
                        "%",
                    ),
                    pair(
                        "Memory utilization",
                        production_service.metric_memory_utilization(period=PERIOD, label="production"),
                        canary_service.metric_memory_utilization(period=PERIOD, label="canary"),
                        "%",
                    ),
                ],
                *([optional_graphs] if optional_graphs else []),
            ],
        )

        region = stack.region
        self.dashboard_url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{self.dashboard_name}"
        )

    def canary_alarm(
        self,
        id: str,
        *,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods: int = 3,
        datapoints_to_alarm: int = 2,
    ) -> cloudwatch.Alarm:
        """Every canary alarm: named with the rollout's prefix, listed in `alarms`, and quiet without data.

        Missing data is `notBreaching`: a quiet canary (weight 0, no 5xx) is healthy, not
        INSUFFICIENT_DATA. No alarm action: the rollout polls the alarms' states.
        """
        alarm = cloudwatch.Alarm(
            self,
            id,
            alarm_name=f"{self.prefix}{name}",
            alarm_description=f"{description} ({self.router} router)",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms.append(alarm)
        return alarm


def alarm_name(alarm: cloudwatch.Alarm) -> str:
    """The name an alarm was given (its `alarm_name` attribute is a Ref, not the string)."""
    resource = alarm.node.default_child
    assert isinstance(resource, cloudwatch.CfnAlarm) and isinstance(resource.alarm_name, str)
    return resource.alarm_name
