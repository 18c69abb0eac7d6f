"""canary_stack.ops.rollout: CloudWatch via moto, deploys via a recording runner, verify via real servers."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from canary_stack.ops import rollout

STACK = "CrystalCanary"
ALARM_5XX = f"{STACK}-canary-5xx"
ALARM_LATENCY = f"{STACK}-canary-latency"


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


PROMOTE = [
    "node_modules/.bin/cdk",
    "deploy",
    STACK,
    "--require-approval",
    "never",
    "--no-notices",
    "-c",
    "canaryWeight=0",
    "-c",
    "productionImage=canary",
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
        """The canaryWeight of every deploy, in order ('promote' for the promotion)."""
        weights = []
        for argv in self.calls:
            if argv[:2] == ["node_modules/.bin/cdk", "deploy"]:
                weights.append("promote" if "productionImage=canary" in argv else argv[-1].split("=")[1])
        return weights


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


@pytest.fixture
def canary_alarms(aws, put_alarm):
    put_alarm(ALARM_5XX)
    put_alarm(ALARM_LATENCY)
    # Not a canary alarm (other prefix): even in ALARM it must not stop the rollout.
    put_alarm(f"{STACK}-production-5xx")
    aws.set_alarm_state(AlarmName=f"{STACK}-production-5xx", StateValue="ALARM", StateReason="test")
    return aws


def run_rollout(argv, *, runner, cloudwatch=None, clock=None, repo_root=None, cloudformation=None):
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


def fire(cloudwatch, name: str) -> None:
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test: canary 5xx")


# ------------------------------------------------------------------ success


def test_success_deploys_each_step_in_order_with_exact_argv(canary_alarms):
    runner, clock = RecordingRunner(), FakeClock()
    code, out, err = run_rollout(
        ["--steps", "10,25,50,100", "--bake", 60, "--poll", 25], runner=runner, cloudwatch=canary_alarms, clock=clock
    )
    assert code == 0, out + err
    assert runner.calls == [deploy(10), deploy(25), deploy(50), deploy(100)]
    # every bake of 60 s polled at 25 s intervals: 25 + 25 + 10, four times
    assert clock.sleeps == [25, 25, 10] * 4
    assert "step 2/4" in out and "bake 60s left" in out and "bake 0s left" in out
    assert f"{ALARM_5XX}=OK" in out
    assert "production-5xx" not in out  # only canary-prefixed alarms are watched
    assert "the stack is at canary weight 100%" in out


def test_zero_bake_still_checks_alarms_once_per_step(canary_alarms):
    runner, clock = RecordingRunner(), FakeClock()
    code, out, _ = run_rollout(["--steps", "50,100", "--bake", 0], runner=runner, cloudwatch=canary_alarms, clock=clock)
    assert code == 0
    assert clock.sleeps == []
    assert out.count("alarms: ") == 2


def test_promote_at_100_runs_the_promotion_deploy_last(canary_alarms):
    runner = RecordingRunner()
    code, out, _ = run_rollout(["--steps", "50,100", "--bake", 0, "--promote"], runner=runner, cloudwatch=canary_alarms)
    assert code == 0
    assert runner.calls == [deploy(50), deploy(100), PROMOTE]
    assert "promoting" in out and "productionImage=canary" in out


# ------------------------------------------------------------------ rollback


def test_alarm_during_bake_at_25_rolls_back_to_0(canary_alarms):
    runner = RecordingRunner()
    sleeps_at_25: list[float] = []

    def on_sleep(seconds):
        if runner.deployed[-1] == "25":
            sleeps_at_25.append(seconds)
            if len(sleeps_at_25) == 2:
                fire(canary_alarms, ALARM_5XX)

    clock = FakeClock(on_sleep)
    code, out, _ = run_rollout(
        ["--steps", "10,25,50,100", "--bake", 120, "--poll", 30], runner=runner, cloudwatch=canary_alarms, clock=clock
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert sleeps_at_25 == [30, 30]  # detected at the next poll, without waiting out the bake
    assert f"alarm {ALARM_5XX} is in state ALARM" in out
    assert "rolled back: the stack is at canary weight 0" in out
    assert "--promote" not in out and "PROMOT" not in out


def test_alarm_with_promote_never_promotes(canary_alarms):
    runner = RecordingRunner(lambda argv: fire(canary_alarms, ALARM_LATENCY) if argv == deploy(100) else None)
    code, out, _ = run_rollout(["--steps", "50,100", "--bake", 0, "--promote"], runner=runner, cloudwatch=canary_alarms)
    assert code == 1
    assert runner.calls == [deploy(50), deploy(100), deploy(0)]
    assert ALARM_LATENCY in out


def test_verify_failure_rolls_back(canary_alarms, http_server, answers):
    # The router really sends 10 % to the canary: step 10 passes, step 25 must fail.
    server = http_server(answers.every_nth_canary(10))
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10,25,50", "--bake", 0, "--url", server.url, "--verify-requests", 200],
        runner=runner,
        cloudwatch=canary_alarms,
    )
    assert code == 1, out + err
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert server.count == 400
    assert "PASS: expected 10%" in out and "FAIL: expected 25%" in out
    assert "verify at weight 25" in out and "rolled back" in out


def test_unreachable_verify_url_rolls_back(canary_alarms, dead_url):
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10,25", "--bake", 0, "--url", dead_url, "--verify-requests", 20],
        runner=runner,
        cloudwatch=canary_alarms,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(0)]
    assert "could not be measured" in out and "cannot connect" in err


def test_failed_deploy_rolls_back_and_stops(canary_alarms):
    def on_run(argv):
        if argv == deploy(50):
            return subprocess.CompletedProcess(argv, 1, "", "")
        return None

    runner = RecordingRunner(on_run)
    code, out, _ = run_rollout(["--steps", "10,25,50,100", "--bake", 0], runner=runner, cloudwatch=canary_alarms)
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25), deploy(50), deploy(0)]
    assert "deploy of 50 failed (exit 1)" in out


def test_failed_rollback_says_state_is_unknown(canary_alarms):
    def on_run(argv):
        if argv == deploy(25):
            fire(canary_alarms, ALARM_5XX)
        if argv == deploy(0):
            return subprocess.CompletedProcess(argv, 1, "", "")
        return None

    code, out, _ = run_rollout(
        ["--steps", "10,25", "--bake", 0], runner=RecordingRunner(on_run), cloudwatch=canary_alarms
    )
    assert code == 1
    assert "ROLLBACK FAILED" in out and "make deploy WEIGHT=0" in out


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_during_bake_names_last_good_weight_and_deploys_nothing_more(canary_alarms):
    runner = RecordingRunner()

    def on_sleep(_):
        if runner.deployed[-1] == "25":
            raise KeyboardInterrupt

    code, out, _ = run_rollout(
        ["--steps", "10,25,50,100", "--bake", 60, "--poll", 30],
        runner=runner,
        cloudwatch=canary_alarms,
        clock=FakeClock(on_sleep),
    )
    assert code == 130
    assert runner.calls == [deploy(10), deploy(25)]
    last = out.splitlines()[-1]
    assert "INTERRUPTED" in last and "canary weight 25" in last


def test_ctrl_c_during_deploy_says_state_unknown_and_what_to_run(canary_alarms):
    def on_run(argv):
        if argv == deploy(50):
            raise KeyboardInterrupt
        return None

    runner = RecordingRunner(on_run)
    code, out, _ = run_rollout(["--steps", "10,25,50,100", "--bake", 0], runner=runner, cloudwatch=canary_alarms)
    assert code == 130
    assert runner.calls == [deploy(10), deploy(25), deploy(50)]  # no rollback deploy started
    last = out.splitlines()[-1]
    assert "unknown: deploy of 50 was interrupted" in last
    assert "make deploy WEIGHT=25" in last


def test_ctrl_c_during_first_deploy_advises_weight_0(canary_alarms):
    def on_run(argv):
        raise KeyboardInterrupt

    code, out, _ = run_rollout(
        ["--steps", "10,25", "--bake", 0], runner=RecordingRunner(on_run), cloudwatch=canary_alarms
    )
    assert code == 130
    assert "unknown: deploy of 10 was interrupted" in out and "make deploy WEIGHT=0" in out


def test_ctrl_c_during_rollback_advises_weight_0_not_the_failed_weight(canary_alarms):
    def on_run(argv):
        if argv == deploy(25):
            fire(canary_alarms, ALARM_5XX)
        if argv == deploy(0):
            raise KeyboardInterrupt
        return None

    runner = RecordingRunner(on_run)
    code, out, _ = run_rollout(["--steps", "10,25", "--bake", 0], runner=runner, cloudwatch=canary_alarms)
    assert code == 130
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert "unknown: deploy of 0 was interrupted" in out and "make deploy WEIGHT=0" in out


def test_ctrl_c_during_verify_is_an_interrupt_not_a_rollback(canary_alarms, http_server, answers):
    # A real SIGINT, sent while verify's requests are in flight at step 2.
    at_step_2 = threading.Event()

    def answer(n):
        if n == 10:  # the first request of the second verify
            at_step_2.set()
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.3)  # keep the main thread waiting for answers
        return answers.every_nth_canary(10)(n)

    server = http_server(answer)
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10,20,50", "--bake", 0, "--url", server.url, "--verify-requests", 10],
        runner=runner,
        cloudwatch=canary_alarms,
    )
    assert at_step_2.is_set()
    assert code == 130, out + err
    assert runner.calls == [deploy(10), deploy(20)]  # neither a rollback nor the next step
    assert "verify: interrupted" in err
    assert "canary weight 20" in out.splitlines()[-1]


# ------------------------------------------------------------ preconditions


def test_no_canary_alarms_is_an_error_before_any_deploy(aws, put_alarm):
    put_alarm(f"{STACK}-production-5xx")  # exists, but is not a canary alarm
    runner = RecordingRunner()
    code, out, err = run_rollout(["--steps", "10,100", "--bake", 0], runner=runner, cloudwatch=aws)
    assert code == 2
    assert runner.calls == []
    assert err.strip() == (
        f"rollout: error: no canary alarms found for prefix {STACK}-canary-; an unmonitored rollout must not proceed"
    )


def test_alarm_prefix_follows_stack_name(aws, put_alarm):
    put_alarm("Other-canary-5xx")
    runner = RecordingRunner()
    code, _, err = run_rollout(["--steps", "10", "--bake", 0], runner=runner, cloudwatch=aws)
    assert code == 2 and "CrystalCanary-canary-" in err
    code, _, _ = run_rollout(["--steps", "10", "--bake", 0, "--stack-name", "Other"], runner=runner, cloudwatch=aws)
    assert code == 0
    assert runner.calls[0][2] == "Other"


def test_alarm_already_firing_refuses_to_start(canary_alarms):
    fire(canary_alarms, ALARM_LATENCY)
    runner = RecordingRunner()
    code, _, err = run_rollout(["--steps", "10,100", "--bake", 0], runner=runner, cloudwatch=canary_alarms)
    assert code == 2
    assert runner.calls == []
    assert ALARM_LATENCY in err and "already in state ALARM" in err


# ------------------------------------------------------------------ dry run


def write_cdk_json(root: Path, weight) -> Path:
    # productionImage is required in every cdk.json (canary_stack/config.py); any hash will do here.
    context = {"canaryWeight": weight, "productionImage": "0" * 64}
    (root / "cdk.json").write_text(json.dumps({"app": "x", "context": context}))
    return root


def test_dry_run_records_only_diffs_from_committed_weight(tmp_path):
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "25,50,100", "--bake", 300, "--dry-run", "--promote"],
        runner=runner,
        repo_root=write_cdk_json(tmp_path, 10),
    )
    assert code == 0, err
    diff = [sys.executable, "-m", "canary_stack.ops.offline_diff"]
    assert runner.calls == [
        diff + ["--from", "10", "--to", "25"],
        diff + ["--from", "25", "--to", "50"],
        diff + ["--from", "50", "--to", "100"],
    ]
    assert runner.deployed == []
    assert "committed weight (cdk.json): 10" in out
    assert "step 1/3: canaryWeight=25, bake 300s" in out
    assert "diff 10 -> 25\n" in out and "diff 50 -> 100\n" in out  # the diff output is shown
    assert "promote" in out


def test_dry_run_without_weight_in_cdk_json_starts_from_0(tmp_path):
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "x", "context": {"productionImage": "0" * 64}}))
    runner = RecordingRunner()
    code, _, _ = run_rollout(["--steps", "10", "--bake", 0, "--dry-run"], runner=runner, repo_root=tmp_path)
    assert code == 0
    assert runner.calls[0][-4:] == ["--from", "0", "--to", "10"]


def test_dry_run_diff_failure_prints_its_stderr_and_exits_2(tmp_path):
    def on_run(argv):
        if argv[-1] == "50":
            return subprocess.CompletedProcess(argv, 1, "", "synth failed: boom\n")
        return None

    runner = RecordingRunner(on_run)
    code, _, err = run_rollout(
        ["--steps", "10,50,100", "--bake", 0, "--dry-run"], runner=runner, repo_root=write_cdk_json(tmp_path, 0)
    )
    assert code == 2
    assert len(runner.calls) == 2
    assert "synth failed: boom" in err and "offline diff 10 -> 50 failed (exit 1)" in err


def test_dry_run_rejects_bad_committed_weight(tmp_path):
    code, _, err = run_rollout(
        ["--steps", "10", "--bake", 0, "--dry-run"],
        runner=RecordingRunner(),
        repo_root=write_cdk_json(tmp_path, "lots"),
    )
    assert code == 2 and "canaryWeight" in err and "'lots'" in err


# -------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--steps", "10,5", "--bake", "0"], ["--steps", "5 follows 10", "0 to 100"]),
        (["--steps", "10,10", "--bake", "0"], ["--steps", "10 follows 10"]),
        (["--steps", "10,abc", "--bake", "0"], ["--steps", "'abc'"]),
        (["--steps", "10,101", "--bake", "0"], ["--steps", "'101'", "0 to 100"]),
        (["--steps=-5,10", "--bake", "0"], ["--steps", "'-5'"]),
        (["--steps", "", "--bake", "0"], ["--steps", "''"]),
        (["--steps", "10", "--bake", "-1"], ["--bake", "'-1'", "0 or more"]),
        (["--steps", "10", "--bake", "0", "--poll", "0"], ["--poll", "'0'", "greater than 0"]),
        (["--steps", "10,50", "--bake", "0", "--promote"], ["--promote", "100", "50"]),
        (["--steps", "10", "--bake", "0", "--url", "http://x"], ["--url", "--verify-requests"]),
        (["--steps", "10", "--bake", "0", "--verify-requests", "5"], ["--verify-requests", "--url"]),
        (["--steps", "10", "--bake", "0", "--url-from-stack"], ["--url-from-stack", "--verify-requests"]),
        (
            ["--steps", "10", "--bake", "0", "--url", "http://x", "--url-from-stack", "--verify-requests", "5"],
            ["--url-from-stack", "not allowed with --url"],
        ),
        (["--steps", "10", "--bake", "0", "--url", "http://x", "--verify-requests", "0"], ["--verify-requests", "'0'"]),
        (["--steps", "10", "--bake", "0", "--stack-name", "bad name"], ["--stack-name", "'bad name'"]),
        (["--bake", "0"], ["--steps"]),
        (["--steps", "10", "--bake", "0", "--max-duration", "0"], ["--max-duration", "'0'", "greater than 0"]),
        (["--steps", "10,50", "--bake", "3600", "--max-duration", "9899"], ["--max-duration", "9900s", "9899s"]),
        (["--steps", "10", "--bake", "0", "--max-duration", "1e400"], ["--max-duration", "'1e400'"]),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, fragments):
    runner = RecordingRunner()
    code, out, err = run_rollout(argv, runner=runner)
    assert code == 2
    assert runner.calls == []
    lines = err.splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0]


def test_subprocess_runner_runs_from_repo_root(tmp_path):
    runner = rollout.SubprocessRunner(tmp_path)
    result = runner.run([sys.executable, "-c", "import os; print(os.getcwd())"], capture_output=True)
    assert result.returncode == 0
    assert Path(result.stdout.strip()) == tmp_path


# ------------------------------------------------------------ time budget


def test_max_duration_counts_every_bake_and_a_deploy_allowance_per_step_and_rollback(canary_alarms):
    # 2 bakes of 3600 s + 3 deploys (10, 50 and a possible rollback) of DEPLOY_ALLOWANCE each.
    budget = 2 * 3600 + 3 * rollout.DEPLOY_ALLOWANCE
    runner = RecordingRunner()
    code, _, err = run_rollout(
        ["--steps", "10,50", "--bake", 3600, "--poll", 3600, "--max-duration", f"{budget:g}"],
        runner=runner,
        cloudwatch=canary_alarms,
    )
    assert code == 0, err
    assert runner.calls == [deploy(10), deploy(50)]


def test_max_duration_refuses_a_dry_run_too_so_ci_says_so_before_approval(tmp_path):
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10,50,100", "--bake", 3600, "--dry-run", "--max-duration", 3600],
        runner=runner,
        repo_root=write_cdk_json(tmp_path, 0),
    )
    assert code == 2
    assert runner.calls == [] and out == ""
    assert err.startswith("rollout: error: argument --max-duration: 3 steps baking 3600s each")


# ------------------------------------------------------- URL from the stack


class StackOutputs:
    """Stand-in for a CloudFormation client: DescribeStacks answers with `outputs` (or raises)."""

    def __init__(self, outputs: dict[str, str] | Exception):
        self.outputs = outputs
        self.calls: list[dict] = []

    def describe_stacks(self, **kwargs):
        self.calls.append(kwargs)
        if isinstance(self.outputs, Exception):
            raise self.outputs
        outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]
        return {"Stacks": [{"StackName": kwargs["StackName"], "Outputs": outputs}]}


def test_url_from_stack_verifies_each_step_against_the_stack_s_url_output(canary_alarms, http_server, answers):
    server = http_server(answers.every_nth_canary(10))
    stack = StackOutputs({"Url": server.url, "CanaryWeight": "0"})
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10,25", "--bake", 0, "--verify-requests", 100, "--url-from-stack"],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=stack,
    )
    assert code == 1, out + err
    assert stack.calls == [{"StackName": STACK}]  # read once, before the first deploy
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert f"verifying the split at {server.url}" in out
    assert "PASS: expected 10%" in out and "verify at weight 25" in out


@pytest.mark.parametrize(
    "outputs, fragment",
    [
        ({"CanaryWeight": "0"}, "has no 'Url' output"),
        ({"Url": "ftp://x"}, "'Url' output of stack CrystalCanary must be an http"),
        (RuntimeError("AccessDenied: not authorized to perform cloudformation:DescribeStacks"), "AccessDenied"),
    ],
)
def test_url_from_stack_that_cannot_be_read_is_refused_before_any_deploy(canary_alarms, outputs, fragment):
    runner = RecordingRunner()
    code, _, err = run_rollout(
        ["--steps", "10", "--bake", 0, "--verify-requests", 10, "--url-from-stack"],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=StackOutputs(outputs),
    )
    assert code == 2
    assert runner.calls == []
    assert len(err.splitlines()) == 1 and fragment in err
