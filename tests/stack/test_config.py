"""Every context parameter: what is accepted, and the one-line error for what is not."""

from __future__ import annotations

import pytest

from canary_stack.config import DEFAULTS, CanaryConfig, ConfigError


def parse(**context) -> CanaryConfig:
    return CanaryConfig.from_context(context.get, keys=list(context))


def test_defaults_are_the_workshop_setup_on_the_alb_router():
    config = parse()
    assert (config.canary_weight, config.production_weight) == (0, 100)
    assert config.traffic_router == "alb"  # App Mesh ended on 2026-09-30
    assert (config.repository_name, config.image_tag, config.production_tag) == ("ecsdemo-crystal", "epoch", "vanilla")
    assert config.promote is False
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
        ("productionImage", "latest", "productionImage must be one of pinned, canary, got 'latest'"),
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


def test_promotion_needs_weight_zero():
    assert parse(productionImage="canary", canaryWeight="0").promote is True
    with pytest.raises(
        ConfigError, match="productionImage=canary promotes the canary and needs canaryWeight=0, got canaryWeight=10"
    ):
        parse(productionImage="canary", canaryWeight="10")


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
    parse(**{k: v for k, v in DEFAULTS.items() if not k.startswith("pipeline") or k == "pipeline"})
