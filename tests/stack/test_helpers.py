"""One home per CDK helper: the shared Fargate pieces, and one way to acknowledge a cdk-nag finding."""

from __future__ import annotations

import re

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs

from canary_stack.constants import PROJECT_ROOT
from canary_stack.fargate import EnvoyStatsExport, envoy_container, only_capability
from canary_stack.nag import acknowledge


def test_only_nag_py_spells_an_awssolutions_acknowledgment_id():
    spelled = [
        path.relative_to(PROJECT_ROOT).as_posix()
        for path in (PROJECT_ROOT / "canary_stack").rglob("*.py")
        if '"AwsSolutions::' in path.read_text() or 'f"AwsSolutions::' in path.read_text()
    ]
    assert spelled == ["canary_stack/nag.py"]


def test_no_hand_written_logical_id_in_the_constructs():
    # A CDK logical id ends in an 8-digit uppercase hex hash; ours are computed (Stack.get_logical_id).
    pattern = re.compile(r"[\"'<][A-Za-z][A-Za-z0-9]*[0-9A-F]{8}[\"'>.]")
    found = {
        path.name: pattern.findall(path.read_text())
        for path in (PROJECT_ROOT / "canary_stack").rglob("*.py")
        if pattern.search(path.read_text())
    }
    assert found == {}


def test_acknowledge_takes_one_or_several_findings_but_not_none():
    stack = cdk.Stack(cdk.App(), "S")
    acknowledge(stack, "AwsSolutions-S1", "one")
    acknowledge(stack, ["AwsSolutions-S1", "AwsSolutions-S2"], "two")
    with pytest.raises(ValueError, match="at least one finding"):
        acknowledge(stack, [], "none")


def test_envoy_stats_export_refuses_an_envoy_of_another_task():
    stack = cdk.Stack(cdk.App(), "S")
    group = logs.LogGroup(stack, "Logs")
    ours, other = (ecs.FargateTaskDefinition(stack, name) for name in ("Ours", "Other"))
    envoy = envoy_container(other, resource_arn="arn:aws:appmesh:eu-west-1:123456789012:mesh/m", log_group=group)
    with pytest.raises(ValueError, match="container of task_definition"):
        EnvoyStatsExport(stack, "Export", task_definition=ours, envoy=envoy, log_group=group, namespace="N/Envoy")


def test_only_capability_refuses_what_fargate_cannot_add():
    stack = cdk.Stack(cdk.App(), "S")
    with pytest.raises(ValueError, match="Fargate cannot add it"):
        only_capability(stack, "Linux", ecs.Capability.SYS_ADMIN)
