"""The HTTPS URL: `-c domainName=` with the certificate, an optional Route 53 alias record, and a Rule
that stops a deploy to another region than the certificate's before anything is created.

The certificate covers a host name, not the load balancer's own DNS name: with `https://<load
balancer DNS name>` as the `Url` output, verify and the pipeline's `--url-from-stack` failed TLS and
every rollout step rolled back.
"""

from __future__ import annotations

import json

import pytest
from support.configurations import CERTIFICATE, DOMAIN, HOSTED_ZONE, HTTPS_CONTEXT
from support.synthesis import CLI_CONTEXT, cdk_json_context

from canary_stack.config import DEFAULTS, CanaryConfig, ConfigError
from canary_stack.text import shorten

A_HASH = "0123456789abcdef" * 4


def parse(**context) -> CanaryConfig:
    context = {"productionImage": A_HASH, **context}
    return CanaryConfig.from_context(context.get, keys=list(context))


# --- Configuration: which parameters go together ---------------------------------------------------


def test_domain_name_and_hosted_zone_are_off_by_default():
    assert (DEFAULTS["domainName"], DEFAULTS["hostedZoneId"]) == (None, None)
    config = parse()
    assert (config.certificate_arn, config.domain_name, config.hosted_zone_id) == (None, None, None)


def test_a_certificate_needs_the_name_it_covers():
    with pytest.raises(ConfigError) as err:
        parse(certificateArn=CERTIFICATE)
    assert str(err.value) == (
        "domainName is required with certificateArn: the host name the certificate covers, which the Url "
        "output and verify use (e.g. -c domainName=canary.example.com)"
    )


def test_a_domain_name_without_a_certificate_is_refused_not_ignored():
    # Without a certificate the Url is http://<load balancer>: the name would be neither used nor checked.
    with pytest.raises(ConfigError) as err:
        parse(domainName=DOMAIN)
    assert str(err.value) == (
        "domainName works with certificateArn only, got domainName='canary.example.com' without it: "
        "leave domainName unset or add -c certificateArn=<ACM certificate ARN>"
    )


def test_a_hosted_zone_without_a_domain_name_is_refused():
    with pytest.raises(ConfigError) as err:
        parse(hostedZoneId=HOSTED_ZONE)
    assert str(err.value) == (
        "hostedZoneId works with domainName only, got hostedZoneId='Z0123456789ABCDEFGHIJ' without it: "
        "leave hostedZoneId unset or add -c domainName=<host name> (and its certificateArn)"
    )


def test_certificate_name_and_zone_together():
    config = parse(**HTTPS_CONTEXT, hostedZoneId=HOSTED_ZONE)
    assert (config.certificate_arn, config.domain_name, config.hosted_zone_id) == (CERTIFICATE, DOMAIN, HOSTED_ZONE)


# --- domainName: a host name by RFC 1123, nothing else -----------------------------------------------

GOOD_NAMES = [
    ("canary.example.com", "canary.example.com"),
    ("example.com", "example.com"),  # a zone's apex: an alias record may stand there
    ("CANARY.Example.COM", "canary.example.com"),  # DNS ignores case; the Url is written in lower case
    ("a-b.c0.example.org", "a-b.c0.example.org"),
    ("3com.example.com", "3com.example.com"),  # RFC 1123: a label may start with a digit
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # an internationalized name in its ASCII form
    ("a" * 63 + ".example.com", "a" * 63 + ".example.com"),  # the longest label
    (".".join(["a" * 61] * 4) + ".com", ".".join(["a" * 61] * 4) + ".com"),  # 251 characters
    (".".join(["a" * 62] * 3) + "." + "b" * 63, ".".join(["a" * 62] * 3) + "." + "b" * 63),  # 252
    ("ab." * 84 + "x", "ab." * 84 + "x"),  # 253 characters, the most
    ("canary.example.x1", "canary.example.x1"),  # a top-level label with a letter in it
]

BAD_NAMES = [
    "",
    " ",
    "canary",  # one label: not a public name
    "canary.example.com.",  # a trailing dot: the URL's host is written without it
    "*.example.com",  # a wildcard: a URL names one host (the certificate may be a wildcard)
    "*",
    "canary.*.com",
    "bücher.example",  # Unicode: give its xn-- form
    "canary.exаmple.com",  # a Cyrillic 'а' that looks like the Latin one
    "canary.example.com\u200b",  # a zero-width space
    "canary example.com",
    " canary.example.com",
    "canary.example.com ",
    "canary.example.com\n",
    "canary.example.com\nevil.com",
    "'canary.example.com'",
    '"canary.example.com"',
    "canary.example.com'; rm -rf /",
    "$(id).example.com",
    "`id`.example.com",
    "https://canary.example.com",
    "canary.example.com/path",
    "canary.example.com:443",
    "user@canary.example.com",
    "canary_1.example.com",  # '_' is not a host name's
    "-canary.example.com",
    "canary-.example.com",
    "canary..example.com",
    ".canary.example.com",
    "a" * 64 + ".example.com",  # a label of 64
    "ab." * 84 + "xy",  # 254 characters
    "a" * 300,
    ("ab." * 100) + "com",  # 303 characters of good labels
    "1.2.3.4",  # an IPv4 address: the top-level label is all digits
    "canary.example.123",
    "[::1]",
    True,
    10,
]


@pytest.mark.parametrize("raw, expected", GOOD_NAMES)
def test_domain_name_accepted(raw, expected):
    assert parse(certificateArn=CERTIFICATE, domainName=raw).domain_name == expected


@pytest.mark.parametrize("raw", BAD_NAMES)
def test_domain_name_refused_in_one_line_naming_it(raw):
    with pytest.raises(ConfigError) as err:
        parse(certificateArn=CERTIFICATE, domainName=raw)
    message = str(err.value)
    assert message.startswith("domainName must be a DNS host name such as canary.example.com: at most 253 ")
    assert message.endswith(f"got {shorten(raw)}")
    assert "\n" not in message and message.isprintable() and len(message) < 400


def test_the_good_names_are_what_python_s_idna_codec_takes_too():
    # A second opinion on the labels (RFC 3490's ToASCII, which enforces 1 to 63 per label).
    for _, expected in GOOD_NAMES:
        assert expected.encode("idna").decode() == expected


# --- hostedZoneId ----------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["Z0123456789ABCDEFGHIJ", "Z1D633PJN98FT9", "Z" + "9" * 31])
def test_hosted_zone_id_accepted(zone):
    assert parse(**HTTPS_CONTEXT, hostedZoneId=zone).hosted_zone_id == zone


@pytest.mark.parametrize(
    "zone",
    ["", "/hostedzone/Z1D633PJN98FT9", "z1d633pjn98ft9", "Z" * 33, "Z1 D6", "Z1D6;", "Z1D6\n", "Ζ1D6", True],
)
def test_hosted_zone_id_refused_in_one_line(zone):
    with pytest.raises(ConfigError) as err:
        parse(**HTTPS_CONTEXT, hostedZoneId=zone)
    message = str(err.value)
    assert message.startswith("hostedZoneId must be a Route 53 hosted zone ID: 1 to 32 upper-case letters")
    assert "\n" not in message


# --- The template ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_zone(synth):
    return synth(canaryWeight="10", **HTTPS_CONTEXT, hostedZoneId=HOSTED_ZONE)


@pytest.fixture(scope="module")
def without_zone(synth):
    return synth(canaryWeight="10", **HTTPS_CONTEXT)


def test_the_url_output_is_https_on_the_domain_name(with_zone, without_zone):
    for s in (with_zone, without_zone):
        assert s.template["Outputs"]["Url"]["Value"] == f"https://{DOMAIN}"


def test_a_hosted_zone_gets_an_alias_record_to_the_load_balancer(with_zone):
    record = with_zone.one("AWS::Route53::RecordSet")["Properties"]
    # The zone by ID, the record by its fully qualified name (final dot: nothing is appended to it).
    assert (record["HostedZoneId"], record["Name"], record["Type"]) == (HOSTED_ZONE, f"{DOMAIN}.", "A")
    (load_balancer,) = with_zone.resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    alias = record["AliasTarget"]
    assert alias["HostedZoneId"] == {"Fn::GetAtt": [load_balancer, "CanonicalHostedZoneID"]}
    assert alias["DNSName"] == {"Fn::Join": ["", ["dualstack.", {"Fn::GetAtt": [load_balancer, "DNSName"]}]]}
    assert "LoadBalancerDnsName" not in with_zone.template["Outputs"]


def test_without_a_hosted_zone_no_record_and_the_load_balancer_name_to_point_at(without_zone):
    assert not without_zone.resources("AWS::Route53::RecordSet")
    output = without_zone.template["Outputs"]["LoadBalancerDnsName"]
    (load_balancer,) = without_zone.resources("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert output["Value"] == {"Fn::GetAtt": [load_balancer, "DNSName"]}
    assert output["Description"].startswith(f"Point {DOMAIN} here")


def certificate_rules(s) -> dict[str, dict]:
    return {k: v for k, v in s.template.get("Rules", {}).items() if k.startswith("EntrypointCertificateRegion")}


def test_a_rule_stops_a_deploy_to_another_region_than_the_certificates(with_zone):
    # Rules are checked "before CloudFormation creates or updates any resources", and may compare a
    # pseudo parameter with Fn::Equals (Ref is allowed inside every rule function but Fn::ValueOf/All):
    # https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-rules.html
    ((_, rule),) = certificate_rules(with_zone).items()
    (assertion,) = rule["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "eu-west-1"]}
    assert assertion["AssertDescription"].startswith("certificateArn is a certificate of eu-west-1:")
    assert "RuleCondition" not in rule  # always checked


def test_the_rule_compares_with_the_region_in_the_certificate_arn(synth):
    other = CERTIFICATE.replace("eu-west-1", "ap-southeast-2")
    s = synth(canaryWeight="10", certificateArn=other, domainName=DOMAIN)
    ((_, rule),) = certificate_rules(s).items()
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "ap-southeast-2"]}


def test_without_a_certificate_no_rule_no_record(synth):
    s = synth(canaryWeight="10")
    assert not certificate_rules(s) and not s.resources("AWS::Route53::RecordSet")
    assert "LoadBalancerDnsName" not in s.template["Outputs"]


def test_a_weight_step_with_a_domain_and_a_zone_changes_one_resource(with_zone, synth):
    after = synth(canaryWeight="50", **HTTPS_CONTEXT, hostedZoneId=HOSTED_ZONE).template["Resources"]
    before = with_zone.template["Resources"]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert len(changed) == 1 and before[changed[0]]["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"


@pytest.mark.parametrize(
    "context, line",
    [
        ({"certificateArn": CERTIFICATE}, "error: domainName is required with certificateArn: "),
        ({"domainName": DOMAIN}, "error: domainName works with certificateArn only, got domainName="),
        ({**HTTPS_CONTEXT, "domainName": "*.example.com"}, "error: domainName must be a DNS host name such as "),
        ({**HTTPS_CONTEXT, "domainName": "x.example.com.\n"}, "error: domainName must be a DNS host name such as "),
    ],
)
def test_the_app_exits_2_with_one_line_and_no_template(monkeypatch, capfd, tmp_path, context, line):
    """main() as `python app.py` runs it (as tests/e2e/test_cdk_cli.py does for the other parameters)."""
    import app

    monkeypatch.setattr(app, "prepare_toolchain", lambda environ: tmp_path)
    monkeypatch.setattr(app, "remove_at_exit", lambda folder: None)
    # What the CLI hands the app: cdk.json's context and the -c values.
    monkeypatch.setenv("CDK_CONTEXT_JSON", json.dumps({**cdk_json_context(), **CLI_CONTEXT, **context}))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path))
    assert app.main() == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), err
    assert out == ""
    assert not list(tmp_path.rglob("*.template.json"))
