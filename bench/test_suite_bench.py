"""Wall time of the test suite (and, separately, of `make lint`), measured here rather than in a timed test.

    .venv/bin/python bench/test_suite_bench.py [--runs 3] [--no-lint] [-- PYTEST_ARGS...]

Runs `python -m pytest -q -p no:cacheprovider` (pytest.ini's options: three xdist workers) N times,
then `make lint` N times, and prints for each run its wall seconds, the CPU seconds it used (user +
sys, its child processes included) and the 1-minute load average before it started, then the
medians. Goal (issue 13): the suite's median <= 60 s on this 2-core machine after set-up (the
venvs, node_modules and the compiled Crystal binaries exist: `make test` builds them first). The
CPU seconds tell a slow run on a busy machine from a slower suite. `--cold` removes the scanners'
kept verdicts (build/scans/, tests/support/scans.py) and the kept syntheses (build/synth/,
tests/support/synthesis_cache.py) before each run, as on a fresh clone or after a change to the app:
without it, every run after the first reuses them when no input changed (a change to a test or a tool).

`--vs DIR` compares this checkout with another (a `git worktree` of another commit, its `.venv` and
`node_modules` linked to these): the two suites run in turn, this one first, and each pair's ratio of
wall and CPU seconds is printed, then the medians. This machine's speed drifts by 10% within minutes,
so two series run one after the other can differ by more than the change being measured.
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


def timed(argv: list[str], cwd: Path = ROOT) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, load average before, exit code) of one run of `argv` in `cwd`."""
    load = os.getloadavg()[0]
    cpu = children_cpu()
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stdout[-4000:], file=sys.stderr)
    else:
        last = result.stdout.strip().splitlines()[-1:] or [""]
        print(f"    {last[0]}")
    return wall, children_cpu() - cpu, load, result.returncode


def forget_kept_results() -> None:
    for kept in ("scans", "synth"):
        shutil.rmtree(ROOT / "build" / kept, ignore_errors=True)


def keep_results() -> None:
    pass


def series(name: str, argv: list[str], runs: int, before_each: Callable[[], None] = keep_results) -> tuple[float, bool]:
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


def pairs(pytest_args: list[str], other: Path, runs: int) -> bool:
    """This checkout's suite and `other`'s in turn, `runs` times; prints the ratios (this / other)."""
    ratios: dict[str, list[float]] = {"wall": [], "CPU": []}
    ok = True
    for run in range(1, runs + 1):
        results = []
        for checkout in (ROOT, other):
            python = checkout / ".venv" / "bin" / "python"
            argv = [str(python if python.exists() else sys.executable), "-m", "pytest", *pytest_args]
            wall, cpu, load, code = timed(argv, cwd=checkout)
            ok = ok and code == 0
            results.append((wall, cpu))
            print(
                f"  run {run} {checkout}: {wall:6.1f} s wall, {cpu:6.1f} s CPU, load {load:.2f}, exit {code}",
                flush=True,
            )
        (wall, cpu), (other_wall, other_cpu) = results
        ratios["wall"].append(wall / other_wall)
        ratios["CPU"].append(cpu / other_cpu)
        print(f"  pair {run}: {wall / other_wall:.3f} wall, {cpu / other_cpu:.3f} CPU (this / other)")
    print("  median ratio: " + ", ".join(f"{statistics.median(v):.3f} {k}" for k, v in ratios.items()))
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each command (default 3)")
    parser.add_argument("--no-lint", action="store_true", help="time the test suite only")
    parser.add_argument(
        "--cold", action="store_true", help="remove build/scans/ and build/synth/ before each run (a fresh clone)"
    )
    parser.add_argument("--vs", type=Path, metavar="DIR", help="another checkout to compare with, run by run")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.vs is not None and not (args.vs / "pytest.ini").is_file():
        parser.error(f"--vs must be a checkout of this project (a folder with pytest.ini), got {str(args.vs)[:80]!r}")
    print(f"{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
    if args.vs is not None:
        return 0 if pairs(["-q", "-p", "no:cacheprovider", *args.pytest_args], args.vs.resolve(), args.runs) else 1
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args.pytest_args]
    name = "test suite (cold: no kept scanner verdicts or syntheses)" if args.cold else "test suite"
    suite, ok = series(name, pytest, args.runs, forget_kept_results if args.cold else keep_results)
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
