"""Every context parameter: what is accepted, and the one-line error for what is not."""

from __future__ import annotations

import pytest

from canary_stack.config import DEFAULTS, CanaryConfig, ConfigError

# productionImage has no default (cdk.json commits it); every other test parses with this one.
A_HASH = "0123456789abcdef" * 4


def parse(**context) -> CanaryConfig:
    context = {"productionImage": A_HASH, **context}
    return CanaryConfig.from_context(context.get, keys=list(context))


def test_defaults_are_the_workshop_setup_on_the_alb_router():
    config = parse()
    assert (config.canary_weight, config.production_weight) == (0, 100)
    assert config.traffic_router == "alb"  # App Mesh ended on 2026-09-30
    assert (config.repository_name, config.image_tag, config.production_tag) == ("ecsdemo-crystal", "epoch", "vanilla")
    assert config.production_image == A_HASH
    assert config.cpu_architecture == "x86_64"
    assert config.adopt_repository is False
    assert config.allowed_cidr == "0.0.0.0/0"
    assert config.sticky_seconds == 0
    assert config.pipeline is None


@pytest.mark.parametrize("raw, weight", [("0", 0), ("10", 10), ("37", 37), ("100", 100), (0, 0), (55, 55), (" 7 ", 7)])
def test_weight_from_cli_string_or_cdk_json_number(raw, weight):
    config = parse(canaryWeight=raw)
    assert config.canary_weight == weight
    assert config.production_weight == 100 - weight


@pytest.mark.parametrize("raw", ["abc", "-1", "101", "10.5", "", "1e1", "50%", "true", True, False, 10.0, "0x10", "١٠"])
def test_bad_weight_is_one_line_naming_parameter_value_and_range(raw):
    with pytest.raises(ConfigError) as err:
        parse(canaryWeight=raw)
    message = str(err.value)
    assert message.startswith("canaryWeight must be a whole number from 0 to 100, got ")
    assert repr(raw if isinstance(raw, str) else str(raw)) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("trafficRouter", "istio", "trafficRouter must be one of alb, appmesh, got 'istio'"),
        ("trafficRouter", "", "trafficRouter must be one of alb, appmesh, got ''"),
        ("cpuArchitecture", "amd64", "cpuArchitecture must be one of x86_64, arm64, got 'amd64'"),
        ("cpuArchitecture", "ARM64", "cpuArchitecture must be one of x86_64, arm64, got 'ARM64'"),
        ("adoptRepository", "1", "adoptRepository must be true or false, got '1'"),
        ("imageTag", "-epoch", "imageTag must be an image tag of 1 to 128"),
        ("imageTag", "ep och", "imageTag must be an image tag of 1 to 128"),
        ("imageTag", "a" * 129, "imageTag must be an image tag of 1 to 128"),
        ("productionTag", ".hidden", "productionTag must be an image tag of 1 to 128"),
        ("repositoryName", "Upper", "repositoryName must be an ECR repository name"),
        ("repositoryName", "x", "repositoryName must be an ECR repository name"),
        ("repositoryName", "a//b", "repositoryName must be an ECR repository name"),
        ("allowedCidr", "10.0.0.1", "allowedCidr must be an IPv4 CIDR block"),
        ("allowedCidr", "10.0.0.1/24", "allowedCidr must be an IPv4 CIDR block"),
        ("allowedCidr", "300.0.0.0/8", "allowedCidr must be an IPv4 CIDR block"),
        ("allowedCidr", "anywhere", "allowedCidr must be an IPv4 CIDR block"),
        ("stickySeconds", "-5", "stickySeconds must be a whole number from 0 to 604800 (0 turns stickiness off)"),
        ("stickySeconds", "604801", "stickySeconds must be a whole number from 0 to 604800"),
        ("stickySeconds", "1h", "stickySeconds must be a whole number from 0 to 604800"),
        ("pipeline", "yes", "pipeline must be true or false, got 'yes'"),
    ],
)
def test_every_other_parameter_is_validated(key, raw, expected):
    with pytest.raises(ConfigError, match="^" + expected.replace("(", r"\(").replace(")", r"\)")):
        parse(**{key: raw})


def test_same_tag_for_canary_and_production_is_refused():
    with pytest.raises(ConfigError, match="productionTag must differ from imageTag, both are 'epoch'"):
        parse(imageTag="epoch", productionTag="epoch")


PRODUCTION_IMAGE_RULE = (
    "productionImage must be the 64-character lowercase hex asset hash of an image the canary ran "
    "(`make promote` writes the canary's into cdk.json), got "
)


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("", "''"),
        ("canary", "'canary'"),  # the old promotion switch
        ("pinned", "'pinned'"),
        ("vanilla", "'vanilla'"),  # a moving tag is exactly what production must not run
        (A_HASH.upper(), repr(A_HASH.upper())),
        (A_HASH[:-1], repr(A_HASH[:-1])),
        (A_HASH + "0", repr(A_HASH + "0")),
        ("sha256:" + A_HASH, repr(("sha256:" + A_HASH)[:70] + "...")),
        (A_HASH[:-1] + "\n", repr(A_HASH[:-1] + "\n")),
        ("$(reboot)", "'$(reboot)'"),
        (7, "'7'"),
        (True, "'True'"),
    ],
)
def test_production_image_is_an_asset_hash_or_one_line_pointing_at_make_promote(raw, shown):
    with pytest.raises(ConfigError) as err:
        parse(productionImage=raw)
    assert str(err.value) == PRODUCTION_IMAGE_RULE + shown
    assert "\n" not in str(err.value)


def test_production_image_has_no_default():
    with pytest.raises(ConfigError, match="^productionImage must be the 64-character .*, got ''$"):
        CanaryConfig.from_context(lambda name: None, keys=[])


def test_production_image_and_architecture_parse():
    config = parse(productionImage="f" * 64, cpuArchitecture="arm64", adoptRepository="true", canaryWeight="30")
    assert (config.production_image, config.cpu_architecture, config.adopt_repository) == ("f" * 64, "arm64", True)
    # Any weight: production's image no longer changes by a weight-0 promotion deploy.
    assert config.canary_weight == 30


def test_unknown_parameter_is_a_typo_not_silence():
    with pytest.raises(
        ConfigError, match="^unknown context parameter 'canaryweight'; known parameters: canaryWeight, "
    ):
        parse(canaryweight="10")


def test_cdk_owned_keys_are_not_ours_to_check():
    config = parse(
        **{
            "@aws-cdk/core:newStyleStackSynthesis": True,
            "aws:cdk:enable-path-metadata": True,
            "acknowledged-issue-numbers": [1],
            "canaryWeight": "5",
        }
    )
    assert config.canary_weight == 5


def test_pipeline_needs_a_real_connection_and_repository():
    arn = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0b7e1b2c-1111-2222-3333-444455556666"
    config = parse(pipeline="true", pipelineConnectionArn=arn, pipelineRepository="acme/crystal-canary")
    assert config.pipeline is not None
    assert (config.pipeline.connection_arn, config.pipeline.repository, config.pipeline.branch) == (
        arn,
        "acme/crystal-canary",
        "main",
    )
    with pytest.raises(ConfigError, match="^pipelineConnectionArn must be the ARN of a CodeConnections connection"):
        parse(pipeline="true", pipelineRepository="acme/x")
    with pytest.raises(
        ConfigError, match="^pipelineRepository must be owner/name of the source repository, got 'nope'"
    ):
        parse(pipeline="true", pipelineConnectionArn=arn, pipelineRepository="nope")


def test_every_default_parses():
    # The defaults table is the documented one (README); each must pass its own parser.
    # productionImage has none: it is required (test_production_image_has_no_default).
    parse(
        **{
            k: v
            for k, v in DEFAULTS.items()
            if (not k.startswith("pipeline") or k == "pipeline") and k != "productionImage"
        }
    )
