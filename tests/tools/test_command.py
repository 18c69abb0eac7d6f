"""canary_stack/ops/command.py: every tool's outcome as one exit code and at most one line."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys

import pytest
from support.synthesis import ROOT

from canary_stack.config import ConfigError
from canary_stack.ops.cli import Failed, UsageError
from canary_stack.ops.command import INTERRUPTION, Command


class Tool(Command):
    name, prog = "tool", "python -m tool"
    interrupted_message = "nothing was changed"

    def __init__(self, action, **streams):
        super().__init__(**streams)
        self.action = action

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--n", type=int, default=0)

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        return self.action(self)


def outcome(action, argv=()) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = Tool(action, stdout=out, stderr=err).main(list(argv))
    return code, out.getvalue(), err.getvalue()


def raises(exc: BaseException):
    def action(tool):
        raise exc

    return action


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (UsageError("--x must be 1"), 2, "tool: error: --x must be 1\n"),
        (ConfigError("canaryWeight must be\na number"), 2, "tool: error: canaryWeight must be a number\n"),
        (Failed("synthesis failed (output above)"), 1, "tool: error: synthesis failed (output above)\n"),
        (OSError(28, "No space left on device"), 1, "tool: error: [Errno 28] No space left on device\n"),
        (subprocess.TimeoutExpired(["cdk"], 5), 1, "tool: error: Command '['cdk']' timed out after 5 seconds\n"),
        (KeyboardInterrupt(), 130, "tool: interrupted: nothing was changed\n"),
    ],
)
def test_each_failure_is_one_exit_code_and_one_line(exc, code, line):
    assert outcome(raises(exc)) == (code, "", line)


def test_a_returned_code_is_the_exit_code_and_a_bug_keeps_its_traceback():
    assert outcome(lambda tool: 0)[0] == 0 and outcome(lambda tool: 3)[0] == 3
    with pytest.raises(ZeroDivisionError):
        outcome(lambda tool: 1 // 0)


def test_usage_errors_from_the_parser_are_one_line_and_help_exits_0(capsys):
    assert outcome(lambda tool: 0, ["--n", "x"]) == (2, "", "tool: error: argument --n: invalid int value: 'x'\n")
    assert outcome(lambda tool: 0, ["extra"]) == (2, "", "tool: error: unrecognized arguments: extra\n")
    assert outcome(lambda tool: 0, ["--help"])[0] == 0
    assert capsys.readouterr().out.startswith("usage: python -m tool [options]")


def test_sigterm_is_an_interruption_even_when_a_child_failed_of_it():
    def killed(tool):
        os.kill(os.getpid(), signal.SIGTERM)  # noted, not fatal: the handler only sets the flag
        assert INTERRUPTION.happened
        raise Failed("cdk synth exit -15")  # the synth died of the same signal

    assert outcome(killed) == (130, "", "tool: interrupted: nothing was changed\n")
    assert signal.getsignal(signal.SIGTERM) is not INTERRUPTION.handler  # restored after the run


def test_a_cli_run_stops_within_a_poll_of_sigterm_with_its_group_and_folder(tmp_path):
    """cdk_cli.run_cdk (make synth) under the wrapper: SIGTERM ends the child's whole process group and
    removes the run's temporary folder at once, not when the child would have finished."""
    import sys
    import time

    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from canary_stack.ops import cdk_cli\n"
        "from canary_stack.ops.command import Command\n"
        "child = [sys.executable, '-c', 'import time; print(\"started\", flush=True); time.sleep(60)']\n"
        "class Synth(Command):\n"
        "    name = 'make synth'\n"
        "    def run(self, options, args):\n"
        "        return cdk_cli.run_cdk(child, root=Path(sys.argv[1]), offline=True, out=sys.stdout)\n"
        "sys.exit(Synth().main([]))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", script, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    assert len(list((tmp_path / ".cdk-tmp").glob("cli-*"))) == 1
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - started < 10  # the child's 60 s sleep was cut short
    assert (process.returncode, err) == (130, "make synth: interrupted: nothing was changed\n")
    assert list((tmp_path / ".cdk-tmp").iterdir()) == []


# ----------------------------------------------- the hooks: what the table means for one tool


class Verdicts(Tool):
    """A tool whose exit 1 is a verdict (verify's shape): no exception is a plain failure, any is exit 2."""

    name = "verdicts"
    interrupted_message = ""
    failures = ()
    unexpected_exit = 2

    def unexpected_line(self, exc: Exception) -> str:
        return f"unexpected failure, the check failed: {type(exc).__name__}: {exc}"


def verdict_outcome(action, argv=()) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = Verdicts(action, stdout=out, stderr=err).main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "exc, line",
    [
        (OSError(28, "No space left on device"), "OSError: [Errno 28] No space left on device"),
        (Failed("cdk synth failed"), "Failed: cdk synth failed"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    ],
)
def test_with_unexpected_exit_every_failure_is_that_code_and_one_line_never_exit_1_or_a_traceback(exc, line):
    assert verdict_outcome(raises(exc)) == (2, "", f"verdicts: error: unexpected failure, the check failed: {line}\n")


def test_usage_errors_and_the_returned_verdict_are_unchanged_by_the_hooks():
    assert verdict_outcome(raises(UsageError("--x must be 1"))) == (2, "", "verdicts: error: --x must be 1\n")
    assert verdict_outcome(lambda tool: 1)[0] == 1  # a verdict the tool returned, not a failure


def test_an_empty_interrupted_message_is_a_bare_line():
    assert verdict_outcome(raises(KeyboardInterrupt())) == (130, "", "verdicts: interrupted\n")


def test_interrupted_is_the_hook_for_what_the_tool_left():
    class Stepper(Tool):
        def interrupted(self) -> int:
            self.out.write("INTERRUPTED: the stack is at canary weight 10\n")
            return 130

    out, err = io.StringIO(), io.StringIO()
    assert Stepper(raises(KeyboardInterrupt()), stdout=out, stderr=err).main([]) == 130
    assert (out.getvalue(), err.getvalue()) == ("INTERRUPTED: the stack is at canary weight 10\n", "")


class Immediate(Tool):
    name = "immediate"
    interrupted_message = ""
    defer_signals = False


def test_without_defer_signals_ctrl_c_lands_at_once_and_no_handler_is_installed():
    """verify and the rollout wait on things that know no flag (sockets, sleeps, `cdk deploy`): Ctrl-C
    must raise KeyboardInterrupt where it lands, not wait for a check that never comes."""
    import time

    seen = {}

    def sleeps(tool):
        seen["handler"] = signal.getsignal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # Python's handler raises KeyboardInterrupt here
        time.sleep(10)
        return 0

    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    assert Immediate(sleeps, stdout=out, stderr=err).main([]) == 130
    assert time.monotonic() - started < 5
    assert err.getvalue() == "immediate: interrupted\n"
    assert seen["handler"] is signal.default_int_handler


def test_without_defer_signals_an_earlier_runs_signal_does_not_turn_an_error_into_an_interruption():
    # An earlier deferring run was interrupted: the flag stays set after it ends.
    def killed(tool):
        os.kill(os.getpid(), signal.SIGTERM)
        return 0

    assert outcome(killed)[0] == 130
    assert INTERRUPTION.happened
    out, err = io.StringIO(), io.StringIO()
    assert Immediate(raises(UsageError("--x must be 1")), stdout=out, stderr=err).main([]) == 2
    assert err.getvalue() == "immediate: error: --x must be 1\n"


def test_the_suite_tests_ctrl_c_even_when_started_with_ctrl_c_ignored():
    """As a background job of a non-interactive shell starts it: SIGINT ignored, inherited by every
    process a test starts (tests/conftest.py takes it back)."""
    ctrl_c_tests = [
        "tests/tools/test_verify.py::test_ctrl_c_stops_at_once_without_a_traceback",
        "tests/tools/test_command.py::test_without_defer_signals_ctrl_c_lands_at_once_and_no_handler_is_installed",
    ]
    pytest = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *ctrl_c_tests]
    ignoring_ctrl_c = ["bash", "-c", 'trap "" INT; exec "$@"', "bash"]
    result = subprocess.run([*ignoring_ctrl_c, *pytest], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
