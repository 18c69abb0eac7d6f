"""The App Mesh stack as `cdk synth` writes it: mesh, nodes, routes, gateway, tasks, IAM.

What both routers promise (the weights, the services, the URL, the end-of-support warning) is
asserted on each router in test_routers.py.
"""

from __future__ import annotations

import json

import pytest
from support.synthesis import cdk_json_context
from support.templates import (
    container,
    containers,
    environment,
    logical_id,
    named,
    ref_name,
    service_behind_target_group,
    task,
    version_of_node,
)

from canary_stack.constants import ENVOY_IMAGE


@pytest.fixture(scope="module")
def w10(synth):
    return synth(canaryWeight="10", trafficRouter="appmesh")


def test_mesh_drops_traffic_to_undeclared_backends(w10):
    mesh = w10.one("AWS::AppMesh::Mesh")["Properties"]
    assert mesh["Spec"]["EgressFilter"]["Type"] == "DROP_ALL"


@pytest.mark.parametrize("name", ["crystal-sd-vanilla", "crystal-sd-epoch"])
def test_virtual_node_listener_and_workshop_health_check(w10, name):
    node = named(w10, "AWS::AppMesh::VirtualNode", VirtualNodeName=name)
    (listener,) = node["Spec"]["Listeners"]
    assert listener["PortMapping"] == {"Port": 3000, "Protocol": "http"}
    assert listener["HealthCheck"] == {
        "Path": "/health",
        "Protocol": "http",
        "Port": 3000,
        "IntervalMillis": 10000,
        "TimeoutMillis": 5000,
        "HealthyThreshold": 3,
        "UnhealthyThreshold": 3,
    }
    # Cloud Map discovery under the node's own name, as the workshop named them, in the VPC's namespace.
    discovery = node["Spec"]["ServiceDiscovery"]["AWSCloudMap"]
    namespace = logical_id(w10, "AWS::ServiceDiscovery::PrivateDnsNamespace", Name="appmeshworkshop.pvt.local")
    assert discovery["NamespaceName"] == "appmeshworkshop.pvt.local"
    service = w10.template["Resources"][ref_name(discovery["ServiceName"])]["Properties"]
    assert service["Name"] == name and ref_name(service["NamespaceId"]) == namespace


def test_router_and_virtual_service_resolving_in_the_vpc(w10):
    router = w10.one("AWS::AppMesh::VirtualRouter")["Properties"]
    assert router["VirtualRouterName"] == "crystal-router"
    assert router["Spec"]["Listeners"] == [{"PortMapping": {"Port": 3000, "Protocol": "http"}}]
    service = w10.one("AWS::AppMesh::VirtualService")["Properties"]
    assert service["VirtualServiceName"] == "crystal.appmeshworkshop.pvt.local"
    provider = service["Spec"]["Provider"]["VirtualRouter"]["VirtualRouterName"]
    assert ref_name(provider) == logical_id(w10, "AWS::AppMesh::VirtualRouter")
    # The name is an A record in the VPC's private namespace, with one placeholder address:
    # Envoy routes by name, but the caller's DNS lookup must succeed first.
    namespace = logical_id(w10, "AWS::ServiceDiscovery::PrivateDnsNamespace", Name="appmeshworkshop.pvt.local")
    vpc = w10.template["Resources"][namespace]["Properties"]["Vpc"]
    assert ref_name(vpc) == logical_id(w10, "AWS::EC2::VPC")
    crystal = logical_id(w10, "AWS::ServiceDiscovery::Service", Name="crystal")
    record = w10.template["Resources"][crystal]["Properties"]
    assert ref_name(record["NamespaceId"]) == namespace
    assert [r["Type"] for r in record["DnsConfig"]["DnsRecords"]] == ["A"]
    instance = w10.one("AWS::ServiceDiscovery::Instance")["Properties"]
    assert ref_name(instance["ServiceId"]) == crystal
    assert instance["InstanceAttributes"]["AWS_INSTANCE_IPV4"] == "10.10.10.10"


def test_header_routes_reach_the_canary_before_the_weighted_route(synth):
    # At weight 0, where only the header routes can reach the canary.
    s = synth(canaryWeight="0", trafficRouter="appmesh")
    weighted = named(s, "AWS::AppMesh::Route", RouteName="crystal-route")["Spec"]
    header = named(s, "AWS::AppMesh::Route", RouteName="crystal-route-canary-header")["Spec"]
    # The workshop's header, for callers inside the mesh (no load balancer in between).
    workshop = named(s, "AWS::AppMesh::Route", RouteName="crystal-route-workshop-header")["Spec"]
    for spec, name in ((header, "canary-fleet"), (workshop, "canary_fleet")):
        http = spec["HttpRoute"]
        assert http["Match"]["Headers"] == [{"Invert": False, "Match": {"Exact": "true"}, "Name": name}]
        (target,) = http["Action"]["WeightedTargets"]
        assert version_of_node(s, target["VirtualNode"]) == "Canary"
    # Evaluated lowest first: the load balancer's callers' header, the workshop's, then the split.
    assert header["Priority"] < workshop["Priority"] < weighted["Priority"]


def test_gateway_routes_everything_to_the_virtual_service(w10):
    resources = w10.template["Resources"]
    gateway = w10.one("AWS::AppMesh::VirtualGateway")["Properties"]
    assert gateway["Spec"]["Listeners"][0]["PortMapping"] == {"Port": 8080, "Protocol": "http"}
    route = w10.one("AWS::AppMesh::GatewayRoute")["Properties"]
    http = route["Spec"]["HttpRoute"]
    assert http["Match"]["Prefix"] == "/"
    target = http["Action"]["Target"]["VirtualService"]["VirtualServiceName"]
    assert resources[ref_name(target)]["Type"] == "AWS::AppMesh::VirtualService"


@pytest.mark.parametrize("version, node", [("Production", "crystal-sd-vanilla"), ("Canary", "crystal-sd-epoch")])
def test_envoy_sidecar_proxy_configuration_and_start_order(w10, version, node):
    task_definition = task(w10, version)
    proxy = task_definition["ProxyConfiguration"]
    assert proxy["Type"] == "APPMESH" and proxy["ContainerName"] == "envoy"
    props = {p["Name"]: p["Value"] for p in proxy["ProxyConfigurationProperties"]}
    assert props == {
        "AppPorts": "3000",
        "ProxyIngressPort": "15000",
        "ProxyEgressPort": "15001",
        "IgnoredUID": "1337",
        "EgressIgnoredIPs": "169.254.170.2,169.254.169.254",
    }
    containers = {c["Name"]: c for c in task_definition["ContainerDefinitions"]}
    # cwagent exports Envoy's stats for the canary alarms (tests/stack/test_observability.py);
    # scratch-owner hands it its scratch volumes (tests/stack/test_hardening.py).
    assert set(containers) == {"app", "envoy", "cwagent", "scratch-owner"}
    envoy, app = containers["envoy"], containers["app"]
    # Its image: test_every_envoy_runs_the_same_current_release.
    assert envoy["User"] == "1337" and envoy["Essential"] is True
    assert "server_info" in envoy["HealthCheck"]["Command"][1]
    node_arn = environment(envoy)["APPMESH_RESOURCE_ARN"]
    assert w10.template["Resources"][node_arn["Ref"]]["Properties"]["VirtualNodeName"] == node
    # The app starts only once Envoy is HEALTHY, and checks itself with its own binary.
    assert app["DependsOn"] == [{"ContainerName": "envoy", "Condition": "HEALTHY"}]
    assert app["HealthCheck"]["Command"] == ["CMD", "/server", "--health-check"]
    assert app["PortMappings"][0]["ContainerPort"] == 3000
    for logging in (app, envoy):
        assert logging["LogConfiguration"]["LogDriver"] == "awslogs"


def test_canary_runs_the_published_tag_and_production_its_own(w10):
    def image_tag(version):
        return container(task(w10, version), "app")["Image"]["Fn::Join"][1][-1]

    # Immutable tags: the canary's asset hash, and the hash cdk.json commits for production.
    assert image_tag("Canary") == ":" + w10.template["Resources"]["CanaryImageCopy"]["Properties"]["ImageContentHash"]
    assert image_tag("Production") == ":" + cdk_json_context()["productionImage"]
    repo = w10.one("AWS::ECR::Repository")["Properties"]
    assert repo["RepositoryName"] == "ecsdemo-crystal"  # scanned on push: test_hardening.py


def test_task_roles_stream_only_their_own_node_or_gateway(w10):
    resources = w10.template["Resources"]
    grants: dict[str, list[dict]] = {}
    for policy in w10.resources("AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "appmesh:StreamAggregatedResources" in json.dumps(statement["Action"]):
                role = ref_name(policy["Properties"]["Roles"][0])
                grants.setdefault(role, []).append(statement)
    assert len(grants) == 3  # production, canary, gateway
    names = set()
    for role, statements in grants.items():
        (statement,) = statements
        assert statement["Action"] == "appmesh:StreamAggregatedResources"
        target = resources[ref_name(statement["Resource"])]["Properties"]
        names.add(target.get("VirtualNodeName") or target.get("VirtualGatewayName"))
        # Each role is the task role of exactly the task that runs that Envoy.
        (task_definition,) = [
            t["Properties"]
            for t in w10.resources("AWS::ECS::TaskDefinition").values()
            if ref_name(t["Properties"]["TaskRoleArn"]) == role
        ]
        envoy = container(task_definition, "envoy")
        assert environment(envoy)["APPMESH_RESOURCE_ARN"] == {"Ref": ref_name(statement["Resource"])}
    assert names == {"crystal-sd-vanilla", "crystal-sd-epoch", "crystal-gateway"}


def test_canary_service_waits_for_its_image_copy(w10):
    resources = w10.template["Resources"]
    canary = next(v for k, v in w10.resources("AWS::ECS::Service").items() if k.startswith("Canary"))
    assert "CanaryImageCopy" in canary.get("DependsOn", [])
    assert resources["CanaryImageCopy"]["Type"] == "AWS::CloudFormation::CustomResource"


def test_cluster_has_container_insights_and_vpc_two_azs(w10):
    cluster = w10.one("AWS::ECS::Cluster")["Properties"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    assert len(w10.resources("AWS::EC2::Subnet")) == 4  # public + private in each of two AZs
    assert len(w10.resources("AWS::EC2::NatGateway")) == 1


def test_gateway_health_check_asks_envoy_itself(w10):
    # Envoy's admin /ready answers 200 when the server is LIVE
    # (https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--ready); a check through the
    # gateway would follow the weighted route and let a bad canary fail the gateway itself.
    resources = w10.template["Resources"]
    (group_id,) = [
        k
        for k, v in w10.resources("AWS::ElasticLoadBalancingV2::TargetGroup").items()
        if v["Properties"]["Port"] == 8080
    ]
    group = resources[group_id]["Properties"]
    assert (group["HealthCheckPath"], group["HealthCheckPort"]) == ("/ready", "9901")
    gateway_service = resources[service_behind_target_group(w10, group_id)]["Properties"]
    (gateway_sg,) = [
        ref_name(g) for g in gateway_service["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    ]
    lb_sg = ref_name(w10.one("AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]["SecurityGroups"][0])
    ingress = {
        (ref_name(r["Properties"]["SourceSecurityGroupId"]), r["Properties"]["FromPort"])
        for r in w10.resources("AWS::EC2::SecurityGroupIngress").values()
        if ref_name(r["Properties"]["GroupId"]) == gateway_sg
    }
    assert ingress == {(lb_sg, 8080), (lb_sg, 9901)}
    egress = {
        (ref_name(r["Properties"]["DestinationSecurityGroupId"]), r["Properties"]["FromPort"])
        for r in w10.resources("AWS::EC2::SecurityGroupEgress").values()
        if ref_name(r["Properties"]["GroupId"]) == lb_sg
    }
    assert {(gateway_sg, 8080), (gateway_sg, 9901)} <= egress


def test_every_envoy_runs_the_same_current_release(w10):
    envoys = [c for c in containers(w10) if c["Name"] == "envoy"]
    assert len(envoys) == 3  # production, canary, gateway
    (image,) = {c["Image"] for c in envoys}
    assert image == ENVOY_IMAGE
    repository, tag = image.rsplit(":", 1)
    # App Mesh's own build of Envoy, the production flavour.
    assert repository.endswith("/appmesh/aws-appmesh-envoy") and tag.startswith("v") and tag.endswith("-prod")
    version = tuple(int(p) for p in tag.removeprefix("v").removesuffix("-prod").split("."))
    # Newer than the July 2024 image the workshop pinned (v1.29.6.0-prod); App Mesh recommends the latest.
    assert len(version) == 4 and version > (1, 29, 6, 0)
