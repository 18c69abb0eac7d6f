"""What every router promises, asserted on each: the split, the services, the URL, the header route.

App Mesh-only details are in test_app_mesh.py (its header routes among them), Lattice-only ones in
test_lattice.py. Configurations are kept few (each is one synthesis per session): weights
0/10/50/100 on App Mesh and on Lattice (50 is also test_determinism's), 0/10/100 on the ALB, and 37
with stickiness on the ALB.
"""

from __future__ import annotations

import json
import re

import pytest
from support.synthesis import cdk_json_context
from support.templates import (
    Version,
    logical_id,
    named,
    ref_name,
    version_of_node,
    version_of_target_group,
    warnings,
)

ROUTERS = ["appmesh", "alb", "lattice"]
# alb is the default: its configurations leave trafficRouter out, so each is synthesized once.
ROUTER_CONTEXT: dict[str, dict[str, str]] = {
    "appmesh": {"trafficRouter": "appmesh"},
    "alb": {},
    "lattice": {"trafficRouter": "lattice"},
}
ALB_STICKY = {"stickySeconds": "3600"}
WEIGHTS = (
    [("appmesh", w) for w in (0, 10, 50, 100)]
    + [("alb", w) for w in (0, 10, 37, 100)]
    + [("lattice", w) for w in (0, 10, 50, 100)]
)
# ECS services per router: production and canary, plus App Mesh's gateway or Lattice's ingress proxy.
SERVICES = {"appmesh": 3, "alb": 2, "lattice": 3}


def synth_for(synth, router: str, weight: int):
    """One synthesis per (router, weight); the ALB's 37 is also the stickiness configuration."""
    extra = ALB_STICKY if (router, weight) == ("alb", 37) else {}
    return synth(canaryWeight=str(weight), **ROUTER_CONTEXT[router], **extra)


def weighted_rule(s) -> dict:
    """The ALB router's weight resource: the listener rule whose forward action has weights."""
    (rule,) = [
        v
        for v in s.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
        if "ForwardConfig" in v["Properties"]["Actions"][0]
    ]
    return rule


def lattice_weighted_rule(s) -> dict:
    """The Lattice router's weight resource: the rule whose forward action names two target groups."""
    (rule,) = [
        v
        for v in s.resources("AWS::VpcLattice::Rule").values()
        if len(v["Properties"]["Action"]["Forward"]["TargetGroups"]) == 2
    ]
    return rule


def shares(s, router: str) -> dict[Version, int]:
    """Weight per version, as the router's template has it."""
    if router == "lattice":
        return {
            version_of_target_group(s, ref_name(g["TargetGroupIdentifier"])): g["Weight"]
            for g in lattice_weighted_rule(s)["Properties"]["Action"]["Forward"]["TargetGroups"]
        }
    if router == "appmesh":
        route = named(s, "AWS::AppMesh::Route", RouteName="crystal-route")
        return {
            version_of_node(s, t["VirtualNode"]): t["Weight"]
            for t in route["Spec"]["HttpRoute"]["Action"]["WeightedTargets"]
        }
    (action,) = weighted_rule(s)["Properties"]["Actions"]
    assert action["Type"] == "forward"
    return {
        version_of_target_group(s, ref_name(g["TargetGroupArn"])): g["Weight"]
        for g in action["ForwardConfig"]["TargetGroups"]
    }


@pytest.mark.parametrize("router, weight", WEIGHTS)
def test_weights_reach_the_right_versions_exactly(synth, router, weight):
    s = synth_for(synth, router, weight)
    # 0 stays 0 and 100 stays 100 (an old CDK bug turned an App Mesh weight of 0 into 1): no
    # version gets a sliver it was not given.
    assert shares(s, router) == {"Production": 100 - weight, "Canary": weight}
    outputs = s.template["Outputs"]
    assert (outputs["CanaryWeight"]["Value"], outputs["ProductionWeight"]["Value"]) == (str(weight), str(100 - weight))


def test_without_c_synth_deploys_the_weight_committed_in_cdk_json(synth):
    committed = cdk_json_context()["canaryWeight"]
    assert synth().template["Outputs"]["CanaryWeight"]["Value"] == str(committed)


def test_alb_header_rule_sends_only_the_canary_before_the_split(synth):
    # App Mesh's header routes: test_app_mesh.py::test_header_routes_reach_the_canary_before_the_weighted_route.
    s = synth_for(synth, "alb", 0)
    (rule,) = [
        v["Properties"]
        for v in s.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
        if v["Properties"]["Conditions"][0]["Field"] == "http-header"
    ]
    # Evaluated before the weighted rule, so the header wins at any weight.
    assert rule["Priority"] == 10 < weighted_rule(s)["Properties"]["Priority"]
    assert rule["Conditions"] == [
        {"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "canary-fleet", "Values": ["true"]}}
    ]
    (action,) = rule["Actions"]
    assert action["Type"] == "forward"
    assert version_of_target_group(s, ref_name(action["TargetGroupArn"])) == "Canary"
    assert ref_name(rule["ListenerArn"]) in s.resources("AWS::ElasticLoadBalancingV2::Listener")


@pytest.mark.parametrize("router", ROUTERS)
def test_services_run_on_fargate_in_private_subnets_and_roll_back_failed_deployments(synth, router):
    s = synth_for(synth, router, 10)
    services = s.resources("AWS::ECS::Service")
    assert len(services) == SERVICES[router]
    private = {k for k, v in s.resources("AWS::EC2::Subnet").items() if v["Properties"]["MapPublicIpOnLaunch"] is False}
    assert len(private) == 2
    for service in services.values():
        props = service["Properties"]
        assert props["LaunchType"] == "FARGATE"
        assert props["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
        network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
        assert {ref_name(subnet) for subnet in network["Subnets"]} <= private


@pytest.mark.parametrize("router", ROUTERS)
def test_url_output_is_the_internet_facing_load_balancer(synth, router):
    s = synth_for(synth, router, 10)
    url = s.template["Outputs"]["Url"]["Value"]["Fn::Join"][1]
    assert url[0] == "http://"
    lb = s.template["Resources"][ref_name(url[1])]
    assert lb["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"
    assert lb["Properties"]["Scheme"] == "internet-facing"


@pytest.mark.parametrize("router", ROUTERS)
def test_synth_warns_of_app_mesh_end_of_support_only_with_app_mesh_and_names_the_alternative(synth, router):
    about_app_mesh = [w for w in warnings(synth_for(synth, router, 10)) if "App Mesh" in w]
    if router != "appmesh":
        assert about_app_mesh == []
        return
    (warning,) = about_app_mesh
    assert "end of support on 2026-09-30" in warning and "-c trafficRouter=alb" in warning


def test_alb_router_has_no_app_mesh_and_no_envoy(synth):
    s = synth_for(synth, "alb", 10)
    text = json.dumps(s.template)
    assert not [k for k, v in s.template["Resources"].items() if v["Type"].startswith("AWS::AppMesh::")]
    assert "aws-appmesh-envoy" not in text and "APPMESH" not in text
    for task in s.resources("AWS::ECS::TaskDefinition").values():
        props = task["Properties"]
        assert "ProxyConfiguration" not in props
        assert [c["Name"] for c in props["ContainerDefinitions"]] == ["app"]


def test_alb_router_creates_no_cloud_map_namespace(synth):
    # A private DNS namespace is a Route 53 private hosted zone, billed monthly
    # (https://docs.aws.amazon.com/cloud-map/latest/dg/working-with-namespaces.html); only App Mesh's
    # nodes and virtual service register in one.
    kinds = {v["Type"] for v in synth_for(synth, "alb", 10).template["Resources"].values()}
    assert not {k for k in kinds if k.startswith("AWS::ServiceDiscovery::")}
    assert "AWS::ServiceDiscovery::PrivateDnsNamespace" in {
        v["Type"] for v in synth_for(synth, "appmesh", 10).template["Resources"].values()
    }


def test_alb_target_groups_check_health_on_the_app_port(synth):
    s = synth_for(synth, "alb", 10)
    groups = s.resources("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert len(groups) == 2
    for group in groups.values():
        props = group["Properties"]
        assert (props["TargetType"], props["Port"], props["Protocol"]) == ("ip", 3000, "HTTP")
        assert props["HealthCheckPath"] == "/health"
        assert (props["HealthyThresholdCount"], props["UnhealthyThresholdCount"]) == (2, 3)
        assert props["HealthCheckIntervalSeconds"] > props["HealthCheckTimeoutSeconds"]


def test_alb_services_accept_the_app_port_from_the_load_balancer_only(synth):
    s = synth_for(synth, "alb", 10)
    resources = s.template["Resources"]
    lb_group = ref_name(s.one("AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]["SecurityGroups"][0])
    for version in ("Production", "Canary"):
        group = next(
            k for k, v in resources.items() if v["Type"] == "AWS::EC2::SecurityGroup" and k.startswith(version)
        )
        inline = resources[group]["Properties"].get("SecurityGroupIngress", [])
        separate = [
            v["Properties"]
            for v in s.resources("AWS::EC2::SecurityGroupIngress").values()
            if ref_name(v["Properties"]["GroupId"]) == group
        ]
        assert inline == []
        assert [(ref_name(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in separate] == [
            (lb_group, 3000, 3000)
        ]


def test_alb_stickiness_only_when_asked_for(synth):
    (plain,) = weighted_rule(synth_for(synth, "alb", 10))["Properties"]["Actions"]
    assert "TargetGroupStickinessConfig" not in plain["ForwardConfig"]
    (sticky,) = weighted_rule(synth_for(synth, "alb", 37))["Properties"]["Actions"]
    assert sticky["ForwardConfig"]["TargetGroupStickinessConfig"] == {"Enabled": True, "DurationSeconds": 3600}


def test_alb_weighted_rule_matches_every_path_and_the_listener_default_is_production(synth):
    s = synth_for(synth, "alb", 10)
    rule = weighted_rule(s)["Properties"]
    assert rule["Conditions"] == [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}]
    assert ref_name(rule["ListenerArn"]) in s.resources("AWS::ElasticLoadBalancingV2::Listener")
    # What no rule matches (nothing, today) goes to production, never to the canary.
    (default,) = s.one("AWS::ElasticLoadBalancingV2::Listener")["Properties"]["DefaultActions"]
    assert version_of_target_group(s, ref_name(default["TargetGroupArn"])) == "Production"


def weight_resource(s, router: str) -> tuple[str, dict]:
    """(logical id, resource) of the one resource that carries the router's weights."""
    if router in ("alb", "lattice"):
        rule = weighted_rule(s) if router == "alb" else lattice_weighted_rule(s)
        return next(k for k, v in s.template["Resources"].items() if v is rule), rule
    route = logical_id(s, "AWS::AppMesh::Route", RouteName="crystal-route")
    return route, s.template["Resources"][route]


@pytest.mark.parametrize("router", ROUTERS)
def test_weights_move_only_after_both_services_are_updated(synth, router):
    # Promotion (production's image := the canary's, weight 0) in one deploy: CloudFormation
    # updates, and waits for, both ECS services before it touches the weights, so production
    # runs the canaried image before the canary's share returns to it.
    s = synth_for(synth, router, 10)
    _, resource = weight_resource(s, router)
    services = {k for k, v in s.resources("AWS::ECS::Service").items() if k.startswith(("Production", "Canary"))}
    assert len(services) == 2
    assert services <= set(resource.get("DependsOn", []))


@pytest.mark.parametrize("router", ROUTERS)
def test_no_ecs_service_waits_for_the_weights(synth, router):
    # The other direction would be a cycle, and would let a traffic step hold up a rollback.
    s = synth_for(synth, router, 10)
    weights, _ = weight_resource(s, router)
    for name, service in s.resources("AWS::ECS::Service").items():
        assert weights not in service.get("DependsOn", []), name


def evaluate_rule(node, parameters: dict[str, str]):
    """Evaluates a Rules-section condition the way CloudFormation does, for the functions we use
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/rules-section-structure.html)."""
    if isinstance(node, str):
        return node
    ((function, args),) = node.items()
    if function == "Ref":
        return parameters[args]
    values = [evaluate_rule(a, parameters) for a in args]
    if function == "Fn::Equals":
        return values[0] == values[1]
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::And":
        return all(values)
    if function == "Fn::Or":
        return any(values)
    raise AssertionError(f"unexpected rule function {function}")


def test_app_mesh_template_fails_every_change_set_with_one_line_naming_the_alternative(synth):
    template = synth_for(synth, "appmesh", 10).template
    parameter = template["Parameters"]["AppMeshEndOfSupport"]
    assert parameter["Type"] == "String"
    assert parameter["AllowedValues"] == [parameter["Default"]] == ["2026-09-30"]
    (assertion,) = template["Rules"]["AppMeshEndOfSupportRule"]["Assertions"]
    assert "RuleCondition" not in template["Rules"]["AppMeshEndOfSupportRule"]  # always evaluated
    # False for every value CloudFormation accepts for the parameter: no override gets through.
    assert [evaluate_rule(assertion["Assert"], {"AppMeshEndOfSupport": v}) for v in parameter["AllowedValues"]] == [
        False
    ]
    description = assertion["AssertDescription"]
    assert "\n" not in description and len(description) < 200
    assert "2026-09-30" in description and "-c trafficRouter=alb" in description and "App Mesh" in description


def test_alb_template_has_no_rule_that_stops_it(synth):
    template = synth_for(synth, "alb", 10).template
    assert "Rules" not in template or set(template["Rules"]) <= {"CheckBootstrapVersion"}
    assert "AppMeshEndOfSupport" not in template.get("Parameters", {})


# ELB with routing.http.drop_invalid_header_fields.enabled=true removes header fields whose names
# do not match [-A-Za-z0-9]+ before any rule or target sees them: "Elastic Load Balancing requires
# that message header names conform to the regular expression [-A-Za-z0-9]+"
# (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/application-load-balancers.html).
ELB_HEADER_NAME = re.compile(r"[-A-Za-z0-9]+")
# A listener rule's HttpHeaderName: "The maximum size is 40 characters" (AWS::ElasticLoadBalancingV2::
# ListenerRule HttpHeaderConfig); App Mesh route and gateway route header names: 1 to 50 characters
# (https://docs.aws.amazon.com/app-mesh/latest/APIReference/API_HttpRouteHeader.html,
# https://docs.aws.amazon.com/app-mesh/latest/APIReference/API_HttpGatewayRouteHeader.html).
ALB_RULE_HEADER_MAX = 40
APP_MESH_HEADER_MAX = 50
LATTICE_HEADER_MAX = 40


def through_load_balancer(headers: dict[str, str]) -> dict[str, str]:
    """The request headers a target behind our load balancer receives (names are case-insensitive)."""
    return {k.lower(): v for k, v in headers.items() if ELB_HEADER_NAME.fullmatch(k)}


def alb_version_for(s, headers: dict[str, str]) -> str:
    """Where the ALB router sends a request: a version, or "weighted" for the split."""
    rules = sorted(
        (v["Properties"] for v in s.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()),
        key=lambda r: r["Priority"],
    )
    for rule in rules:
        if all(
            c["Field"] == "path-pattern"
            or (
                c["Field"] == "http-header"
                and headers.get(c["HttpHeaderConfig"]["HttpHeaderName"].lower()) in c["HttpHeaderConfig"]["Values"]
            )
            for c in rule["Conditions"]
        ):
            (action,) = rule["Actions"]
            if "ForwardConfig" in action:
                return "weighted"
            return version_of_target_group(s, ref_name(action["TargetGroupArn"]))
    raise AssertionError("no rule matched")


def lattice_header_matches(match: dict, headers: dict[str, str]) -> bool:
    """A Lattice header match: the name compared case-insensitively, the value too unless the match
    says CaseSensitive (https://docs.aws.amazon.com/vpc-lattice/latest/ug/listener-rules.html)."""
    sent = headers.get(match["Name"].lower())
    if sent is None:
        return False
    expected = match["Match"]["Exact"]
    return sent == expected if match.get("CaseSensitive") else sent.lower() == expected.lower()


def lattice_version_for(s, headers: dict[str, str]) -> str:
    """Where the Lattice router sends a request that arrives through the load balancer and the proxy
    (nginx passes header fields on as received, and drops names with '_' as the load balancer did).
    Rules in priority order, lowest first, then the listener's default action (listener-rules.html)."""
    rules = sorted(
        (v["Properties"] for v in s.resources("AWS::VpcLattice::Rule").values()), key=lambda r: r["Priority"]
    )
    for rule in rules:
        http = rule["Match"]["HttpMatch"]
        if "PathMatch" in http:
            assert http["PathMatch"]["Match"] == {"Prefix": "/"}  # every path: the headers decide
        if all(lattice_header_matches(h, headers) for h in http.get("HeaderMatches", [])):
            groups = rule["Action"]["Forward"]["TargetGroups"]
            if len(groups) > 1:
                return "weighted"
            return version_of_target_group(s, ref_name(groups[0]["TargetGroupIdentifier"]))
    (default,) = s.one("AWS::VpcLattice::Listener")["Properties"]["DefaultAction"]["Forward"]["TargetGroups"]
    return version_of_target_group(s, ref_name(default["TargetGroupIdentifier"]))


def mesh_version_for(s, headers: dict[str, str]) -> str:
    """Where the App Mesh router sends a request that arrives through the gateway."""
    routes = sorted(
        (v["Properties"]["Spec"] for v in s.resources("AWS::AppMesh::Route").values()),
        key=lambda spec: spec["Priority"],
    )
    for spec in routes:
        match = spec["HttpRoute"]["Match"]
        assert match["Prefix"] == "/"  # every path: the headers decide
        if all(
            (headers.get(h["Name"].lower()) == h["Match"]["Exact"]) is not h["Invert"] for h in match.get("Headers", [])
        ):
            targets = spec["HttpRoute"]["Action"]["WeightedTargets"]
            if len(targets) > 1:
                return "weighted"
            return version_of_node(s, targets[0]["VirtualNode"])
    raise AssertionError("no route matched")


@pytest.mark.parametrize("router", ROUTERS)
def test_the_load_balancer_drops_invalid_header_fields(synth, router):
    lb = synth_for(synth, router, 10).one("AWS::ElasticLoadBalancingV2::LoadBalancer")["Properties"]
    attributes = {a["Key"]: a["Value"] for a in lb["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


@pytest.mark.parametrize("router", ROUTERS)
def test_every_header_the_routing_matches_through_the_load_balancer_is_one_it_lets_through(synth, router):
    s = synth_for(synth, router, 0)
    if router == "lattice":
        names = [
            h["Name"]
            for v in s.resources("AWS::VpcLattice::Rule").values()
            for h in v["Properties"]["Match"]["HttpMatch"].get("HeaderMatches", [])
        ]
        # Name: 1 to 40 characters (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/
        # aws-properties-vpclattice-rule-headermatch.html), and one the load balancer lets through.
        assert names == ["canary-fleet"]
        assert all(ELB_HEADER_NAME.fullmatch(n) and len(n) <= LATTICE_HEADER_MAX for n in names)
        return
    if router == "alb":
        names = [
            c["HttpHeaderConfig"]["HttpHeaderName"]
            for v in s.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
            for c in v["Properties"]["Conditions"]
            if c["Field"] == "http-header"
        ]
        assert names == ["canary-fleet"]
        assert all(ELB_HEADER_NAME.fullmatch(n) and len(n) <= ALB_RULE_HEADER_MAX for n in names)
        return
    # The gateway's routes match no header; the virtual router's routes serve the gateway's traffic.
    for route in s.resources("AWS::AppMesh::GatewayRoute").values():
        assert "Headers" not in route["Properties"]["Spec"]["HttpRoute"]["Match"]
    by_priority = sorted(
        (v["Properties"]["Spec"] for v in s.resources("AWS::AppMesh::Route").values()), key=lambda sp: sp["Priority"]
    )
    names = [h["Name"] for spec in by_priority for h in spec["HttpRoute"]["Match"].get("Headers", [])]
    assert names == ["canary-fleet", "canary_fleet"]
    assert all(0 < len(n) <= APP_MESH_HEADER_MAX for n in names)
    # The one name the load balancer would drop is the workshop's, kept for callers inside the
    # mesh; the route a load-balancer caller needs is evaluated before it and uses a valid name.
    assert [n for n in names if not ELB_HEADER_NAME.fullmatch(n)] == ["canary_fleet"]
    assert ELB_HEADER_NAME.fullmatch(names[0])


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize(
    "sent, expected",
    [
        ({"canary-fleet": "true"}, "Canary"),
        ({"Canary-Fleet": "true"}, "Canary"),  # header names are case-insensitive
        ({"canary_fleet": "true"}, "weighted"),  # dropped by the load balancer: the split decides
        ({"canary-fleet": "false"}, "weighted"),
        ({}, "weighted"),
    ],
)
def test_test_traffic_through_the_load_balancer_reaches_the_canary_at_weight_zero(synth, router, sent, expected):
    s = synth_for(synth, router, 0)
    version_for = {"alb": alb_version_for, "appmesh": mesh_version_for, "lattice": lattice_version_for}[router]
    assert version_for(s, through_load_balancer(sent)) == expected


def test_in_mesh_callers_reach_the_canary_with_the_workshop_header(synth):
    # No load balancer between two meshed tasks: the workshop's name arrives as sent.
    assert mesh_version_for(synth_for(synth, "appmesh", 0), {"canary_fleet": "true"}) == "Canary"


@pytest.mark.parametrize("router", ["alb", "appmesh", "lattice"])
def test_every_output_the_tools_read_is_in_the_template(synth, router):
    # The tools read these by name from DescribeStacks (constants.py is their one home): a renamed
    # output would leave promote, verify and the rollout reading nothing.
    import canary_stack.constants as constants

    names = {value for key, value in vars(constants).items() if key.startswith("OUTPUT_")}
    assert len(names) == 7
    assert names <= set(synth_for(synth, router, 10).template["Outputs"])
