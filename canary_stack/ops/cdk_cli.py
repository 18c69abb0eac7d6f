"""The project's CDK CLI, run the one way every tool runs it.

* its command lines: `synth_argv`, `diff_argv`, `deploy_argv` (context always as `-c key=value`);
* its environment: `offline_env` (synth and diff: no way to reach an AWS account) or `deploy_env`;
* its output: `quiet_lines` drops esbuild's bundling lines and repeated warnings;
* its processes: each in a process group of its own (`start`), stopped with everything it started
  (`stop`: `cdk synth` runs the Python app, which runs Node.js through jsii and esbuild), waited for
  in steps that notice an interruption (`communicate`);
* its temporary files: each synth gets a TMPDIR of its own inside the project (the app keeps jsii's
  runtime and the kernel's folders there), removed once the synth's process group is gone, however
  it ended, SIGKILL included;
* `Synths`: several synths at once, each configuration once per run (the synth cache).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from canary_stack.constants import CDK_CLI, STACK_NAME
from canary_stack.ops.cli import Failed
from canary_stack.ops.command import INTERRUPTION
from canary_stack.toolchain import CLI_PREFIX, TMP_ROOT, remove_stale_runs

FLAGS = ["--no-notices"]
SYNTH_TIMEOUT = 900  # a cold synth bundles Lambda handlers; far below this
DIFF_TIMEOUT = 300
STOP_GRACE = 5.0  # seconds a stopped process group gets to exit before SIGKILL
POLL = 0.2  # how often a wait for a child looks whether the run was interrupted

# What esbuild prints when cdk-docker-image-deployment bundles its handlers on a synth: the same
# lines every time, burying the one a user must read. Anything else (errors, warnings) is shown.
_BUNDLING = (
    re.compile(r"^Bundling asset \S+\.\.\.$"),
    re.compile(r"^\s+\S*index\.js(\.map)?\s+[\d.]+\s?[kmg]?b\s*$", re.IGNORECASE),
    re.compile(r"^\W*Done in \d+(\.\d+)?m?s$"),
    # After the app's own one-line error, the CLI only repeats that it failed (make says so too).
    re.compile(r"^\S+ app\.py: Subprocess exited with error \d+$"),
)


# ------------------------------------------------------------------ command lines


def context_args(context: Mapping[str, str]) -> list[str]:
    return [arg for key, value in context.items() for arg in ("-c", f"{key}={value}")]


def synth_argv(context: Mapping[str, str], outdir: Path | None = None) -> list[str]:
    """`cdk synth -q` with `context`; into `outdir` (default: the CLI's cdk.out)."""
    output = ["--output", str(outdir)] if outdir is not None else []
    return [CDK_CLI, "synth", "--quiet", *FLAGS, *output, *context_args(context)]


def diff_argv(new_assembly: Path, old_template: Path, stack: str = STACK_NAME) -> list[str]:
    # --app with an assembly directory: no synthesis; --template: compare with a file, not with
    # a deployed stack, so no CloudFormation call is made.
    # --no-ci: with CI=true the CLI would print the synthesis warnings into the diff on stdout.
    return [CDK_CLI, "diff", *FLAGS, "--no-ci", "--app", str(new_assembly), "--template", str(old_template), stack]


def deploy_argv(stack: str, context: Mapping[str, str]) -> list[str]:
    """`cdk deploy` of one stack, no approval prompt (the caller decided), context as -c values."""
    return [CDK_CLI, "deploy", stack, "--require-approval", "never", *FLAGS, *context_args(context)]


# ------------------------------------------------------------------ environment


def offline_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for synth and diff: no way to reach an AWS account, no telemetry.

    Without this, `cdk synth` asks the credential chain for a default account: with no
    credentials it would probe the EC2 instance metadata endpoint (seconds of timeouts off EC2),
    and with a profile it might open an SSO login. None of it changes an env-agnostic template.
    """
    env = {k: v for k, v in environ.items() if not k.startswith("AWS_")}
    # CDK_CONTEXT_JSON / CDK_OUTDIR from a calling shell would override the CLI's -c and -o.
    for key in ("CDK_CONTEXT_JSON", "CDK_OUTDIR", "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION"):
        env.pop(key, None)
    env.update(
        # The AWS SDK's notice about Node.js versions (on Node.js 20) is not about this diff.
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED="true",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    return env


def deploy_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment for a deploy: the user's, credentials included. On Node.js 20 the AWS SDK
    inside the CLI prints a nine-line notice (newer SDKs will need Node.js 22, which the README
    recommends) whenever it makes a client; it changes nothing here and would bury the line a user
    must read."""
    return {**environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true", "CDK_DISABLE_CLI_TELEMETRY": "true"}


# ------------------------------------------------------------------ output


def quiet_lines(lines: Iterable[str], write: Callable[[str], object]) -> None:
    """Passes the CLI's output on without esbuild's bundling lines and without a warning block
    printed before (the same annotation for several constructs); blank runs fold to one."""
    seen: set[str] = set()
    skipping = False
    blank = True  # no blank line first
    for line in lines:
        text = line.rstrip("\n")
        if any(pattern.match(text) for pattern in _BUNDLING):
            continue
        if text.startswith(("WARNING ", "[Warning")):
            skipping = text in seen
            seen.add(text)
        elif not text.startswith((" ", "\t")) and text.strip():
            skipping = False
        if skipping:
            continue
        if not text.strip():
            if blank:
                continue
            blank = True
        else:
            blank = False
        write(text + "\n")


# ------------------------------------------------------------------ processes


def start(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], **kwargs) -> subprocess.Popen:
    """Starts a CLI command in a process group of its own, so `stop` reaches what it starts too."""
    return subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), text=True, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs
    )


def stop(process: subprocess.Popen) -> None:
    """Ends a process started by `start` and everything in its group: SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break  # the whole group is gone
        if sig == signal.SIGTERM:
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
            # The leader may be gone while the app it started still cleans up: give the group the grace too.
            _wait_for_group(process.pid, STOP_GRACE)
    process.wait()


def _wait_for_group(pgid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)


def communicate(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """`process.communicate(timeout)`, but raising KeyboardInterrupt within POLL seconds of a signal."""
    waited = 0.0
    while True:
        INTERRUPTION.check()
        try:
            stdout, stderr = process.communicate(timeout=min(POLL, max(timeout - waited, 0.001)))
            return stdout or "", stderr or ""
        except subprocess.TimeoutExpired:
            waited += POLL
            if waited >= timeout:
                raise


def run_cdk(argv: Sequence[str], *, root: Path, offline: bool, out: TextIO) -> int:
    """Runs the CLI from `root` and returns its exit code. `offline` (synth): as `Synths` runs it (no
    credentials, so no account lookup and no SDK at all), its output through quiet_lines to `out`, in
    a temporary folder of its own. Otherwise (deploy) with the user's environment, output as printed."""
    if not offline:
        return subprocess.run(list(argv), cwd=root, env=deploy_env(os.environ)).returncode
    tmp = run_folder(root)
    try:
        env = {**offline_env(os.environ), "TMPDIR": str(tmp)}
        process = start(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, errors="replace")
        assert process.stdout is not None
        # The output is passed on by a thread, so this one notices Ctrl-C or SIGTERM within POLL seconds.
        reader = threading.Thread(
            target=quiet_lines, args=(process.stdout, lambda text: (out.write(text), out.flush()))
        )
        reader.start()
        try:
            while True:
                INTERRUPTION.check()
                try:
                    process.wait(timeout=POLL)
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            stop(process)  # on an interruption: the CLI, the app, Node.js and esbuild
            reader.join()
            process.stdout.close()
        return process.returncode
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_folder(root: Path) -> Path:
    """A new temporary folder inside the project for one CLI run: the app's TMPDIR (jsii's runtime,
    the Node.js kernel's folders). The caller removes it once the run's process group is gone; a
    run killed outright (SIGKILL) cannot, and the next run removes its folder a day later."""
    parent = Path(root) / TMP_ROOT.name
    parent.mkdir(exist_ok=True)
    remove_stale_runs(parent)
    return Path(tempfile.mkdtemp(prefix=CLI_PREFIX, dir=parent))


# ------------------------------------------------------------------ synthesis and diff


@dataclass
class _Synth:
    label: str
    key: tuple
    outdir: Path
    process: subprocess.Popen
    tmp: Path


class Synths:
    """Runs `cdk synth`s in parallel (each is mostly a single-threaded Node/Python start-up).

    The synth cache: a configuration (folder and context) this object has synthesized or is
    synthesizing is not synthesized again; `start` returns the folder that holds it.
    """

    def __init__(self, env: Mapping[str, str], err: TextIO, stack: str = STACK_NAME):
        self.env = dict(env)
        self.err = err
        self.stack = stack
        self.running: list[_Synth] = []
        self.done: dict[tuple, Path] = {}

    def start(self, label: str, cwd: Path, outdir: Path, context: Mapping[str, str]) -> Path:
        """Starts `cdk synth` of `cwd` with `context` into `outdir`, and returns the folder that will
        hold the assembly: `outdir`, or an earlier synth's of the same configuration."""
        key = (str(Path(cwd).resolve()), tuple(sorted(context.items())))
        earlier = self.done.get(key) or next((s.outdir for s in self.running if s.key == key), None)
        if earlier is not None:
            return earlier
        tmp = run_folder(cwd)
        env = {**self.env, "TMPDIR": str(tmp)}
        process = start(synth_argv(context, outdir), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.running.append(_Synth(label, key, outdir, process, tmp))
        return outdir

    def wait(self) -> None:
        """Waits for every synth started; Failed (one line, their output above) if any failed."""
        failures = []
        try:
            for synth in self.running:
                try:
                    output, _ = communicate(synth.process, SYNTH_TIMEOUT)
                except subprocess.TimeoutExpired:
                    stop(synth.process)
                    output, _ = synth.process.communicate()
                    failures.append((synth.label, f"timed out after {SYNTH_TIMEOUT}s", output))
                    continue
                if synth.process.returncode != 0:
                    failures.append((synth.label, f"cdk synth exit {synth.process.returncode}", output))
                elif not (synth.outdir / f"{self.stack}.template.json").is_file():
                    failures.append((synth.label, f"the app has no stack {self.stack}", output))
                else:
                    self.done[synth.key] = synth.outdir
        finally:
            self.kill()
        if failures:
            for label, why, output in failures:
                self.err.write(f"--- cdk synth of {label} ({why}) ---\n{output.rstrip()}\n")
            raise Failed("synthesis of " + " and ".join(label for label, _, _ in failures) + " failed (output above)")

    def kill(self) -> None:
        """Stops every synth still running with all it started, and removes their temporary folders."""
        for synth in self.running:
            stop(synth.process)  # even when the CLI has exited, the app it started may not have
            shutil.rmtree(synth.tmp, ignore_errors=True)
        self.running = []


def run_diff(
    new_assembly: Path,
    old_template: Path,
    env: Mapping[str, str],
    cwd: Path,
    out: TextIO,
    err: TextIO,
    stack: str = STACK_NAME,
) -> None:
    """`cdk diff` of an assembly's stack against a template file: the diff to `out`, the assembly's
    warnings to `err`. Failed (one line) when the CLI fails; its output is shown first."""
    process = start(
        diff_argv(new_assembly, old_template, stack), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = communicate(process, DIFF_TIMEOUT)
    finally:
        stop(process)
    # The CLI writes everything to stderr: first the assembly's warnings (the same on every
    # step; `cdk synth` shows them too), then the diff from the "Stack NAME" line on.
    lines = (stdout + stderr).splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.startswith(f"Stack {stack}")), 0)
    preamble = "".join(lines[:first])
    if preamble.strip():  # not the CLI's lone blank line
        err.write(preamble)
    if process.returncode != 0:
        err.write("".join(lines[first:]))
        raise Failed(f"cdk diff exit {process.returncode} (output above)")
    # The CLI ends with three blank lines before its summary: one reads the same.
    out.write(re.sub(r"\n{3,}", "\n\n", "".join(lines[first:]).rstrip()) + "\n")
