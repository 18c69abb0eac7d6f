"""Step the canary through traffic weights, watching its alarms, rolling back on trouble.

    python -m canary_stack.ops.rollout --steps 10,25,50,100 --bake SECONDS
        [--verify-requests N (--url URL | --url-from-stack)] [--dry-run]
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
            print their states;
3. verify:  with --verify-requests and --url (or --url-from-stack: the stack's
            `Url` output, read once before the first deploy with CloudFormation
            DescribeStacks), measure the live split with
            canary_stack.ops.verify --expect W.

An alarm in state ALARM, a failed verify, a failed deploy or alarms that
cannot be read at the end of a bake roll the canary back (deploy with
canaryWeight=0) and exit 1. A deploy that failed before it reached
CloudFormation (no credentials, a synthesis error: the stack's status and
last update time are the same after it as before) changed nothing: there is
nothing to roll back, the tool says so and exits 1.

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

AWS calls go to the region the CDK CLI deploys to (AWS_REGION first, then
AWS_DEFAULT_REGION, the profile's, us-east-1): boto3 alone would skip AWS_REGION.

Ctrl-C never starts another deploy: the tool says which weight the stack is
at (or that a deploy was interrupted and the state is unknown, with the
`make deploy WEIGHT=...` to run) and exits 130.

Exit codes: 0 done, 1 rolled back / deploy failed, 2 bad arguments or
precondition, 130 interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from canary_stack.config import ConfigError
from canary_stack.constants import PROJECT_ROOT, STACK_NAME, canary_alarm_prefix
from canary_stack.ops import verify
from canary_stack.ops.cdk_cli import deploy_argv as cdk_deploy_argv
from canary_stack.ops.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    OneLineArgumentParser,
    UsageError,
    bounded_float,
    bounded_int,
    one_line,
    parse_context,
    parse_stack_name,
    usage_line,
)
from canary_stack.ops.committed import committed_config
from canary_stack.ops.deployable import deploy_config
from canary_stack.text import shorten

DEFAULT_POLL = 30.0
MAX_BAKE_SECONDS = 7 * 24 * 3600  # a week per step: longer is a typo, not a bake
# The canary stack's output with the service's base URL (CfnOutput "Url" in stack.py).
URL_OUTPUT = "Url"
# What --max-duration budgets for one `cdk deploy` of a step (or of the rollback): a weight step
# updates one listener rule in a minute or two; the first step of a run may also build and push
# the image and roll the canary's tasks.
DEPLOY_ALLOWANCE = 900.0

ALARM = "ALARM"

# What finishes a release once the canary serves everything: production changes only through git.
NEXT_STEPS = (
    "the canary serves 100% of the traffic; production still runs its old image, which now serves nothing",
    "next: `make promote` (cdk.json: productionImage := the canary's image, canaryWeight := 0; prints the diff),",
    "      review that diff, `git commit` it, then merge the pull request (the pipeline deploys it)",
    "      or `make deploy`: production rolls onto the canary's exact image before the weight returns to 0",
)


class Runner(Protocol):
    """Runs a command from the repo root. capture_output=False streams its output."""

    def run(self, argv: Sequence[str], *, capture_output: bool = False) -> subprocess.CompletedProcess[str]: ...


class SubprocessRunner:
    def __init__(self, cwd: Path):
        self.cwd = cwd

    def run(self, argv: Sequence[str], *, capture_output: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), cwd=self.cwd, text=True, capture_output=capture_output, check=False)


# --------------------------------------------------------------- commands


def deploy_argv(stack: str, weight: int, context: dict[str, str] | None = None) -> list[str]:
    return cdk_deploy_argv(stack, {"canaryWeight": str(weight), **(context or {})})


def diff_argv(previous: int, weight: int, stack: str = STACK_NAME, context: dict[str, str] | None = None) -> list[str]:
    argv = [sys.executable, "-m", "canary_stack.ops.offline_diff", "--from", str(previous), "--to", str(weight)]
    if stack != STACK_NAME:
        argv += ["--stack-name", stack]
    for key, value in (context or {}).items():
        argv += ["-c", f"{key}={value}"]
    return argv


# ------------------------------------------------------------ validation


class CheckFailed(Exception):
    """The canary failed a check: roll back."""


class DeployFailed(Exception):
    pass


class NothingChanged(DeployFailed):
    """The deploy failed before CloudFormation changed the stack: there is nothing to roll back."""


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


def committed_weight(repo_root: Path) -> int:
    """context.canaryWeight of cdk.json in the repo root, read and parsed as `cdk deploy` would."""
    try:
        return committed_config(repo_root).canary_weight
    except ConfigError as err:
        raise UsageError(str(err)) from None


def aws_region(environ: Mapping[str, str] = os.environ, profile_region: Callable[[], str | None] | None = None) -> str:
    """The region the CDK CLI deploys to, found its way (its SdkProvider.region): AWS_REGION,
    AMAZON_REGION, AWS_DEFAULT_REGION, AMAZON_DEFAULT_REGION, the profile's region, else us-east-1.
    boto3 alone reads neither AWS_REGION nor the default, so its clients get this explicitly.
    (The CLI also asks the EC2 instance metadata service before us-east-1; this does not.)"""
    for name in ("AWS_REGION", "AMAZON_REGION", "AWS_DEFAULT_REGION", "AMAZON_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name]
    return (profile_region or _profile_region)() or "us-east-1"


def _profile_region() -> str | None:
    import boto3

    try:
        return boto3.session.Session().region_name
    except Exception:  # an unreadable profile: the CLI would fall back too
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m canary_stack.ops.rollout",
        description="Deploy the canary at increasing weights, bake each step while watching "
        "its CloudWatch alarms (and optionally the measured split), roll back to weight 0 on "
        "a firing alarm or failed check.",
        epilog="Exit codes: 0 done, 1 rolled back or deploy failed, 2 bad arguments or "
        "precondition (e.g. no canary alarms), 130 interrupted (no further deploy is started).",
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
        help="after each bake, measure the split with N requests (needs --url or --url-from-stack)",
    )
    parser.add_argument(
        "--url", type=verify.parse_url, metavar="URL", help="base URL of the service for --verify-requests"
    )
    parser.add_argument(
        "--url-from-stack",
        action="store_true",
        help=f"for --verify-requests, the URL is the stack's {URL_OUTPUT!r} output (CloudFormation DescribeStacks)",
    )
    parser.add_argument(
        "--canary-commit",
        type=verify.parse_commit,
        default=verify.DEFAULT_CANARY_COMMIT,
        metavar="CANARY",
        help="commit value of the canary, passed to verify",
    )
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more context for every deploy and diff, as for cdk deploy (e.g. trafficRouter=alb)",
    )
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
    url_given = args.url is not None or args.url_from_stack
    if url_given and args.verify_requests is None:
        given = "--url" if args.url is not None else "--url-from-stack"
        parser.error(f"argument {given}: needs --verify-requests as well")
    if args.verify_requests is not None and not url_given:
        parser.error("argument --verify-requests: needs --url or --url-from-stack as well")
    if args.max_duration is not None:
        deploys = len(args.steps) + 1  # every step, and a rollback to 0
        needed = len(args.steps) * args.bake + deploys * DEPLOY_ALLOWANCE
        if needed > args.max_duration:
            parser.error(
                f"argument --max-duration: {len(args.steps)} steps baking {args.bake:g}s each plus "
                f"{DEPLOY_ALLOWANCE:g}s for each of {deploys} deploys (the steps and a rollback) need "
                f"{needed:g}s, more than {args.max_duration:g}s; use fewer steps or a shorter --bake"
            )
    args.context = parse_context(args.context)
    if "canaryWeight" in args.context:
        raise UsageError("-c canaryWeight conflicts with --steps; the steps set it")
    try:
        # Each step's configuration as `cdk deploy` will build it, the rollback's (weight 0) too.
        for weight in {0, *args.steps}:
            deploy_config(root, {**args.context, "canaryWeight": str(weight)})
    except ConfigError as err:
        raise UsageError(str(err)) from None
    return args


# -------------------------------------------------------------- the rollout


@dataclass
class Rollout:
    args: argparse.Namespace
    runner: Runner
    cloudwatch: Any
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]
    out: TextIO
    err: TextIO
    last_good: int | None = None  # weight of the last deploy that completed successfully
    deploying: str | None = None  # what is being deployed right now
    cloudformation: Any = None
    rolling_back: bool = False
    alarm_names: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return canary_alarm_prefix(self.args.stack_name)

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # -- AWS -----------------------------------------------------------------

    def alarm_states(self) -> list[tuple[str, str]]:
        states: list[tuple[str, str]] = []
        paginator = self.cloudwatch.get_paginator("describe_alarms")
        for page in paginator.paginate(AlarmNamePrefix=self.prefix, AlarmTypes=["MetricAlarm", "CompositeAlarm"]):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                states.append((alarm["AlarmName"], alarm["StateValue"]))
        return sorted(states)

    def stack_state(self) -> tuple[str, str] | None:
        """(StackStatus, time of the last change) of the stack, or None when it cannot be read.

        An update CloudFormation started moves both; a deploy that failed before (no credentials,
        an asset that did not build, a synthesis error) leaves them as they were."""
        if self.cloudformation is None:
            return None
        try:
            (stack,) = self.cloudformation.describe_stacks(StackName=self.args.stack_name)["Stacks"]
        except Exception:  # botocore raises many unrelated types; all mean "unknown"
            return None
        changed = stack.get("LastUpdatedTime") or stack.get("CreationTime")
        return str(stack.get("StackStatus")), str(changed)

    # -- deploys -------------------------------------------------------------

    def deploy(self, argv: list[str], what: str) -> None:
        self.say("$ " + " ".join(argv))
        before = self.stack_state()
        self.deploying = what
        try:
            result = self.runner.run(argv)
        except OSError as err:
            raise NothingChanged(f"deploy of {what} could not start: {one_line(err)}") from None
        if result.returncode != 0:
            after = self.stack_state()
            if before is not None and after == before:
                self.deploying = None
                raise NothingChanged(
                    f"deploy of {what} failed (exit {result.returncode}) before CloudFormation changed the stack "
                    f"(still {before[0]}, last changed {before[1]})"
                )
            raise DeployFailed(f"deploy of {what} failed (exit {result.returncode})")
        self.deploying = None

    def deploy_weight(self, weight: int) -> None:
        self.deploy(deploy_argv(self.args.stack_name, weight, self.args.context), str(weight))
        self.last_good = weight

    def nothing_changed(self, reason: str) -> int:
        where = (
            f"canary weight {self.last_good} (the last step that passed)"
            if self.last_good is not None
            else "the weight it had before this rollout"
        )
        self.say(f"STOPPED: {reason}")
        self.say(f"nothing changed, so nothing is rolled back: the stack is still at {where}")
        return EXIT_FAILED

    def rollback(self, reason: str) -> int:
        self.say(f"ROLLBACK: {reason}")
        self.say("rolling back: deploying canaryWeight=0")
        self.rolling_back = True
        try:
            self.deploy_weight(0)
        except NothingChanged as err:
            self.say(
                f"ROLLBACK FAILED: {err}; the stack is unchanged since the failed step, run `make deploy WEIGHT=0`"
            )
            return EXIT_FAILED
        except DeployFailed as err:
            self.say(f"ROLLBACK FAILED: {err}; the stack's weight is unknown, run `make deploy WEIGHT=0`")
            return EXIT_FAILED
        self.say(f"rolled back: the stack is at canary weight 0 (reason: {reason})")
        return EXIT_FAILED

    # -- checks --------------------------------------------------------------

    def check_alarms(self, label: str) -> bool:
        """Poll once; raise CheckFailed on ALARM. Returns False if the alarms could not be read."""
        try:
            states = self.alarm_states()
        except Exception as err:  # botocore raises many unrelated types; all mean "unknown"
            self.say(f"  {label}; WARNING: cannot read alarms: {one_line(err)}")
            return False
        if not states:
            raise CheckFailed(f"no canary alarms found for prefix {self.prefix} any more")
        self.say(f"  {label}; alarms: " + ", ".join(f"{n}={s}" for n, s in states))
        firing = [name for name, state in states if state == ALARM]
        if firing:
            raise CheckFailed(f"alarm {', '.join(firing)} is in state ALARM")
        return True

    def bake(self, index: int, total: int, weight: int) -> None:
        bake, poll = self.args.bake, self.args.poll
        deadline = self.monotonic() + bake
        while True:
            remaining = max(0.0, deadline - self.monotonic())
            label = f"[step {index}/{total} weight {weight}%] bake {math.ceil(remaining)}s left"
            readable = self.check_alarms(label)
            if remaining <= 0:
                break
            self.sleep(min(poll, remaining))
        if not readable:
            raise CheckFailed(f"alarm states could not be read at the end of the bake at weight {weight}")

    def verify(self, weight: int) -> None:
        if self.args.url is None:
            return
        self.say(f"  verifying the split at {self.args.url}: {self.args.verify_requests} requests, expecting {weight}%")
        code = verify.main(
            [
                self.args.url,
                "--requests",
                str(self.args.verify_requests),
                "--expect",
                str(weight),
                "--canary-commit",
                self.args.canary_commit,
            ],
            stdout=self.out,
            stderr=self.err,
        )
        if code == verify.EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code == verify.EXIT_OUTSIDE:
            raise CheckFailed(
                f"verify at weight {weight}: the measured canary share does not match {weight}% (verify's FAIL line above)"
            )
        if code != verify.EXIT_OK:
            raise CheckFailed(f"verify at weight {weight}: the service could not be measured (verify exit {code})")

    # -- flow ----------------------------------------------------------------

    def preflight(self) -> None:
        try:
            states = self.alarm_states()
        except Exception as err:
            raise UsageError(f"cannot read CloudWatch alarms: {one_line(err)}") from None
        if not states:
            raise UsageError(
                f"no canary alarms found for prefix {self.prefix}; an unmonitored rollout must not proceed"
            )
        firing = [name for name, state in states if state == ALARM]
        if firing:
            raise UsageError(f"alarm {', '.join(firing)} is already in state ALARM; not starting a rollout")
        self.alarm_names = [name for name, _ in states]
        if self.args.url_from_stack:
            self.args.url = self.stack_url()

    def stack_url(self) -> str:
        """The stack's Url output, checked like --url; any failure is a precondition (exit 2)."""
        stack = self.args.stack_name
        try:
            (described,) = self.cloudformation.describe_stacks(StackName=stack)["Stacks"]
            outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in described.get("Outputs", [])}
        except Exception as err:  # botocore raises many unrelated types; all mean "cannot read"
            raise UsageError(f"cannot read the outputs of stack {stack}: {one_line(err)}") from None
        if URL_OUTPUT not in outputs:
            raise UsageError(f"stack {stack} has no {URL_OUTPUT!r} output to verify against")
        try:
            return verify.parse_url(outputs[URL_OUTPUT])
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"the {URL_OUTPUT!r} output of stack {stack} {err}") from None

    def print_plan(self, dry_run: bool, committed: int | None = None) -> None:
        a = self.args
        self.say(f"rollout plan for stack {a.stack_name}" + (" (dry run: nothing is deployed)" if dry_run else ""))
        if committed is not None:
            self.say(f"  committed weight (cdk.json): {committed}")
        if a.context:
            self.say("  context for every deploy:" + "".join(f" -c {k}={v}" for k, v in a.context.items()))
        watched = ", ".join(self.alarm_names) if self.alarm_names else f"{self.prefix}*"
        checks = f"alarms {watched} every {a.poll:g}s"
        if a.url or a.url_from_stack:
            url = a.url or f"the {URL_OUTPUT!r} output of {a.stack_name}"
            checks += f"; then verify {a.verify_requests} requests to {url} expecting W%"
        for i, weight in enumerate(a.steps, 1):
            self.say(
                f"  step {i}/{len(a.steps)}: canaryWeight={weight}, bake {a.bake:g}s, "
                f"checks: {checks.replace('W%', f'{weight}%')}"
            )
        self.say("  on a firing alarm, failed verify or failed deploy: deploy canaryWeight=0 and stop")
        if a.steps[-1] == 100:
            self.say("  after the last step: `make promote` makes the canary's image production, through git")

    def dry_run(self, repo_root: Path) -> int:
        committed = committed_weight(repo_root)
        self.print_plan(dry_run=True, committed=committed)
        previous, total = committed, len(self.args.steps)
        for i, weight in enumerate(self.args.steps, 1):
            argv = diff_argv(previous, weight, self.args.stack_name, self.args.context)
            self.say(f"--- step {i}/{total}: diff canaryWeight {previous} -> {weight} ---")
            try:
                result = self.runner.run(argv, capture_output=True)
            except OSError as err:
                raise UsageError(f"cannot run offline diff: {one_line(err)}") from None
            if result.returncode != 0:
                if result.stderr:
                    self.err.write(result.stderr if result.stderr.endswith("\n") else result.stderr + "\n")
                raise UsageError(f"offline diff {previous} -> {weight} failed (exit {result.returncode})")
            if result.stdout:
                self.out.write(result.stdout if result.stdout.endswith("\n") else result.stdout + "\n")
            previous = weight
        return EXIT_OK

    def run(self) -> int:
        self.preflight()
        self.print_plan(dry_run=False)
        steps = self.args.steps
        try:
            for i, weight in enumerate(steps, 1):
                self.say(f"== step {i}/{len(steps)}: canary weight {weight}% ==")
                self.deploy_weight(weight)
                self.bake(i, len(steps), weight)
                self.verify(weight)
                self.say(f"step {i}/{len(steps)} passed: canary weight {weight}%")
        except NothingChanged as err:
            return self.nothing_changed(str(err))
        except (DeployFailed, CheckFailed) as err:
            return self.rollback(str(err))
        self.say(f"rollout complete: the stack is at canary weight {steps[-1]}%")
        if steps[-1] == 100:
            for line in NEXT_STEPS:
                self.say(line)
        return EXIT_OK

    def interrupted(self) -> int:
        if self.deploying is not None:
            advice = 0 if self.rolling_back or self.last_good is None else self.last_good
            self.say(
                f"INTERRUPTED: the stack is at unknown: deploy of {self.deploying} was "
                f"interrupted (CloudFormation may still be applying it). Check the stack, "
                f"then run `make deploy WEIGHT={advice}`"
            )
        elif self.last_good is None:
            self.say("INTERRUPTED before any deploy: the stack was not changed")
        else:
            self.say(
                f"INTERRUPTED: no further deploy started; the stack is at canary weight "
                f"{self.last_good} (last completed deploy). To take the canary out "
                "of traffic: `make deploy WEIGHT=0`"
            )
        return EXIT_INTERRUPTED


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
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    root = repo_root or PROJECT_ROOT
    try:
        args = parse_args(parser, argv, root)
    except UsageError as exc:
        err.write(usage_line("rollout", exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    rollout = Rollout(
        args=args,
        runner=runner or SubprocessRunner(root),
        cloudwatch=cloudwatch,
        cloudformation=cloudformation,
        sleep=sleep,
        monotonic=monotonic,
        out=out,
        err=err,
    )
    try:
        if args.dry_run:
            return rollout.dry_run(root)
        # CloudWatch for the alarms; CloudFormation for the stack's state around a failed deploy
        # and for --url-from-stack. (Tests hand in their own clients.)
        real_run = rollout.cloudwatch is None
        if real_run or (args.url_from_stack and rollout.cloudformation is None):
            try:
                import boto3

                region = aws_region()
                if rollout.cloudwatch is None:
                    rollout.cloudwatch = boto3.client("cloudwatch", region_name=region)
                if rollout.cloudformation is None:
                    rollout.cloudformation = boto3.client("cloudformation", region_name=region)
            except Exception as exc:
                raise UsageError(f"cannot create an AWS client: {one_line(exc)}") from None
        return rollout.run()
    except UsageError as exc:
        err.write(usage_line("rollout", exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.dry_run:
            out.write("INTERRUPTED: dry run, nothing was deployed\n")
            return EXIT_INTERRUPTED
        return rollout.interrupted()


if __name__ == "__main__":
    sys.exit(main())
