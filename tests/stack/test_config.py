"""Every context parameter: what is accepted, and the one-line error for what is not."""

from __future__ import annotations

import json
import re

import pytest

from canary_stack.config import (
    DEFAULTS,
    MAX_STICKY_SECONDS,
    ROUTER_PARAMETERS,
    CanaryConfig,
    ConfigError,
    PipelineConfig,
)

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
    assert config.certificate_arn is None  # HTTP on port 80
    assert (config.domain_name, config.hosted_zone_id) == (None, None)
    assert config.sticky_seconds == 0
    assert config.pipeline is None


@pytest.mark.parametrize("raw, weight", [("0", 0), ("10", 10), ("37", 37), ("100", 100), (0, 0), (55, 55), (" 7 ", 7)])
def test_weight_from_cli_string_or_cdk_json_number(raw, weight):
    config = parse(canaryWeight=raw)
    assert config.canary_weight == weight
    assert config.production_weight == 100 - weight


@pytest.mark.parametrize(
    "raw, shown",
    [
        # From `-c`: a string, shown quoted as typed.
        ("abc", "'abc'"),
        ("-1", "'-1'"),
        ("101", "'101'"),
        ("10.5", "'10.5'"),
        ("", "''"),
        ("1e1", "'1e1'"),
        ("50%", "'50%'"),
        ("true", "'true'"),
        ("0x10", "'0x10'"),
        ("١٠", "'١٠'"),
        ("1\n0", "'1\\n0'"),  # escaped: the error stays one line
        ("\x1b[2J", "'\\x1b[2J'"),  # no terminal control sequence gets through
        # From cdk.json: JSON values, shown in JSON's spelling, not Python's.
        (True, "true"),
        (False, "false"),
        (10.0, "10.0"),
        ([10], "[10]"),
        ({"w": 1}, '{"w": 1}'),
    ],
)
def test_bad_weight_is_one_line_showing_the_value_as_written(raw, shown):
    with pytest.raises(ConfigError) as err:
        parse(canaryWeight=raw)
    assert str(err.value) == f"canaryWeight must be a whole number from 0 to 100, got {shown}"


@pytest.mark.parametrize("raw", ["9" * 3000, "x" * 81, ["a" * 100]])
def test_a_long_value_is_cut_to_its_start_and_its_length(raw):
    with pytest.raises(ConfigError) as err:
        parse(canaryWeight=raw)
    message = str(err.value)
    assert len(message) < 160, message
    length = len(raw) if isinstance(raw, str) else len(json.dumps(raw))
    assert message.endswith(f"... ({length} characters)") or message.endswith(f"...' ({length} characters)")
    assert (raw if isinstance(raw, str) else json.dumps(raw))[:40] in message


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("trafficRouter", "istio", "trafficRouter must be one of alb, appmesh, lattice, got 'istio'"),
        ("trafficRouter", "", "trafficRouter must be one of alb, appmesh, lattice, got ''"),
        ("cpuArchitecture", "amd64", "cpuArchitecture must be one of x86_64, arm64, got 'amd64'"),
        ("cpuArchitecture", "ARM64", "cpuArchitecture must be one of x86_64, arm64, got 'ARM64'"),
        ("adoptRepository", "1", "adoptRepository must be true or false, got '1'"),
        ("imageTag", "-epoch", "imageTag must be an image tag of 2 to 128"),
        ("productionTag", ".hidden", "productionTag must be an image tag of 2 to 128"),
        ("repositoryName", "Upper", "repositoryName must be an ECR repository name"),
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
    # A router-specific parameter is checked with the router that uses it.
    router = {"trafficRouter": ROUTER_PARAMETERS[key]} if key in ROUTER_PARAMETERS else {}
    with pytest.raises(ConfigError, match="^" + re.escape(expected)):
        parse(**router, **{key: raw})


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
        ("sha256:" + A_HASH, repr("sha256:" + A_HASH)),
        ("x" * 100, "'" + "x" * 40 + "...' (100 characters)"),
        (A_HASH[:-1] + "\n", repr(A_HASH[:-1] + "\n")),
        ("$(reboot)", "'$(reboot)'"),
        (7, "7"),  # JSON from cdk.json, shown as cdk.json spells it
        (True, "true"),
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


def test_an_unknown_parameter_with_a_long_name_is_cut_too():
    with pytest.raises(ConfigError) as err:
        parse(**{"k" * 3000: "1"})
    assert str(err.value).startswith("unknown context parameter '" + "k" * 40 + "...' (3000 characters); known")


def test_cdk_owned_keys_are_not_ours_to_check():
    config = parse(
        **{
            "@aws-cdk/core:newStyleStackSynthesis": True,
            "aws:cdk:enable-path-metadata": True,
            "acknowledged-issue-numbers": [1],
            # What the CLI caches in cdk.context.json for a lookup (aws-cdk-lib's context-provider getKey).
            "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a", "eu-west-1b"],
            "vpc-provider:account=123456789012:filter.tag:Name=x:region=eu-west-1:returnAsymmetricSubnets=true": {},
            "canaryWeight": "5",
        }
    )
    assert config.canary_weight == 5


@pytest.mark.parametrize("key", ["canaryWeight:x=1", "Availability-zones:account=1", "trafficrouter", "x:=1"])
def test_keys_shaped_almost_like_the_cdk_s_are_still_refused(key):
    with pytest.raises(ConfigError, match="^unknown context parameter"):
        parse(**{key: "1"})


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
        ConfigError, match=r"^pipelineRepository must be owner/name of the source repository \(.*\), got 'nope'$"
    ):
        parse(pipeline="true", pipelineConnectionArn=arn, pipelineRepository="nope")


def test_every_default_parses():
    # The defaults table is the documented one (docs/configuration.md); each must pass its own parser.
    # productionImage has none: it is required (test_production_image_has_no_default).
    parse(
        **{
            k: v
            for k, v in DEFAULTS.items()
            if (not k.startswith("pipeline") or k == "pipeline") and k != "productionImage"
        }
    )


# --- Values that reach a buildspec, a shell or a resource name: each by its documented rule. ---

TAG_RULE = "an image tag of 2 to 128 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"
GOOD_TAGS = ["ab", "epoch", "vanilla", "_x", "9.x-y_Z", "v1.2.3", "a" * 128, "a" + "-" * 127]
BAD_TAGS = [
    "a",  # cdk-docker-image-deployment's validateTag needs two characters
    "a" * 129,  # both rules: at most 128
    "",
    "-ab",
    ".ab",
    " ab",  # the library checks no first character but '-' and '.': these would reach its buildspec
    ";ab",
    "$ab",
    "'ab",
    "\nab",
    "a b",
    "a;b",
    "a$(id)",
    "a`id`",
    "a/b",
    "a:b",
    "ab\n",
    "é1",  # ASCII only
    "ａb",  # a full-width letter is a letter to Python's \\w, not to Docker's grammar
]


@pytest.mark.parametrize("key", ["imageTag", "productionTag"])
@pytest.mark.parametrize("tag", GOOD_TAGS)
def test_image_tag_accepted(key, tag):
    other = {"productionTag": "other"} if key == "imageTag" else {"imageTag": "other"}
    config = parse(**other, **{key: tag})
    assert (config.image_tag if key == "imageTag" else config.production_tag) == tag


@pytest.mark.parametrize("key", ["imageTag", "productionTag"])
@pytest.mark.parametrize("tag", BAD_TAGS)
def test_image_tag_refused(key, tag):
    with pytest.raises(ConfigError) as err:
        parse(**{key: tag})
    assert str(err.value).startswith(f"{key} must be {TAG_RULE}, got ")
    assert "\n" not in str(err.value)


def test_every_accepted_tag_passes_the_librarys_own_check_and_the_oci_grammar():
    """The tags we accept are a subset of what cdk-docker-image-deployment's validateTag accepts (its
    regular expression, read from the installed library and run by Node.js as the library runs it)
    and of the tag grammar registries serve ([a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}, docs.docker.com
    engine/reference/commandline/image_tag); the one-character tag is the library's refusal."""
    import subprocess
    import tarfile
    from pathlib import Path

    import cdk_docker_image_deployment

    package = Path(cdk_docker_image_deployment.__file__).parent / "_jsii"
    (tgz,) = package.glob("*.tgz")
    with tarfile.open(tgz) as archive:
        member = archive.extractfile("package/lib/docker-image-deployment.js")
        assert member is not None
        source = member.read().decode()
    validate = source[source.index("validateTag(tag) {") :]
    found = re.search(r"if \(!(/.+/)\.test\(tag\)\)", validate)
    assert found is not None, "cdk-docker-image-deployment's validateTag changed"
    library_regex = found.group(1)
    assert "tag.length > 128" in validate
    script = f"const r = {library_regex}; for (const t of JSON.parse(process.argv[1])) console.log(r.test(t) && t.length <= 128);"
    tags = [*GOOD_TAGS, "a"]
    result = subprocess.run(["node", "-e", script, json.dumps(tags)], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["true"] * len(GOOD_TAGS) + ["false"]
    oci = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", re.ASCII)
    assert all(oci.fullmatch(tag) for tag in GOOD_TAGS)


GOOD_REPOSITORY_NAMES = ["ab", "ecsdemo-crystal", "a.b_c-d", "team/app", "a/b/c", "a" * 256, "a1/" + "b" * 253]
BAD_REPOSITORY_NAMES = ["a", "a" * 257, "", "Upper", "-ab", "ab-", "a//b", "/ab", "ab/", "a__b", "a--b", "a..b", "a b"]


@pytest.mark.parametrize("name", GOOD_REPOSITORY_NAMES)
def test_repository_name_accepted(name):
    assert parse(repositoryName=name).repository_name == name


@pytest.mark.parametrize("name", BAD_REPOSITORY_NAMES)
def test_repository_name_refused(name):
    with pytest.raises(ConfigError, match="^repositoryName must be an ECR repository name: 2 to 256 lowercase"):
        parse(repositoryName=name)


def test_every_accepted_repository_name_is_one_the_cdk_creates():
    # aws-cdk-lib checks the name in ecr.Repository's constructor (its pattern is narrower than
    # ECR's: no `__` or `--`); an accepted name must never fail there with a stack trace.
    import aws_cdk as cdk
    from aws_cdk import aws_ecr as ecr

    stack = cdk.Stack(cdk.App())
    for index, name in enumerate(GOOD_REPOSITORY_NAMES):
        ecr.Repository(stack, f"R{index}", repository_name=name)
    with pytest.raises(Exception, match="Invalid ECR repository name"):
        ecr.Repository(stack, "Doubled", repository_name="a__b")


CONNECTION_ARN = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0b7e1b2c-1111-2222-3333-444455556666"


def pipeline(**context: str) -> PipelineConfig:
    config = parse(
        **{"pipeline": "true", "pipelineConnectionArn": CONNECTION_ARN, "pipelineRepository": "acme/app", **context}
    ).pipeline
    assert config is not None
    return config


GOOD_BRANCHES = ["main", "feature/x", "release-1.2", "a", "a@b", "ü", "fix_#12", "a" * 255, "ü" * 127]
BAD_BRANCHES = [
    "",
    "-x",  # would read as an option
    "/main",
    "main/",
    "main.",
    "a..b",
    "a@{1}",
    "@",
    "HEAD",
    "a//b",
    ".hidden",
    "a/.b",
    "a.lock",
    "a/b.lock/c",
    "a b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "a\tb",
    "a\x7fb",
    "a\nb",
    "a" * 256,  # our limit: 255 bytes
    "ü" * 128,  # 256 bytes in UTF-8
]


@pytest.mark.parametrize("branch", GOOD_BRANCHES)
def test_pipeline_branch_accepted(branch):
    assert pipeline(pipelineBranch=branch).branch == branch


@pytest.mark.parametrize("branch", BAD_BRANCHES)
def test_pipeline_branch_refused(branch):
    with pytest.raises(ConfigError) as err:
        pipeline(pipelineBranch=branch)
    assert str(err.value).startswith("pipelineBranch must be a git branch name (git check-ref-format --branch")
    assert "\n" not in str(err.value)


def test_branch_rule_agrees_with_git_itself():
    """git check-ref-format --branch (https://git-scm.com/docs/git-check-ref-format) on every name
    of both tables: git accepts what we accept, and refuses what we refuse, except where we are
    stricter on purpose: `@` (git reads it as HEAD) and our 255-byte limit."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    stricter = {"@", "a" * 256, "ü" * 128}
    for branch in GOOD_BRANCHES + BAD_BRANCHES:
        if branch == "":
            continue
        ok = subprocess.run([git, "check-ref-format", "--branch", branch], capture_output=True).returncode == 0
        assert ok == (branch in GOOD_BRANCHES or branch in stricter), branch


GOOD_REPOSITORIES = ["acme/app", "a/b", "Acme-Corp/my.app_2", "_x/y", "a/b.github", "o" * 100 + "/n"]
BAD_REPOSITORIES = [
    "",
    "nope",
    "a/b/c",  # GitLab subgroups are not covered
    "/b",
    "a/",
    "-a/b",
    "a/-b",
    ".a/b",
    "a/.",
    "a/..",
    "a/b.git",
    "o" * 101 + "/n",
    "a/" + "n" * 101,
    "a b/c",
    "a/b;c",
    "a/$(id)",
    "a/b\n",
]


@pytest.mark.parametrize("repository", GOOD_REPOSITORIES)
def test_pipeline_repository_accepted(repository):
    assert pipeline(pipelineRepository=repository).repository == repository


@pytest.mark.parametrize("repository", BAD_REPOSITORIES)
def test_pipeline_repository_refused(repository):
    with pytest.raises(ConfigError) as err:
        pipeline(pipelineRepository=repository)
    assert str(err.value).startswith("pipelineRepository must be owner/name of the source repository (each 1 to 100")


CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/0b7e1b2c-1111-2222-3333-444455556666"


@pytest.mark.parametrize(
    "arn",
    [
        CERTIFICATE,
        "arn:aws-cn:acm:cn-north-1:123456789012:certificate/0b7e1b2c-1111-2222-3333-444455556666",
        "arn:aws-us-gov:acm:us-gov-west-1:123456789012:certificate/0b7e1b2c-1111-2222-3333-444455556666",
        "arn:aws:acm:ap-southeast-5:123456789012:certificate/0b7e1b2c-1111-2222-3333-444455556666",
    ],
)
def test_certificate_arn_accepted(arn):
    assert parse(certificateArn=arn, domainName="canary.example.com").certificate_arn == arn


@pytest.mark.parametrize(
    "arn",
    [
        "",
        "none",
        CERTIFICATE.replace(":acm:", ":iam:"),
        CERTIFICATE.replace("certificate/", "server-certificate/"),
        CERTIFICATE.replace("123456789012", "12345678901"),
        CERTIFICATE.replace("eu-west-1", "eu-west"),
        CERTIFICATE.replace("arn:aws:", "arn:azure:"),
        CERTIFICATE[:-1],
        CERTIFICATE + "0",
        CERTIFICATE.upper(),
        CERTIFICATE + "\n",
        " " + CERTIFICATE,
        True,
        CERTIFICATE + "x" * 3000,
    ],
)
def test_certificate_arn_refused_in_one_line(arn):
    with pytest.raises(ConfigError) as err:
        parse(certificateArn=arn, domainName="canary.example.com")
    message = str(err.value)
    assert message.startswith(
        "certificateArn must be the ARN of an ACM certificate (arn:aws:acm:REGION:ACCOUNT:certificate/UUID), got "
    )
    assert "\n" not in message and len(message) < 200


# --- A parameter the chosen router ignores is refused, for every router-specific parameter. ---

ROUTER_SPECIFIC = [
    # (parameter, a value that changes something, the router that uses it, the other router)
    ("stickySeconds", "3600", "alb", "appmesh"),
    ("stickySeconds", 60, "alb", "appmesh"),
    ("stickySeconds", str(MAX_STICKY_SECONDS), "alb", "appmesh"),
]


def test_the_table_covers_every_router_specific_parameter():
    assert {row[0] for row in ROUTER_SPECIFIC} == set(ROUTER_PARAMETERS)


@pytest.mark.parametrize("name, value, needs, other", ROUTER_SPECIFIC)
def test_router_specific_parameter_with_the_other_router_is_refused(name, value, needs, other):
    with pytest.raises(ConfigError) as err:
        parse(trafficRouter=other, **{name: value})
    shown = repr(value) if isinstance(value, str) else json.dumps(value)
    assert str(err.value) == (
        f"{name} works with trafficRouter={needs} only, got {name}={shown} with trafficRouter={other}: "
        f"leave {name} unset or use trafficRouter={needs}"
    )


@pytest.mark.parametrize("name, value, needs, other", ROUTER_SPECIFIC)
def test_router_specific_parameter_with_its_router_is_taken(name, value, needs, other):
    parse(trafficRouter=needs, **{name: value})


@pytest.mark.parametrize("value", ["3600", 60])
def test_sticky_seconds_with_lattice_is_refused_because_lattice_has_no_stickiness(value):
    # A Lattice rule's forward action holds target groups and weights only
    # (https://docs.aws.amazon.com/vpc-lattice/latest/APIReference/API_ForwardAction.html).
    with pytest.raises(ConfigError) as err:
        parse(trafficRouter="lattice", stickySeconds=value)
    shown = repr(value) if isinstance(value, str) else json.dumps(value)
    assert str(err.value) == (
        f"stickySeconds works with trafficRouter=alb only, got stickySeconds={shown} with trafficRouter=lattice "
        "(VPC Lattice has no stickiness): leave stickySeconds unset or use trafficRouter=alb"
    )


@pytest.mark.parametrize("name", sorted(ROUTER_PARAMETERS))
@pytest.mark.parametrize("router", ["appmesh", "alb", "lattice"])
def test_router_specific_parameter_at_its_default_is_fine_with_any_router(name, router):
    # `stickySeconds: 0` in cdk.json means "off", which every router does.
    parse(trafficRouter=router, **{name: DEFAULTS[name]})


@pytest.mark.parametrize("router", ["appmesh", "alb", "lattice"])
def test_https_is_for_every_router(router):
    # Every router sits behind the same public load balancer, which terminates HTTPS.
    config = parse(trafficRouter=router, certificateArn=CERTIFICATE, domainName="canary.example.com")
    assert config.certificate_arn == CERTIFICATE


@pytest.mark.parametrize("name", ["pipelineConnectionArn", "pipelineRepository", "pipelineBranch"])
def test_a_pipeline_parameter_without_pipeline_true_is_refused_not_ignored(name):
    # Set without the pipeline, it would be neither used nor checked: `$(touch x)` would pass.
    with pytest.raises(ConfigError) as err:
        parse(**{name: "$(touch x)"})
    assert str(err.value) == (
        f"{name} works with pipeline=true only, got {name}='$(touch x)' without it: "
        f"leave {name} unset or add -c pipeline=true"
    )


def test_a_value_spelled_at_its_default_is_the_same_configuration_as_leaving_it_out():
    """The `synth` fixture (tests/conftest.py) synthesizes such contexts once: app.build() reads the
    context only through CanaryConfig, so equal configs are the same template."""
    from conftest import as_cli_value, configuration_key

    spelled = {k: as_cli_value(v) for k, v in DEFAULTS.items() if v is not None}
    spelled.pop("productionImage")
    # The pipeline's own parameters only count with pipeline=true (their defaults are not valid values).
    pipeline = {k: spelled.pop(k) for k in list(spelled) if k.startswith("pipeline") and k != "pipeline"}
    assert parse(**spelled) == parse()
    arn = "arn:aws:codeconnections:eu-west-1:123456789012:connection/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    piped = {"pipeline": "true", "pipelineConnectionArn": arn, "pipelineRepository": "acme/x"}
    assert parse(**piped, pipelineBranch=pipeline["pipelineBranch"]) == parse(**piped)
    assert configuration_key({"trafficRouter": DEFAULTS["trafficRouter"], "canaryWeight": "10"}) == (
        ("canaryWeight", "10"),
    )
    assert configuration_key({"trafficRouter": "appmesh"}) == (("trafficRouter", "appmesh"),)
