"""A CloudWatch alarm as the tests need one (moto's CloudWatch): only its name matters to the rollout,
which watches every alarm whose name starts with the stack's canary prefix."""

from __future__ import annotations

from typing import Any


def put_alarm(cloudwatch: Any, name: str) -> None:
    """An alarm on a target group's 5xx count, state INSUFFICIENT_DATA until a test sets it."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )
