"""The app's configuration: every context parameter, parsed once and validated.

Context arrives in two shapes. `cdk.json` gives JSON values (`0`, `"epoch"`), while `-c key=value`
on the CLI always gives strings (`"10"`). Every parser accepts both and rejects anything else with
one line naming the parameter, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

from canary_stack.text import shorten

TrafficRouter = Literal["alb", "appmesh", "lattice"]

# The defaults, one place. `cdk.json` repeats canaryWeight so the committed weight is visible in
# the file a pull request changes; the rest need not be set anywhere.
DEFAULTS: Mapping[str, Any] = {
    "canaryWeight": 0,
    "trafficRouter": "alb",
    "repositoryName": "ecsdemo-crystal",
    "imageTag": "epoch",
    "productionTag": "vanilla",
    # Required: cdk.json commits it (`make promote` rewrites it); "" stands for "not set".
    "productionImage": "",
    "cpuArchitecture": "x86_64",
    "adoptRepository": False,
    "allowedCidr": "0.0.0.0/0",
    "certificateArn": None,  # none: HTTP on port 80
    "domainName": None,  # required with certificateArn (the host its users type), refused without it
    "hostedZoneId": None,  # with domainName: a Route 53 alias record for it; none: point it yourself
    "stickySeconds": 0,
    "pipeline": False,
    "pipelineConnectionArn": "",
    "pipelineRepository": "",
    "pipelineBranch": "main",
}

# alb first: it is the default. App Mesh ended on 2026-09-30 (appmesh is synthesized, never deployed);
# lattice is its successor for weighted service-to-service routing (canary_stack/routers/lattice.py).
TRAFFIC_ROUTERS: tuple[TrafficRouter, ...] = ("alb", "appmesh", "lattice")
CpuArchitecture = Literal["x86_64", "arm64"]
CPU_ARCHITECTURES: tuple[CpuArchitecture, ...] = ("x86_64", "arm64")

# Keys that belong to the CDK itself (feature flags, CLI settings), not to this app.
# Context lookups (Vpc.fromLookup, AZs, ...) are cached by the CLI in cdk.context.json under
# `<provider>:<prop>=<value>:...` (aws-cdk-lib core/lib/context-provider.js, getKey: the provider's
# name, then account=, region= and the lookup's own props), e.g.
# `availability-zones:account=123456789012:region=eu-west-1`: the CDK's own keys too.
_CDK_OWNED = re.compile(r"^(@|aws:cdk:|aws-cdk:|cdk-|acknowledged-issue-numbers$|[a-z][a-z0-9-]*:[A-Za-z0-9]+=)")

# A repository name must pass both ECR and aws-cdk-lib's ecr.Repository check. ECR's documented
# pattern ([a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/...)*, 2 to 256 characters:
# https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_Image.html) also allows `__` and
# `--`; the CDK refuses them with a stack trace, so this is the CDK's narrower pattern.
_REPOSITORY_NAME = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
REPOSITORY_NAME_LENGTH = (2, 256)
# An image tag goes into the image copy's CodeBuild commands (`docker tag ... repo:<tag>`), so it
# must pass both rules that apply to it:
# * cdk-docker-image-deployment's validateTag: at most 128 characters matching
#   /^[^-.][a-zA-Z0-9-_.]+$/ - at least two characters, and any first character but '-' or '.'
#   (a space or ';' included), which is why its check alone is not enough;
# * the tag grammar ECR serves (Docker / OCI distribution: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127};
#   https://docs.docker.com/engine/reference/commandline/image_tag/; ECR's API takes 1 to 300 characters,
#   https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageIdentifier.html).
# Together: 2 to 128 ASCII letters, digits, '_', '.', '-', the first a letter, digit or '_'.
_IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{1,127}")
_CONNECTION_ARN = re.compile(
    r"arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}"
)
# An ACM certificate's ARN (https://docs.aws.amazon.com/acm/latest/APIReference/API_DescribeCertificate.html:
# arn:aws:acm:region:123456789012:certificate/12345678-1234-1234-1234-123456789012), in any partition.
_CERTIFICATE_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:acm:[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}:[0-9]{12}:certificate/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
# The host the certificate covers and the `Url` output names: a DNS host name by RFC 1123 (section
# 2.1: letters, digits and hyphens, 1 to 63 per label, no hyphen first or last; the top-level label
# not all digits, so no IPv4 address passes) at most 253 characters (255 octets on the wire,
# RFC 1035 section 2.3.4). Decided for this parameter: at least two labels (a public name), no
# trailing dot (a URL's host is written without it, and TLS name checks do not expect it), no
# wildcard (a URL names one host; the certificate may be a wildcard that covers it), no Unicode
# (write an internationalized name in its xn-- form), case folded to lower (DNS ignores case).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?:{_LABEL}\.)+(?=[a-z0-9-]*[a-z])({_LABEL})")
MAX_HOST_NAME = 253
# A Route 53 hosted zone ID as the console and the API show it (Z0123456789ABCDEFGHIJ): "Maximum length
# of 32" (https://docs.aws.amazon.com/Route53/latest/APIReference/API_HostedZone.html), upper-case
# letters and digits; not the `/hostedzone/` path some API answers put in front of it.
_HOSTED_ZONE_ID = re.compile(r"[A-Z0-9]{1,32}")
# `owner/name` of the pipeline's source repository, a name every CodeConnections provider takes:
# GitHub repository names are at most 100 ASCII letters, digits, '.', '-', '_'
# (https://docs.github.com/en/repositories/creating-and-managing-repositories/repository-limits),
# account names letters, digits and '-' (GitLab groups and Bitbucket workspaces add '_' and '.');
# CodeConnections' own owner and name fields are 1 to 100 characters
# (https://docs.aws.amazon.com/codeguru/latest/reviewer-api/API_ThirdPartySourceRepository.html).
# A leading '-' or '.' is refused (no provider creates one; '.'/'..' are path tricks), as is a
# name ending in `.git`, which GitHub strips and GitLab refuses. GitLab subgroups are not covered.
_REPOSITORY_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
_REPOSITORY_ID = re.compile(rf"({_REPOSITORY_PART})/({_REPOSITORY_PART})")
# No provider documents a limit; 255 bytes (UTF-8) is a file name's limit, which a ref (a file in
# .git/refs) meets, and keeps the pipeline stack's description within CloudFormation's 1,024 bytes.
MAX_BRANCH_BYTES = 255
# git check-ref-format (https://git-scm.com/docs/git-check-ref-format), rules 3 to 10 and --branch:
# no ASCII control character, space, ~ ^ : ? * [ or \ anywhere; no `..`, `@{` or `//`; no leading
# '-' or '/', no trailing '/' or '.'; no component starting with '.' or ending in `.lock`; not
# `@` alone, and not `HEAD` (git refuses it as a branch name).
_BRANCH_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")
# A CDK image asset hash: what names every image in the repository (an immutable tag).
_ASSET_HASH = re.compile(r"[0-9a-f]{64}")

MAX_STICKY_SECONDS = 7 * 24 * 3600  # the ALB's own limit for target group stickiness

# Parameters that only one router uses: with the other one they would be ignored silently, so
# setting them there to anything but their default (off) is refused. (certificateArn is not here: both routers sit behind the same
# load balancer, which terminates HTTPS for either.)
ROUTER_PARAMETERS: Mapping[str, str] = {
    "stickySeconds": "alb",
}
# Why a router cannot do what a parameter asks, where that is not obvious; said in the refusal.
# A Lattice rule's forward action holds target groups and weights, nothing else: no stickiness
# (https://docs.aws.amazon.com/vpc-lattice/latest/APIReference/API_ForwardAction.html).
ROUTER_CANNOT: Mapping[tuple[str, str], str] = {
    ("lattice", "stickySeconds"): "VPC Lattice has no stickiness",
}


def is_known_key(key: str) -> bool:
    """A context key this app reads, or one that belongs to the CDK itself (a feature flag)."""
    return key in DEFAULTS or bool(_CDK_OWNED.match(key))


class ConfigError(ValueError):
    """A context value that cannot be used; the message is one line meant for the user."""


def _show(raw: Any) -> str:
    """The value as the user wrote it (a JSON `true` stays `true`), cut when long."""
    return shorten(raw)


def _whole_number(name: str, raw: Any, low: int, high: int, what: str = "") -> int:
    allowed = f"{name} must be a whole number from {low} to {high}{what}, got {_show(raw)}"
    if isinstance(raw, bool):
        raise ConfigError(allowed)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"[0-9]{1,6}", raw.strip()):
        value = int(raw.strip())
    else:
        raise ConfigError(allowed)
    if not low <= value <= high:
        raise ConfigError(allowed)
    return value


def _choice(name: str, raw: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(raw, str) or raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {_show(raw)}")
    return raw


def _boolean(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw in ("true", "false"):
        return raw == "true"
    raise ConfigError(f"{name} must be true or false, got {_show(raw)}")


def _matching(name: str, raw: Any, pattern: re.Pattern[str], allowed: str, max_len: int, min_len: int = 1) -> str:
    if not isinstance(raw, str) or not min_len <= len(raw) <= max_len or not pattern.fullmatch(raw):
        raise ConfigError(f"{name} must be {allowed}, got {_show(raw)}")
    return raw


def _cidr(name: str, raw: Any) -> str:
    allowed = f"{name} must be an IPv4 CIDR block such as 203.0.113.0/24, got {_show(raw)}"
    if not isinstance(raw, str) or "/" not in raw:
        raise ConfigError(allowed)
    try:
        network = ipaddress.IPv4Network(raw, strict=True)
    except ValueError:
        raise ConfigError(allowed) from None
    return str(network)


@dataclass(frozen=True)
class PipelineConfig:
    """Where the optional delivery pipeline takes its source from."""

    connection_arn: str
    repository: str  # owner/name
    branch: str


@dataclass(frozen=True)
class CanaryConfig:
    """Everything the stacks need, typed. Built only by `from_context`."""

    canary_weight: int  # share of requests for the canary, 0..100
    traffic_router: TrafficRouter
    repository_name: str  # the named ECR repository the canary image is published to
    image_tag: str  # the canary's tag in that repository ("epoch", as in the workshop)
    production_tag: str  # the workshop's moving tag for production's image ("vanilla")
    production_image: str  # the asset hash (= immutable tag) of the image production runs
    cpu_architecture: CpuArchitecture  # the tasks' CPU and the platform the image is built for
    adopt_repository: bool  # use an existing repository of that name instead of creating it
    allowed_cidr: str  # who may reach the public load balancer
    certificate_arn: str | None  # ACM certificate: HTTPS on 443 (80 redirects); None: HTTP on 80
    domain_name: str | None  # with certificate_arn (always): the host in the Url output, https://<it>
    hosted_zone_id: str | None  # with domain_name: Route 53 zone for its alias record; None: no record
    sticky_seconds: int  # ALB router only: 0 = no stickiness
    pipeline: PipelineConfig | None  # the optional pipeline stack

    @property
    def production_weight(self) -> int:
        return 100 - self.canary_weight

    @classmethod
    def from_context(cls, get: Callable[[str], Any], keys: list[str] | None = None) -> CanaryConfig:
        """Parses context through `get` (e.g. `app.node.try_get_context`).

        `keys`, when given, are all the context keys that were set: an unknown one is most likely
        a typo (`-c canaryweight=10`) that would otherwise deploy the committed weight silently.
        """
        for key in sorted(keys or []):
            if not is_known_key(key):
                raise ConfigError(f"unknown context parameter {_show(key)}; known parameters: {', '.join(DEFAULTS)}")

        def raw(name: str) -> Any:
            value = get(name)
            return DEFAULTS[name] if value is None else value

        weight = _whole_number("canaryWeight", raw("canaryWeight"), 0, 100)
        tag_rule = "an image tag of 2 to 128 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"
        image_tag = _matching("imageTag", raw("imageTag"), _IMAGE_TAG, tag_rule, 128, min_len=2)
        production_tag = _matching("productionTag", raw("productionTag"), _IMAGE_TAG, tag_rule, 128, min_len=2)
        if image_tag == production_tag:
            raise ConfigError(
                f"productionTag must differ from imageTag, both are {_show(image_tag)}: "
                "the canary would overwrite what production runs"
            )
        router = _choice("trafficRouter", raw("trafficRouter"), TRAFFIC_ROUTERS)
        sticky_seconds = _whole_number(
            "stickySeconds", raw("stickySeconds"), 0, MAX_STICKY_SECONDS, " (0 turns stickiness off)"
        )
        _refuse_what_the_router_ignores(router, {"stickySeconds": sticky_seconds}, get)
        certificate_arn = _certificate_arn(raw("certificateArn"))
        domain_name, hosted_zone_id = _domain(raw, certificate_arn)
        return cls(
            canary_weight=weight,
            traffic_router=cast(TrafficRouter, router),
            repository_name=_repository_name(raw("repositoryName")),
            image_tag=image_tag,
            production_tag=production_tag,
            production_image=_production_image(raw("productionImage")),
            cpu_architecture=cast(
                CpuArchitecture, _choice("cpuArchitecture", raw("cpuArchitecture"), CPU_ARCHITECTURES)
            ),
            adopt_repository=_boolean("adoptRepository", raw("adoptRepository")),
            allowed_cidr=_cidr("allowedCidr", raw("allowedCidr")),
            certificate_arn=certificate_arn,
            domain_name=domain_name,
            hosted_zone_id=hosted_zone_id,
            sticky_seconds=sticky_seconds,
            pipeline=_pipeline(raw),
        )


def _production_image(raw: Any) -> str:
    if isinstance(raw, str) and _ASSET_HASH.fullmatch(raw):
        return raw
    raise ConfigError(
        "productionImage must be the 64-character lowercase hex asset hash of an image the canary ran "
        f"(`make promote` writes the canary's into cdk.json), got {_show(raw)}"
    )


def _refuse_what_the_router_ignores(router: str, parsed: Mapping[str, Any], get: Callable[[str], Any]) -> None:
    """`parsed`: every ROUTER_PARAMETERS value, parsed. Its default (off) is fine with any router."""
    assert parsed.keys() == ROUTER_PARAMETERS.keys(), "parse every router-specific parameter"
    for name, needs in ROUTER_PARAMETERS.items():
        if router != needs and parsed[name] != DEFAULTS[name]:
            why = ROUTER_CANNOT.get((router, name))
            because = f" ({why})" if why else ""
            raise ConfigError(
                f"{name} works with trafficRouter={needs} only, got {name}={_show(get(name))} "
                f"with trafficRouter={router}{because}: leave {name} unset or use trafficRouter={needs}"
            )


def _certificate_arn(raw: Any) -> str | None:
    if raw is None:
        return None
    return _matching(
        "certificateArn",
        raw,
        _CERTIFICATE_ARN,
        "the ARN of an ACM certificate (arn:aws:acm:REGION:ACCOUNT:certificate/UUID)",
        2048,
    )


def _domain(raw: Callable[[str], Any], certificate_arn: str | None) -> tuple[str | None, str | None]:
    """domainName and hostedZoneId, which only make sense together with a certificate."""
    name, zone = raw("domainName"), raw("hostedZoneId")
    if certificate_arn is not None and name is None:
        raise ConfigError(
            "domainName is required with certificateArn: the host name the certificate covers, which the "
            "Url output and verify use (e.g. -c domainName=canary.example.com)"
        )
    if certificate_arn is None and name is not None:
        raise ConfigError(
            f"domainName works with certificateArn only, got domainName={_show(name)} without it: "
            "leave domainName unset or add -c certificateArn=<ACM certificate ARN>"
        )
    if name is None and zone is not None:
        raise ConfigError(
            f"hostedZoneId works with domainName only, got hostedZoneId={_show(zone)} without it: "
            "leave hostedZoneId unset or add -c domainName=<host name> (and its certificateArn)"
        )
    return (
        None if name is None else _host_name("domainName", name),
        None if zone is None else _hosted_zone_id(zone),
    )


def _host_name(name: str, raw: Any) -> str:
    folded = raw.lower() if isinstance(raw, str) and raw.isascii() else None
    if folded is None or len(folded) > MAX_HOST_NAME or not _HOST_NAME.fullmatch(folded):
        raise ConfigError(
            f"{name} must be a DNS host name such as canary.example.com: at most {MAX_HOST_NAME} characters, "
            "two or more dot-separated labels of 1 to 63 letters, digits or '-' (not first or last), "
            "a top-level label that is not all digits, no trailing dot, no '*', no Unicode (use xn--), "
            f"got {_show(raw)}"
        )
    return folded


def _hosted_zone_id(raw: Any) -> str:
    return _matching(
        "hostedZoneId",
        raw,
        _HOSTED_ZONE_ID,
        "a Route 53 hosted zone ID: 1 to 32 upper-case letters and digits, as the console shows it "
        "(Z0123456789ABCDEFGHIJ, without /hostedzone/)",
        32,
    )


def _repository_name(raw: Any) -> str:
    low, high = REPOSITORY_NAME_LENGTH
    allowed = (
        f"an ECR repository name: {low} to {high} lowercase letters and digits, "
        "single '.', '_' or '-' between them, '/' between path parts"
    )
    return _matching("repositoryName", raw, _REPOSITORY_NAME, allowed, high, min_len=low)


def _is_branch_name(name: str) -> bool:
    if name in ("@", "HEAD") or name.startswith(("-", "/")) or name.endswith(("/", ".")):
        return False
    if _BRANCH_FORBIDDEN.search(name):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))


def _branch(name: str, raw: Any) -> str:
    if not isinstance(raw, str) or not 0 < len(raw.encode()) <= MAX_BRANCH_BYTES or not _is_branch_name(raw):
        raise ConfigError(
            f"{name} must be a git branch name (git check-ref-format --branch: no spaces, '..', '~^:?*[\\', "
            f"leading '-') of at most {MAX_BRANCH_BYTES} bytes, got {_show(raw)}"
        )
    return raw


def _repository_id(name: str, raw: Any) -> str:
    match = _REPOSITORY_ID.fullmatch(raw) if isinstance(raw, str) else None
    if match is None or any(part.endswith(".git") for part in match.groups()[1:]):
        raise ConfigError(
            f"{name} must be owner/name of the source repository (each 1 to 100 letters, digits, '_', '.' "
            f"or '-', not starting with '.' or '-'; the name not ending in .git), got {_show(raw)}"
        )
    return raw


PIPELINE_PARAMETERS = ("pipelineConnectionArn", "pipelineRepository", "pipelineBranch")


def _pipeline(raw: Callable[[str], Any]) -> PipelineConfig | None:
    if not _boolean("pipeline", raw("pipeline")):
        # Like a router's parameter with the other router: set, it would be ignored (and unchecked).
        for name in PIPELINE_PARAMETERS:
            if raw(name) != DEFAULTS[name]:
                raise ConfigError(
                    f"{name} works with pipeline=true only, got {name}={_show(raw(name))} without it: "
                    f"leave {name} unset or add -c pipeline=true"
                )
        return None
    return PipelineConfig(
        connection_arn=_matching(
            "pipelineConnectionArn",
            raw("pipelineConnectionArn"),
            _CONNECTION_ARN,
            "the ARN of a CodeConnections connection (arn:aws:codeconnections:REGION:ACCOUNT:connection/ID)",
            2048,
        ),
        repository=_repository_id("pipelineRepository", raw("pipelineRepository")),
        branch=_branch("pipelineBranch", raw("pipelineBranch")),
    )
