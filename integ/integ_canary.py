"""The deploy check: the canary stack deployed for real, asserted on, and destroyed (`make integ`).

What it deploys (with the CDK CLI: `python -m integ.integ_canary` is the `--app`):

* `CrystalCanaryInteg`: the same `CanaryStack` the app deploys, at canaryWeight 10 on the default router
  (alb) or, with `make integ ROUTER=lattice`, on the Lattice router (its requests go through the load
  balancer and the nginx proxy to the Lattice service), with its own stack name and its own ECR repository `crystal-canary-integ`, so it never touches a
  user's `CrystalCanary` stack or `ecsdemo-crystal` repository. Everything in it is deleted with it:
  the repository is DESTROY + EmptyOnDelete, every other resource DESTROY. Both versions' images are
  built from crystal_src/ with one difference, their `code_hash.txt` (the `commit` the service
  reports): `INTEG-CANARY` and `INTEG-PRODUCTION`. An answer then says which version served it, and
  production's image exists in the new, empty repository (the app itself never builds production:
  it runs an image the canary ran, which a fresh repository does not hold).
* `CrystalCanaryIntegAssertions`: aws-cdk.integ-tests-alpha assertions, run by CloudFormation
  when the stack is created, in this order:
  1. `GET <Url>/crystal/api` answers 200 with the service's JSON (`HttpApiCall`);
  2. the same request with the test header `canary-fleet: true` is answered by the canary (its
     `commit` is `INTEG-CANARY`);
  3. over 400 requests without the header, the canary's share is within 7 points of the weight
     (10 %): `HttpApiCall` makes one request, so a small function of ours (integ/share_probe.js,
     nodejs24.x) makes them and returns the counts; every request must be answered.
  Each result is a stack output `AssertionResults...`; integ/results.py reads them after the deploy.

Run it with `make integ` (AWS credentials and a bootstrapped account/region needed; it refuses to
start without credentials). `@aws-cdk/integ-runner` would be the usual driver, but its latest release
cannot read the cloud assembly schema aws-cdk-lib 2.275 writes (version 55; it reads up to 53), so
the Makefile drives the project's pinned CDK CLI instead: deploy all, read the results, destroy all,
the destroy running whatever happened before. Switch to integ-runner once it reads schema 55.

Cost and duration of one run (us-east-1 list prices, 2026; other regions up to ~30 % more). About
35 minutes and about US$0.15-0.25; budget US$0.50 (ROUTER=lattice: see below). What the stack runs
while it exists (~30 min):
* 1 NAT gateway: US$0.045/h (billed per started hour) + US$0.045/GB (the image pulls, a few MB);
* 1 ALB: US$0.0225/h + LCUs (US$0.008/LCU-h; the check's ~400 requests need a fraction of one);
* 3 public IPv4 addresses (NAT gateway, 2 ALB nodes): US$0.005/h each;
* 2 Fargate tasks of 0.25 vCPU / 0.5 GB: US$0.012/h each (per second, 1-minute minimum);
* 1 CodeBuild build on BUILD_GENERAL1_SMALL copying the image: ~2-4 min at US$0.005/min;
* CloudWatch: 1 dashboard (US$3/month, pro rata), 6 alarms (US$0.10/month each), a few MB of logs;
  Lambda, Step Functions (the custom resources' waiters) and ECR storage: cents at most.
With ROUTER=lattice, also: the Lattice service (hourly, plus its requests and data: cents for the
check's few hundred requests), one more Fargate task of 0.25 vCPU / 0.5 GB (the nginx proxy, its image
built from lattice_proxy_image/ by your Docker in seconds: FROM and COPY only), a Route 53 private
hosted zone (billed monthly, pro rata) and a custom resource looking up the Lattice prefix list.
Duration: deploy ~15-20 min (the Docker build of crystal_src/ on your machine, Docker needed: 2-5
min, more the first time the Crystal build image is pulled; VPC and NAT ~3 min; ALB ~3 min; the
CodeBuild copy; both ECS services healthy behind the ALB), assertions ~1 min (2 requests, then the
probe's 400), destroy ~10-15 min (services drain, NAT gateway and VPC deletion).
Left behind after the destroy: the assets in the CDK bootstrap bucket and repository, as after any
deploy, and Container Insights' performance log group (docs/cleanup.md). Every function, integ-tests'
provider included, logs to a log group of its stack, which goes with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from canary_stack.toolchain import exit_now, prepare_toolchain, remove_at_exit

remove_at_exit(prepare_toolchain(os.environ), exit_on_sigterm=False)  # before aws_cdk loads, as in app.py

import aws_cdk as cdk  # noqa: E402
from aws_cdk import aws_cloudwatch as cloudwatch  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402
from aws_cdk import aws_logs as logs  # noqa: E402
from aws_cdk.integ_tests_alpha import ExpectedResult, IApiCall, IntegTest, Match  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402
from constructs import Construct  # noqa: E402

from canary_stack.cdk_app import create_app  # noqa: E402
from canary_stack.config import DEFAULTS, CanaryConfig, ConfigError  # noqa: E402
from canary_stack.constants import CANARY_HEADER, CANARY_HEADER_VALUE, CRYSTAL_SRC, PROJECT_ROOT  # noqa: E402
from canary_stack.log_groups import give_log_group  # noqa: E402
from canary_stack.nag import acknowledge  # noqa: E402
from canary_stack.routers.lattice import LatticeRouter  # noqa: E402
from canary_stack.stack import CanaryStack  # noqa: E402
from integ.names import (  # noqa: E402
    ASSERTIONS_STACK_NAME,
    DEFAULT_ROUTER,
    REPOSITORY_NAME,
    STACK_NAME,
    integ_router,
)

CANARY_WEIGHT = 10
# Points of percentage. At 10 % over 400 requests the share's standard deviation is 1.5 points, so a
# correct split falls outside the band about 3 times in a million runs.
SHARE_TOLERANCE = 7
PROBE_REQUESTS = 400
CANARY_COMMIT = "INTEG-CANARY"
PRODUCTION_COMMIT = "INTEG-PRODUCTION"
API_PATH = "/crystal/api"
PROBE_SOURCE = Path(__file__).resolve().parent / "share_probe.js"

# The context the deployed stack is built from; it wins over cdk.json and -c. The rest (tags,
# architecture) comes from cdk.json, so the check deploys what the project commits.
INTEG_CONTEXT: Mapping[str, str] = {
    "canaryWeight": str(CANARY_WEIGHT),
    "trafficRouter": DEFAULT_ROUTER,  # or ROUTER (integ_config)
    "repositoryName": REPOSITORY_NAME,
    # The assertions run in Lambda, from AWS addresses no allow-list can name in advance.
    "allowedCidr": "0.0.0.0/0",
    "stickySeconds": "0",  # stickiness would pin the probe's requests to one version
    "pipeline": "false",
}


def integ_config(context: Mapping[str, Any], router: str = DEFAULT_ROUTER) -> CanaryConfig:
    """The stack's configuration: the app's own context values overridden by INTEG_CONTEXT and
    `router`, through the same parser and validation `cdk deploy` uses."""
    values = {key: value for key, value in context.items() if key in DEFAULTS}
    values.update(INTEG_CONTEXT, trafficRouter=router)
    return CanaryConfig.from_context(values.get, keys=list(values))


def stage_canary_source(commit: str = CANARY_COMMIT, source: Path = CRYSTAL_SRC) -> Path:
    """crystal_src/ with `commit` in code_hash.txt, in a folder named by its content (same inputs,
    same folder, same image asset hash; concurrent syntheses never see a half-written copy)."""
    files = {".dockerignore", "Dockerfile"} | {
        str(p.relative_to(source)) for p in (source / "src").rglob("*") if p.is_file()
    }
    digest = hashlib.sha256(commit.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (source / name).read_bytes() + b"\0")
    staging_root = PROJECT_ROOT / ".cdk-tmp" / "integ-canary-src"
    target = staging_root / digest.hexdigest()[:16]
    if target.is_dir():
        return target
    staging_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=staging_root, prefix=".partial-"))
    for name in files:
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, partial / name)
    (partial / "code_hash.txt").write_text(commit + "\n")
    try:
        os.rename(partial, target)
    except OSError:  # another synthesis got there first with the same content
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _fixed_salt(call: IApiCall, salt: str) -> None:
    """integ-tests-alpha salts every assertion with Date.now() so that each deploy re-runs it; this
    check always creates the stack afresh, and the snapshot test needs the same bytes every time."""
    resource = call.node.find_child("Default").node.default_child
    assert isinstance(resource, cdk.CfnResource)
    resource.add_property_override("salt", salt)


class SplitProbe(Construct):
    """The function that measures the traffic split (integ/share_probe.js)."""

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.ONE_WEEK, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.function = lambda_.Function(
            self,
            "Function",
            # nodejs24.x: Lambda deprecates it on 2028-04-30, after the team's 2028 floor
            # (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html).
            runtime=lambda_.Runtime.NODEJS_24_X,
            handler="index.handler",
            code=lambda_.Code.from_inline(PROBE_SOURCE.read_text(encoding="utf-8")),
            timeout=cdk.Duration.seconds(90),
            memory_size=256,
            log_group=log_group,
            description=f"Measures the canary's share of {PROBE_REQUESTS} requests (deploy check)",
        )
        acknowledge(
            self.function,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "Only lets the probe write its own logs; the stack lives for one test run",
        )


# integ-tests' assertion provider makes the HTTP requests and the SDK call of each assertion with
# Lambda's default 128 MB (its timeout, 120 s, is set): the same memory as the probe, for the same
# cold start of a Node.js SDK client (canary_stack/image_tags.py, HANDLER_MEMORY_MB).
PROVIDER_MEMORY_MB = 256


# integ-tests' provider of every assertion (its SingletonFunction's uuid); a wait_for_assertions
# adds a waiter's two functions besides it (the lattice check's ListMetrics).
ASSERTION_PROVIDER_UUID = "1488541a7b23466481b69b4408076b81"


def settle_assertion_provider(assertions: cdk.Stack) -> None:
    """integ-tests' provider functions (bare CfnResources): their memory, and a log group of the
    stack each instead of the /aws/lambda/<name> group Lambda would create and the destroy would leave."""
    providers = sorted(
        (
            child
            for child in assertions.node.find_all()
            if isinstance(child, cdk.CfnResource)
            and child.cfn_resource_type == "AWS::Lambda::Function"
            and not child.node.path.startswith(f"{assertions.node.path}/SplitProbe/")
        ),
        key=lambda child: child.node.path,
    )
    if not any(ASSERTION_PROVIDER_UUID in p.node.path for p in providers):
        raise RuntimeError(f"expected integ-tests' provider function, found {[p.node.path for p in providers]}")
    for provider in providers:
        provider.add_property_override("MemorySize", PROVIDER_MEMORY_MB)
        uuid = provider.node.scope.node.id.removeprefix("SingletonFunction") if provider.node.scope else ""
        name = "AssertionProviderLogs" if uuid == ASSERTION_PROVIDER_UUID else f"WaiterLogs{uuid[:8]}"
        give_log_group(provider, assertions, name)


def add_assertions(integ: IntegTest, stack: CanaryStack, probe: SplitProbe) -> list[IApiCall]:
    url = f"{stack.entrypoint.url}{API_PATH}"
    answers = integ.assertions.http_api_call(url)
    answers.expect(
        ExpectedResult.object_like(
            {
                "status": 200,
                "headers": {"content-type": ["application/json"]},
                "body": {"from": "Crystal backend"},
            }
        )
    )
    header = integ.assertions.http_api_call(url, headers={CANARY_HEADER: CANARY_HEADER_VALUE})
    header.expect(ExpectedResult.object_like({"status": 200, "body": {"commit": CANARY_COMMIT}}))
    split = integ.assertions.invoke_function(
        function_name=probe.function.function_name,
        # json.dumps, not Stack.to_json_string: integ-tests JSON-encodes each parameter and decodes it
        # in the provider, which only round-trips when the token (the load balancer's name) sits
        # inside a plain string; a whole-value token would reach Lambda as invalid JSON.
        payload=json.dumps(
            {
                "url": url,
                "requests": PROBE_REQUESTS,
                "concurrency": 8,
                "canaryCommit": CANARY_COMMIT,
                "weight": CANARY_WEIGHT,
                "tolerance": SHARE_TOLERANCE,
                "timeoutMs": 5000,
            }
        ),
    )
    split.expect(
        ExpectedResult.object_like(
            {
                "StatusCode": 200,
                "Payload": Match.serialized_json(
                    Match.object_like({"requests": PROBE_REQUESTS, "failed": 0, "withinTolerance": True})
                ),
            }
        )
    )
    # In order: no split to measure when the service does not answer at all.
    answers.next(header).next(split)
    calls = {"answers": answers, "header": header, "split": split}
    if isinstance(stack.router, LatticeRouter):
        calls["lattice-metrics"] = split.next(lattice_metrics_published(integ, stack.router))
    for name, call in calls.items():
        _fixed_salt(call, f"deploy-check-{name}")
    return list(calls.values())


def lattice_metrics_published(integ: IntegTest, router: LatticeRouter) -> IApiCall:
    """After the split's 400 requests, CloudWatch lists the canary's request count under exactly the
    dimension the alarms read (AWS/VpcLattice, TargetGroup = the target group's ID, routers/lattice.py).

    AWS's metrics page names the dimension but not the form of its value (ID or ARN); an alarm on the
    wrong form sees no data and never fires. This is where the deploy check finds out: ListMetrics
    with the alarms' own dimension, waited for (new metrics can take minutes to be listed)."""
    requests = router.canary_signals.requests
    assert isinstance(requests, cloudwatch.Metric)
    call = integ.assertions.aws_api_call(
        "CloudWatch",
        "listMetrics",
        {
            "Namespace": requests.namespace,
            "MetricName": requests.metric_name,
            "Dimensions": [{"Name": name, "Value": value} for name, value in (requests.dimensions or {}).items()],
        },
    )
    call.expect(
        ExpectedResult.object_like(
            {"Metrics": Match.array_with([Match.object_like({"MetricName": requests.metric_name})])}
        )
    )
    return call.wait_for_assertions(interval=cdk.Duration.minutes(1), total_timeout=cdk.Duration.minutes(20))


def build_integ(app: cdk.App, router: str = DEFAULT_ROUTER) -> tuple[CanaryStack, cdk.Stack, IntegTest]:
    """Adds the deploy check's two stacks to `app`, the canary on `router`. Raises ConfigError on a bad
    committed value."""
    config = integ_config(app.node.get_all_context(), router)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stack = CanaryStack(
        app,
        STACK_NAME,
        config=config,
        image_directory=stage_canary_source(),
        # The repository starts empty, and the two versions must answer differently.
        production_directory=stage_canary_source(PRODUCTION_COMMIT),
        disposable_repository=True,
        description=f"Deploy check of the Crystal canary ({config.traffic_router} router); deleted after the run",
    )
    # Everything else goes with the stack too (log groups the libraries retain by default).
    cdk.RemovalPolicies.of(stack).destroy()
    assertions = cdk.Stack(app, ASSERTIONS_STACK_NAME, description=f"Deploy check assertions on {STACK_NAME}")
    probe = SplitProbe(assertions, "SplitProbe")
    integ = IntegTest(app, "DeployCheck", test_cases=[stack], assertion_stack=assertions)
    add_assertions(integ, stack, probe)
    settle_assertion_provider(assertions)
    # integ-tests-alpha builds its provider function and role from plain CfnResource objects, which
    # cdk-nag's rules (written against the L1 classes) do not inspect: no finding to acknowledge there.
    return stack, assertions, integ


def main() -> int:
    app = create_app()
    try:
        build_integ(app, integ_router(os.environ))
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    exit_now(main())  # as app.py: the exit handlers, then no interpreter teardown
