"""Step the canary through traffic weights, watching its alarms under probe traffic, rolling back on trouble.

    python -m canary_stack.ops.rollout --steps 10,25,50,100 --bake SECONDS
        [--url URL | --url-from-stack] [--verify-requests N] [--dry-run]
        [--probe-rate R] [--probe-limit N] [--min-canary-requests N]
        [-c KEY=VALUE ...] [--stack-name CrystalCanary] [--poll SECONDS]
        [--canary-commit CANARY] [--max-duration SECONDS]

Every argument, the committed cdk.json and the -c context are checked before
anything runs (exit 2, one line); so is the router: App Mesh reached its end of
support on 2026-09-30, and trafficRouter=appmesh is refused.

For each weight W in --steps:

1. deploy:  node_modules/.bin/cdk deploy STACK --require-approval never
            --no-notices -c canaryWeight=W [-c KEY=VALUE ...]
                                                  (run from the repo root)
2. bake:    for --bake seconds, every --poll seconds, read the canary alarms
            (CloudWatch alarms whose names start with "STACK-canary-") and
            print their states; meanwhile send probe traffic to URL/crystal/api:
            --probe-rate requests a second without a header (split by the
            router) and as many with `canary-fleet: true` (always the canary),
            at most --probe-limit in a bake. ELB publishes no metric without
            requests, and the alarms treat missing data as fine: without this
            traffic a bake with no users would pass whatever the canary does.
            A bake whose header-path answers carry the canary's commit fewer
            than --min-canary-requests times (default 30) fails its step: no
            evidence. --probe-rate 0 --min-canary-requests 0 bakes on the
            alarms alone (as before this probe existed);
3. verify:  with --verify-requests, measure the live split with
            canary_stack.ops.verify --expect W; with the lattice router, no
            earlier than 90 s after the step's deploy (Lattice applies weights
            asynchronously). A split that cannot be measured (verify exit 3:
            both versions run the same image, as after a promotion) is not
            evidence of a bad canary: the step is judged by its alarms and probe.

URL: --url, else the stack's `Url` output (CloudFormation DescribeStacks, read
once before the first deploy; --url-from-stack says so explicitly).

Which answers are the canary's: --canary-commit, else the stack's CanaryCommit
output read after each deploy (with CanaryImage, ProductionImage and
TrafficRouter), else the commit the source embeds (crystal_src/code_hash.txt).

An alarm in state ALARM, a bake without evidence, a failed verify, a failed
deploy, alarms that cannot be read at the end of a bake, or any unexpected
failure inside a step roll the canary back (deploy with canaryWeight=0) and
exit 1. A deploy that failed before it reached CloudFormation (no credentials,
a synthesis error: the stack's status and last update time are the same after
it as before) changed nothing: there is nothing to roll back, the tool says so
and exits 1.

Before the first deploy the alarms must exist (else exit 2: an unmonitored
rollout must not start) and none may already be in ALARM (exit 2).

A rollout whose steps all passed and whose last step is 100 leaves the canary
serving all traffic and prints what finishes the release: `make promote`
(production := the canary's image, weight 0, in cdk.json), review, commit,
merge or deploy. Production changes only through git.

--dry-run: print the plan and, for each step, the CloudFormation diff from
`python -m canary_stack.ops.offline_diff --from PREV --to W`, where PREV starts
at the weight committed in cdk.json (context canaryWeight, default 0).
Nothing is deployed and AWS is not contacted.

--max-duration SECONDS (for CI builds with a timeout, such as the pipeline's
Deploy build): refuse, before anything is deployed or diffed, a plan whose bakes
plus DEPLOY_ALLOWANCE seconds per deploy (every step and a rollback) do not fit in
SECONDS. A build killed by its timeout in the middle of a bake rolls nothing back.

AWS calls (cloudwatch:DescribeAlarms, cloudformation:DescribeStacks) go to the
region the CDK CLI deploys to (AWS_REGION first, then AWS_DEFAULT_REGION, the
profile's, us-east-1): boto3 alone would skip AWS_REGION.

Ctrl-C never starts another deploy: the tool says which weight the stack is
at (or that a deploy was interrupted and the state is unknown, with the
`make deploy WEIGHT=...` to run) and exits 130.

Exit codes: 0 done, 1 rolled back / deploy failed, 2 bad arguments,
precondition or a failure before any deploy (nothing changed), 130 interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from canary_stack.config import ConfigError
from canary_stack.constants import PROJECT_ROOT, STACK_NAME
from canary_stack.ops import verify
from canary_stack.ops.cli import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    add_context_argument,
    bounded_float,
    bounded_int,
    one_line,
    parse_context,
    parse_stack_name,
)
from canary_stack.ops.cloud import aws_region, clients
from canary_stack.ops.command import Command
from canary_stack.ops.deployable import deploy_config
from canary_stack.ops.plan import committed_weight, diff_argv
from canary_stack.ops.steps import (
    LATTICE,
    LATTICE_PROPAGATION_SECONDS,
    CheckFailed,
    DeployFailed,
    NothingChanged,
    Rollout,
    Runner,
    SubprocessRunner,
    deploy_argv,
    failure,
)
from canary_stack.ops.traffic import header_requests
from canary_stack.ops.urls import RedactingParser
from canary_stack.ops.versions import URL_OUTPUT
from canary_stack.text import shorten

DEFAULT_POLL = 30.0
MAX_BAKE_SECONDS = 7 * 24 * 3600  # a week per step: longer is a typo, not a bake
# What --max-duration budgets for one `cdk deploy` of a step (or of the rollback): a weight step
# updates one listener rule in a minute or two; the first step of a run may also build and push
# the image and roll the canary's tasks.
DEPLOY_ALLOWANCE = 900.0
# Probe traffic during a bake (traffic.py). One request a second on the header path gives the
# canary 60 a minute, above the 5xx alarm's floor of 10 a minute (observability.py) at any weight.
DEFAULT_PROBE_RATE = 1.0
MAX_PROBE_RATE = 20.0  # a probe, not a load test
DEFAULT_PROBE_LIMIT = 20_000  # a bake of 10,000 s at the default rate
MAX_PROBE_LIMIT = 1_000_000
# Canary answers a bake must see: the 5xx alarm judges a minute only with at least 10 canary
# requests in it, and looks at 3 minutes: 30 is its smallest complete view.
DEFAULT_MIN_CANARY_REQUESTS = 30

__all__ = [
    "CheckFailed",
    "DeployFailed",
    "NothingChanged",
    "Rollout",
    "Runner",
    "SubprocessRunner",
    "aws_region",
    "build_parser",
    "committed_weight",
    "deploy_argv",
    "diff_argv",
    "main",
]


def parse_steps(raw: str) -> list[int]:
    allowed = "comma-separated whole numbers from 0 to 100, strictly increasing"
    items = [item.strip() for item in raw.split(",")]
    steps: list[int] = []
    for item in items:
        if not re.fullmatch(r"[0-9]{1,3}", item) or int(item) > 100:
            raise argparse.ArgumentTypeError(f"must be {allowed}; {shorten(item)} is not, in {shorten(raw)}")
        steps.append(int(item))
    for before, after in itertools.pairwise(steps):
        if after <= before:
            raise argparse.ArgumentTypeError(f"must be {allowed}; {after} follows {before}, in {shorten(raw)}")
    return steps


def build_parser() -> argparse.ArgumentParser:
    parser = RedactingParser(
        prog="python -m canary_stack.ops.rollout",
        description="Deploy the canary at increasing weights, bake each step under probe traffic while watching "
        "its CloudWatch alarms (and optionally the measured split), roll back to weight 0 on "
        "a firing alarm, a bake without evidence, a failed check or any failure inside a step.",
        epilog="Exit codes: 0 done, 1 rolled back or deploy failed, 2 bad arguments, "
        "precondition (e.g. no canary alarms) or a failure before any deploy, 130 interrupted (no further "
        "deploy is started).",
    )
    parser.add_argument(
        "--steps",
        type=parse_steps,
        required=True,
        metavar="W1,W2,...",
        help="canary weights in percent, e.g. 10,25,50,100",
    )
    parser.add_argument(
        "--bake",
        type=bounded_float(0, MAX_BAKE_SECONDS),
        required=True,
        metavar="SECONDS",
        help="time to watch each step before the next",
    )
    parser.add_argument(
        "--poll",
        type=bounded_float(0, 3600, low_inclusive=False),
        default=DEFAULT_POLL,
        metavar="SECONDS",
        help=f"alarm polling interval during a bake (default {DEFAULT_POLL:g})",
    )
    parser.add_argument(
        "--verify-requests",
        type=bounded_int(1, verify.MAX_REQUESTS),
        metavar="N",
        help="after each bake, measure the split with N requests",
    )
    parser.add_argument(
        "--url",
        type=verify.parse_url,
        metavar="URL",
        help=f"base URL of the service for the probe traffic and verify (default: the stack's {URL_OUTPUT!r} output)",
    )
    parser.add_argument(
        "--url-from-stack",
        action="store_true",
        help=f"the URL is the stack's {URL_OUTPUT!r} output (CloudFormation DescribeStacks); the default without --url",
    )
    parser.add_argument(
        "--canary-commit",
        type=verify.parse_commit,
        default=None,
        metavar="CANARY",
        help="commit value of the canary (default: the stack's CanaryCommit output, else crystal_src/code_hash.txt)",
    )
    parser.add_argument(
        "--probe-rate",
        type=bounded_float(0, MAX_PROBE_RATE),
        default=DEFAULT_PROBE_RATE,
        metavar="R",
        help=f"probe requests a second during a bake on each path, weighted and canary-fleet header "
        f"(default {DEFAULT_PROBE_RATE:g}, at most {MAX_PROBE_RATE:g}; 0 sends none)",
    )
    parser.add_argument(
        "--probe-limit",
        type=bounded_int(2, MAX_PROBE_LIMIT),
        default=DEFAULT_PROBE_LIMIT,
        metavar="N",
        help=f"at most N probe requests in a bake, both paths together (default {DEFAULT_PROBE_LIMIT})",
    )
    parser.add_argument(
        "--min-canary-requests",
        type=bounded_int(0, MAX_PROBE_LIMIT),
        default=DEFAULT_MIN_CANARY_REQUESTS,
        metavar="N",
        help="a bake whose canary-fleet probe requests the canary answered fewer than N times fails its step "
        f"as no evidence (default {DEFAULT_MIN_CANARY_REQUESTS}; 0 turns the check off)",
    )
    add_context_argument(parser, what="every deploy and diff, as for cdk deploy")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and the offline diff of each step; deploy nothing"
    )
    parser.add_argument(
        "--max-duration",
        type=bounded_float(0, 10 * MAX_BAKE_SECONDS, low_inclusive=False),
        metavar="SECONDS",
        help=f"refuse a plan whose bakes plus {DEPLOY_ALLOWANCE:g}s per deploy (steps and a rollback) exceed "
        "SECONDS (a CI build's timeout)",
    )
    parser.add_argument(
        "--stack-name",
        type=parse_stack_name,
        default=STACK_NAME,
        metavar="NAME",
        help=f"stack to deploy (default {STACK_NAME})",
    )
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, root: Path) -> argparse.Namespace:
    """Every argument, the -c context and the committed cdk.json, checked before anything runs."""
    args = parser.parse_args(argv)
    if args.url is not None and args.url_from_stack:
        parser.error("argument --url-from-stack: not allowed with --url")
    args.context = parse_context(args.context)
    if "canaryWeight" in args.context:
        raise UsageError("-c canaryWeight conflicts with --steps; the steps set it")
    try:
        # Each step's configuration as `cdk deploy` will build it, the rollback's (weight 0) too.
        configs = [deploy_config(root, {**args.context, "canaryWeight": str(weight)}) for weight in {0, *args.steps}]
    except ConfigError as err:
        raise UsageError(str(err)) from None
    args.router = configs[0].traffic_router
    args.committed = committed_weight(root) if args.dry_run else None  # where the dry run's diffs start
    if args.max_duration is not None:
        check_duration(parser, args)
    check_evidence(parser, args)
    return args


def check_duration(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    deploys = len(args.steps) + 1  # every step, and a rollback to 0
    needed = len(args.steps) * args.bake + deploys * DEPLOY_ALLOWANCE
    waits = ""
    if args.router == LATTICE and args.verify_requests is not None and args.bake < LATTICE_PROPAGATION_SECONDS:
        needed += len(args.steps) * (LATTICE_PROPAGATION_SECONDS - args.bake)
        waits = f" plus the wait for Lattice's weights ({LATTICE_PROPAGATION_SECONDS:g}s after each deploy)"
    if needed > args.max_duration:
        parser.error(
            f"argument --max-duration: {len(args.steps)} steps baking {args.bake:g}s each plus "
            f"{DEPLOY_ALLOWANCE:g}s for each of {deploys} deploys (the steps and a rollback){waits} need "
            f"{needed:g}s, more than {args.max_duration:g}s; use fewer steps or a shorter --bake"
        )


def check_evidence(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A plan whose bakes cannot see --min-canary-requests canary answers would roll back at its
    first step: refused before anything is deployed."""
    need = args.min_canary_requests
    sent = header_requests(args.bake, args.probe_rate, args.probe_limit)
    if sent >= need:
        return
    if args.probe_rate == 0:
        parser.error(
            f"argument --min-canary-requests: --probe-rate 0 sends no probe traffic, so no bake can see the {need} "
            "canary answers each step needs as evidence; give --min-canary-requests 0 to bake on the alarms alone"
        )
    if args.probe_limit // 2 < need:
        parser.error(
            f"argument --min-canary-requests: --probe-limit {args.probe_limit} allows {args.probe_limit // 2} "
            f"canary-fleet requests a bake, fewer than the {need} canary answers each step needs as evidence"
        )
    parser.error(
        f"argument --min-canary-requests: a bake of {args.bake:g}s at --probe-rate {args.probe_rate:g} sends {sent} "
        f"canary-fleet requests, fewer than the {need} canary answers each step needs as evidence; bake at least "
        f"{math.ceil(need / args.probe_rate):g}s, raise --probe-rate, or lower --min-canary-requests"
    )


class RolloutCommand(Command):
    """The rollout on the tools' one core. run() rolls back whatever fails inside a step; what
    fails outside one happened before any deploy: exit 2, nothing was changed."""

    name = "rollout"
    prog = "python -m canary_stack.ops.rollout"
    failures = ()
    unexpected_exit = EXIT_USAGE
    defer_signals = False  # Ctrl-C ends a bake's sleep or a deploy's wait at once, never starts another

    def __init__(
        self,
        *,
        root: Path,
        runner: Runner | None,
        cloudwatch: Any,
        cloudformation: Any,
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
        stdout: TextIO | None,
        stderr: TextIO | None,
    ) -> None:
        super().__init__(stdout=stdout, stderr=stderr)
        self.root, self.runner = root, runner
        self.cloudwatch, self.cloudformation = cloudwatch, cloudformation
        self.sleep, self.monotonic = sleep, monotonic
        self.rollout: Rollout | None = None

    def parse(self, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
        return parse_args(build_parser(), argv, self.root), []

    def unexpected_line(self, exc: Exception) -> str:
        return f"unexpected failure before any deploy, nothing was changed: {failure(exc)}"

    def interrupted(self) -> int:
        if self.rollout is None:  # still checking the arguments
            return super().interrupted()
        if self.rollout.args.dry_run:
            self.out.write("INTERRUPTED: dry run, nothing was deployed\n")
            return EXIT_INTERRUPTED
        return self.rollout.interrupted()  # which weight the stack is at, and what to run

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        rollout = self.rollout = Rollout(
            args=options,
            runner=self.runner or SubprocessRunner(self.root),
            cloudwatch=self.cloudwatch,
            cloudformation=self.cloudformation,
            sleep=self.sleep,
            monotonic=self.monotonic,
            out=self.out,
            err=self.err,
            root=self.root,
        )
        if options.dry_run:
            return rollout.dry_run(self.root)
        # CloudWatch for the alarms; CloudFormation for the stack's URL, outputs and state around a
        # failed deploy. (Tests hand in their own clients.)
        if rollout.cloudwatch is None:
            try:
                rollout.cloudwatch, made = clients(aws_region())
                rollout.cloudformation = rollout.cloudformation or made
            except Exception as exc:
                raise UsageError(f"cannot create an AWS client: {one_line(exc)}") from None
        return rollout.run()


def main(
    argv: Sequence[str] | None = None,
    *,
    runner: Runner | None = None,
    cloudwatch: Any = None,
    cloudformation: Any = None,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    repo_root: Path | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    return RolloutCommand(
        root=repo_root or PROJECT_ROOT,
        runner=runner,
        cloudwatch=cloudwatch,
        cloudformation=cloudformation,
        sleep=sleep,
        monotonic=monotonic,
        stdout=stdout,
        stderr=stderr,
    ).main(argv)


if __name__ == "__main__":
    sys.exit(main())
