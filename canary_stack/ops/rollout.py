"""Step the canary through traffic weights, watching its alarms, rolling back on trouble.

    python -m canary_stack.ops.rollout --steps 10,25,50,100 --bake SECONDS
        [--verify-requests N (--url URL | --url-from-stack)] [--promote] [--dry-run]
        [--stack-name CrystalCanary] [--poll SECONDS] [--canary-commit CANARY]

For each weight W in --steps:

1. deploy:  node_modules/.bin/cdk deploy STACK --require-approval never
            --no-notices -c canaryWeight=W        (run from the repo root)
2. bake:    for --bake seconds, every --poll seconds, read the canary alarms
            (CloudWatch alarms whose names start with "STACK-canary-") and
            print their states;
3. verify:  with --verify-requests and --url (or --url-from-stack: the stack's
            `Url` output, read once before the first deploy with CloudFormation
            DescribeStacks), measure the live split with
            canary_stack.ops.verify --expect W.

An alarm in state ALARM, a failed verify, a failed deploy or alarms that
cannot be read at the end of a bake roll the canary back (deploy with
canaryWeight=0) and exit 1.

Before the first deploy the alarms must exist (else exit 2: an unmonitored
rollout must not start) and none may already be in ALARM (exit 2).

--promote (the last step must be 100): after the last step passed, deploy
with -c canaryWeight=0 -c productionImage=canary, making the canary image
production and taking the canary out of the traffic path.

--dry-run: print the plan and, for each step, the CloudFormation diff from
`python -m canary_stack.ops.offline_diff --from PREV --to W`, where PREV starts
at the weight committed in cdk.json (context canaryWeight, default 0).
Nothing is deployed and AWS is not contacted.

--max-duration SECONDS (for CI builds with a timeout, such as the pipeline's
Deploy build): refuse, before anything is deployed or diffed, a plan whose bakes
plus DEPLOY_ALLOWANCE seconds per deploy (every step and a rollback) do not fit in
SECONDS. A build killed by its timeout in the middle of a bake rolls nothing back.

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
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from canary_stack.config import CanaryConfig, ConfigError
from canary_stack.constants import CDK_CLI, PROJECT_ROOT, STACK_NAME, canary_alarm_prefix
from canary_stack.ops import verify
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
    usage_line,
)
from canary_stack.ops.offline_diff import committed_context

DEFAULT_POLL = 30.0
# The canary stack's output with the service's base URL (CfnOutput "Url" in stack.py).
URL_OUTPUT = "Url"
# What --max-duration budgets for one `cdk deploy` of a step (or of the rollback): a weight step
# updates one listener rule in a minute or two; the first step of a run may also build and push
# the image and roll the canary's tasks.
DEPLOY_ALLOWANCE = 900.0

ALARM = "ALARM"


class Runner(Protocol):
    """Runs a command from the repo root. capture_output=False streams its output."""

    def run(self, argv: Sequence[str], *, capture_output: bool = False) -> subprocess.CompletedProcess[str]: ...


class SubprocessRunner:
    def __init__(self, cwd: Path):
        self.cwd = cwd

    def run(self, argv: Sequence[str], *, capture_output: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), cwd=self.cwd, text=True, capture_output=capture_output, check=False)


# --------------------------------------------------------------- commands


def deploy_argv(stack: str, weight: int) -> list[str]:
    return [CDK_CLI, "deploy", stack, "--require-approval", "never", "--no-notices", "-c", f"canaryWeight={weight}"]


def promote_argv(stack: str) -> list[str]:
    return deploy_argv(stack, 0) + ["-c", "productionImage=canary"]


def diff_argv(previous: int, weight: int) -> list[str]:
    return [sys.executable, "-m", "canary_stack.ops.offline_diff", "--from", str(previous), "--to", str(weight)]


# ------------------------------------------------------------ validation


class CheckFailed(Exception):
    """The canary failed a check: roll back."""


class DeployFailed(Exception):
    pass


def parse_steps(raw: str) -> list[int]:
    allowed = "comma-separated whole numbers from 0 to 100, strictly increasing"
    items = [item.strip() for item in raw.split(",")]
    steps: list[int] = []
    for item in items:
        if not re.fullmatch(r"[0-9]{1,3}", item) or int(item) > 100:
            raise argparse.ArgumentTypeError(f"must be {allowed}; {item!r} is not, in {raw!r}")
        steps.append(int(item))
    for before, after in itertools.pairwise(steps):
        if after <= before:
            raise argparse.ArgumentTypeError(f"must be {allowed}; {after} follows {before}, in {raw!r}")
    return steps


def parse_stack_name(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", raw):
        raise argparse.ArgumentTypeError(
            f"must be a CloudFormation stack name (a letter, then up to 127 letters, digits or '-'), got {raw!r}"
        )
    return raw


def committed_weight(repo_root: Path) -> int:
    """context.canaryWeight of cdk.json in the repo root, parsed by the app's own parser."""
    context = committed_context(repo_root) if (repo_root / "cdk.json").exists() else {}
    try:
        return CanaryConfig.from_context(context.get).canary_weight
    except ConfigError as err:
        raise UsageError(f"cdk.json: {err}") from None


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
        type=bounded_float(0, math.inf),
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
        help="after each bake, measure the split with N requests (needs --url)",
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
        default=verify.DEFAULT_CANARY_COMMIT,
        metavar="CANARY",
        help="commit value of the canary, passed to verify",
    )
    parser.add_argument(
        "--promote", action="store_true", help="after the last step (must be 100), make the canary image production"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and the offline diff of each step; deploy nothing"
    )
    parser.add_argument(
        "--max-duration",
        type=bounded_float(0, math.inf, low_inclusive=False),
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


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
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
    if args.promote and args.steps[-1] != 100:
        parser.error(f"argument --promote: the last step must be 100, got {args.steps[-1]}")
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
    cloudformation: Any = None  # only for --url-from-stack
    last_good: int | None = None  # weight of the last deploy that completed successfully
    deploying: str | None = None  # what is being deployed right now
    rolling_back: bool = False
    promoted: bool = False
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

    # -- deploys -------------------------------------------------------------

    def deploy(self, argv: list[str], what: str) -> None:
        self.say("$ " + " ".join(argv))
        self.deploying = what
        try:
            result = self.runner.run(argv)
        except OSError as err:
            raise DeployFailed(f"deploy of {what} could not start: {one_line(err)}") from None
        if result.returncode != 0:
            raise DeployFailed(f"deploy of {what} failed (exit {result.returncode})")
        self.deploying = None

    def deploy_weight(self, weight: int) -> None:
        self.deploy(deploy_argv(self.args.stack_name, weight), str(weight))
        self.last_good = weight

    def rollback(self, reason: str) -> int:
        self.say(f"ROLLBACK: {reason}")
        self.say("rolling back: deploying canaryWeight=0")
        self.rolling_back = True
        try:
            self.deploy_weight(0)
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
            raise CheckFailed(f"verify at weight {weight}: the measured canary share does not match {weight}%")
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
        if a.promote:
            self.say("  then promote: canaryWeight=0 with productionImage=canary")
        self.say("  on a firing alarm, failed verify or failed deploy: deploy canaryWeight=0 and stop")

    def dry_run(self, repo_root: Path) -> int:
        committed = committed_weight(repo_root)
        self.print_plan(dry_run=True, committed=committed)
        previous, total = committed, len(self.args.steps)
        for i, weight in enumerate(self.args.steps, 1):
            argv = diff_argv(previous, weight)
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
        if self.args.promote:
            self.say("--- promotion (productionImage=canary) is not diffed: offline_diff compares weights ---")
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
        except DeployFailed as err:
            return self.rollback(str(err))
        except CheckFailed as err:
            return self.rollback(str(err))
        if self.args.promote:
            self.say(
                "promoting: deploying the canary image as production (productionImage=canary) "
                "and setting canary weight back to 0"
            )
            try:
                self.deploy(promote_argv(self.args.stack_name), "the promotion")
            except DeployFailed as err:
                self.say(
                    f"PROMOTION FAILED: {err}; CloudFormation rolls a failed update back, so "
                    "the stack should still be at canary weight 100 with the old production image"
                )
                return EXIT_FAILED
            self.promoted = True
            self.last_good = 0
            self.say("promoted: production runs the canary image, canary weight 0")
        else:
            self.say(f"rollout complete: the stack is at canary weight {steps[-1]}%")
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
            state = " (promoted)" if self.promoted else ""
            self.say(
                f"INTERRUPTED: no further deploy started; the stack is at canary weight "
                f"{self.last_good}{state} (last completed deploy). To take the canary out "
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
    try:
        args = parse_args(parser, argv)
    except UsageError as exc:
        err.write(usage_line("rollout", exc))
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    root = repo_root or PROJECT_ROOT
    rollout = Rollout(
        args=args,
        runner=runner or SubprocessRunner(root),
        cloudwatch=cloudwatch,
        sleep=sleep,
        monotonic=monotonic,
        out=out,
        err=err,
        cloudformation=cloudformation,
    )
    try:
        if args.dry_run:
            return rollout.dry_run(root)
        if rollout.cloudwatch is None or (args.url_from_stack and rollout.cloudformation is None):
            try:
                import boto3

                if rollout.cloudwatch is None:
                    rollout.cloudwatch = boto3.client("cloudwatch")
                if args.url_from_stack and rollout.cloudformation is None:
                    rollout.cloudformation = boto3.client("cloudformation")
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
