"""The rollout's step loop: deploy a weight, bake it under probe traffic while watching the canary
alarms, verify the split, and roll back to weight 0 on any failure inside a step."""

from __future__ import annotations

import argparse
import math
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from canary_stack.constants import PROJECT_ROOT, canary_alarm_prefix
from canary_stack.ops import plan, verify
from canary_stack.ops.cdk_cli import deploy_argv as cdk_deploy_argv
from canary_stack.ops.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError, one_line
from canary_stack.ops.cloud import StackFacts, alarm_states, describe_stack
from canary_stack.ops.probe import Watchdog, fetch, message
from canary_stack.ops.report import shown
from canary_stack.ops.traffic import BakeTraffic, Fetcher, Prober
from canary_stack.ops.urls import api_url
from canary_stack.ops.versions import TRAFFIC_ROUTER_OUTPUT, URL_OUTPUT, UnknownCanary, Versions, resolve

ALARM = "ALARM"
# Lattice applies a weight change asynchronously: ECS's own Lattice deployments wait "approximately
# 90 seconds after each weight change" for it to reach the data plane
# (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/vpc-lattice-resources-for-blue-green.html).
# verify measures no earlier than this after a step's deploy.
LATTICE_PROPAGATION_SECONDS = 90.0
LATTICE = "lattice"

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


def deploy_argv(stack: str, weight: int, context: dict[str, str] | None = None) -> list[str]:
    return cdk_deploy_argv(stack, {"canaryWeight": str(weight), **(context or {})})


class CheckFailed(Exception):
    """The canary failed a check: roll back."""


class DeployFailed(Exception):
    pass


class NothingChanged(DeployFailed):
    """The deploy failed before CloudFormation changed the stack: there is nothing to roll back."""


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
    root: Path = PROJECT_ROOT  # the checkout deployed, whose source says the canary's commit
    fetcher: Fetcher = fetch  # the probe traffic's requests
    facts: StackFacts | None = None  # DescribeStacks' last answer
    fresh: bool = False  # `facts` was read after the last deploy (or before the first)
    versions: Versions | None = None  # which answers are the canary's, since the last deploy
    settles_at: float | None = None  # lattice: when the last weight change has reached the data plane

    @property
    def prefix(self) -> str:
        return canary_alarm_prefix(self.args.stack_name)

    @property
    def probing(self) -> bool:
        return getattr(self.args, "probe_rate", 0) > 0

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    # -- AWS -----------------------------------------------------------------

    def read_stack(self) -> StackFacts | None:
        """The stack's facts now, or None when they cannot be read."""
        if self.cloudformation is None:
            return None
        try:
            self.facts = describe_stack(self.cloudformation, self.args.stack_name)
        except Exception:  # botocore raises many unrelated types; all mean "unknown"
            return None
        return self.facts

    def stack_url(self) -> str:
        """The stack's Url output, checked like --url; any failure is a precondition (exit 2)."""
        stack = self.args.stack_name
        try:
            self.facts = describe_stack(self.cloudformation, stack)
        except Exception as err:  # botocore raises many unrelated types; all mean "cannot read"
            raise UsageError(f"cannot read the outputs of stack {stack}: {one_line(err)}") from None
        self.fresh = True
        outputs = self.facts.outputs
        if URL_OUTPUT not in outputs:
            raise UsageError(f"stack {stack} has no {URL_OUTPUT!r} output to probe and verify against")
        try:
            return verify.parse_url(outputs[URL_OUTPUT])
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"the {URL_OUTPUT!r} output of stack {stack} {err}") from None

    # -- deploys -------------------------------------------------------------

    def deploy(self, argv: list[str], what: str) -> None:
        self.say("$ " + " ".join(argv))
        known = self.facts if self.fresh else self.read_stack()
        before = known.state if known is not None else None
        self.fresh = False
        self.deploying = what
        try:
            result = self.runner.run(argv)
        except OSError as err:
            raise NothingChanged(f"deploy of {what} could not start: {one_line(err)}") from None
        if result.returncode != 0:
            after = self.read_stack()
            if before is not None and after is not None and after.state == before:
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

    def deployed(self) -> None:
        """After a step's deploy: what the stack now runs, and when its weights take effect."""
        if not (self.probing or self.args.verify_requests is not None):
            return
        facts = self.read_stack()
        self.fresh = facts is not None
        outputs = facts.outputs if facts is not None else {}
        try:
            self.versions = resolve(self.args.canary_commit, outputs, self.root)
        except UnknownCanary as err:
            raise CheckFailed(str(err)) from None
        v = self.versions
        images = (
            f"; images: canary {shown(v.canary_image)}, production {shown(v.production_image or '')}"
            if v.canary_image is not None
            else ""
        )
        self.say(f"  the canary answers commit {shown(v.canary_commit)} (from {v.source}){images}")
        if outputs.get(TRAFFIC_ROUTER_OUTPUT, getattr(self.args, "router", None)) == LATTICE:
            self.settles_at = self.monotonic() + LATTICE_PROPAGATION_SECONDS

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
        except Exception as err:  # DeployFailed, or anything unforeseen: the weight is unknown
            self.say(f"ROLLBACK FAILED: {failure(err)}; the stack's weight is unknown, run `make deploy WEIGHT=0`")
            return EXIT_FAILED
        self.say(f"rolled back: the stack is at canary weight 0 (reason: {reason})")
        return EXIT_FAILED

    # -- checks --------------------------------------------------------------

    def check_alarms(self, label: str) -> bool:
        """Poll once; raise CheckFailed on ALARM. Returns False if the alarms could not be read."""
        try:
            states = alarm_states(self.cloudwatch, self.prefix)
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

    def prober(self) -> Prober | None:
        if not self.probing or self.versions is None:
            return None
        return Prober(
            api_url(self.args.url),
            rate=self.args.probe_rate,
            limit=self.args.probe_limit,
            canary_commit=self.versions.canary_commit,
            timeout=verify.DEFAULT_TIMEOUT,
            fetcher=self.fetcher,
        )

    def bake(self, index: int, total: int, weight: int) -> None:
        start = self.monotonic()
        deadline, next_poll = start + self.args.bake, start
        prober = self.prober()
        try:
            while True:
                now = self.monotonic()
                if now >= next_poll or now >= deadline:
                    remaining = max(0.0, deadline - now)
                    label = f"[step {index}/{total} weight {weight}%] bake {math.ceil(remaining)}s left"
                    if prober is not None:
                        prober.collect()
                        label += f"; canary answers to the probe: {prober.traffic.evidence}"
                    readable = self.check_alarms(label)
                    next_poll = now + self.args.poll
                    if remaining <= 0:
                        break
                wake = min(next_poll, deadline)
                next_tick = prober.send_due(now) if prober is not None else None
                self.sleep(max(0.0, min(wake, next_tick if next_tick is not None else wake) - self.monotonic()))
        except BaseException:
            Watchdog.cancel_all()  # the probe's requests in flight end now; the step is over
            raise
        traffic = prober.finish() if prober is not None else None
        if not readable:
            raise CheckFailed(f"alarm states could not be read at the end of the bake at weight {weight}")
        if traffic is not None:
            self.say(f"  probe traffic at weight {weight}%: {traffic.describe()}")
        self.check_evidence(traffic, weight)

    def check_evidence(self, traffic: BakeTraffic | None, weight: int) -> None:
        need = getattr(self.args, "min_canary_requests", 0)
        got = traffic.evidence if traffic is not None else 0
        if got < need:
            commit = f" carrying {shown(traffic.canary_commit)}" if traffic is not None else ""
            raise CheckFailed(
                f"no evidence at weight {weight}%: the bake saw {got} canary requests (header-path answers{commit}), "
                f"fewer than --min-canary-requests {need}; alarms without traffic prove nothing"
            )

    def wait_for_weights(self) -> None:
        if self.settles_at is None:
            return
        left = self.settles_at - self.monotonic()
        if left > 0:
            self.say(
                f"  waiting {math.ceil(left)}s more for VPC Lattice to apply the weights "
                f"(about {LATTICE_PROPAGATION_SECONDS:g}s after each change) before verify measures"
            )
            self.sleep(left)

    def verify(self, weight: int) -> None:
        if self.args.verify_requests is None:
            return
        self.wait_for_weights()
        versions = self.versions or resolve(self.args.canary_commit, {}, self.root)
        self.say(f"  verifying the split at {self.args.url}: {self.args.verify_requests} requests, expecting {weight}%")
        argv = [self.args.url, "--requests", str(self.args.verify_requests), "--expect", str(weight)]
        code = verify.main(argv + versions.verify_argv(), stdout=self.out, stderr=self.err, root=self.root)
        if code == verify.EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code == verify.EXIT_UNMEASURABLE:
            # Both versions answer alike (after a promotion): no evidence against the canary either.
            self.say(
                f"  NOTE: the split at weight {weight}% cannot be measured (verify's line above); "
                "that is not evidence of a bad canary: this step is judged by its alarms and probe traffic"
            )
            return
        if code == verify.EXIT_OUTSIDE:
            raise CheckFailed(
                f"verify at weight {weight}: the measured canary share does not match {weight}% (verify's FAIL line above)"
            )
        if code != verify.EXIT_OK:
            raise CheckFailed(f"verify at weight {weight}: the service could not be measured (verify exit {code})")

    # -- flow ----------------------------------------------------------------

    def preflight(self) -> None:
        try:
            states = alarm_states(self.cloudwatch, self.prefix)
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
        needs_service = self.probing or self.args.verify_requests is not None
        if self.args.url is None and (needs_service or self.args.url_from_stack):
            self.args.url = self.stack_url()
        if needs_service:  # something must say which answers are the canary's, before anything is deployed
            try:
                resolve(self.args.canary_commit, self.facts.outputs if self.facts else {}, self.root)
            except UnknownCanary as err:
                raise UsageError(str(err)) from None

    def print_plan(self, dry_run: bool, committed: int | None = None) -> None:
        watched = ", ".join(self.alarm_names) if self.alarm_names else f"{self.prefix}*"
        for line in plan.plan_lines(
            self.args, watched=watched, probing=self.probing, dry_run=dry_run, committed=committed
        ):
            self.say(line)

    def dry_run(self, repo_root: Path) -> int:
        committed = getattr(self.args, "committed", None)
        committed = plan.committed_weight(repo_root) if committed is None else committed
        self.print_plan(dry_run=True, committed=committed)
        return plan.diff_steps(self.args, committed, self.runner, self.out, self.err)

    def run(self) -> int:
        self.preflight()
        self.print_plan(dry_run=False)
        steps = self.args.steps
        weight = steps[0]
        try:
            for i, weight in enumerate(steps, 1):
                self.say(f"== step {i}/{len(steps)}: canary weight {weight}% ==")
                self.deploy_weight(weight)
                self.deployed()
                self.bake(i, len(steps), weight)
                self.verify(weight)
                self.say(f"step {i}/{len(steps)} passed: canary weight {weight}%")
        except NothingChanged as err:
            return self.nothing_changed(str(err))
        except (DeployFailed, CheckFailed) as err:
            return self.rollback(str(err))
        except Exception as err:  # whatever it is, the canary is at a weight nothing vouched for
            return self.rollback(f"unexpected failure in the step at weight {weight}%: {failure(err)}")
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


def failure(err: BaseException) -> str:
    """An exception as one line: its message for the tool's own errors, its type for the rest."""
    if isinstance(err, (DeployFailed, CheckFailed)):
        return one_line(err)
    return f"{type(err).__name__}: {message(err)}"
