"""The router contract (canary_stack/routers/base.py), checked on each router by itself.

Each router is built on a bare Stack with its real dependencies (network, load balancer, two
versions of the service) and synthesized with `assertions.Template`. Whatever the router, the
weights live in the one resource it names, that resource is updated only after both ECS services,
and it hands over the signals the alarms read. That a weight step changes that resource and
nothing else is held on the whole app as `cdk synth` builds it, for every router in ROUTERS
(tests/stack/test_determinism.py); one synthesis per router here keeps this module cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aws_cdk import App, Stack, assertions
from aws_cdk import aws_ecs as ecs

from canary_stack.ingress import PublicEntrypoint
from canary_stack.network import Network
from canary_stack.routers import ROUTERS
from canary_stack.routers.base import CANARY, PRODUCTION, CanaryRouter
from canary_stack.service import CrystalService

WEIGHT = 37  # neither 0 nor 50: the two weights differ and neither is a default


@dataclass(frozen=True)
class Built:
    router: CanaryRouter
    production: CrystalService
    canary: CrystalService
    template: dict

    def logical_id(self, resource) -> str:
        stack = Stack.of(resource)
        return stack.resolve(stack.get_logical_id(resource))


def build(name: str, weight: int) -> Built:
    stack = Stack(App(), "Bare")
    network = Network(stack, "Network")
    entrypoint = PublicEntrypoint(stack, "Entrypoint", vpc=network.vpc, allowed_cidr="203.0.113.0/24")
    router = ROUTERS[name](stack, "Router", network=network, entrypoint=entrypoint, canary_weight=weight)
    image = ecs.ContainerImage.from_registry("ecsdemo-crystal:test")
    versions = {
        version: CrystalService(
            stack,
            version.title(),
            cluster=network.cluster,
            version=version,
            image=image,
            mesh=router.membership(version),
        )
        for version in (PRODUCTION, CANARY)
    }
    router.route(production=versions[PRODUCTION], canary=versions[CANARY])
    template = dict(assertions.Template.from_stack(stack).to_json())
    return Built(router, versions[PRODUCTION], versions[CANARY], template)


@pytest.fixture(scope="module", params=sorted(ROUTERS))
def built(request) -> Built:
    """Each router, one bare-stack synthesis, shared by the module."""
    return build(request.param, WEIGHT)


def test_the_weighted_resource_holds_both_weights_and_no_other_resource_does(built):
    resources = built.template["Resources"]
    weighted = built.logical_id(built.router.weighted_resource)
    assert sorted(_weights(resources[weighted]["Properties"])) == sorted([100 - WEIGHT, WEIGHT])
    for key, resource in resources.items():
        if key != weighted:
            assert WEIGHT not in _weights(resource.get("Properties", {})), key


def test_traffic_moves_only_after_both_services(built):
    resource = built.template["Resources"][built.logical_id(built.router.weighted_resource)]
    services = {built.logical_id(built.production.cfn_service), built.logical_id(built.canary.cfn_service)}
    assert services <= set(resource.get("DependsOn", []))


def test_the_router_hands_over_every_signal_the_alarms_read(built):
    for signals in (built.router.production_signals, built.router.canary_signals):
        assert signals.requests is not None and signals.errors is not None and signals.latency_p99 is not None
    assert built.router.production_signals != built.router.canary_signals


def _weights(node) -> list[int]:
    """Every `Weight` value anywhere below a resource's properties (routers spell their actions differently)."""
    found: list[int] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Weight" and isinstance(value, int):
                found.append(value)
            else:
                found.extend(_weights(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_weights(item))
    return found
