"""The canary's alarms (rollout.py's gate), the dashboard and, with App Mesh, Envoy's stats export."""

from __future__ import annotations

import argparse
import io
import json
import re
import time

import pytest
from support.templates import (
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


# Every router's alarms; the ALB router also sees its targets' health and failed connections.
COMMON_ALARMS = ("5xx", "p99-latency", "p99-vs-production", "running-tasks")
ROUTER_ALARMS: dict[str, tuple[str, ...]] = {
    "alb": (*COMMON_ALARMS, "unhealthy-targets", "connection-errors"),
    "appmesh": COMMON_ALARMS,
}


def test_every_canary_alarm_follows_the_rollout_contract(routed):
    router, s = routed
    found = alarms(s)
    assert sorted(found) == sorted(PREFIX + n for n in ROUTER_ALARMS[router])
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


def evaluate(s, alarm: dict, p99_seconds: dict[Version, float | None]) -> float:
    """One data point of a math alarm, computed the way CloudWatch's metric math does it for these
    expressions: a version's p99 (None: no data point in that minute) in its metric's own unit, and
    a missing value counted as 0 in comparisons and arithmetic ("only one of the time series has a
    value for a particular time stamp, the function treats the missing value in the other time series
    as 0"; "Missing values in a time series are treated as 0":
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/using-metric-math.html)."""
    by_id = {m["Id"]: m for m in alarm["Metrics"]}

    def value(metric_id: str) -> float:
        entry = by_id[metric_id]
        if "Expression" in entry:
            return run(entry["Expression"])
        metric = entry["MetricStat"]["Metric"]
        seconds = p99_seconds[version_of(s, metric)]
        unit = 1000 if metric["Namespace"].endswith("/Envoy") else 1  # Envoy's milliseconds
        return 0.0 if seconds is None else seconds * unit

    def run(expression: str) -> float:
        assert re.fullmatch(r"[A-Za-z0-9_ .,()*/>]+", expression), expression  # only what this reads
        python = re.sub(r"\bIF\(", "if_(", expression).replace(" AND ", " and ")
        names = {name: value(name) for name in set(re.findall(r"\b[a-z][a-z0-9_]*\b", python)) & set(by_id)}
        return float(eval(python, {"__builtins__": {}, "if_": lambda c, t, f: t if c else f}, names))

    (result,) = [m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData")]
    return run(result)


@pytest.mark.parametrize(
    "canary, production, fires",
    [
        (0.5, 0.1, True),  # five times production's p99, above the floor
        (0.5, 0.3, False),  # not twice production's
        (0.15, 0.05, False),  # twice production's, but under the 0.2 s floor
        # Weight 100: production serves nothing, so it has no p99. Without the guard CloudWatch
        # counts the missing value as 0, "canary > 2 * 0" holds, and any canary above 0.2 s fired.
        (0.5, None, False),
        (5.0, None, False),  # (the absolute p99-latency alarm is the one that sees this)
        (None, None, False),
    ],
)
def test_latency_against_production_is_0_without_production_data(routed, canary, production, fires):
    _, s = routed
    alarm = alarms(s)[PREFIX + "p99-vs-production"]
    value = evaluate(s, alarm, {"Canary": canary, "Production": production})
    assert (value >= alarm["Threshold"]) is fires, value
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_latency_against_production_says_why_it_is_0_at_weight_100(routed):
    router, s = routed
    description = alarms(s)[PREFIX + "p99-vs-production"]["AlarmDescription"]
    assert "Evaluates to 0 in a minute without production latency data (weight 100" in description
    assert description.endswith(f"({router} router)")
    assert len(description) <= 1024  # AlarmDescription's limit (AWS::CloudWatch::Alarm)


@pytest.mark.parametrize(
    "name, metric_name, statistic",
    [
        ("unhealthy-targets", "UnHealthyHostCount", "Maximum"),
        ("connection-errors", "TargetConnectionErrorCount", "Sum"),
    ],
)
def test_alb_canary_alarms_on_its_targets_health_and_refused_connections(synth, name, metric_name, statistic):
    # Both are "metrics for targets" with the TargetGroup and LoadBalancer dimensions; UnHealthyHostCount
    # is "Reported if health checks are enabled", with or without traffic
    # (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html).
    s = synth(canaryWeight="10")
    alarm = alarms(s)[PREFIX + name]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/ApplicationELB", metric_name)
    assert sorted(d["Name"] for d in alarm["Dimensions"]) == ["LoadBalancer", "TargetGroup"]
    assert version_of(s, alarm) == "Canary"
    assert (alarm["Statistic"], alarm["Period"]) == (statistic, 60)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (3, 2)


@pytest.mark.parametrize("weight", ["0", "10", "100"])
def test_no_alarm_reads_a_metric_cloudwatch_never_publishes_per_target_group(synth, weight):
    # The load balancer's own 5xx (HTTPCode_ELB_*) have no TargetGroup dimension (same page): an alarm
    # on such a metric would see no data ever, and stay OK under notBreaching.
    s = synth(canaryWeight=weight)
    for alarm in alarms(s).values():
        for metric in metric_stats(alarm).values():
            if metric["MetricName"].startswith("HTTPCode_ELB_"):
                assert "TargetGroup" not in {d["Name"] for d in metric["Dimensions"]}


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
    router, s = routed
    dashboard = s.one("AWS::CloudWatch::Dashboard")["Properties"]
    # Dashboards are global to the account: the name carries the region (tests/stack/test_global_names.py).
    assert dashboard["DashboardName"] == {"Fn::Join": ["", ["CrystalCanary-canary-", {"Ref": "AWS::Region"}]]}
    widgets = dashboard_widgets(s)
    graphs = {w["properties"]["title"]: graph_lines(s, w) for w in widgets if w["type"] == "metric"}
    titles = ["Requests per minute", "5xx per minute", "p99 latency", "CPU utilization", "Memory utilization"]
    if router == "alb":
        titles += ["Unhealthy targets", "Connection errors per minute"]
    assert graphs == {title: {"production": "Production", "canary": "Canary"} for title in titles}
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(s.resources("AWS::CloudWatch::Alarm"))
    url = s.template["Outputs"]["DashboardUrl"]["Value"]["Fn::Join"][1]
    assert "".join(p if isinstance(p, str) else ref_name(p) for p in url) == (
        "https://AWS::Region.console.aws.amazon.com/cloudwatch/home?region=AWS::Region"
        "#dashboards/dashboard/CrystalCanary-canary-AWS::Region"
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
