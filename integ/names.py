"""The deploy check's fixed names. Imports nothing heavy: `make integ`'s preflight and results steps
read them without starting Node.js (jsii)."""

from __future__ import annotations

from collections.abc import Mapping

from canary_stack.constants import APP_MESH_REFUSAL
from canary_stack.text import shorten

# Its own stack and repository names: the check never touches a user's CrystalCanary stack or
# ecsdemo-crystal repository, and can run in the same account beside them.
STACK_NAME = "CrystalCanaryInteg"
ASSERTIONS_STACK_NAME = "CrystalCanaryIntegAssertions"
REPOSITORY_NAME = "crystal-canary-integ"

# `/crystal/api` answers; the test header reaches the canary; the canary's share of many requests.
ASSERTION_COUNT = 3
# integ-tests-alpha names each assertion's result output `AssertionResults<construct id>`.
RESULT_OUTPUT_PREFIX = "AssertionResults"

# The routers the check deploys, `make integ ROUTER=<name>`: the default (alb), and lattice. appmesh is
# refused like every deploy of it (AWS App Mesh reached end of support).
INTEG_ROUTERS = ("alb", "lattice")
DEFAULT_ROUTER = "alb"
ROUTER_VARIABLE = "CANARY_MAKE_ROUTER"  # how the Makefile hands ROUTER over, raw (canary_stack/ops/make.py)


def integ_router(environ: Mapping[str, str]) -> str:
    """The router `make integ` was asked for (ROUTER), else alb. ValueError with one line otherwise."""
    raw = environ.get(ROUTER_VARIABLE)
    if raw is None:
        return DEFAULT_ROUTER
    if raw in INTEG_ROUTERS:
        return raw
    if raw == "appmesh":
        raise ValueError(f"ROUTER=appmesh: {APP_MESH_REFUSAL}")
    allowed = " or ".join(INTEG_ROUTERS)
    raise ValueError(f"ROUTER must be {allowed} for make integ (or left out: {DEFAULT_ROUTER}), got {shorten(raw)}")
