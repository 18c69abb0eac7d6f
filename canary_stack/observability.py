"""Per-version signals, the canary's alarms and a dashboard with production and canary side by side.

The alarms are the rollout's gate: `canary_stack/rollout.py` watches every alarm whose name starts
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

    `requests` and `errors` (5xx) are counts per period; `latency_p99` is in seconds.
    """

    requests: cloudwatch.IMetric
    errors: cloudwatch.IMetric
    latency_p99: cloudwatch.IMetric


class CanaryObservability(Construct):
    """The canary's alarms (the rollout's gate) and a production-vs-canary dashboard."""

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
        prefix = canary_alarm_prefix(Stack.of(self).stack_name)

        def rate(signals: VersionSignals) -> cloudwatch.MathExpression:
            # FILL: both metrics are absent in a minute without traffic (or without a 5xx).
            return cloudwatch.MathExpression(
                expression=f"IF(FILL(requests, 0) >= {MIN_REQUESTS}, 100 * FILL(errors, 0) / requests, 0)",
                using_metrics={"requests": signals.requests, "errors": signals.errors},
                period=PERIOD,
                label="5xx %",
            )

        self.error_rate_alarm = cloudwatch.Alarm(
            self,
            "ErrorRate",
            alarm_name=f"{prefix}5xx",
            alarm_description=f"Canary 5xx responses above {ERROR_RATE_PERCENT}% of its requests "
            f"(at least {MIN_REQUESTS} a minute) in 2 of 3 minutes ({router} router)",
            metric=rate(canary),
            threshold=ERROR_RATE_PERCENT,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.latency_alarm = cloudwatch.Alarm(
            self,
            "Latency",
            alarm_name=f"{prefix}p99-latency",
            alarm_description=f"Canary p99 latency above {LATENCY_P99_SECONDS:g} s in 2 of 3 minutes ({router} router)",
            metric=canary.latency_p99,
            threshold=LATENCY_P99_SECONDS,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.latency_vs_production_alarm = cloudwatch.Alarm(
            self,
            "LatencyVsProduction",
            alarm_name=f"{prefix}p99-vs-production",
            alarm_description=f"Canary p99 latency above {LATENCY_FACTOR}x production's and above "
            f"{LATENCY_FLOOR_SECONDS:g} s in 2 of 3 minutes ({router} router)",
            metric=cloudwatch.MathExpression(
                expression=f"IF(canary > {LATENCY_FLOOR_SECONDS} AND canary > {LATENCY_FACTOR} * production, 1, 0)",
                using_metrics={"canary": canary.latency_p99, "production": production.latency_p99},
                period=PERIOD,
                label="canary p99 slower than production",
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
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
        self.tasks_alarm = cloudwatch.Alarm(
            self,
            "RunningTasks",
            alarm_name=f"{prefix}running-tasks",
            alarm_description="Canary service running fewer tasks than desired for 5 minutes",
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
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.alarms = [self.error_rate_alarm, self.latency_alarm, self.latency_vs_production_alarm, self.tasks_alarm]

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

        self.dashboard_name = f"{Stack.of(self).stack_name}-canary"
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
            ],
        )

        # Plain strings rather than the alarms' Refs: the names are the rollout's contract, and
        # an output that reads them stays readable in the template.
        self.alarm_names = [
            f"{prefix}{suffix}" for suffix in ("5xx", "p99-latency", "p99-vs-production", "running-tasks")
        ]
        region = Stack.of(self).region
        self.dashboard_url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{self.dashboard_name}"
        )
