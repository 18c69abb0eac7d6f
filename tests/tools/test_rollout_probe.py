"""The rollout's bakes under probe traffic (issue 16.2), which answers are the canary's (18.3, 18.5), the
lattice router's wait (19.5) and a rollback on any failure inside a step (16.12).

The service is a real HTTP server on 127.0.0.1 that routes like the stack's routers (tools/routed.py);
each test's `cdk deploy` sets its weight. Time is a fake clock: a bake of 60 s sends its 120 requests
at once, and the counts are exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from canary_stack import config
from canary_stack.ops import rollout, steps, traffic
from canary_stack.ops.probe import GRACE
from tools.rollout_harness import (
    ALARM_5XX,
    ALARM_LATENCY,
    STACK,
    FakeClock,
    RecordingRunner,
    StackOutputs,
    deploy,
    run_rollout,
    write_cdk_json,
    write_source,
)
from tools.routed import RoutedService

IMAGE, OTHER_IMAGE = "ab" * 32, "cd" * 32


@pytest.fixture
def service() -> Iterator[RoutedService]:
    routed = RoutedService()
    yield routed
    routed.close()


@pytest.fixture
def alarms(aws, put_alarm):
    put_alarm(ALARM_5XX)
    put_alarm(ALARM_LATENCY)
    return aws


@pytest.fixture
def checkout(tmp_path) -> Path:
    return write_source(write_cdk_json(tmp_path, 0))


def deploying(service: RoutedService, on_deploy=None) -> RecordingRunner:
    """A `cdk deploy` that sets the service's weight, as the real one sets the router's."""

    def on_run(argv: list[str]):
        if argv[:2] == ["node_modules/.bin/cdk", "deploy"]:
            service.weight = int(argv[7].split("=")[1])
            return on_deploy(argv) if on_deploy else None
        return None

    return RecordingRunner(on_run)


def run(argv, *, checkout, runner, cloudwatch, cloudformation=None, clock=None):
    return run_rollout(
        argv, runner=runner, repo_root=checkout, cloudwatch=cloudwatch, cloudformation=cloudformation, clock=clock
    )


# --------------------------------------------------------------------------- 16.2 probe traffic


def test_every_bake_probes_the_weighted_and_the_header_path_at_a_steady_rate(service, alarms, checkout):
    runner, clock = deploying(service), FakeClock()
    code, out, err = run(
        ["--steps", "10,50", "--bake", 60, "--poll", 30, "--url", service.url],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        clock=clock,
    )
    assert code == 0, out + err
    assert runner.calls == [deploy(10), deploy(50)]
    # One request on each path a second (the default rate) for 60 s, in each of the two bakes.
    assert clock.sleeps == [1.0] * 120
    assert service.served(header=True) == service.served(header=True, version="canary") == 120
    assert service.served(header=False) == 120
    assert service.served(header=False, version="canary") == 6 + 30  # 10 % then 50 % of 60
    assert {path for path, _, _ in service.requests} == {"/crystal/api"}
    assert service.agents == {"canary-rollout-probe"}  # access logs can tell the probe from users
    assert (
        "probe traffic at weight 10%: weighted path 60 sent, 60 answered (ed106ce (54), CANARY (6)); "
        "header path 60 sent, 60 answered (CANARY (60))"
    ) in out
    assert "bake 30s left; canary answers to the probe: " in out
    assert "probe traffic to " + service.url + ": 1/s on the weighted path and 1/s with canary-fleet: true" in out


@pytest.mark.parametrize(
    "breakage, seen",
    [
        ("crashing", "header path 40 sent, 0 answered, 40 failed (most common: not the Crystal service: HTTP 502 x40)"),
        ("header ignored", "header path 40 sent, 40 answered (ed106ce ("),
    ],
)
def test_a_bake_that_saw_too_few_canary_answers_fails_as_no_evidence_and_rolls_back(
    service, alarms, checkout, breakage, seen
):
    # The alarms stay OK: without data they always would. The probe's own answers say otherwise.
    if breakage == "crashing":
        service.canary_answer = lambda: (502, b"bad gateway")
    else:  # a router whose header rule is missing: header requests are split like the rest
        service.header_rule = False
    runner = deploying(service)
    code, out, _ = run(
        ["--steps", "10,50", "--bake", 40, "--poll", 40, "--url", service.url],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(0)]
    assert seen in out
    # Crashing: no answer at all. Header ignored: the 80 requests split 10 %, 8 canary answers between the
    # two paths in whatever order the requests arrived.
    assert "ROLLBACK: no evidence at weight 10%: the bake saw " in out
    assert (
        " canary requests (header-path answers carrying CANARY), fewer than --min-canary-requests 30; alarms "
        "without traffic prove nothing"
    ) in out


def test_the_probe_is_bounded_by_its_limit_and_the_bake_still_lasts(service, alarms, checkout):
    clock = FakeClock()
    code, out, err = run(
        [
            "--steps",
            "20",
            "--bake",
            60,
            "--poll",
            60,
            "--url",
            service.url,
            "--probe-limit",
            41,
            "--min-canary-requests",
            20,
        ],
        checkout=checkout,
        runner=deploying(service),
        cloudwatch=alarms,
        clock=clock,
    )
    assert code == 0, out + err
    assert len(service.requests) == 40  # 20 ticks of two requests; a 21st pair would pass 41
    assert sum(clock.sleeps) == 60  # the alarms are still watched for the whole bake


def test_the_service_url_comes_from_the_stack_when_none_is_given(service, alarms, checkout):
    runner = deploying(service)
    stack = StackOutputs({"Url": service.url}, runner)
    code, out, err = run(
        ["--steps", "10", "--bake", 30], checkout=checkout, runner=runner, cloudwatch=alarms, cloudformation=stack
    )
    assert code == 0, out + err
    assert stack.calls[0] == (0, {"StackName": STACK})  # before the first deploy
    assert service.served(header=True, version="canary") == 30


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--bake", 29], "a bake of 29s at --probe-rate 1 sends 29 canary-fleet requests, fewer than the 30"),
        (["--bake", 10, "--probe-rate", 2.5], "bake at least 12s, raise --probe-rate, or lower --min-canary-requests"),
        (["--bake", 600, "--probe-rate", 0], "--probe-rate 0 sends no probe traffic"),
        (["--bake", 600, "--probe-limit", 40], "--probe-limit 40 allows 20 canary-fleet requests a bake"),
        (["--bake", 600, "--probe-rate", 21], "--probe-rate: must be a number from 0 to 20, got '21'"),
        (["--bake", 600, "--probe-limit", 1], "--probe-limit: must be a whole number from 2 to 1000000"),
        (["--bake", 600, "--min-canary-requests", -1], "--min-canary-requests: must be a whole number from 0"),
    ],
)
def test_a_plan_whose_bakes_cannot_see_enough_canary_answers_is_refused_before_anything_runs(checkout, flags, fragment):
    runner = RecordingRunner()
    code, out, err = run(["--steps", "10", *flags], checkout=checkout, runner=runner, cloudwatch=object())
    assert (code, out, runner.calls) == (2, "", [])
    assert len(err.splitlines()) == 1 and fragment in err


def test_the_bake_s_request_count_is_what_the_plan_check_assumes():
    assert traffic.header_requests(30, 1, 20_000) == 30
    assert traffic.header_requests(10, 2.5, 20_000) == 25
    assert traffic.header_requests(0.1, 1, 20_000) == 1  # a tick at the start of the bake
    assert traffic.header_requests(600, 1, 41) == 20
    assert traffic.header_requests(600, 0, 20_000) == 0


# ------------------------------------------------------------------ 18.3 / 18.5 which version is which


def test_the_canary_commit_comes_from_the_stack_after_each_deploy(service, alarms, checkout):
    # The checkout's source still says CANARY; the canary the stack runs answers CANARY2.
    service.canary_commit = "CANARY2"
    runner = deploying(service)
    stack = StackOutputs({"Url": service.url, "CanaryCommit": "CANARY2"}, runner)
    code, out, err = run(
        ["--steps", "10,25", "--bake", 30, "--verify-requests", 200, "--url-from-stack"],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        cloudformation=stack,
    )
    assert code == 0, out + err
    assert [deploys for deploys, _ in stack.calls] == [0, 1, 2]  # before the first deploy, after each
    assert out.count("the canary answers commit CANARY2 (from the stack's CanaryCommit output)") == 2
    assert "PASS: expected 10%" in out and "PASS: expected 25%" in out


def test_after_a_promotion_the_split_cannot_be_measured_and_that_fails_no_step(service, alarms, checkout):
    # production := the canary's image: both versions answer CANARY, and the stack says so.
    service.production_commit = "CANARY"
    runner = deploying(service)
    outputs = {"Url": service.url, "CanaryCommit": "CANARY", "CanaryImage": IMAGE, "ProductionImage": IMAGE}
    code, out, err = run(
        ["--steps", "10,100", "--bake", 30, "--verify-requests", 50, "--url-from-stack"],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        cloudformation=StackOutputs(outputs, runner),
    )
    assert code == 0, out + err
    assert runner.calls == [deploy(10), deploy(100)]
    assert out.count("CANNOT MEASURE: production and the canary run the same image") == 2
    assert (
        "NOTE: the split at weight 10% cannot be measured (verify's line above); that is not evidence of a bad canary"
        in out
    )
    assert f"images: canary {IMAGE}, production {IMAGE}" in out


def test_the_readme_walkthrough_after_a_promotion_without_image_outputs(service, alarms, checkout):
    # An older stack without the image outputs: one commit in every answer below 100 % is unmeasurable.
    service.production_commit = service.canary_commit = "CANARY2"
    write_source(checkout, "CANARY2")
    runner = deploying(service)
    code, out, err = run(
        ["--steps", "10", "--bake", 30, "--url", service.url, "--verify-requests", 100],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
    )
    assert code == 0, out + err
    assert "CANNOT MEASURE: every one of the 100 answers carries the canary's commit CANARY2" in out


def test_different_images_with_a_broken_split_still_fail(service, alarms, checkout):
    def stuck_at_50(argv: list[str]) -> None:
        service.weight = 50  # the router did not take the step's weight

    runner = deploying(service, stuck_at_50)
    outputs = {"Url": service.url, "CanaryImage": IMAGE, "ProductionImage": OTHER_IMAGE}
    code, out, _ = run(
        ["--steps", "10", "--bake", 30, "--verify-requests", 200],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        cloudformation=StackOutputs(outputs, runner),
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(0)]
    assert "FAIL: expected 10% lies outside" in out


def test_nothing_says_which_answers_are_the_canary_s_is_refused_before_any_deploy(service, alarms, tmp_path):
    runner = deploying(service)
    code, out, err = run(
        ["--steps", "10", "--bake", 30, "--url", service.url],
        checkout=write_cdk_json(tmp_path, 0),  # no crystal_src/
        runner=runner,
        cloudwatch=alarms,
    )
    assert (code, out, runner.calls) == (2, "", [])
    assert err == (
        "rollout: error: cannot read the canary's commit from crystal_src/code_hash.txt: FileNotFoundError, "
        "and the stack has no CanaryCommit output; give --canary-commit\n"
    )


# ------------------------------------------------------------------------- 19.5 lattice


@pytest.mark.parametrize("bake, waited", [(30, 60.0), (60, 30.0), (120, None)])
def test_with_lattice_verify_measures_no_earlier_than_90_s_after_the_deploy(service, alarms, checkout, bake, waited):
    runner = deploying(service)
    clock = FakeClock()
    code, out, err = run(
        ["--steps", "10", "--bake", bake, "--poll", bake, "--verify-requests", 100, "--url-from-stack"],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        cloudformation=StackOutputs({"Url": service.url, "TrafficRouter": "lattice"}, runner),
        clock=clock,
    )
    assert code == 0, out + err
    probe_ticks = [1.0] * bake
    assert clock.sleeps == probe_ticks + ([waited] if waited else [])
    assert ("waiting" in out) == (waited is not None)
    if waited:
        assert f"waiting {waited:g}s more for VPC Lattice to apply the weights (about 90s after each change)" in out


def test_the_alb_router_does_not_wait(service, alarms, checkout):
    runner, clock = deploying(service), FakeClock()
    code, _, _ = run(
        ["--steps", "10", "--bake", 30, "--poll", 30, "--verify-requests", 100],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        cloudformation=StackOutputs({"Url": service.url, "TrafficRouter": "alb"}, runner),
        clock=clock,
    )
    assert code == 0 and clock.sleeps == [1.0] * 30


def test_max_duration_counts_lattice_s_wait_when_the_router_is_lattice(checkout, monkeypatch):
    # config.py learns "lattice" in another change; the rollout must budget its wait already.
    monkeypatch.setattr(config, "TRAFFIC_ROUTERS", (*config.TRAFFIC_ROUTERS, "lattice"))
    write_cdk_json(checkout, 0, trafficRouter="lattice")
    argv = ["--steps", "10,50", "--bake", 30, "--verify-requests", 100, "--dry-run"]
    fits = 2 * 30 + 3 * rollout.DEPLOY_ALLOWANCE + 2 * (steps.LATTICE_PROPAGATION_SECONDS - 30)
    code, _, err = run(
        [*argv, "--max-duration", f"{fits - 1:g}"], checkout=checkout, runner=RecordingRunner(), cloudwatch=None
    )
    assert code == 2 and "plus the wait for Lattice's weights (90s after each deploy)" in err
    code, _, err = run(
        [*argv, "--max-duration", f"{fits:g}"], checkout=checkout, runner=RecordingRunner(), cloudwatch=None
    )
    assert code == 0, err


# ------------------------------------------------------------- 16.12 any failure inside a step


def test_an_unexpected_failure_in_a_deploy_rolls_back(service, alarms, checkout):
    def explode(argv):
        if argv == deploy(25):
            raise RuntimeError("the CLI wrapper broke")
        return None

    runner = deploying(service, explode)
    code, out, _ = run(
        ["--steps", "10,25", "--bake", 30, "--url", service.url, "--verify-requests", 100],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert "ROLLBACK: unexpected failure in the step at weight 25%: RuntimeError: the CLI wrapper broke" in out
    assert "rolled back: the stack is at canary weight 0" in out


def test_a_deeply_nested_answer_to_verify_rolls_back(service, alarms, checkout):
    # The canary answers `[[[[...]]]]`, 30,000 deep, once the weight is 25: verify fails its check.
    runner = deploying(service)
    nested = b"[" * 30_000 + b"]" * 30_000

    def on_deploy(argv):
        if argv == deploy(25):
            service.canary_answer = lambda: (200, nested)
        return None

    runner = deploying(service, on_deploy)
    code, out, err = run(
        ["--steps", "10,25", "--bake", 0, "--url", service.url, "--verify-requests", 100, "--probe-rate", 0]
        + ["--min-canary-requests", 0],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(25), deploy(0)]
    assert "answer is JSON nested too deeply" in err and "Traceback" not in err
    assert "verify at weight 25: the service could not be measured (verify exit 2)" in out


def test_an_unexpected_failure_in_the_probe_rolls_back(service, alarms, checkout, monkeypatch):
    def broken(self, now):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(traffic.Prober, "send_due", broken)
    runner = deploying(service)
    code, out, _ = run(
        ["--steps", "10", "--bake", 30, "--url", service.url], checkout=checkout, runner=runner, cloudwatch=alarms
    )
    assert code == 1
    assert runner.calls == [deploy(10), deploy(0)]
    assert "unexpected failure in the step at weight 10%: ZeroDivisionError: float division by zero" in out


def test_an_unexpected_failure_of_the_rollback_says_the_weight_is_unknown(service, alarms, checkout):
    def explode(argv):
        if argv == deploy(25):
            raise RuntimeError("first")
        if argv == deploy(0):
            raise RuntimeError("second")
        return None

    code, out, _ = run(
        ["--steps", "10,25", "--bake", 30, "--url", service.url, "--verify-requests", 100],
        checkout=checkout,
        runner=deploying(service, explode),
        cloudwatch=alarms,
    )
    assert code == 1
    assert out.splitlines()[-1] == (
        "ROLLBACK FAILED: RuntimeError: second; the stack's weight is unknown, run `make deploy WEIGHT=0`"
    )


def test_ctrl_c_during_a_probed_bake_stops_at_once_without_a_rollback(service, alarms, checkout):
    def on_sleep(_):
        if len(clock.sleeps) == 5:
            raise KeyboardInterrupt

    clock = FakeClock(on_sleep)
    runner = deploying(service)
    code, out, _ = run(
        ["--steps", "10,25", "--bake", 30, "--url", service.url],
        checkout=checkout,
        runner=runner,
        cloudwatch=alarms,
        clock=clock,
    )
    assert code == 130
    assert runner.calls == [deploy(10)]
    assert "INTERRUPTED: no further deploy started; the stack is at canary weight 10" in out.splitlines()[-1]


def test_a_url_with_credentials_is_refused_without_printing_them(checkout):
    code, out, err = run(
        ["--steps", "10", "--bake", 30, "--url", "https://ops:s3cret@example.com"],
        checkout=checkout,
        runner=RecordingRunner(),
        cloudwatch=None,
    )
    assert (code, out) == (2, "")
    assert "s3cret" not in err and "got 'https://***@example.com'" in err


def test_help_documents_the_probe(capsys):
    with pytest.raises(SystemExit):
        rollout.build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--probe-rate R", "--probe-limit N", "--min-canary-requests N"):
        assert flag in text
    assert "(default 1, at most 20; 0 sends none)" in text and "(default 30; 0 turns the check off)" in text
    assert GRACE > 0  # a stuck probe request is given up on, never waited for
