"""`cdk synth` time of this app against an empty CDK app, same CLI, same Python, alternating runs,
and where this app's time goes.

    .venv/bin/python bench/synth_bench.py [--rounds 3]

Prints each run, the medians and the ratio (goal: <= 1.5x against the empty app with the same App
settings). The empty app is a Python CDK app with one empty stack and this project's cdk.json
context, so both pay the same CLI, Python and jsii start-up; the difference is what this app costs
to construct, check and synthesize. Then, per phase (median of the rounds), this app in-process:
the toolchain set-up, the Python imports (aws_cdk and the jsii assemblies; cdk-nag; our modules,
which load aws_cdk's service modules), construction, synthesis, cdk-nag's checks (a synthesis with
them minus one without), and the CLI's own share (its wall time minus the app's).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"

# Two empty apps: CDK's defaults, and the same App settings as ours (app.py turns CDK's built-in
# WASM template validator off; cfn-lint runs in the tests instead).
EMPTY_APP = """
import aws_cdk as cdk
app = cdk.App(builtin_cloud_formation_validation={validation})
cdk.Stack(app, "Empty")
app.synth()
"""


def timed(cwd: Path, out: Path) -> float:
    env = {**os.environ, "CDK_DISABLE_CLI_TELEMETRY": "true"}
    start = time.perf_counter()
    subprocess.run(
        [str(CDK), "synth", "-q", "--no-notices", "-o", str(out)],
        cwd=cwd,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


# This app in-process, phase by phase; prints one JSON object of seconds. NAG=0 leaves cdk-nag out.
PHASES = """
import json, os, sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
from canary_stack.toolchain import prepare_toolchain, remove_at_exit
remove_at_exit(prepare_toolchain(os.environ), exit_on_sigterm=False); mark("toolchain set-up")
import aws_cdk, cdk_docker_image_deployment; mark("import aws_cdk (jsii, assemblies)")
import cdk_nag; mark("import cdk_nag (its assembly and rules)")
from canary_stack import cdk_app
from canary_stack.context import read_context
from canary_stack.constants import PROJECT_ROOT
mark("import our modules (aws_cdk service modules)")
context = {**read_context(PROJECT_ROOT).values, **json.loads(sys.argv[2])}
app = cdk_app.create_app(context=context, outdir=sys.argv[1])
if os.environ.get("NAG") == "0":  # everything as usual, but no plugin is added (the acknowledgements stay)
    class NoPlugins:
        def __init__(self, validations): self.validations = validations
        def add_plugins(self, *plugins): pass
        def __getattr__(self, name): return getattr(self.validations, name)
    of = cdk_app.cdk.Validations.of
    cdk_app.cdk.Validations.of = lambda scope: NoPlugins(of(scope))
cdk_app.build(app); mark("construction")
app.synth(); mark("synthesis")
print(json.dumps({name: t - marks[i][1] for i, (name, t) in enumerate(marks[1:])}))
"""
# What the CDK CLI adds to every `cdk synth`'s context (tests/support/synthesis.py says the same for the tests).
CLI_CONTEXT = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
    "aws:cdk:bundling-stacks": ["**"],
}


def phases(out: Path, nag: bool) -> dict[str, float]:
    env = {**os.environ, "NAG": "1" if nag else "0"}
    argv = [sys.executable, "-c", PHASES, str(out), json.dumps(CLI_CONTEXT)]
    done = subprocess.run(argv, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def breakdown(tmp: Path, rounds: int, cli_median: float) -> None:
    runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
    for i in range(rounds):
        runs["with"].append(phases(tmp / f"p{i}", nag=True))
        runs["without"].append(phases(tmp / f"q{i}", nag=False))
    med = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in runs.items()}
    app_total = sum(med["with"].values())
    rows = dict(med["without"])
    rows["cdk-nag's checks (synthesis with - without)"] = med["with"]["synthesis"] - med["without"]["synthesis"]
    rows["the CDK CLI (cdk synth - the app)"] = cli_median - app_total
    print("where this app's cdk synth goes (medians, seconds):")
    for name, seconds in rows.items():
        print(f"  {name:48} {seconds:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        context = json.loads((ROOT / "cdk.json").read_text())["context"]
        context.pop("canaryWeight", None)
        empties = {}
        for name, validation in (("same settings", "False"), ("CDK defaults", "True")):
            empty = Path(tmp) / name.replace(" ", "-")
            empty.mkdir()
            (empty / "app.py").write_text(EMPTY_APP.format(validation=validation))
            (empty / "cdk.json").write_text(json.dumps({"app": f"{sys.executable} app.py", "context": context}))
            empties[name] = empty
        times: dict[str, list[float]] = {"this app": [], **{f"empty app ({n})": [] for n in empties}}
        timed(ROOT, Path(tmp) / "warm")  # first run fills caches (esbuild, pyc); not counted
        for i in range(args.rounds):
            times["this app"].append(timed(ROOT, Path(tmp) / f"o{i}"))
            for name, empty in empties.items():
                times[f"empty app ({name})"].append(timed(empty, Path(tmp) / f"{empty.name}{i}"))
            print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        medians = {k: statistics.median(v) for k, v in times.items()}
        print("median: " + ", ".join(f"{k} {v:.2f} s" for k, v in medians.items()))
        ours = medians["this app"]
        for name in empties:
            base = medians[f"empty app ({name})"]
            print(f"ratio against the empty app ({name}): {ours / base:.2f}x (goal <= 1.5x with the same settings)")
        breakdown(Path(tmp), args.rounds, ours)
    return 0


if __name__ == "__main__":
    sys.exit(main())
