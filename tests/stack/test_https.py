"""HTTPS with `-c certificateArn=... -c domainName=...`: 443 with ELB's recommended TLS policy, 80 redirecting to it.

Without a certificate the entrypoint is HTTP on port 80, as before. Both routers attach to the
listener that carries the traffic (the 443 one with a certificate).
"""

from __future__ import annotations

import pytest
from support.configurations import CERTIFICATE, DOMAIN, HTTPS_CONTEXT

CIDR = "203.0.113.0/24"
# ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09: the policy AWS recommends and the console's default
# (TLS 1.3 and 1.2 only); CloudFormation's default would be ELBSecurityPolicy-2016-08 (TLS 1.0+).
# https://docs.aws.amazon.com/elasticloadbalancing/latest/application/describe-ssl-policies.html
RECOMMENDED_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"


def https(synth, router: str):
    return synth(trafficRouter=router, **HTTPS_CONTEXT, allowedCidr=CIDR, canaryWeight="10")


def http(synth, router: str):
    return synth(trafficRouter=router, canaryWeight="10")


def listeners_by_port(s) -> dict[int, tuple[str, dict]]:
    found = s.resources("AWS::ElasticLoadBalancingV2::Listener")
    by_port = {v["Properties"]["Port"]: (k, v["Properties"]) for k, v in found.items()}
    assert len(by_port) == len(found), "two listeners on one port"
    return by_port


def entrypoint_ingress(s) -> list[dict]:
    (group,) = [v for k, v in s.resources("AWS::EC2::SecurityGroup").items() if k.startswith("EntrypointSecurityGroup")]
    return group["Properties"]["SecurityGroupIngress"]


def url_output(s) -> str:
    value = s.template["Outputs"]["Url"]["Value"]
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else "<dns>" for part in value["Fn::Join"][1])


@pytest.mark.parametrize("router", ["alb", "appmesh"])
def test_without_a_certificate_it_is_http_on_80_only(synth, router):
    s = http(synth, router)
    ((port, (_, listener)),) = listeners_by_port(s).items()
    assert (port, listener["Protocol"]) == (80, "HTTP")
    assert "Certificates" not in listener and "SslPolicy" not in listener
    assert [rule["FromPort"] for rule in entrypoint_ingress(s)] == [80]
    assert url_output(s) == "http://<dns>"


@pytest.mark.parametrize("router", ["alb", "appmesh"])
def test_with_a_certificate_443_serves_https_with_the_recommended_tls_policy(synth, router):
    _, listener = listeners_by_port(https(synth, router))[443]
    assert listener["Protocol"] == "HTTPS"
    assert listener["Certificates"] == [{"CertificateArn": CERTIFICATE}]
    assert listener["SslPolicy"] == RECOMMENDED_TLS_POLICY


@pytest.mark.parametrize("router", ["alb", "appmesh"])
def test_with_a_certificate_80_answers_with_a_permanent_redirect_to_443(synth, router):
    _, listener = listeners_by_port(https(synth, router))[80]
    assert listener["Protocol"] == "HTTP"
    (action,) = listener["DefaultActions"]
    assert action["Type"] == "redirect"
    redirect = action["RedirectConfig"]
    assert (redirect["Protocol"], redirect["Port"], redirect["StatusCode"]) == ("HTTPS", "443", "HTTP_301")
    # Host, path and query are kept (ELB's defaults: #{host}, /#{path}, #{query}).
    assert all(redirect.get(key, default) == default for key, default in [("Host", "#{host}"), ("Path", "/#{path}")])


@pytest.mark.parametrize("router", ["alb", "appmesh"])
def test_with_a_certificate_allowed_cidr_reaches_443_and_80_only(synth, router):
    rules = entrypoint_ingress(https(synth, router))
    assert sorted((r["FromPort"], r["ToPort"], r["CidrIp"], r["IpProtocol"]) for r in rules) == [
        (80, 80, CIDR, "tcp"),
        (443, 443, CIDR, "tcp"),
    ]


@pytest.mark.parametrize("router", ["alb", "appmesh"])
def test_with_a_certificate_the_url_output_is_https_on_the_name_it_covers(synth, router):
    # Not https://<load balancer DNS name>: the certificate does not cover that name, so verify and
    # the pipeline's --url-from-stack failed TLS on it.
    assert url_output(https(synth, router)) == f"https://{DOMAIN}"


def test_alb_router_splits_and_routes_the_header_on_the_https_listener(synth):
    s = https(synth, "alb")
    listeners = listeners_by_port(s)
    https_id, https_listener = listeners[443]
    # Wherever the router puts its weighted forward (default action or a rule), and its header
    # rule: all on the 443 listener; the port-80 listener only redirects.
    rules = s.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    assert rules and all(rule["Properties"]["ListenerArn"] == {"Ref": https_id} for rule in rules)
    actions = https_listener["DefaultActions"] + [a for rule in rules for a in rule["Properties"]["Actions"]]
    weights = [
        sorted(g["Weight"] for g in a["ForwardConfig"]["TargetGroups"])
        for a in actions
        if a["Type"] == "forward" and "Weight" in a.get("ForwardConfig", {}).get("TargetGroups", [{}])[0]
    ]
    assert weights == [[10, 90]]


def test_app_mesh_gateway_is_the_https_listeners_target(synth):
    s = https(synth, "appmesh")
    _, https_listener = listeners_by_port(s)[443]
    (action,) = https_listener["DefaultActions"]
    assert action["Type"] == "forward"
    (group,) = [k for k in s.resources("AWS::ElasticLoadBalancingV2::TargetGroup") if k.startswith("RouterGateway")]
    assert action["TargetGroupArn"] == {"Ref": group}


@pytest.mark.parametrize("router", ["alb", "appmesh"])
def test_a_weight_step_with_https_changes_the_same_one_resource(synth, router):
    before = https(synth, router).template["Resources"]
    after = synth(trafficRouter=router, **HTTPS_CONTEXT, allowedCidr=CIDR, canaryWeight="50")
    changed = sorted(k for k in before if before[k] != after.template["Resources"].get(k))
    assert len(changed) == 1, changed
