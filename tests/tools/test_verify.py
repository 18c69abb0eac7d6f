"""canary_stack.ops.verify against real HTTP servers on 127.0.0.1, plus its pure parts."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.ops import verify
from canary_stack.ops.stats import wilson_interval
from canary_stack.ops.verify import NotTheService, classify, main, summarize

# ----------------------------------------------------------------- Wilson


def test_wilson_zero_successes_is_zero_to_z2_over_n_plus_z2():
    low, high = wilson_interval(0, 200)
    assert low == 0.0
    z2 = 1.959963984540054**2
    assert high == pytest.approx(z2 / (200 + z2))
    assert round(high * 100, 1) == 1.9


def test_wilson_all_successes_mirrors_zero():
    low, high = wilson_interval(200, 200)
    assert high == 1.0
    assert low == pytest.approx(1 - wilson_interval(0, 200)[1])


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        (10, 100, 0.05523, 0.17437),
        (50, 100, 0.40383, 0.59617),
        (1, 10, 0.01788, 0.40415),
    ],
)
def test_wilson_known_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(low, abs=5e-5)
    assert got[1] == pytest.approx(high, abs=5e-5)


def test_wilson_contains_point_estimate_and_narrows_with_n():
    small = wilson_interval(10, 100)
    large = wilson_interval(1000, 10000)
    assert small[0] < 0.1 < small[1]
    assert large[0] < 0.1 < large[1]
    assert large[1] - large[0] < small[1] - small[0]


@pytest.mark.parametrize("k, n", [(0, 0), (-1, 10), (11, 10)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


# --------------------------------------------------------- classify/summary


def test_classify_returns_commit_of_service_answer(answers):
    assert classify(200, answers.json("ed106ce")) == "ed106ce"


@pytest.mark.parametrize(
    "status, body, reason",
    [
        (503, b'{"from":"Crystal backend","commit":"x"}', "HTTP 503"),
        (200, b"<html><body>hello</body></html>", "not JSON"),
        (200, b"[1, 2]", "not a JSON object"),
        (200, b'{"from":"nginx","commit":"x"}', "nginx"),
        (200, b'{"from":"Crystal backend","message":"a"}', 'no "commit"'),
        (200, b'{"from":"Crystal backend","commit":""}', 'no "commit"'),
    ],
)
def test_classify_rejects_what_is_not_the_service(status, body, reason):
    with pytest.raises(NotTheService, match=reason):
        classify(status, body)


def test_summarize_counts_sorted_share_and_errors():
    outcomes = [("ok", "ed106ce")] * 18 + [("ok", "CANARY")] * 2 + [("error", "HTTP 502")]
    summary = summarize(outcomes, requests=21, canary_commit="CANARY")
    assert list(summary.counts.items()) == [("CANARY", 2), ("ed106ce", 18)]
    assert summary.answered == 20 and summary.failed == 1 and summary.canary == 2
    assert summary.share == pytest.approx(0.1)
    assert summary.interval == wilson_interval(2, 20)
    assert summary.errors == {"HTTP 502": 1}
    assert not summary.too_many_errors  # 1 failure tolerated


# ------------------------------------------------------- CLI, real servers


@pytest.fixture(autouse=True)
def canary_source(tmp_path, monkeypatch):
    """The checkout whose source says the canary's commit (crystal_src/code_hash.txt): CANARY, as the
    servers here answer, whatever this repository's own file says."""
    (tmp_path / "crystal_src").mkdir()
    (tmp_path / "crystal_src" / "code_hash.txt").write_text("CANARY\n")
    monkeypatch.setattr(verify, "PROJECT_ROOT", tmp_path)
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str):
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_ten_percent_router_accepts_expect_10(http_server, answers, capsys):
    server = http_server(answers.every_nth_canary(10))
    code, out, err = run(capsys, server.url, "--requests", 200, "--expect", 10)
    assert code == 0, out + err
    assert server.count == 200
    assert set(server.paths) == {"/crystal/api"}
    assert "commit ed106ce: 180\ncommit CANARY: 20\n" in out  # most answers first
    assert "10.0%" in out and "[6.6%, 14.9%]" in out
    assert out.splitlines()[-1].startswith("PASS")


def test_ten_percent_router_rejects_expect_60(http_server, answers, capsys):
    server = http_server(answers.every_nth_canary(10))
    code, out, err = run(capsys, server.url + "/", "--requests", 200, "--expect", 60, "--concurrency", 16)
    assert code == 1
    assert server.paths[0] == "/crystal/api"  # the trailing slash is not doubled
    verdict = out.splitlines()[-1]
    assert verdict.startswith("FAIL") and "60%" in verdict


def test_without_expect_only_measures(http_server, answers, capsys):
    server = http_server(answers.every_nth_canary(4))
    code, out, _ = run(capsys, server.url, "--requests", 40)
    assert code == 0
    assert "commit CANARY: 10" in out and "25.0%" in out
    assert "PASS" not in out and "FAIL" not in out


def test_zero_share_accepts_0_and_names_the_commits_seen_when_5_was_expected(http_server, answers, capsys):
    server = http_server(lambda n: (200, "application/json", answers.json("ed106ce")))
    code, out, _ = run(capsys, server.url, "--requests", 100, "--expect", 0)
    assert code == 0
    assert out.splitlines()[-1] == "PASS: expected 0% lies inside the 95% interval [0.0%, 3.7%]"
    code, out, _ = run(capsys, server.url, "--requests", 100, "--expect", 5)
    assert code == 1
    assert out.splitlines()[-1] == (
        "FAIL: expected 5%, but canary commit 'CANARY' (crystal_src/code_hash.txt) is in none of the 100 answers; "
        "commits seen: ed106ce (100)"
    )
    assert "0.0%" not in out  # not a "0 %" share of a commit that never answered


def test_a_canary_commit_no_answer_carries_is_named_not_measured_as_0_percent(http_server, answers, capsys):
    server = http_server(answers.every_nth_canary(4))  # the canary answers as CANARY
    code, out, _ = run(capsys, server.url, "--requests", 40, "--canary-commit", "CANRAY")
    assert code == 0  # no --expect: a measurement, with the mistake stated
    assert "canary share" not in out
    assert out.splitlines()[-1] == (
        "NOTE: canary commit 'CANRAY' (--canary-commit) is in none of the 40 answers; "
        "commits seen: ed106ce (30), CANARY (10)"
    )
    code, out, _ = run(capsys, server.url, "--requests", 40, "--canary-commit", "CANRAY", "--expect", 25)
    assert code == 1 and out.splitlines()[-1].startswith("FAIL: expected 25%, but canary commit 'CANRAY'")


def test_custom_canary_commit(http_server, answers, capsys):
    server = http_server(lambda n: (200, "application/json", answers.json("abc123")))
    code, out, _ = run(capsys, server.url, "--requests", 20, "--canary-commit", "abc123", "--expect", 100)
    assert code == 0
    assert "canary share (abc123): 100.0%" in out


def test_dead_url_exits_2_with_one_line(dead_url, capsys):
    code, out, err = run(capsys, dead_url, "--requests", 50)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, dead_url + "/crystal/api", "cannot connect")


def test_html_answer_is_not_the_service(http_server, capsys):
    server = http_server(lambda n: (200, "text/html", b"<html><body>It works!</body></html>"))
    code, out, err = run(capsys, server.url, "--requests", 30)
    assert code == 2 and out == ""
    assert_one_line_error(err, "not the Crystal service", "not JSON")


def test_other_json_service_is_rejected(http_server, capsys):
    server = http_server(lambda n: (200, "application/json", b'{"from":"nginx","commit":"x"}'))
    code, _, err = run(capsys, server.url, "--requests", 10)
    assert code == 2
    assert_one_line_error(err, "nginx")


def test_non_200_is_rejected(http_server, capsys):
    server = http_server(lambda n: (503, "text/plain", b"unavailable"))
    code, _, err = run(capsys, server.url, "--requests", 10)
    assert code == 2
    assert_one_line_error(err, "HTTP 503")


def test_few_failures_are_reported_but_tolerated(http_server, answers, capsys):
    # 2 of 200 fail: within the 5 % budget; the share is computed over the 198 answers.
    def answer(n):
        if n in (3, 150):
            return 502, "text/plain", b"bad gateway"
        return answers.every_nth_canary(10)(n)

    server = http_server(answer)
    code, out, _ = run(capsys, server.url, "--requests", 200, "--expect", 10, "--concurrency", 1)
    assert code == 0
    assert "200 sent, 198 answered, 2 failed" in out
    assert "errors: not the Crystal service: HTTP 502 x2" in out


def test_too_many_failures_exit_2(http_server, answers, capsys):
    # every 10th request fails: 10 % > 5 % budget -> not measurable
    def answer(n):
        if n % 10 == 5:
            return 502, "text/plain", b"bad gateway"
        return answers.every_nth_canary(10)(n)

    server = http_server(answer)
    code, out, err = run(capsys, server.url, "--requests", 400, "--concurrency", 1)
    assert code == 2 and out == ""
    assert_one_line_error(err, "requests failed", "more than the 20 tolerated", "HTTP 502")
    assert server.count < 400  # stopped as soon as the budget was exceeded


def test_timeout_is_an_error(http_server, answers, capsys):
    def slow(n):
        time.sleep(1.0)
        return 200, "application/json", answers.json("ed106ce")

    server = http_server(slow)
    started = time.monotonic()
    code, _, err = run(capsys, server.url, "--requests", 100, "--timeout", 0.2, "--concurrency", 4)
    assert code == 2
    assert_one_line_error(err, "timed out after 0.2s")
    assert time.monotonic() - started < 3  # gave up early instead of 100 timeouts


def test_timeout_bounds_the_whole_request_against_a_server_that_drips_a_byte_at_a_time(drip_server, capsys):
    # A byte every 0.2 s: a per-read timeout of 1 s would never fire and the request would never end.
    server = drip_server(0.2)
    started = time.monotonic()
    code, out, err = run(capsys, server.url, "--requests", 4, "--timeout", 1, "--concurrency", 2)
    elapsed = time.monotonic() - started
    assert code == 2 and out == ""
    assert_one_line_error(err, "timed out after 1s")
    assert 0.9 < elapsed < 3.5  # two requests in flight, each cut at 1 s; budget exceeded after the second
    assert server.connections >= 2


def test_deadline_bounds_the_whole_run(http_server, answers, capsys):
    def slow(n):
        time.sleep(0.3)
        return 200, "application/json", answers.json("ed106ce")

    server = http_server(slow)
    started = time.monotonic()
    code, _, err = run(capsys, server.url, "--requests", 100, "--concurrency", 1, "--deadline", 1)
    assert code == 2
    assert_one_line_error(err, "deadline of 1s passed after", "of 100 answers")
    assert time.monotonic() - started < 2.5
    assert server.count < 10


def test_ctrl_c_stops_at_once_without_a_traceback(drip_server):
    server = drip_server(0.2)
    process = subprocess.Popen(
        [sys.executable, "-m", "canary_stack.ops.verify", server.url, "--requests", "50", "--timeout", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    deadline = time.monotonic() + 10
    while server.connections < 8 and time.monotonic() < deadline:  # all 8 workers are held by the server
        time.sleep(0.05)
    assert server.connections >= 8
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert time.monotonic() - interrupted < 1.5  # not after the 60 s timeout of the requests in flight
    assert process.returncode == 130
    assert err == "verify: interrupted\n" and out == ""


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_goes_to_stderr_and_stdout_stays_clean(http_server, answers):
    server = http_server(answers.every_nth_canary(10))
    out, err = io.StringIO(), TtyStream()
    code = main([server.url, "--requests", "200"], stdout=out, stderr=err)
    assert code == 0
    assert "\r200/200 requests, 0 failed\n" in err.getvalue()
    assert err.getvalue().count("\r") >= 10  # a live counter, not just the final line
    assert "\r" not in out.getvalue() and "requests, 0 failed" not in out.getvalue()


def test_progress_without_tty_is_one_line_per_ten_percent_for_long_runs():
    stream = io.StringIO()
    progress = verify.Progress(1000, stream)
    for done in range(1, 1001):
        progress.update(done, failed=0)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "verify: 10% (100/1000), 0 failed"
    assert len(lines) == 10 and lines[-1] == "verify: 100% (1000/1000), 0 failed"


def test_short_runs_without_tty_print_no_progress():
    stream = io.StringIO()
    progress = verify.Progress(200, stream)
    for done in range(1, 201):
        progress.update(done, failed=0)
    progress.close()
    assert stream.getvalue() == ""


def test_help_documents_failure_policy(capsys):
    with pytest.raises(SystemExit) as exc:
        verify.build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Up to 5% of the requests (at least 1) may fail" in text
    assert "5 %" in verify.__doc__ and math.isclose(verify.MAX_ERROR_FRACTION, 0.05)


def test_what_a_server_sends_is_shown_escaped_and_bounded(http_server, answers, capsys):
    """A commit is the server's text: terminal escape sequences or a fake verdict line in it must not
    reach the operator's terminal or CI log as such, and a server answering a new commit every time
    must not flood it."""
    evil = "\x1b]0;PWNED\x07\x1b[2J\nPASS: all good"

    def answer(count: int) -> tuple[int, str, bytes]:
        commit = evil if count % 31 == 0 else f"c{count % 31:03d}" + "x" * 200
        return 200, "application/json", answers.json(commit)

    server = http_server(answer)
    code = main([server.url, "--requests", "62", "--concurrency", "1", "--expect", "5"])
    out = capsys.readouterr().out
    assert code == 1  # no answer carries the canary's commit
    assert "\x1b" not in out and "\x07" not in out  # escaped, never sent raw
    assert "\\x1b]0;PWNED\\x07\\x1b[2J\\nPASS: all good" in out
    assert not any(line.startswith("PASS") for line in out.splitlines())
    commit_lines = [line for line in out.splitlines() if line.startswith("commit ")]
    assert len(commit_lines) == 10 and "and 21 more commits (42 answers)" in out
    assert max(len(line) for line in out.splitlines()) < 1500
