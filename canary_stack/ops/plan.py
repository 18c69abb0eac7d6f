"""The rollout's plan as it is printed before a run, and the dry run: the offline diff of each step."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from canary_stack.config import ConfigError
from canary_stack.constants import STACK_NAME
from canary_stack.ops.cdk_cli import context_args
from canary_stack.ops.cli import EXIT_OK, UsageError, one_line
from canary_stack.ops.committed import committed_config
from canary_stack.ops.versions import URL_OUTPUT


def diff_argv(previous: int, weight: int, stack: str = STACK_NAME, context: dict[str, str] | None = None) -> list[str]:
    argv = [sys.executable, "-m", "canary_stack.ops.offline_diff", "--from", str(previous), "--to", str(weight)]
    if stack != STACK_NAME:
        argv += ["--stack-name", stack]
    return [*argv, *context_args(context or {})]


def committed_weight(repo_root: Path) -> int:
    """context.canaryWeight of cdk.json in the repo root, read and parsed as `cdk deploy` would."""
    try:
        return committed_config(repo_root).canary_weight
    except ConfigError as err:
        raise UsageError(str(err)) from None


def plan_lines(
    a: argparse.Namespace, *, watched: str, probing: bool, dry_run: bool, committed: int | None
) -> list[str]:
    lines = [f"rollout plan for stack {a.stack_name}" + (" (dry run: nothing is deployed)" if dry_run else "")]
    if committed is not None:
        lines.append(f"  committed weight (cdk.json): {committed}")
    if a.context:
        lines.append("  context for every deploy:" + "".join(f" -c {k}={v}" for k, v in a.context.items()))
    checks = f"alarms {watched} every {a.poll:g}s"
    url = a.url or f"the {URL_OUTPUT!r} output of {a.stack_name}"
    if probing:
        checks += (
            f"; probe traffic to {url}: {a.probe_rate:g}/s on the weighted path and {a.probe_rate:g}/s with "
            f"canary-fleet: true, at most {a.probe_limit} a bake; at least {a.min_canary_requests} canary answers"
        )
    if a.verify_requests is not None:
        checks += f"; then verify {a.verify_requests} requests to {url} expecting W%"
    for i, weight in enumerate(a.steps, 1):
        lines.append(
            f"  step {i}/{len(a.steps)}: canaryWeight={weight}, bake {a.bake:g}s, "
            f"checks: {checks.replace('W%', f'{weight}%')}"
        )
    lines.append(
        "  on a firing alarm, no evidence, a failed verify or deploy, any failure in a step: "
        "deploy canaryWeight=0 and stop"
    )
    if a.steps[-1] == 100:
        lines.append("  after the last step: `make promote` makes the canary's image production, through git")
    return lines


def diff_steps(args: argparse.Namespace, committed: int, runner, out: TextIO, err: TextIO) -> int:
    """Prints the offline diff of every step, from the committed weight on."""
    previous, total = committed, len(args.steps)
    for i, weight in enumerate(args.steps, 1):
        argv = diff_argv(previous, weight, args.stack_name, args.context)
        out.write(f"--- step {i}/{total}: diff canaryWeight {previous} -> {weight} ---\n")
        out.flush()
        try:
            result = runner.run(argv, capture_output=True)
        except OSError as exc:
            raise UsageError(f"cannot run offline diff: {one_line(exc)}") from None
        if result.returncode != 0:
            if result.stderr:
                err.write(result.stderr if result.stderr.endswith("\n") else result.stderr + "\n")
            raise UsageError(f"offline diff {previous} -> {weight} failed (exit {result.returncode})")
        if result.stdout:
            out.write(result.stdout if result.stdout.endswith("\n") else result.stdout + "\n")
        previous = weight
    return EXIT_OK
