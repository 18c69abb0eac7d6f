"""Reading a synthesized template: references, resources by type and property, and which version
(production or canary) a resource serves. The one home of these helpers for every test module.

Plain dictionaries rather than `aws_cdk.assertions.Template`: the tests follow references from one
resource to another (the target group of the canary's service, the node a route sends to), which
Template's matchers do not express, and an exact comparison of a resource's properties is sharper
than a matcher that passes when any resource of the type matches.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from support.synthesis import Synthesis

Version = Literal["Production", "Canary"]

# The workshop's virtual node names: `vanilla` is production, `epoch` the canary.
NODE_VERSION: dict[str, Version] = {"crystal-sd-vanilla": "Production", "crystal-sd-epoch": "Canary"}


def ref_name(node: dict) -> str:
    """The logical id a {"Ref": ...} or {"Fn::GetAtt": [...]} points at."""
    return node["Ref"] if "Ref" in node else node["Fn::GetAtt"][0]


def with_properties(s: Synthesis, type_: str, **properties: Any) -> dict[str, dict]:
    """Resources of a type whose top-level properties have the given values, by logical id."""
    return {
        k: v for k, v in s.resources(type_).items() if all(v["Properties"].get(p) == x for p, x in properties.items())
    }


def logical_id(s: Synthesis, type_: str, **properties: Any) -> str:
    """The logical id of the one resource of a type with the given property values."""
    hits = with_properties(s, type_, **properties)
    assert len(hits) == 1, f"{type_} with {properties}: {sorted(hits)}"
    return next(iter(hits))


def named(s: Synthesis, type_: str, **properties: Any) -> dict:
    """The properties of the one resource of a type with the given property values."""
    return s.template["Resources"][logical_id(s, type_, **properties)]["Properties"]


def version_of_service(service: str) -> Version:
    """The version an ECS service's logical id belongs to (the gateway's is neither)."""
    for version in ("Production", "Canary"):
        if service.startswith(version):
            return version
    raise AssertionError(f"{service} is neither production's nor the canary's service")


def service_behind_target_group(s: Synthesis, target_group: str) -> str:
    """The logical id of the one ECS service registered in a target group: a load balancer's
    (LoadBalancers) or a VPC Lattice one (VpcLatticeConfigurations)."""
    owners = [
        k
        for k, v in s.resources("AWS::ECS::Service").items()
        if any(
            ref_name(registration["TargetGroupArn"]) == target_group
            for registration in v["Properties"].get("LoadBalancers", [])
            + v["Properties"].get("VpcLatticeConfigurations", [])
        )
    ]
    assert len(owners) == 1, f"services behind {target_group}: {owners}"
    return owners[0]


def version_of_target_group(s: Synthesis, target_group: str) -> Version:
    return version_of_service(service_behind_target_group(s, target_group))


def version_of_node(s: Synthesis, node: dict) -> Version:
    """The version a reference to a virtual node stands for, by the node's name."""
    return NODE_VERSION[s.template["Resources"][ref_name(node)]["Properties"]["VirtualNodeName"]]


def task(s: Synthesis, version: str) -> dict:
    """The properties of a version's task definition ("Production", "Canary" or "Gateway")."""
    found = {k: v for k, v in s.resources("AWS::ECS::TaskDefinition").items() if k.startswith(f"{version}Task")}
    assert len(found) == 1, sorted(found)
    return next(iter(found.values()))["Properties"]


def containers(s: Synthesis) -> list[dict]:
    """Every container definition of every task."""
    return [
        c for t in s.resources("AWS::ECS::TaskDefinition").values() for c in t["Properties"]["ContainerDefinitions"]
    ]


def container(task_properties: dict, name: str) -> dict:
    (found,) = [c for c in task_properties["ContainerDefinitions"] if c["Name"] == name]
    return found


def environment(container_definition: dict) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container_definition.get("Environment", [])}


def warnings(s: Synthesis, stack: str = "CrystalCanary") -> list[str]:
    """The warnings `cdk synth` prints for a stack (its aws:cdk:warning metadata)."""
    path = s.outdir / f"{stack}.metadata.json"
    metadata = (
        json.loads(path.read_text())
        if path.exists()
        else json.loads((s.outdir / "manifest.json").read_text())["artifacts"][stack]["metadata"]
    )
    return [str(e["data"]) for entries in metadata.values() for e in entries if e["type"] == "aws:cdk:warning"]
