"""Throughput of the Crystal backend vs a bare Crystal HTTP::Server hello.

Run: .venv/bin/python bench/crystal_bench.py [--rounds 5] [--seconds 5]

Builds release binaries of crystal_src/src/server.cr and bench/bare_hello.cr
into build/crystal/bench/, then loads each on loopback with the same wrk
parameters, alternating servers each round. Ours runs with the access log on
(LOG_LEVEL=info) and stdout sent to /dev/null. Goal: ours >= 0.75x bare. The
service sits behind a load balancer or Envoy and one core serves far more
than it will see, so the code favours the standard library over speed; this
only guards against a regression that would make the access log dominate.

Both servers are single-threaded, so on a small machine wrk and the server
fight for the same cores and req/s swings by 20% between rounds. When
`taskset` is available and there are at least two CPUs, the server is pinned
to one CPU and wrk (one thread) to another; the server then runs its CPU flat
out, and req/s and server CPU per request measure the same thing from two
sides. Medians over the rounds are reported, with the per-round spread.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "build" / "crystal" / "bench"
WRK_ARGS = ["-t1", "-c32"]
GOAL = 0.75
SERVER_CPU, WRK_CPU = "0", "1"


def pinning() -> tuple[list[str], list[str]]:
    """Command prefixes (server, wrk) that pin each to its own CPU, or none."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return [], []
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    if not {int(SERVER_CPU), int(WRK_CPU)} <= allowed:
        return [], []
    return ["taskset", "-c", SERVER_CPU], ["taskset", "-c", WRK_CPU]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(source: Path, output: Path, cwd: Path) -> float:
    """Release build with an empty compiler cache, so the time is a cold build's."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=OUT))
    try:
        started = time.monotonic()
        subprocess.run(
            ["crystal", "build", "--release", "--no-debug", str(source), "-o", str(output)],
            cwd=cwd,
            env=dict(os.environ, CRYSTAL_CACHE_DIR=str(cache)),
            check=True,
        )
        return time.monotonic() - started
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def start(binary: Path, port: int, env: dict[str, str], prefix: list[str]) -> subprocess.Popen:
    # With a prefix, taskset execs the server, so proc.pid is the server's pid.
    proc = subprocess.Popen(
        [*prefix, str(binary)],
        env={"PATH": os.environ.get("PATH", ""), "PORT": str(port), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5).read()
            return proc
        except urllib.error.HTTPError:
            return proc  # bare server: any HTTP answer means it is up
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{binary} did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wrk(url: str, seconds: int, pid: int, prefix: list[str]) -> tuple[float, float]:
    """Returns (requests/s, server CPU microseconds per request)."""
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [*prefix, "wrk", *WRK_ARGS, f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    cpu_used = cpu_seconds(pid) - cpu_before
    errors = re.search(r"Socket errors: (.*)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors or non_2xx:
        print(f"  warning: {url}: {errors and errors[0]} {non_2xx and non_2xx[0]}", file=sys.stderr)
    requests = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if requests is None or rate is None:
        raise RuntimeError(f"wrk printed no request count or rate for {url}:\n{out}")
    return float(rate[1]), cpu_used / int(requests[1]) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--path", default="/crystal", help="path of ours to load (bare serves any path)")
    args = parser.parse_args()
    for tool in ("crystal", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found on PATH")

    OUT.mkdir(parents=True, exist_ok=True)
    ours_bin, bare_bin = OUT / "server-release", OUT / "bare-hello-release"
    print("building release binaries ...", flush=True)
    ours_build = build(Path("src/server.cr"), ours_bin, REPO / "crystal_src")
    bare_build = build(Path("bare_hello.cr"), bare_bin, REPO / "bench")

    servers = {
        "ours": (ours_bin, {"AZ": "us-east-1a", "LOG_LEVEL": "info"}, args.path),
        "bare": (bare_bin, {}, "/"),
    }
    server_pin, wrk_pin = pinning()
    results: dict[str, list[float]] = {name: [] for name in servers}
    cpu_us: dict[str, list[float]] = {name: [] for name in servers}
    placement = (
        f"server on CPU {SERVER_CPU}, wrk on CPU {WRK_CPU}"
        if server_pin
        else "not pinned (taskset missing or < 2 CPUs): wrk shares CPUs with the server, expect noise"
    )
    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.2f} ({os.cpu_count()} CPUs; {placement})")
    for round_no in range(1, args.rounds + 1):
        order = list(servers) if round_no % 2 else list(reversed(servers))
        for name in order:
            binary, env, path = servers[name]
            port = free_port()
            proc = start(binary, port, env, server_pin)
            try:
                wrk(f"http://127.0.0.1:{port}{path}", 1, proc.pid, wrk_pin)  # warm-up, not counted
                rps, us = wrk(f"http://127.0.0.1:{port}{path}", args.seconds, proc.pid, wrk_pin)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)
            results[name].append(rps)
            cpu_us[name].append(us)
            print(f"round {round_no} {name:4}: {rps:10.0f} req/s  {us:5.1f} us server CPU/request", flush=True)

    med = {name: statistics.median(values) for name, values in results.items()}
    med_cpu = {name: statistics.median(values) for name, values in cpu_us.items()}
    ratio = med["ours"] / med["bare"]
    round_ratios = [o / b for o, b in zip(results["ours"], results["bare"], strict=True)]
    cpu_ratio = med_cpu["bare"] / med_cpu["ours"]

    def spread(values: list[float]) -> str:
        low, high = min(values), max(values)
        return f"{low:.1f}..{high:.1f}, spread {(high - low) / statistics.median(values) * 100:.1f}%"

    print()
    print(f"wrk {' '.join(WRK_ARGS)} -d{args.seconds}s, {args.rounds} rounds, medians; {placement}")
    print(f"ours ({args.path}, access log on): {med['ours']:10.0f} req/s  ({spread(results['ours'])})")
    print(f"bare hello:                 {med['bare']:10.0f} req/s  ({spread(results['bare'])})")
    print(f"ratio ours/bare: {ratio:.3f} (goal >= {GOAL}) -> {'OK' if ratio >= GOAL else 'BELOW GOAL'}")
    print(f"  per-round ratios: {', '.join(f'{r:.3f}' for r in round_ratios)}")
    print(f"server CPU/request: ours {med_cpu['ours']:.2f} us ({spread(cpu_us['ours'])})")
    print(f"                    bare {med_cpu['bare']:.2f} us ({spread(cpu_us['bare'])})")
    print(f"  CPU ratio bare/ours: {cpu_ratio:.3f} (goal >= {GOAL}) -> {'OK' if cpu_ratio >= GOAL else 'BELOW GOAL'}")
    load_after = os.getloadavg()[0]
    print(f"load average after: {load_after:.2f}")
    if max(load_before, load_after) > (os.cpu_count() or 1) - 1:
        # Other processes take turns on the pinned CPUs: req/s then measures
        # the machine, while CPU time per request still measures the server.
        print("  busy machine: the req/s ratio is unreliable, read the CPU ratio (or run again when idle)")
    print(f"release binary: {ours_bin.stat().st_size / 1e6:.2f} MB (dynamic, --no-debug; image build is --static)")
    print(f"release build time (cold cache): ours {ours_build:.1f} s, bare {bare_build:.1f} s")
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
