"""canary_stack.ops.rollout: CloudWatch via moto, deploys via a recording runner, verify via real servers."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.alarms import put_alarm

from canary_stack.ops import rollout
from tools.rollout_harness import (
    ALARM_5XX,
    ALARM_LATENCY,
    NO_PROBE,
    PRODUCTION_IMAGE,
    STACK,
    FakeClock,
    RecordingRunner,
    StackOutputs,
    deploy,
    fire,
    write_cdk_json,
    write_source,
)
from tools.rollout_harness import (
    run_rollout as harness_run,
)


@pytest.fixture
def canary_alarms(aws, put_alarm):
    put_alarm(ALARM_5XX)
    put_alarm(ALARM_LATENCY)
    # Not a canary alarm (other prefix): even in ALARM it must not stop the rollout.
    put_alarm(f"{STACK}-production-5xx")
    aws.set_alarm_state(AlarmName=f"{STACK}-production-5xx", StateValue="ALARM", StateReason="test")
    return aws


@pytest.fixture(autouse=True)
def alb_checkout(tmp_path_factory) -> Path:
    """A checkout whose cdk.json commits the ALB router (App Mesh cannot be deployed) at weight 0."""
    root = tmp_path_factory.mktemp("checkout")
    write_cdk_json(root, 0)
    write_source(root)  # the canary's source answers CANARY, as the servers here do
    CHECKOUT[:] = [root]
    return root


CHECKOUT: list[Path] = []


def run_rollout(argv, *, runner, cloudwatch=None, cloudformation=None, clock=None, repo_root=None):
    return harness_run(
        argv,
        runner=runner,
        repo_root=repo_root or CHECKOUT[0],
        cloudwatch=cloudwatch,
        cloudformation=cloudformation,
        clock=clock,
    )


# ------------------------------------------------------------------ success


def test_success_deploys_each_step_in_order_with_exact_argv(canary_alarms):
    runner, clock = RecordingRunner(), FakeClock()
    code, out, err = run_rollout(
        ["--steps", "10,25,50,100", "--bake", 60, "--poll", 25, *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        clock=clock,
    )
    assert code == 0, out + err
    assert runner.calls == [deploy(10), deploy(25), deploy(50), deploy(100)]
    # every bake of 60 s polled at 25 s intervals: 25 + 25 + 10, four times
    assert clock.sleeps == [25, 25, 10] * 4
    assert "step 2/4" in out and "bake 60s left" in out and "bake 0s left" in out
    assert f"{ALARM_5XX}=OK" in out
    assert "production-5xx" not in out  # only canary-prefixed alarms are watched
    assert "the stack is at canary weight 100%" in out
    # Production changes only through git: the rollout says how, and deploys nothing more.
    assert "the canary serves 100% of the traffic" in out
    assert "next: `make promote`" in out and "`git commit`" in out


def test_a_rollout_that_stops_below_100_does_not_suggest_promote(canary_alarms):
    code, out, _ = run_rollout(
        ["--steps", "10,50", "--bake", 0, *NO_PROBE], runner=RecordingRunner(), cloudwatch=canary_alarms
    )
    assert code == 0
    assert out.splitlines()[-1] == "rollout complete: the stack is at canary weight 50%"
    assert "`make promote`" not in out


def test_context_goes_to_every_deploy_and_the_rollback(canary_alarms):
    runner = RecordingRunner(lambda argv: fire(canary_alarms, ALARM_5XX) if argv[7] == "canaryWeight=50" else None)
    code, _, _ = run_rollout(
        ["--steps", "10,50", "--bake", 0, "-c", "stickySeconds=30", *NO_PROBE], runner=runner, cloudwatch=canary_alarms
    )
    assert code == 1
    assert runner.calls == [deploy(w) + ["-c", "stickySeconds=30"] for w in (10, 50, 0)]


def test_zero_bake_still_checks_alarms_once_per_step(canary_alarms):
    runner, clock = RecordingRunner(), FakeClock()
    code, out, _ = run_rollout(
        ["--steps", "50,100", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=canary_alarms, clock=clock
    )
    assert code == 0
    assert clock.sleeps == []
    assert out.count("alarms: ") == 2


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
        ["--steps", "10,25,50,100", "--bake", 120, "--poll", 30, *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        clock=clock,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert sleeps_at_25 == [30, 30]  # detected at the next poll, without waiting out the bake
    assert f"alarm {ALARM_5XX} is in state ALARM" in out
    assert "rolled back: the stack is at canary weight 0" in out
    assert "next: `make promote`" not in out


def test_alarm_at_100_rolls_back_and_never_suggests_promote(canary_alarms):
    runner = RecordingRunner(lambda argv: fire(canary_alarms, ALARM_LATENCY) if argv == deploy(100) else None)
    code, out, _ = run_rollout(["--steps", "50,100", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=canary_alarms)
    assert code == 1
    assert runner.calls == [deploy(50), deploy(100), deploy(0)]
    assert ALARM_LATENCY in out and "next: `make promote`" not in out


def test_verify_failure_rolls_back(canary_alarms, http_server, answers):
    # The router really sends 10 % to the canary: step 10 passes, step 25 must fail.
    server = http_server(answers.every_nth_canary(10))
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10,25,50", "--bake", 0, "--url", server.url, "--verify-requests", 200, *NO_PROBE],
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
        ["--steps", "10,25", "--bake", 0, "--url", dead_url, "--verify-requests", 20, *NO_PROBE],
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
    code, out, _ = run_rollout(
        ["--steps", "10,25,50,100", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=canary_alarms
    )
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
        ["--steps", "10,25", "--bake", 0, *NO_PROBE], runner=RecordingRunner(on_run), cloudwatch=canary_alarms
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
        ["--steps", "10,25,50,100", "--bake", 60, "--poll", 30, *NO_PROBE],
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
    code, out, _ = run_rollout(
        ["--steps", "10,25,50,100", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=canary_alarms
    )
    assert code == 130
    assert runner.calls == [deploy(10), deploy(25), deploy(50)]  # no rollback deploy started
    last = out.splitlines()[-1]
    assert "unknown: deploy of 50 was interrupted" in last
    assert "make deploy WEIGHT=25" in last


def test_ctrl_c_during_first_deploy_advises_weight_0(canary_alarms):
    def on_run(argv):
        raise KeyboardInterrupt

    code, out, _ = run_rollout(
        ["--steps", "10,25", "--bake", 0, *NO_PROBE], runner=RecordingRunner(on_run), cloudwatch=canary_alarms
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
    code, out, _ = run_rollout(["--steps", "10,25", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=canary_alarms)
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
        ["--steps", "10,20,50", "--bake", 0, "--url", server.url, "--verify-requests", 10, *NO_PROBE],
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
    code, out, err = run_rollout(["--steps", "10,100", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=aws)
    assert code == 2
    assert runner.calls == []
    assert err.strip() == (
        f"rollout: error: no canary alarms found for prefix {STACK}-canary-; an unmonitored rollout must not proceed"
    )


def test_alarm_prefix_follows_stack_name(aws, put_alarm):
    put_alarm("Other-canary-5xx")
    runner = RecordingRunner()
    code, _, err = run_rollout(["--steps", "10", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=aws)
    assert code == 2 and "CrystalCanary-canary-" in err
    code, _, _ = run_rollout(
        ["--steps", "10", "--bake", 0, "--stack-name", "Other", *NO_PROBE], runner=runner, cloudwatch=aws
    )
    assert code == 0
    assert runner.calls[0][2] == "Other"


def test_alarm_already_firing_refuses_to_start(canary_alarms):
    fire(canary_alarms, ALARM_LATENCY)
    runner = RecordingRunner()
    code, _, err = run_rollout(["--steps", "10,100", "--bake", 0, *NO_PROBE], runner=runner, cloudwatch=canary_alarms)
    assert code == 2
    assert runner.calls == []
    assert ALARM_LATENCY in err and "already in state ALARM" in err


# ------------------------------------------------------------------ dry run


def test_dry_run_records_only_diffs_from_committed_weight(tmp_path):
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "25,50,100", "--bake", 300, "--dry-run"],
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
    assert "after the last step: `make promote`" in out


def test_dry_run_diffs_the_rolled_out_stack_with_the_same_context(tmp_path):
    runner = RecordingRunner()
    code, _, err = run_rollout(
        ["--steps", "10", "--bake", 0, "--dry-run", "--stack-name", "Other", "-c", "stickySeconds=30", *NO_PROBE],
        runner=runner,
        repo_root=write_cdk_json(tmp_path, 0),
    )
    assert code == 0, err
    assert runner.calls == [
        [sys.executable, "-m", "canary_stack.ops.offline_diff", "--from", "0", "--to", "10"]
        + ["--stack-name", "Other", "-c", "stickySeconds=30"]
    ]


def test_dry_run_of_a_committed_10_0_starts_at_10_as_the_cli_hands_it_over(tmp_path):
    context = f'"canaryWeight": 10.0, "trafficRouter": "alb", "productionImage": "{PRODUCTION_IMAGE}"'
    (tmp_path / "cdk.json").write_text('{"context": {' + context + "}}\n")
    runner = RecordingRunner()
    code, _, err = run_rollout(
        ["--steps", "50", "--bake", 0, "--dry-run", *NO_PROBE], runner=runner, repo_root=tmp_path
    )
    assert code == 0, err
    assert runner.calls[0][-4:] == ["--from", "10", "--to", "50"]


def test_dry_run_without_weight_in_cdk_json_starts_from_0(tmp_path):
    context = {"trafficRouter": "alb", "productionImage": PRODUCTION_IMAGE}
    (tmp_path / "cdk.json").write_text(json.dumps({"app": "x", "context": context}))
    runner = RecordingRunner()
    code, _, _ = run_rollout(["--steps", "10", "--bake", 0, "--dry-run", *NO_PROBE], runner=runner, repo_root=tmp_path)
    assert code == 0
    assert runner.calls[0][-4:] == ["--from", "0", "--to", "10"]


def test_dry_run_diff_failure_prints_its_stderr_and_exits_2(tmp_path):
    def on_run(argv):
        if argv[-1] == "50":
            return subprocess.CompletedProcess(argv, 1, "", "synth failed: boom\n")
        return None

    runner = RecordingRunner(on_run)
    code, _, err = run_rollout(
        ["--steps", "10,50,100", "--bake", 0, "--dry-run", *NO_PROBE],
        runner=runner,
        repo_root=write_cdk_json(tmp_path, 0),
    )
    assert code == 2
    assert len(runner.calls) == 2
    assert "synth failed: boom" in err and "offline diff 10 -> 50 failed (exit 1)" in err


def test_dry_run_rejects_bad_committed_weight(tmp_path):
    code, _, err = run_rollout(
        ["--steps", "10", "--bake", 0, "--dry-run", *NO_PROBE],
        runner=RecordingRunner(),
        repo_root=write_cdk_json(tmp_path, "lots"),
    )
    assert code == 2 and "canaryWeight" in err and "'lots'" in err


# -------------------------------------------------------------- arguments


def test_subprocess_runner_runs_from_repo_root(tmp_path):
    runner = rollout.SubprocessRunner(tmp_path)
    result = runner.run([sys.executable, "-c", "import os; print(os.getcwd())"], capture_output=True)
    assert result.returncode == 0
    assert Path(result.stdout.strip()) == tmp_path


# ------------------------------------------- a deploy that never reached CloudFormation


def stack_page(status: str, changed: datetime.datetime) -> dict:
    created = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
    stack = {"StackName": STACK, "StackStatus": status, "CreationTime": created, "LastUpdatedTime": changed}
    return {"Stacks": [stack]}


@pytest.fixture
def cloudformation(aws):
    """A real botocore CloudFormation client whose DescribeStacks answers are queued with Stubber
    (it checks every request and answer against the API's model). moto's CloudFormation backend
    needs packages the project does not install."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(client) as stubber:
        client.stubber = stubber
        yield client
        stubber.assert_no_pending_responses()


def queue_states(cloudformation, *states: tuple[str, int]) -> None:
    for status, minute in states:
        changed = datetime.datetime(2026, 11, 27, 2, minute, tzinfo=datetime.UTC)
        cloudformation.stubber.add_response("describe_stacks", stack_page(status, changed), {"StackName": STACK})


def test_a_deploy_that_failed_before_cloudformation_is_not_rolled_back(canary_alarms, cloudformation):
    # e.g. no credentials: the CLI fails before any change set, the stack is as it was.
    runner = RecordingRunner(lambda argv: subprocess.CompletedProcess(argv, 1) if argv == deploy(25) else None)
    queue_states(cloudformation, ("UPDATE_COMPLETE", 1), ("UPDATE_COMPLETE", 5), ("UPDATE_COMPLETE", 5))
    code, out, _ = run_rollout(
        ["--steps", "10,25,50", "--bake", 0, *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=cloudformation,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25)]  # no rollback deploy that would fail the same way
    assert "deploy of 25 failed (exit 1) before CloudFormation changed the stack (still UPDATE_COMPLETE" in out
    assert out.splitlines()[-1] == (
        "nothing changed, so nothing is rolled back: the stack is still at canary weight 10 (the last step that passed)"
    )
    assert "unknown" not in out


def test_a_first_deploy_that_changed_nothing_leaves_the_weight_from_before(canary_alarms, cloudformation):
    runner = RecordingRunner(lambda argv: subprocess.CompletedProcess(argv, 1))
    queue_states(cloudformation, ("UPDATE_COMPLETE", 1), ("UPDATE_COMPLETE", 1))
    code, out, _ = run_rollout(
        ["--steps", "10,25", "--bake", 0, *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=cloudformation,
    )
    assert code == 1 and runner.calls == [deploy(10)]
    assert out.splitlines()[-1].endswith("the stack is still at the weight it had before this rollout")


def test_a_deploy_that_cloudformation_rolled_back_is_followed_by_the_rollback_to_0(canary_alarms, cloudformation):
    runner = RecordingRunner(lambda argv: subprocess.CompletedProcess(argv, 1) if argv == deploy(25) else None)
    queue_states(
        cloudformation,
        ("UPDATE_COMPLETE", 1),  # before 10
        ("UPDATE_COMPLETE", 5),  # before 25
        ("UPDATE_ROLLBACK_COMPLETE", 9),  # after 25 failed: CloudFormation did work
        ("UPDATE_ROLLBACK_COMPLETE", 9),  # before the rollback deploy
    )
    code, out, _ = run_rollout(
        ["--steps", "10,25", "--bake", 0, *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=cloudformation,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert "ROLLBACK: deploy of 25 failed (exit 1)" in out and "rolled back: the stack is at canary weight 0" in out


def test_region_comes_from_aws_region_as_for_the_cdk_cli(aws, monkeypatch):
    # boto3 alone reads AWS_DEFAULT_REGION; the CLI deploys to AWS_REGION. The alarms live there.
    import boto3

    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    paris = boto3.client("cloudwatch", region_name="eu-west-3")
    for name in (ALARM_5XX, ALARM_LATENCY):
        put_alarm(paris, name)
    runner = RecordingRunner()
    code, out, err = run_rollout(
        ["--steps", "10", "--bake", 0, *NO_PROBE], runner=runner
    )  # the tool makes its own clients
    assert code == 0, out + err
    assert f"{ALARM_5XX}=OK" in out and runner.deployed == ["10"]
    assert rollout.aws_region({"AWS_DEFAULT_REGION": "eu-north-1"}) == "eu-north-1"
    assert rollout.aws_region({}, profile_region=lambda: "ap-south-1") == "ap-south-1"
    assert rollout.aws_region({}, profile_region=lambda: None) == "us-east-1"  # the CLI's last resort


# ------------------------------------------------------------ App Mesh


def test_app_mesh_committed_or_given_is_refused_before_anything_runs(aws, tmp_path):
    committed_mesh = tmp_path / "mesh"
    committed_mesh.mkdir()
    write_cdk_json(committed_mesh, 0, trafficRouter="appmesh")
    for argv, root in (
        (["--steps", "10", "--bake", 0], committed_mesh),
        (["--steps", "10", "--bake", 0, "-c", "trafficRouter=appmesh"], None),
        (["--steps", "10", "--bake", 0, "--dry-run", "-c", "trafficRouter=appmesh"], None),
    ):
        runner = RecordingRunner()
        code, out, err = run_rollout(argv, runner=runner, cloudwatch=aws, repo_root=root)
        assert (code, out, runner.calls) == (2, "", [])
        where = "cdk.json: " if root is committed_mesh else ""  # a committed value's line names its file
        assert err == (
            f"rollout: error: {where}trafficRouter=appmesh: AWS App Mesh reached end of support on 2026-09-30 and can no "
            "longer be deployed; deploy the same canary with -c trafficRouter=alb\n"
        )


# ------------------------------------------------------------ time budget


def test_max_duration_counts_every_bake_and_a_deploy_allowance_per_step_and_rollback(canary_alarms):
    # 2 bakes of 3600 s + 3 deploys (10, 50 and a possible rollback) of DEPLOY_ALLOWANCE each.
    budget = 2 * 3600 + 3 * rollout.DEPLOY_ALLOWANCE
    runner = RecordingRunner()
    code, _, err = run_rollout(
        ["--steps", "10,50", "--bake", 3600, "--poll", 3600, "--max-duration", f"{budget:g}", *NO_PROBE],
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


def test_url_from_stack_verifies_each_step_against_the_stack_s_url_output(canary_alarms, http_server, answers):
    server = http_server(answers.every_nth_canary(10))
    runner = RecordingRunner()
    stack = StackOutputs({"Url": server.url, "CanaryWeight": "0"}, runner)
    code, out, err = run_rollout(
        ["--steps", "10,25", "--bake", 0, "--verify-requests", 100, "--url-from-stack", *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=stack,
    )
    assert code == 1, out + err
    assert stack.calls[0] == (0, {"StackName": STACK})  # read before the first deploy
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert out.count(f"verifying the split at {server.url}") == 2  # the same URL for every step
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
        ["--steps", "10", "--bake", 0, "--verify-requests", 10, "--url-from-stack", *NO_PROBE],
        runner=runner,
        cloudwatch=canary_alarms,
        cloudformation=StackOutputs(outputs, runner),
    )
    assert code == 2
    assert runner.calls == []
    assert len(err.splitlines()) == 1 and fragment in err
