"""`cdk synth` time of this app against an empty CDK app, same CLI, same Python, alternating runs.

    .venv/bin/python bench/synth_bench.py [--rounds 3]

Prints each run, the medians and the ratio (goal: <= 1.3x). The empty app is a Python CDK app
with one empty stack and this project's cdk.json context, so both pay the same CLI, Python and
jsii start-up; the difference is what this app costs to construct, check and synthesize.
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
        print(f"ratio against the empty app ({name}): {ours / base:.2f}x (goal <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
