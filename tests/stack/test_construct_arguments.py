"""The constructs' own checks of their arguments: each refuses a bad value with a ValueError that
names the parameter, the value and what is allowed, before it builds anything from it.

app.py validates the operator's context into a CanaryConfig first (test_config.py); these checks
guard the constructs when they are used directly. Each builds the construct in a bare Stack with
real dependencies and never synthesizes. The values the checks accept (weights 0 and 100, no
stickiness) are synthesized in test_routers.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs

from canary_stack.fargate import envoy_container, only_capability
from canary_stack.ingress import PublicEntrypoint
from canary_stack.nag import acknowledge
from canary_stack.network import Network
from canary_stack.routers import ROUTERS
from canary_stack.routers.appmesh_tasks import EnvoyStatsExport
from canary_stack.service import CrystalService


@dataclass(frozen=True)
class Dependencies:
    stack: cdk.Stack
    network: Network
    entrypoint: PublicEntrypoint
    production: CrystalService
    canary: CrystalService


@pytest.fixture(scope="module")
def deps() -> Dependencies:
    """What the routers are built on, once for the module (about a second of jsii calls); each test
    adds its construct under an id of its own."""
    stack = cdk.Stack(cdk.App(), "Arguments")
    network = Network(stack, "Network")
    image = ecs.ContainerImage.from_registry("ecsdemo-crystal:test")
    return Dependencies(
        stack=stack,
        network=network,
        entrypoint=PublicEntrypoint(stack, "Entrypoint", vpc=network.vpc, allowed_cidr="0.0.0.0/0"),
        production=CrystalService(stack, "Production", cluster=network.cluster, version="production", image=image),
        canary=CrystalService(stack, "Canary", cluster=network.cluster, version="canary", image=image),
    )


def refusal(build) -> str:
    with pytest.raises(ValueError) as refused:
        build()
    return str(refused.value)


def build_router(deps: Dependencies, name: str, id: str, **kwargs):
    return ROUTERS[name](deps.stack, id, network=deps.network, entrypoint=deps.entrypoint, **kwargs)


@pytest.mark.parametrize("router", sorted(ROUTERS))
@pytest.mark.parametrize("weight", [-1, 101])
def test_every_router_refuses_a_weight_outside_0_to_100(deps, router, weight):
    message = refusal(lambda: build_router(deps, router, f"{router}Weight{weight}", canary_weight=weight))
    assert message == f"canary_weight must be 0..100, got {weight}"


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_every_router_refuses_negative_sticky_seconds(deps, router):
    message = refusal(lambda: build_router(deps, router, f"{router}Sticky", canary_weight=10, sticky_seconds=-1))
    assert message == "sticky_seconds must be 0 (off) or more, got -1"


@pytest.mark.parametrize("router", sorted(name for name, kind in ROUTERS.items() if not kind.supports_stickiness))
def test_a_router_without_stickiness_refuses_sticky_seconds(deps, router):
    message = refusal(lambda: build_router(deps, router, f"{router}Sticks", canary_weight=10, sticky_seconds=60))
    assert message == f"sticky_seconds must be 0 with the {router} router, got 60"


def test_envoy_stats_export_refuses_an_envoy_of_another_task():
    stack = cdk.Stack(cdk.App(), "S")
    group = logs.LogGroup(stack, "Logs")
    ours, other = (ecs.FargateTaskDefinition(stack, name) for name in ("Ours", "Other"))
    envoy = envoy_container(other, resource_arn="arn:aws:appmesh:eu-west-1:123456789012:mesh/m", log_group=group)

    def build():
        EnvoyStatsExport(stack, "Export", task_definition=ours, envoy=envoy, log_group=group, namespace="N/Envoy")

    assert refusal(build) == "envoy must be a container of task_definition: the agent reads its stats on localhost"
    # Refused before it touched the other task's Envoy: no stats switches were added to it.
    task = other.node.default_child
    assert isinstance(task, ecs.CfnTaskDefinition)
    (rendered,) = stack.resolve(task.container_definitions)
    names = {e["name"] for e in rendered["environment"]}
    assert "APPMESH_RESOURCE_ARN" in names
    assert not names & {"ENABLE_ENVOY_STATS_TAGS", "ENABLE_ENVOY_DOG_STATSD", "STATSD_PORT"}


def test_only_capability_refuses_one_fargate_cannot_add():
    # "Tasks launched on AWS Fargate only support adding the SYS_PTRACE kernel capability"
    # (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_KernelCapabilities.html).
    stack = cdk.Stack(cdk.App(), "S")
    message = refusal(lambda: only_capability(stack, "Linux", ecs.Capability.SYS_ADMIN))
    assert message == f"{ecs.Capability.SYS_ADMIN} is not a default capability; Fargate cannot add it"


def test_acknowledge_refuses_an_empty_list_of_findings():
    stack = cdk.Stack(cdk.App(), "S")
    assert refusal(lambda: acknowledge(stack, [], "none")) == "acknowledge needs at least one finding"
    assert [m for m in stack.node.metadata if m.type == "aws:cdk:acknowledged-rules"] == []
