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

TrafficRouter = Literal["alb", "appmesh"]

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
    "stickySeconds": 0,
    "pipeline": False,
    "pipelineConnectionArn": "",
    "pipelineRepository": "",
    "pipelineBranch": "main",
}

# alb first: it is the default, and the one AWS still serves (App Mesh ended on 2026-09-30).
TRAFFIC_ROUTERS: tuple[TrafficRouter, ...] = ("alb", "appmesh")
CpuArchitecture = Literal["x86_64", "arm64"]
CPU_ARCHITECTURES: tuple[CpuArchitecture, ...] = ("x86_64", "arm64")

# Keys that belong to the CDK itself (feature flags, CLI settings), not to this app.
_CDK_OWNED = re.compile(r"^(@|aws:cdk:|aws-cdk:|cdk-|acknowledged-issue-numbers$)")

# ECR's own rules for a repository name, and cdk-docker-image-deployment's rules for a tag
# (its validateTag: 1..128 characters of [a-zA-Z0-9-_.], not starting with '.' or '-').
_REPOSITORY_NAME = re.compile(r"^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_IMAGE_TAG = re.compile(r"^[^-.][a-zA-Z0-9\-_.]+$")
_CONNECTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:(codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:connection/[0-9a-f-]{36}$"
)
_REPOSITORY_ID = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]{1,255}$")
# A CDK image asset hash: what names every image in the repository (an immutable tag).
_ASSET_HASH = re.compile(r"^[0-9a-f]{64}$")

MAX_STICKY_SECONDS = 7 * 24 * 3600  # the ALB's own limit for target group stickiness


class ConfigError(ValueError):
    """A context value that cannot be used; the message is one line meant for the user."""


def _show(raw: Any) -> str:
    return repr(raw) if isinstance(raw, str) else repr(str(raw)) if raw is not None else "None"


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


def _matching(name: str, raw: Any, pattern: re.Pattern[str], allowed: str, max_len: int) -> str:
    if not isinstance(raw, str) or len(raw) > max_len or not pattern.fullmatch(raw):
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
            if key not in DEFAULTS and not _CDK_OWNED.match(key):
                raise ConfigError(f"unknown context parameter {key!r}; known parameters: {', '.join(DEFAULTS)}")

        def raw(name: str) -> Any:
            value = get(name)
            return DEFAULTS[name] if value is None else value

        weight = _whole_number("canaryWeight", raw("canaryWeight"), 0, 100)
        tag_rule = "an image tag of 1 to 128 letters, digits, '-', '_' or '.', not starting with '-' or '.'"
        image_tag = _matching("imageTag", raw("imageTag"), _IMAGE_TAG, tag_rule, 128)
        production_tag = _matching("productionTag", raw("productionTag"), _IMAGE_TAG, tag_rule, 128)
        if image_tag == production_tag:
            raise ConfigError(
                f"productionTag must differ from imageTag, both are {image_tag!r}: "
                "the canary would overwrite what production runs"
            )
        return cls(
            canary_weight=weight,
            traffic_router=cast(TrafficRouter, _choice("trafficRouter", raw("trafficRouter"), TRAFFIC_ROUTERS)),
            repository_name=_repository_name(raw("repositoryName")),
            image_tag=image_tag,
            production_tag=production_tag,
            production_image=_production_image(raw("productionImage")),
            cpu_architecture=cast(
                CpuArchitecture, _choice("cpuArchitecture", raw("cpuArchitecture"), CPU_ARCHITECTURES)
            ),
            adopt_repository=_boolean("adoptRepository", raw("adoptRepository")),
            allowed_cidr=_cidr("allowedCidr", raw("allowedCidr")),
            sticky_seconds=_whole_number(
                "stickySeconds", raw("stickySeconds"), 0, MAX_STICKY_SECONDS, " (0 turns stickiness off)"
            ),
            pipeline=_pipeline(raw),
        )


def _production_image(raw: Any) -> str:
    if isinstance(raw, str) and _ASSET_HASH.fullmatch(raw):
        return raw
    shown = raw[:70] + "..." if isinstance(raw, str) and len(raw) > 70 else raw
    raise ConfigError(
        "productionImage must be the 64-character lowercase hex asset hash of an image the canary ran "
        f"(`make promote` writes the canary's into cdk.json), got {_show(shown)}"
    )


def _repository_name(raw: Any) -> str:
    allowed = "an ECR repository name: 2 to 256 lowercase letters, digits and . _ - /"
    if isinstance(raw, str) and len(raw) < 2:
        raise ConfigError(f"repositoryName must be {allowed}, got {_show(raw)}")
    return _matching("repositoryName", raw, _REPOSITORY_NAME, allowed, 256)


def _pipeline(raw: Callable[[str], Any]) -> PipelineConfig | None:
    if not _boolean("pipeline", raw("pipeline")):
        return None
    return PipelineConfig(
        connection_arn=_matching(
            "pipelineConnectionArn",
            raw("pipelineConnectionArn"),
            _CONNECTION_ARN,
            "the ARN of a CodeConnections connection (arn:aws:codeconnections:REGION:ACCOUNT:connection/ID)",
            2048,
        ),
        repository=_matching(
            "pipelineRepository", raw("pipelineRepository"), _REPOSITORY_ID, "owner/name of the source repository", 200
        ),
        branch=_matching("pipelineBranch", raw("pipelineBranch"), _BRANCH, "a branch name", 255),
    )
