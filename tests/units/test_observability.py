"""The alarms and the dashboard (canary_stack/observability.py) on a bare Stack, from made-up signals.

Whatever a router hands over, the canary's alarms read the canary's signals only, carry the
rollout's name prefix, and the optional signals make alarms only when a router has them. The
per-router wiring of real metrics is held on the whole app (tests/stack/test_observability.py).
"""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack, assertions
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs

from canary_stack.constants import canary_alarm_prefix
from canary_stack.network import Network
from canary_stack.observability import CanaryObservability, VersionSignals
from canary_stack.service import CrystalService


def signals(version: str, *, optional: bool) -> VersionSignals:
    def metric(name: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace="Test", metric_name=name, dimensions_map={"Version": version})

    extra = {"unhealthy_targets": metric("Unhealthy"), "connection_errors": metric("ConnErrors")} if optional else {}
    return VersionSignals(requests=metric("Requests"), errors=metric("Errors"), latency_p99=metric("P99"), **extra)


def build(*, optional: bool) -> tuple[CanaryObservability, Stack]:
    stack = Stack(App(), "Bare")
    network = Network(stack, "Network")
    image = ecs.ContainerImage.from_registry("ecsdemo-crystal:test")
    services = [
        CrystalService(stack, name, cluster=network.cluster, version=name.lower(), image=image).service
        for name in ("Production", "Canary")
    ]
    observability = CanaryObservability(
        stack,
        "Observability",
        production=signals("production", optional=optional),
        canary=signals("canary", optional=optional),
        production_service=services[0],
        canary_service=services[1],
        router="test",
    )
    return observability, stack


@pytest.fixture(scope="module")
def built() -> tuple[CanaryObservability, assertions.Template]:
    """Every signal a router may hand over; synthesized once (a bare-stack synthesis costs seconds)."""
    observability, stack = build(optional=True)
    return observability, assertions.Template.from_stack(stack)


def versions_read(alarm: dict) -> set[str]:
    """The Version dimension of every metric an alarm reads (plain or in metric math)."""
    props = alarm["Properties"]
    stats = (
        [props] if "MetricName" in props else [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]
    )
    return {d["Value"] for s in stats for d in s.get("Dimensions", []) if d["Name"] == "Version"}


def test_every_alarm_is_the_rollout_s_and_named_in_the_output_list(built):
    observability, template = built
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    names = sorted(a["Properties"]["AlarmName"] for a in alarms.values())
    assert names == sorted(observability.alarm_names)
    assert all(name.startswith(canary_alarm_prefix("Bare")) for name in names)
    assert all(a["Properties"]["TreatMissingData"] == "notBreaching" for a in alarms.values())


def test_the_alarms_judge_the_canary_and_compare_with_production_only_in_the_latency_ratio(built):
    _, template = built
    for alarm in template.find_resources("AWS::CloudWatch::Alarm").values():
        read = versions_read(alarm)
        name = alarm["Properties"]["AlarmName"]
        assert read <= {"canary", "production"}, name
        if "production" in read:
            assert name.endswith("p99-vs-production") and read == {"canary", "production"}


@pytest.mark.parametrize("optional", [True, False], ids=["all-signals", "required-signals"])
def test_optional_signals_make_their_alarms_only_when_the_router_has_them(optional):
    observability, _ = build(optional=optional)  # construction only: the names are known without a synthesis
    suffixes = {name.removeprefix(canary_alarm_prefix("Bare")) for name in observability.alarm_names}
    required = {"5xx", "p99-latency", "p99-vs-production", "running-tasks"}
    assert suffixes == (required | {"unhealthy-targets", "connection-errors"} if optional else required)
