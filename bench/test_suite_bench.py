"""Wall time of the test suite (and, separately, of `make lint`), measured here rather than in a timed test.

    .venv/bin/python bench/test_suite_bench.py [--runs 3] [--no-lint] [-- PYTEST_ARGS...]

Runs `python -m pytest -q -p no:cacheprovider` (pytest.ini's options: three xdist workers) N times,
then `make lint` N times, and prints for each run its wall seconds, the CPU seconds it used (user +
sys, its child processes included) and the 1-minute load average before it started, then the
medians. Goal (issue 13): the suite's median <= 60 s on this 2-core machine after set-up (the
venvs, node_modules and the compiled Crystal binaries exist: `make test` builds them first). The
CPU seconds tell a slow run on a busy machine from a slower suite. `--cold` removes the scanners'
kept verdicts (build/scans/, tests/support/scans.py) before each run, as on a fresh clone: without
it, every run after the first reuses them when no template changed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 60.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str]) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, load average before, exit code) of one run of `argv`."""
    load = os.getloadavg()[0]
    cpu = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stdout[-4000:], file=sys.stderr)
    else:
        last = result.stdout.strip().splitlines()[-1:] or [""]
        print(f"    {last[0]}")
    return wall, children_cpu() - cpu, load, result.returncode


def forget_scans() -> None:
    shutil.rmtree(ROOT / "build" / "scans", ignore_errors=True)


def keep_scans() -> None:
    pass


def series(name: str, argv: list[str], runs: int, before_each: Callable[[], None] = keep_scans) -> tuple[float, bool]:
    walls: list[float] = []
    ok = True
    print(f"{name}: {' '.join(argv)}")
    for run in range(1, runs + 1):
        before_each()
        wall, cpu, load, code = timed(argv)
        walls.append(wall)
        ok = ok and code == 0
        print(f"  run {run}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, load {load:.2f} before, exit {code}", flush=True)
    median = statistics.median(walls)
    print(f"  median: {median:.1f} s wall over {runs} runs")
    return median, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--no-lint", action="store_true", help="time the test suite only")
    parser.add_argument("--cold", action="store_true", help="remove build/scans/ before each run (a fresh clone)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    name = "test suite (cold: no kept scanner verdicts)" if args.cold else "test suite"
    suite, ok = series(name, pytest, args.runs, forget_scans if args.cold else keep_scans)
    verdict = "within" if suite <= GOAL_SECONDS else "OVER"
    print(f"  {verdict} the goal of {GOAL_SECONDS:.0f} s")
    if not args.no_lint:
        # After set-up: make is told its set-up stamps are current (-o), so a requirements file edited
        # since `make setup` does not turn the timing into a reinstall.
        stamps = ["-o", ".venv/.installed", "-o", "node_modules/.installed"]
        _, lint_ok = series("make lint", ["make", "--no-print-directory", *stamps, "lint"], args.runs)
        ok = ok and lint_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
