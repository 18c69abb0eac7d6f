"""Fixed facts of the deployment, one place. What users may change is in config.py instead.

The constructs and the operator tools (canary_stack/ops) both read these names, so this module
imports nothing heavy: a tool must not start Node.js (jsii) for a name.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CRYSTAL_SRC = PROJECT_ROOT / "crystal_src"

APP_PORT = 3000  # the Crystal service (PORT in crystal_src)
GATEWAY_PORT = 8080  # the App Mesh virtual gateway's listener
HEALTH_PATH = "/health"

# App Mesh's Envoy, pinned: an unpinned tag would change the proxy under a running canary. The
# newest release AWS published (2026-09-09, aws/aws-app-mesh-roadmap#513: Envoy v1.39.1); App Mesh
# "strongly recommends" the latest image (https://docs.aws.amazon.com/app-mesh/latest/userguide/envoy.html).
ENVOY_IMAGE = "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.39.1.0-prod"
ENVOY_UID = 1337  # Envoy's user; its own traffic must bypass the iptables redirect
ENVOY_INGRESS_PORT = 15000
ENVOY_EGRESS_PORT = 15001
ENVOY_ADMIN_PORT = 9901
# The ECS task metadata and instance metadata endpoints must not go through the proxy.
ENVOY_EGRESS_IGNORED_IPS = ("169.254.170.2", "169.254.169.254")

# The workshop's names, kept so its CLI commands and dashboards still find things.
MESH_NAME = "appmesh-workshop"
NAMESPACE_NAME = "appmeshworkshop.pvt.local"
PRODUCTION_NODE = "crystal-sd-vanilla"
CANARY_NODE = "crystal-sd-epoch"
ROUTER_NAME = "crystal-router"
ROUTE_NAME = "crystal-route"
VIRTUAL_SERVICE_NAME = f"crystal.{NAMESPACE_NAME}"
GATEWAY_NAME = "crystal-gateway"

# AWS App Mesh's end of support: after it, "you will no longer be able to access the AWS App Mesh
# console or AWS App Mesh resources" (https://docs.aws.amazon.com/app-mesh/latest/userguide/envoy.html,
# the notice on every App Mesh user guide page). The appmesh router stays a tested reproduction of
# the workshop that is never deployed; this line says why wherever a deploy of it is refused.
APP_MESH_END_OF_SUPPORT_DATE = "2026-09-30"
APP_MESH_REFUSAL = (
    f"AWS App Mesh reached end of support on {APP_MESH_END_OF_SUPPORT_DATE} and can no longer be deployed; "
    "deploy the same canary with -c trafficRouter=alb"
)

# Testers reach the canary at any weight with this header. The load balancer drops header names
# outside [-A-Za-z0-9]+ (drop_invalid_header_fields, ingress.py), so the workshop's `canary_fleet`
# never reaches a router behind it: test traffic through the load balancer uses `canary-fleet`.
# App Mesh also keeps a route on the workshop's name for callers inside the mesh, where no load
# balancer sits in between.
CANARY_HEADER = "canary-fleet"
WORKSHOP_CANARY_HEADER = "canary_fleet"
CANARY_HEADER_VALUE = "true"

# The lattice router (canary_stack/routers/lattice.py). The Lattice service answers on the workshop's
# virtual service name (VIRTUAL_SERVICE_NAME, a CNAME in a private hosted zone NAMESPACE_NAME) on
# plain HTTP; the public load balancer reaches it through a small nginx proxy, whose configuration
# (canary_stack/routers/lattice_proxy_image/nginx.conf) repeats these values and is tested against them.
LATTICE_LISTENER_PORT = 80
LATTICE_PROXY_PORT = 8080  # nginx as a non-root user: above 1024, no NET_BIND_SERVICE needed
LATTICE_PROXY_HEALTH_PATH = "/proxy-health"  # answered by nginx itself, never forwarded to Lattice
LATTICE_PROXY_DIR = Path(__file__).resolve().parent / "routers" / "lattice_proxy_image"
LATTICE_PROXY_UID = 101  # the `nginx` user and group of the official nginx image
# The managed prefix list of the addresses Lattice sends traffic and health checks from, by region
# (https://docs.aws.amazon.com/vpc-lattice/latest/ug/security-groups.html).
LATTICE_PREFIX_LIST_NAME = "com.amazonaws.{region}.vpc-lattice"

STACK_NAME = "CrystalCanary"
PIPELINE_STACK_NAME = "CrystalCanaryPipeline"

# The project's pinned CDK CLI (package-lock.json), relative to PROJECT_ROOT: the tools run it
# from there, as `make` does.
CDK_CLI = "node_modules/.bin/cdk"


def canary_alarm_prefix(stack_name: str) -> str:
    """Every canary alarm's name starts with this; the rollout watches exactly these alarms."""
    return f"{stack_name}-canary-"


# The stack's outputs the operator tools read (DescribeStacks): the rollout, verify and promote.
# stack.py declares them under these names; tests/stack/test_routers.py holds the two together.
OUTPUT_URL = "Url"
OUTPUT_CANARY_IMAGE = "CanaryImage"  # the canary's image asset hash (= its tag)
OUTPUT_PRODUCTION_IMAGE = "ProductionImage"
OUTPUT_CPU_ARCHITECTURE = "CpuArchitecture"  # x86_64 or arm64: the platform the hash was built for
OUTPUT_CANARY_WEIGHT = "CanaryWeight"
OUTPUT_CANARY_COMMIT = "CanaryCommit"  # what the canary answers as its commit (crystal_src/code_hash.txt)
OUTPUT_TRAFFIC_ROUTER = "TrafficRouter"
