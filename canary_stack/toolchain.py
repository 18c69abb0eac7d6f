"""The Node.js side of the CDK, set up before jsii starts it (that is, before aws_cdk is imported).

Standard library only on import, and nothing runs on import: app.py (and the tests, and the deploy
check) call `prepare_toolchain` first, then import aws_cdk.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import NoReturn

from canary_stack.constants import PROJECT_ROOT

TMP_ROOT = PROJECT_ROOT / ".cdk-tmp"
PACKAGE_CACHE = "jsii-package-cache"  # in TMP_ROOT: jsii's extracted packages, kept between runs
RUN_PREFIX = "run-"  # each run's own temporary folder in TMP_ROOT (or in a TMPDIR inside the project)
CLI_PREFIX = "cli-"  # each offline CDK CLI run's folder in TMP_ROOT (canary_stack/ops/cdk_cli.py)
# A run folder untouched this long belongs to no live run: a synth takes seconds, and the app exits
# (removing its folder) before a deploy waits on CloudFormation.
STALE_AFTER_SECONDS = 24 * 3600


def prepare_toolchain(environ: MutableMapping[str, str]) -> Path:
    """Sets `environ` up for jsii and the CDK's bundling, and returns this run's temporary folder.

    cdk-docker-image-deployment bundles its Lambda handlers with esbuild at synth time:
    * esbuild comes from this project's node_modules (package-lock.json pins it), so it is put on
      PATH even when the app is run as `python app.py` rather than through `npx cdk`;
    * the handler sources live in jsii's temporary directory and package cache, and bundling refuses
      an entry point outside the project root (the one holding package-lock.json): "entryPath ...
      should be under projectRoot". Both are therefore kept inside the project, in .cdk-tmp/.

    Everything a run leaves in its temporary folder (jsii's runtime, ~2 MB, and the Node.js kernel's
    folders) is removed when it ends: `remove_at_exit` does that, on SIGTERM too. A TMPDIR already
    inside the project (a tool that removes it after the run, whatever happened) holds the folder.
    """
    given = Path(environ["TMPDIR"]).resolve() if environ.get("TMPDIR") else None
    parent = given if given is not None and given.is_relative_to(PROJECT_ROOT) else TMP_ROOT
    parent.mkdir(parents=True, exist_ok=True)
    for folder in {TMP_ROOT, parent}:
        hide_workspace_esbuild(folder)
        remove_stale_runs(folder)
    run_tmp = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=parent))
    environ["TMPDIR"] = str(run_tmp)
    # The bundle records its sources by their path relative to the project. With jsii's package
    # cache in the home directory that path depends on where the checkout is (a CI clone, a
    # worktree), and so would the handlers' asset hashes; inside the project it does not.
    environ["JSII_RUNTIME_PACKAGE_CACHE_ROOT"] = str(TMP_ROOT / PACKAGE_CACHE)
    node_bin = str(PROJECT_ROOT / "node_modules" / ".bin")
    if node_bin not in environ.get("PATH", "").split(os.pathsep):
        environ["PATH"] = node_bin + os.pathsep + environ.get("PATH", "")
    # The library calls a deprecated CDK API (GrantOnPrincipalOptions#scope) on every synth; that
    # is its to fix, and the warning would bury ours.
    environ.setdefault("JSII_DEPRECATED", "quiet")
    # jsii prints a banner on Node.js 20 (out of its support since 2026-10-30) on every run. Synthesis
    # works on it; the README recommends Node.js 22+. The variable is a list of majors: the running one
    # is added to whatever the user set (`1` would otherwise bring the banner back over our one-line errors),
    # once: a process that prepares again (the tests, the deploy check's app) gets the same value.
    name, node = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", environ.get("JSII_NODE", "node")
    argv = [node, "-p", "process.versions.node.split('.')[0]"]
    probe = (
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if shutil.which(node)
        else None
    )
    # While Node.js starts up to answer (~50 ms), Python loads jsii's own modules (~75 ms), which
    # `import aws_cdk` would load next anyway. jsii starts its kernel only at aws_cdk's first
    # assembly, after this function: the kernel still reads the variable set below.
    import jsii  # noqa: F401

    major = (probe.communicate()[0] if probe is not None else "").strip()
    listed = [v for v in environ.get(name, "").split(",") if v.strip()]
    environ[name] = ",".join(listed if major in {"", *(v.strip() for v in listed)} else [*listed, major])
    return run_tmp


# A package.json that exports nothing: `require("esbuild/package.json")` fails on it with
# ERR_PACKAGE_PATH_NOT_EXPORTED, and Node.js stops looking further up.
_NO_EXPORTS = '{"name": "esbuild", "private": true, "exports": {}}\n'


def hide_workspace_esbuild(folder: Path) -> None:
    """Makes the CDK run esbuild itself instead of through `npx --no-install esbuild`.

    aws-cdk-lib's NodejsFunction bundling asks `require("esbuild/package.json")` from where
    aws-cdk-lib sits; found, it calls esbuild a workspace package and runs it through the lock
    file's package manager (aws-lambda-nodejs/lib/package-installation.js, bundling.js). With jsii's
    files in .cdk-tmp/ (see prepare_toolchain) the lookup walks up into this project's
    node_modules, and every synth paid npm's start-up (about a second) to run esbuild. A
    `node_modules/esbuild` here, above jsii's files and below the project's, answers that lookup
    with nothing, so the CDK runs `esbuild` from PATH: the same pinned binary (node_modules/.bin,
    put on PATH below), the same bundle, the same asset hash.
    """
    stub = folder / "node_modules" / "esbuild" / "package.json"
    if not stub.is_file() or stub.read_text() != _NO_EXPORTS:
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(_NO_EXPORTS)


def remove_stale_runs(folder: Path) -> list[Path]:
    """Removes the run folders (run-*, cli-*) in `folder` that nothing has touched for a day: what a
    run stopped by SIGKILL or a power cut could not remove itself, and would otherwise keep until
    `make clean`. A live run's folder is never that old; jsii's package cache and the esbuild stub
    are no run folders and stay. Returns what it removed."""
    cutoff = time.time() - STALE_AFTER_SECONDS
    removed = []
    for entry in sorted(folder.glob("*")) if folder.is_dir() else []:
        if not entry.name.startswith((RUN_PREFIX, CLI_PREFIX)) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            stale = entry.stat().st_mtime < cutoff
        except FileNotFoundError:
            continue  # its own run removed it meanwhile
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def remove_at_exit(folder: Path, *, exit_on_sigterm: bool = True) -> None:
    """Removes `folder` when this process ends. Registered before aws_cdk is imported, so it runs
    after jsii's own exit handler has stopped the Node.js kernel.

    `exit_on_sigterm`: SIGTERM (CI, `timeout`, a tool stopping its synths) ends the process through
    its exit handlers; Python's default ends it on the spot, leaving jsii's runtime and the
    kernel's folders behind."""
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    if exit_on_sigterm:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def exit_now(code: int) -> NoReturn:
    """Ends the process with `code` without the interpreter's teardown, which spent about 0.2 s of
    every synth freeing aws_cdk's modules object by object after the work was done. What a normal
    exit does that matters still happens, in order: the exit handlers (jsii stops its Node.js kernel,
    then `remove_at_exit` removes this run's folder), then the output is flushed."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing left to deliver
    os._exit(code)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # The signal reaches the whole process group: jsii's Node.js kernel may be gone already, with a
    # request half-written to it. jsii's exit handler then fails to flush its pipe to the kernel and
    # Python would print that BrokenPipeError's traceback under the user's interrupted run.
    sys.unraisablehook = _quiet_broken_pipe
    sys.exit(128 + signum)


def _quiet_broken_pipe(unraisable: object) -> None:
    """Drops a BrokenPipeError raised in an exit handler (there is no one left to read it); anything
    else is reported as Python would."""
    if not isinstance(getattr(unraisable, "exc_value", None), BrokenPipeError):
        sys.__unraisablehook__(unraisable)  # type: ignore[arg-type]
