"""The canary's alarms (rollout.py's gate), the dashboard and, with App Mesh, Envoy's stats export."""

from __future__ import annotations

import argparse
import io
import json
import time

import pytest
from templates import (
    NODE_VERSION,
    Version,
    container,
    environment,
    ref_name,
    task,
    version_of_service,
    version_of_target_group,
)

from canary_stack.constants import PROJECT_ROOT
from canary_stack.ops.rollout import Rollout, SubprocessRunner, build_parser
from canary_stack.routers.appmesh_tasks import CLOUDWATCH_AGENT_IMAGE

ROUTERS: dict[str, dict[str, str]] = {"appmesh": {"trafficRouter": "appmesh"}, "alb": {}}
PREFIX = "CrystalCanary-canary-"


@pytest.fixture(params=list(ROUTERS))
def routed(request, synth):
    return request.param, synth(canaryWeight="10", **ROUTERS[request.param])


def alarms(s) -> dict[str, dict]:
    return {v["Properties"]["AlarmName"]: v["Properties"] for v in s.resources("AWS::CloudWatch::Alarm").values()}


def metric_stats(alarm: dict) -> dict[str, dict]:
    """Metric id -> metric (namespace, name, dimensions) of an alarm, math or single-metric."""
    if "Metrics" not in alarm:
        return {
            "m": {"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"], "Dimensions": alarm["Dimensions"]}
        }
    return {m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m}


def dimension(metric: dict, name: str):
    return next(d["Value"] for d in metric["Dimensions"] if d["Name"] == name)


def version_measured(s, dimensions: dict[str, str | dict]) -> Version:
    """Whose metric this is, by its dimensions: the virtual node (Envoy's stats), the target group
    (the load balancer's) or the ECS service (CPU, memory, task counts). A dimension's value is a
    literal or a reference to the resource."""

    def logical(value: str | dict) -> str:
        return value if isinstance(value, str) else ref_name(value)

    if "appmesh.virtual_node" in dimensions:
        return NODE_VERSION[logical(dimensions["appmesh.virtual_node"])]
    if "TargetGroup" in dimensions:
        return version_of_target_group(s, logical(dimensions["TargetGroup"]))
    return version_of_service(logical(dimensions["ServiceName"]))


def version_of(s, metric: dict) -> Version:
    """Whose metric an alarm's metric is."""
    return version_measured(s, {d["Name"]: d["Value"] for d in metric["Dimensions"]})


def test_every_canary_alarm_follows_the_rollout_contract(routed):
    router, s = routed
    found = alarms(s)
    assert sorted(found) == sorted(PREFIX + n for n in ("5xx", "p99-latency", "p99-vs-production", "running-tasks"))
    # The other side of the contract: the prefix rollout.py lists alarms by, for the stack it
    # rolls out when no --stack-name is given.
    rollout = Rollout(
        args=argparse.Namespace(stack_name=build_parser().get_default("stack_name")),
        runner=SubprocessRunner(PROJECT_ROOT),
        cloudwatch=None,
        sleep=time.sleep,
        monotonic=time.monotonic,
        out=io.StringIO(),
        err=io.StringIO(),
    )
    assert all(name.startswith(rollout.prefix) for name in found)
    output = s.template["Outputs"]["CanaryAlarms"]["Value"]
    assert sorted(output.split(",")) == sorted(found)
    for alarm in found.values():
        # A quiet canary (weight 0, no 5xx) is healthy, not INSUFFICIENT_DATA or ALARM.
        assert alarm["TreatMissingData"] == "notBreaching"
        assert "AlarmActions" not in alarm  # the rollout polls; no action to misfire


def test_5xx_rate_alarm_reads_the_canary_only(routed):
    router, s = routed
    alarm = alarms(s)[PREFIX + "5xx"]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (5, "GreaterThanThreshold")
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)
    (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
    assert "100 * FILL(errors, 0) / requests" in expression["Expression"]
    stats = metric_stats(alarm)
    assert set(stats) == {"requests", "errors"}
    assert {version_of(s, m) for m in stats.values()} == {"Canary"}
    periods = {m["MetricStat"]["Period"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert periods == {60}
    if router == "alb":
        assert stats["errors"]["MetricName"] == "HTTPCode_Target_5XX_Count"
        assert stats["requests"]["MetricName"] == "RequestCount"
    else:
        assert stats["errors"]["MetricName"] == "envoy.http.downstream_rq_xx"
        assert dimension(stats["errors"], "envoy.response_code_class") == "5"
        # Requests callers sent to the version only: not Envoy's admin (/ready, /stats, the ECS
        # health check), which App Mesh's Envoy counts under the `admin` connection manager.
        for metric in stats.values():
            assert dimension(metric, "envoy.http_conn_manager_prefix") == "ingress"


def test_latency_alarms_absolute_and_against_production(routed):
    router, s = routed
    found = alarms(s)
    absolute = found[PREFIX + "p99-latency"]
    assert (absolute["Threshold"], absolute["ComparisonOperator"]) == (1, "GreaterThanThreshold")
    assert {version_of(s, m) for m in metric_stats(absolute).values()} == {"Canary"}
    relative = found[PREFIX + "p99-vs-production"]
    expressions = [m["Expression"] for m in relative["Metrics"] if "Expression" in m]
    assert any("canary > 2 * production" in e for e in expressions)
    by_version: dict[Version, list[str]] = {}
    for metric_id, metric in metric_stats(relative).items():
        by_version.setdefault(version_of(s, metric), []).append(metric_id)
    assert set(by_version) == {"Canary", "Production"}
    stats = {m["MetricStat"]["Stat"] for m in relative["Metrics"] if "MetricStat" in m}
    assert stats == {"p99"}
    if router == "appmesh":  # Envoy measures milliseconds; the thresholds are seconds
        assert any(e.endswith("/ 1000") for e in expressions)


def test_running_tasks_alarm_watches_the_canary_service(routed):
    router, s = routed
    alarm = alarms(s)[PREFIX + "running-tasks"]
    stats = metric_stats(alarm)
    assert {m["MetricName"] for m in stats.values()} == {"DesiredTaskCount", "RunningTaskCount"}
    assert {version_of(s, m) for m in stats.values()} == {"Canary"}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def dashboard_widgets(s) -> list[dict]:
    """The dashboard's widgets, each reference in its body written as the logical id it names
    (and any other function, such as the load balancer's name taken apart, as "?")."""
    body = s.one("AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    placeholder = {"Ref", "Fn::GetAtt"}
    return json.loads(
        "".join(p if isinstance(p, str) else ref_name(p) if set(p) & placeholder else "?" for p in parts)
    )["widgets"]


def graph_lines(s, widget: dict) -> dict[str, Version]:
    """A graph's visible lines: label -> the version the line measures. A line is a metric, or an
    expression over hidden metrics (Envoy's milliseconds divided into seconds)."""
    rows = widget["properties"]["metrics"]
    hidden = {row[-1]["id"]: row for row in rows if row[-1].get("visible") is False}
    lines: dict[str, Version] = {}
    for row in rows:
        options = row[-1]
        if options.get("visible") is False:
            continue
        measured = [hidden[i] for i in hidden if i in options["expression"]] if "expression" in options else [row]
        versions = {version_measured(s, dict(zip(m[2:-1:2], m[3:-1:2], strict=True))) for m in measured}
        (lines[options["label"]],) = versions
    return lines


def test_dashboard_graphs_each_version_side_by_side_and_lists_the_canary_alarms(routed):
    _, s = routed
    dashboard = s.one("AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == "CrystalCanary-canary"
    widgets = dashboard_widgets(s)
    graphs = {w["properties"]["title"]: graph_lines(s, w) for w in widgets if w["type"] == "metric"}
    titles = ["Requests per minute", "5xx per minute", "p99 latency", "CPU utilization", "Memory utilization"]
    assert graphs == {title: {"production": "Production", "canary": "Canary"} for title in titles}
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(s.resources("AWS::CloudWatch::Alarm"))
    url = s.template["Outputs"]["DashboardUrl"]["Value"]["Fn::Join"][1]
    assert "".join(p if isinstance(p, str) else ref_name(p) for p in url) == (
        "https://AWS::Region.console.aws.amazon.com/cloudwatch/home?region=AWS::Region"
        "#dashboards/dashboard/CrystalCanary-canary"
    )


def agent_config(s, version: str) -> dict:
    """The CloudWatch agent's configuration in a version's task."""
    return json.loads(environment(container(task(s, version), "cwagent"))["CW_CONFIG_CONTENT"])


@pytest.mark.parametrize("version", ["Production", "Canary"])
def test_app_mesh_exports_envoy_stats_with_a_pinned_agent(synth, version):
    s = synth(canaryWeight="10", trafficRouter="appmesh")
    task_definition = task(s, version)
    env = environment(container(task_definition, "envoy"))
    assert {k: env[k] for k in ("ENABLE_ENVOY_STATS_TAGS", "ENABLE_ENVOY_DOG_STATSD", "STATSD_PORT")} == {
        "ENABLE_ENVOY_STATS_TAGS": "1",
        "ENABLE_ENVOY_DOG_STATSD": "1",
        "STATSD_PORT": "8125",
    }
    agent = container(task_definition, "cwagent")
    assert agent["Image"] == CLOUDWATCH_AGENT_IMAGE and ":latest" not in agent["Image"]
    # Envoy's user, so App Mesh's iptables rules let its calls to CloudWatch past the proxy.
    assert agent["User"] == "1337"
    config = agent_config(s, version)
    assert config["metrics"]["namespace"] == "CrystalCanary/Envoy"
    assert config["metrics"]["metrics_collected"]["statsd"]["service_address"] == ":8125"
    assert [
        "appmesh.virtual_node",
        "envoy.http_conn_manager_prefix",
        "envoy.response_code_class",
    ] in config["metrics"]["aggregation_dimensions"]


def test_app_mesh_agent_may_put_metrics_into_its_namespace_only(synth):
    s = synth(canaryWeight="10", trafficRouter="appmesh")
    statements = [
        st
        for p in s.resources("AWS::IAM::Policy").values()
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        if "cloudwatch" in json.dumps(st["Action"])
    ]
    assert len(statements) == 2  # one per version's task role
    for statement in statements:
        assert statement["Action"] == "cloudwatch:PutMetricData"
        assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "CrystalCanary/Envoy"}}


def test_alb_router_exports_nothing_itself(synth):
    s = synth(canaryWeight="10")
    assert "cloudwatch:PutMetricData" not in json.dumps(s.template)
    assert CLOUDWATCH_AGENT_IMAGE not in json.dumps(s.template)


def test_alarm_metrics_are_named_and_dimensioned_as_the_agent_publishes_them(synth):
    # The agent's statsd input joins the parts of a name with `metric_separator` (`_` unless set:
    # aws/amazon-cloudwatch-agent translator/translate/metrics/metrics_collect/statsd), and
    # publishes only the dimension sets listed in aggregation_dimensions.
    s = synth(canaryWeight="10", trafficRouter="appmesh")
    envoy_metrics = [
        m
        for alarm in alarms(s).values()
        for m in metric_stats(alarm).values()
        if m["Namespace"] == "CrystalCanary/Envoy"
    ]
    assert len(envoy_metrics) >= 4
    for version in ("Production", "Canary"):
        config = agent_config(s, version)
        separator = config["metrics"]["metrics_collected"]["statsd"]["metric_separator"]
        published = [sorted(dims) for dims in config["metrics"]["aggregation_dimensions"]]
        for metric in envoy_metrics:
            # Envoy's DogStatsD names: `envoy.` + the tag-extracted stat name, dot-separated.
            assert metric["MetricName"].split(separator)[:2] == ["envoy", "http"], metric["MetricName"]
            assert sorted(d["Name"] for d in metric["Dimensions"]) in published
