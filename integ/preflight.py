"""`make integ`'s first step: refuse, with one line and exit code 2, before anything is built or
deployed, when there is no AWS account to deploy to.

It resolves credentials and the region the way the CDK CLI does (the standard AWS SDK chain:
environment, profile, SSO, container or instance role) and asks STS who they belong to, so expired
credentials are caught here rather than after the image build. On success it prints one line naming
the account and region the check will deploy to. Usage: python -m integ.preflight
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions

from canary_stack.constants import PROJECT_ROOT
from canary_stack.ops.cli import EXIT_USAGE, one_line
from canary_stack.text import shorten
from integ.names import ASSERTIONS_STACK_NAME, STACK_NAME, integ_router


class Refused(Exception):
    """Why the check cannot start; the message is one line for the user."""


def output_folder(raw: str, root: Path = PROJECT_ROOT) -> Path:
    """INTEG_OUT, which the recipe empties first: only a folder inside the project's build/, so a
    slip (INTEG_OUT=$HOME, INTEG_OUT=.) cannot delete anything that is not the check's own."""
    build = (root / "build").resolve()
    folder = (root / raw).resolve()
    if folder == build or build not in folder.parents:
        raise Refused(f"INTEG_OUT must be a folder inside build/ (it is emptied first), got {shorten(raw)}")
    return folder


def router(environ: Mapping[str, str] = os.environ) -> str:
    """ROUTER, as `make integ ROUTER=...` gave it (alb without it); Refused for one it cannot deploy."""
    try:
        return integ_router(environ)
    except ValueError as err:
        raise Refused(str(err)) from None


def check(
    session_factory: Callable[[], Any] | None = None,
    which: Callable[[str], str | None] = shutil.which,
    traffic_router: str = "alb",
) -> str:
    """The line to print when the check can run; raises Refused otherwise."""

    session = (session_factory or boto3.session.Session)()
    if session.get_credentials() is None:
        raise Refused(
            "make integ deploys to a real AWS account and found no AWS credentials: "
            "set AWS_PROFILE (or run `aws configure` / `aws sso login`) and try again"
        )
    # The CDK CLI (AWS SDK for JavaScript) reads AWS_REGION first; boto3 only AWS_DEFAULT_REGION.
    region = os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise Refused("make integ needs an AWS region: set AWS_REGION or a region in your AWS profile")
    if which("docker") is None:
        raise Refused("make integ builds the canary image with Docker: no `docker` command found")
    try:
        account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as err:
        raise Refused(f"make integ cannot use these AWS credentials: {one_line(err)[:300]}") from None
    return (
        f"deploy check: account {account}, region {region}: deploys {STACK_NAME} ({traffic_router} router) "
        f"and {ASSERTIONS_STACK_NAME}, then destroys both (about 30 minutes)"
    )


def main() -> int:
    try:
        output_folder(os.environ.get("CANARY_MAKE_INTEG_OUT", "build/integ"))
        traffic_router = router()  # before credentials: a refused router needs no account to say so
        print(check(traffic_router=traffic_router))
    except Refused as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
