"""What the rollout's tests share: a recording runner for `cdk deploy`, a fake clock, a checkout's
cdk.json and source, and a stand-in for CloudFormation's DescribeStacks."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from canary_stack.ops import rollout

STACK = "CrystalCanary"
ALARM_5XX = f"{STACK}-canary-5xx"
ALARM_LATENCY = f"{STACK}-canary-latency"
# Bakes on the alarms alone, as before the probe traffic existed: for the tests whose subject is not
# the probe (test_rollout_probe.py's is), so they need no service to probe and may bake 0 s.
NO_PROBE = ["--probe-rate", "0", "--min-canary-requests", "0"]


def deploy(weight: int) -> list[str]:
    return [
        "node_modules/.bin/cdk",
        "deploy",
        STACK,
        "--require-approval",
        "never",
        "--no-notices",
        "-c",
        f"canaryWeight={weight}",
    ]


class RecordingRunner:
    """Stand-in for the deploy/diff command: records argv, optionally reacts."""

    def __init__(self, on_run: Callable[[list[str]], subprocess.CompletedProcess | None] | None = None):
        self.calls: list[list[str]] = []
        self.on_run = on_run

    def run(self, argv: Sequence[str], *, capture_output: bool = False) -> subprocess.CompletedProcess:
        argv = list(argv)
        self.calls.append(argv)
        result = self.on_run(argv) if self.on_run else None
        if result is not None:
            return result
        stdout = f"diff {argv[-3]} -> {argv[-1]}\n" if "canary_stack.ops.offline_diff" in argv else ""
        return subprocess.CompletedProcess(argv, 0, stdout=stdout, stderr="")

    @property
    def deployed(self) -> list[str]:
        """The canaryWeight of every deploy, in order."""
        return [argv[7].split("=")[1] for argv in self.calls if argv[:2] == ["node_modules/.bin/cdk", "deploy"]]


class FakeClock:
    def __init__(self, on_sleep: Callable[[float], None] | None = None):
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep:
            self.on_sleep(seconds)
        self.now += seconds


# productionImage is required in every cdk.json (canary_stack/config.py); any hash will do here.
PRODUCTION_IMAGE = "0" * 64


def write_cdk_json(root: Path, weight, **more) -> Path:
    context = {"canaryWeight": weight, "trafficRouter": "alb", "productionImage": PRODUCTION_IMAGE, **more}
    (root / "cdk.json").write_text(json.dumps({"app": "x", "context": context}, indent=2) + "\n")
    return root


def write_source(root: Path, commit: str = "CANARY") -> Path:
    """crystal_src/code_hash.txt: the commit the canary's source embeds."""
    (root / "crystal_src").mkdir(exist_ok=True)
    (root / "crystal_src" / "code_hash.txt").write_text(commit + "\n")
    return root


def fire(cloudwatch, name: str) -> None:
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: canary 5xx")


class StackOutputs:
    """Stand-in for a CloudFormation client: DescribeStacks answers with `outputs` (or raises).
    It records how many deploys had run at each call."""

    def __init__(self, outputs: dict[str, str] | Exception, runner: RecordingRunner):
        self.outputs = outputs
        self.runner = runner
        self.calls: list[tuple[int, dict]] = []

    def describe_stacks(self, **kwargs):
        self.calls.append((len(self.runner.deployed), kwargs))
        if isinstance(self.outputs, Exception):
            raise self.outputs
        outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
        return {"Stacks": [{"StackName": kwargs["StackName"], "Outputs": outputs}]}


def run_rollout(argv, *, runner, repo_root: Path, cloudwatch=None, cloudformation=None, clock=None):
    """rollout.main in this process with a fake clock; (exit code, stdout, stderr)."""
    clock = clock or FakeClock()
    out, err = io.StringIO(), io.StringIO()
    code = rollout.main(
        [str(a) for a in argv],
        runner=runner,
        cloudwatch=cloudwatch,
        cloudformation=cloudformation,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        repo_root=repo_root,
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()
