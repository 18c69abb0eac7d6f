"""The App Mesh stack as `cdk synth` writes it: mesh, nodes, route weights, tasks, IAM, outputs."""

from __future__ import annotations

import json

import pytest
from synthesis import cdk_json_context

from canary_stack.constants import ENVOY_IMAGE
from canary_stack.stack import APP_MESH_END_OF_SUPPORT


def ref_name(node: dict) -> str:
    """The logical id a {"Ref": ...} or {"Fn::GetAtt": [...]} points at."""
    return node["Ref"] if "Ref" in node else node["Fn::GetAtt"][0]


def logical_id(resources: dict, type_: str, **properties) -> str:
    hits = [
        k
        for k, v in resources.items()
        if v["Type"] == type_ and all(v["Properties"].get(p) == x for p, x in properties.items())
    ]
    assert len(hits) == 1, f"{type_} with {properties}: {hits}"
    return hits[0]


@pytest.fixture(scope="module")
def w10(synth):
    return synth(canaryWeight="10", trafficRouter="appmesh")


@pytest.mark.parametrize("weight", [0, 10, 37, 100])
def test_weighted_route_splits_100_minus_w_and_w(synth, weight):
    s = synth(canaryWeight=str(weight), trafficRouter="appmesh")
    resources = s.template["Resources"]
    route = resources[logical_id(resources, "AWS::AppMesh::Route", RouteName="crystal-route")]
    targets = route["Properties"]["Spec"]["HttpRoute"]["Action"]["WeightedTargets"]
    by_node = {resources[ref_name(t["VirtualNode"])]["Properties"]["VirtualNodeName"]: t["Weight"] for t in targets}
    # Weight 0 must stay 0: an old CDK bug turned a zero weight into 1.
    assert by_node == {"crystal-sd-vanilla": 100 - weight, "crystal-sd-epoch": weight}
    assert s.template["Outputs"]["CanaryWeight"]["Value"] == str(weight)
    assert s.template["Outputs"]["ProductionWeight"]["Value"] == str(100 - weight)


def test_committed_weight_is_what_synth_deploys_without_c(synth):
    committed = json.loads((__import__("pathlib").Path(__file__).parents[2] / "cdk.json").read_text())["context"][
        "canaryWeight"
    ]
    assert synth().template["Outputs"]["CanaryWeight"]["Value"] == str(committed)


def test_mesh_drops_traffic_to_undeclared_backends(w10):
    mesh = w10.one("AWS::AppMesh::Mesh")["Properties"]
    assert mesh["Spec"]["EgressFilter"]["Type"] == "DROP_ALL"


@pytest.mark.parametrize("name", ["crystal-sd-vanilla", "crystal-sd-epoch"])
def test_virtual_node_listener_and_workshop_health_check(w10, name):
    resources = w10.template["Resources"]
    node = resources[logical_id(resources, "AWS::AppMesh::VirtualNode", VirtualNodeName=name)]["Properties"]
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
    # Cloud Map discovery under the node's own name, as the workshop named them.
    discovery = node["Spec"]["ServiceDiscovery"]["AWSCloudMap"]
    assert (
        resources[ref_name({"Fn::GetAtt": [discovery["ServiceName"]["Fn::GetAtt"][0]]})]["Properties"]["Name"] == name
    )


def test_router_and_virtual_service_resolving_in_the_vpc(w10):
    resources = w10.template["Resources"]
    router = w10.one("AWS::AppMesh::VirtualRouter")["Properties"]
    assert router["VirtualRouterName"] == "crystal-router"
    assert router["Spec"]["Listeners"] == [{"PortMapping": {"Port": 3000, "Protocol": "http"}}]
    service = w10.one("AWS::AppMesh::VirtualService")["Properties"]
    assert service["VirtualServiceName"] == "crystal.appmeshworkshop.pvt.local"
    provider = service["Spec"]["Provider"]["VirtualRouter"]["VirtualRouterName"]
    assert resources[ref_name(provider)]["Type"] == "AWS::AppMesh::VirtualRouter"
    # The name is an A record in the VPC's private namespace.
    name = resources[logical_id(resources, "AWS::ServiceDiscovery::Service", Name="crystal")]
    instance = w10.one("AWS::ServiceDiscovery::Instance")["Properties"]
    assert ref_name(instance["ServiceId"]) in resources and instance["InstanceAttributes"]["AWS_INSTANCE_IPV4"]
    namespace = w10.one("AWS::ServiceDiscovery::PrivateDnsNamespace")["Properties"]
    assert namespace["Name"] == "appmeshworkshop.pvt.local"
    assert name["Properties"]["DnsConfig"]["DnsRecords"][0]["Type"] == "A"


def test_header_route_reaches_canary_at_any_weight(synth):
    resources = synth(canaryWeight="0", trafficRouter="appmesh").template["Resources"]
    route = resources[logical_id(resources, "AWS::AppMesh::Route", RouteName="crystal-route-canary-header")][
        "Properties"
    ]
    http = route["Spec"]["HttpRoute"]
    assert http["Match"]["Headers"] == [{"Invert": False, "Match": {"Exact": "true"}, "Name": "canary-fleet"}]
    (target,) = http["Action"]["WeightedTargets"]
    assert resources[ref_name(target["VirtualNode"])]["Properties"]["VirtualNodeName"] == "crystal-sd-epoch"
    weighted = resources[logical_id(resources, "AWS::AppMesh::Route", RouteName="crystal-route")]["Properties"]
    assert route["Spec"]["Priority"] < weighted["Spec"]["Priority"]  # evaluated first
    # The workshop's header, for callers inside the mesh (no load balancer in between).
    workshop = resources[logical_id(resources, "AWS::AppMesh::Route", RouteName="crystal-route-workshop-header")][
        "Properties"
    ]["Spec"]
    assert workshop["HttpRoute"]["Match"]["Headers"][0]["Name"] == "canary_fleet"
    (target,) = workshop["HttpRoute"]["Action"]["WeightedTargets"]
    assert resources[ref_name(target["VirtualNode"])]["Properties"]["VirtualNodeName"] == "crystal-sd-epoch"
    assert route["Spec"]["Priority"] < workshop["Priority"] < weighted["Spec"]["Priority"]


def test_gateway_routes_everything_to_the_virtual_service(w10):
    resources = w10.template["Resources"]
    gateway = w10.one("AWS::AppMesh::VirtualGateway")["Properties"]
    assert gateway["Spec"]["Listeners"][0]["PortMapping"] == {"Port": 8080, "Protocol": "http"}
    route = w10.one("AWS::AppMesh::GatewayRoute")["Properties"]
    http = route["Spec"]["HttpRoute"]
    assert http["Match"]["Prefix"] == "/"
    target = http["Action"]["Target"]["VirtualService"]["VirtualServiceName"]
    assert resources[ref_name(target)]["Type"] == "AWS::AppMesh::VirtualService"


def task_of(s, family_part: str) -> dict:
    tasks = {k: v for k, v in s.resources("AWS::ECS::TaskDefinition").items() if k.startswith(family_part)}
    assert len(tasks) == 1, sorted(tasks)
    return next(iter(tasks.values()))["Properties"]


@pytest.mark.parametrize("version, node", [("Production", "crystal-sd-vanilla"), ("Canary", "crystal-sd-epoch")])
def test_envoy_sidecar_proxy_configuration_and_start_order(w10, version, node):
    task = task_of(w10, f"{version}Task")
    proxy = task["ProxyConfiguration"]
    assert proxy["Type"] == "APPMESH" and proxy["ContainerName"] == "envoy"
    props = {p["Name"]: p["Value"] for p in proxy["ProxyConfigurationProperties"]}
    assert props == {
        "AppPorts": "3000",
        "ProxyIngressPort": "15000",
        "ProxyEgressPort": "15001",
        "IgnoredUID": "1337",
        "EgressIgnoredIPs": "169.254.170.2,169.254.169.254",
    }
    containers = {c["Name"]: c for c in task["ContainerDefinitions"]}
    # cwagent exports Envoy's stats for the canary alarms (tests/stack/test_observability.py);
    # scratch-owner hands it its scratch volumes (tests/stack/test_hardening.py).
    assert set(containers) == {"app", "envoy", "cwagent", "scratch-owner"}
    envoy, app = containers["envoy"], containers["app"]
    assert envoy["Image"] == ENVOY_IMAGE and envoy["Image"].endswith("-prod") and ":v1." in envoy["Image"]
    assert envoy["User"] == "1337" and envoy["Essential"] is True
    assert "server_info" in envoy["HealthCheck"]["Command"][1]
    resources = w10.template["Resources"]
    node_id = envoy["Environment"][0]
    assert node_id["Name"] == "APPMESH_RESOURCE_ARN"
    assert resources[node_id["Value"]["Ref"]]["Properties"]["VirtualNodeName"] == node
    # The app starts only once Envoy is HEALTHY, and checks itself with its own binary.
    assert app["DependsOn"] == [{"ContainerName": "envoy", "Condition": "HEALTHY"}]
    assert app["HealthCheck"]["Command"] == ["CMD", "/server", "--health-check"]
    assert app["PortMappings"][0]["ContainerPort"] == 3000
    for container in (app, envoy):
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"


def test_canary_runs_the_published_tag_and_production_its_own(w10):
    def image_tag(version):
        app = next(c for c in task_of(w10, f"{version}Task")["ContainerDefinitions"] if c["Name"] == "app")
        return app["Image"]["Fn::Join"][1][-1]

    # Immutable tags: the canary's asset hash, and the hash cdk.json commits for production.
    assert image_tag("Canary") == ":" + w10.template["Resources"]["CanaryImageCopy"]["Properties"]["ImageContentHash"]
    assert image_tag("Production") == ":" + cdk_json_context()["productionImage"]
    repo = w10.one("AWS::ECR::Repository")["Properties"]
    assert repo["RepositoryName"] == "ecsdemo-crystal"
    assert repo["ImageScanningConfiguration"] == {"ScanOnPush": True}


def test_task_roles_stream_only_their_own_node_or_gateway(w10):
    resources = w10.template["Resources"]
    grants = {}
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
        task = next(
            t["Properties"]
            for t in w10.resources("AWS::ECS::TaskDefinition").values()
            if ref_name(t["Properties"]["TaskRoleArn"]) == role
        )
        envoy = next(c for c in task["ContainerDefinitions"] if c["Name"] == "envoy")
        assert envoy["Environment"][0]["Value"] == {"Ref": ref_name(statement["Resource"])}
    assert names == {"crystal-sd-vanilla", "crystal-sd-epoch", "crystal-gateway"}


def test_services_roll_back_on_failed_deployments_in_private_subnets(w10):
    services = w10.resources("AWS::ECS::Service")
    assert len(services) == 3
    for service in services.values():
        props = service["Properties"]
        assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "DISABLED"
        assert props["LaunchType"] == "FARGATE"


def test_canary_service_waits_for_its_image_copy(w10):
    resources = w10.template["Resources"]
    canary = next(v for k, v in w10.resources("AWS::ECS::Service").items() if k.startswith("Canary"))
    assert "CanaryImageCopy" in canary.get("DependsOn", [])
    assert resources["CanaryImageCopy"]["Type"] == "AWS::CloudFormation::CustomResource"


def test_public_url_output_is_the_load_balancer(w10):
    resources = w10.template["Resources"]
    url = w10.template["Outputs"]["Url"]["Value"]["Fn::Join"][1]
    assert url[0] == "http://"
    lb = resources[url[1]["Fn::GetAtt"][0]]
    assert lb["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"
    assert lb["Properties"]["Scheme"] == "internet-facing"


def test_cluster_has_container_insights_and_vpc_two_azs(w10):
    cluster = w10.one("AWS::ECS::Cluster")["Properties"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    assert len(w10.resources("AWS::EC2::Subnet")) == 4  # public + private in each of two AZs
    assert len(w10.resources("AWS::EC2::NatGateway")) == 1


def test_synth_warns_that_app_mesh_reached_end_of_support(w10):
    manifest = (
        json.loads((w10.outdir / "CrystalCanary.metadata.json").read_text())
        if (w10.outdir / "CrystalCanary.metadata.json").exists()
        else None
    )
    if manifest is None:
        manifest = json.loads((w10.outdir / "manifest.json").read_text())["artifacts"]["CrystalCanary"]["metadata"]
    warnings = [
        entry["data"] for entries in manifest.values() for entry in entries if entry["type"] == "aws:cdk:warning"
    ]
    assert any(APP_MESH_END_OF_SUPPORT in str(w) for w in warnings)
    assert "2026-09-30" in APP_MESH_END_OF_SUPPORT


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
    gateway_service = next(
        v["Properties"]
        for v in w10.resources("AWS::ECS::Service").values()
        if any(ref_name(lb["TargetGroupArn"]) == group_id for lb in v["Properties"].get("LoadBalancers", []))
    )
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
    images = {
        c["Image"]
        for t in w10.resources("AWS::ECS::TaskDefinition").values()
        for c in t["Properties"]["ContainerDefinitions"]
        if c["Name"] == "envoy"
    }
    assert images == {ENVOY_IMAGE}
    version = tuple(int(p) for p in ENVOY_IMAGE.rsplit(":v", 1)[1].removesuffix("-prod").split("."))
    # Newer than the July 2024 image the workshop pinned (v1.29.6.0-prod); App Mesh recommends the latest.
    assert len(version) == 4 and version > (1, 29, 6, 0)
