"""The canary's alarms (rollout.py's gate), the dashboard and, with App Mesh, Envoy's stats export."""

from __future__ import annotations

import argparse
import json

import pytest

from canary_stack.constants import STACK_NAME
from canary_stack.fargate import CLOUDWATCH_AGENT_IMAGE
from canary_stack.ops.rollout import Rollout

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


def version_of(s, router: str, metric: dict) -> str:
    """ "Production" or "Canary": whose metric this is."""
    resources = s.template["Resources"]
    if metric["Namespace"] == "ECS/ContainerInsights":
        service = dimension(metric, "ServiceName")["Fn::GetAtt"][0]
    elif router == "alb":
        group = dimension(metric, "TargetGroup")["Fn::GetAtt"][0]
        service = next(
            k
            for k, v in resources.items()
            if v["Type"] == "AWS::ECS::Service"
            and any(lb["TargetGroupArn"] == {"Ref": group} for lb in v["Properties"].get("LoadBalancers", []))
        )
    else:
        node = dimension(metric, "appmesh.virtual_node")
        return {"crystal-sd-vanilla": "Production", "crystal-sd-epoch": "Canary"}[node]
    return "Canary" if service.startswith("Canary") else "Production"


def test_every_canary_alarm_follows_the_rollout_contract(routed):
    router, s = routed
    found = alarms(s)
    assert sorted(found) == sorted(PREFIX + n for n in ("5xx", "p99-latency", "p99-vs-production", "running-tasks"))
    # The other side of the contract: the prefix rollout.py lists alarms by.
    rollout = Rollout(
        args=argparse.Namespace(stack_name=STACK_NAME),
        runner=None,
        cloudwatch=None,
        sleep=None,
        monotonic=None,
        out=None,
        err=None,
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
    assert {version_of(s, router, m) for m in stats.values()} == {"Canary"}
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
    assert {version_of(s, router, m) for m in metric_stats(absolute).values()} == {"Canary"}
    relative = found[PREFIX + "p99-vs-production"]
    expressions = [m["Expression"] for m in relative["Metrics"] if "Expression" in m]
    assert any("canary > 2 * production" in e for e in expressions)
    by_version = {}
    for metric_id, metric in metric_stats(relative).items():
        by_version.setdefault(version_of(s, router, metric), []).append(metric_id)
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
    assert {version_of(s, router, m) for m in stats.values()} == {"Canary"}
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_dashboard_shows_both_versions_and_its_url_is_an_output(routed):
    router, s = routed
    dashboard = s.one("AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == "CrystalCanary-canary"
    body = json.dumps(dashboard["DashboardBody"])
    for title in ("Requests per minute", "5xx per minute", "p99 latency", "CPU utilization", "Memory utilization"):
        assert title in body
        # Each graph has a production and a canary line.
        assert body.count('\\"label\\":\\"production\\"') >= 5 and body.count('\\"label\\":\\"canary\\"') >= 5
    url = json.dumps(s.template["Outputs"]["DashboardUrl"]["Value"])
    assert "CrystalCanary-canary" in url and "cloudwatch" in url


def test_alarms_and_dashboard_do_not_move_with_the_weight(synth):
    # Covered for the whole template by test_determinism; here explicitly for these resources.
    for extra in ROUTERS.values():
        a, b = synth(canaryWeight="10", **extra).template, synth(canaryWeight="50", **extra).template
        for type_ in ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"):
            ours = {k: v for k, v in a["Resources"].items() if v["Type"] == type_}
            assert ours and all(b["Resources"][k] == v for k, v in ours.items())


@pytest.mark.parametrize("version", ["Production", "Canary"])
def test_app_mesh_exports_envoy_stats_with_a_pinned_agent(synth, version):
    s = synth(canaryWeight="10", trafficRouter="appmesh")
    task = next(
        v["Properties"] for k, v in s.resources("AWS::ECS::TaskDefinition").items() if k.startswith(f"{version}Task")
    )
    containers = {c["Name"]: c for c in task["ContainerDefinitions"]}
    env = {e["Name"]: e["Value"] for e in containers["envoy"]["Environment"]}
    assert {k: env[k] for k in ("ENABLE_ENVOY_STATS_TAGS", "ENABLE_ENVOY_DOG_STATSD", "STATSD_PORT")} == {
        "ENABLE_ENVOY_STATS_TAGS": "1",
        "ENABLE_ENVOY_DOG_STATSD": "1",
        "STATSD_PORT": "8125",
    }
    agent = containers["cwagent"]
    assert agent["Image"] == CLOUDWATCH_AGENT_IMAGE and ":latest" not in agent["Image"]
    # Envoy's user, so App Mesh's iptables rules let its calls to CloudWatch past the proxy.
    assert agent["User"] == "1337"
    config = json.loads({e["Name"]: e["Value"] for e in agent["Environment"]}["CW_CONFIG_CONTENT"])
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


def agent_config(s, version: str) -> dict:
    task = next(
        v["Properties"] for k, v in s.resources("AWS::ECS::TaskDefinition").items() if k.startswith(f"{version}Task")
    )
    agent = next(c for c in task["ContainerDefinitions"] if c["Name"] == "cwagent")
    return json.loads({e["Name"]: e["Value"] for e in agent["Environment"]}["CW_CONFIG_CONTENT"])


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
