"""A configuration's synthesis kept in build/synth/ for the next session that needs it from exactly
the same inputs.

A synthesis is a pure function of what it reads, which tests/stack/test_determinism.py holds on every
run (a fresh synthesis has the bytes of the `synth` fixture's, kept or not). What it reads:
* the context: cdk.json's (with cdk.context.json and ~/.cdk.json), the CLI's own, the -c values;
* the app's sources (canary_stack/, the Lambda handlers with it) and the image's (crystal_src/: its
  asset hash is the canary's image tag), and how the tests synthesize (support/synthesis.py, this file);
* what runs it: the Python packages of the virtualenv (their dist-info names), node_modules (its
  lock file: esbuild bundles the library's handlers), the Python and Node.js that run it, and the
  CDK_*, JSII_*, AWS_* and ESBUILD_* environment the Node.js kernel starts with.
`read_inputs` hashes all of them when the session starts, before the tests import the app's modules
(tests/conftest.py). `synthesize_once` answers a configuration synthesized from the same inputs with a
copy of its cloud assembly, checked file by file; otherwise it synthesizes it and keeps it, unless the
sources changed since the session started (an edit saved or a branch checked out during the run: the
session may have run either version). A change to any input synthesizes every configuration again;
one generation is kept. Like build/scans/ and build/crystal/, a fresh clone (CI, the pipeline's
build) has none and synthesizes everything; `make clean` removes them. The direct `synthesize` calls
(determinism, the image changes) always synthesize. Not seen: a package rebuilt in place under the
same version (as for build/scans/).

Sessions may share build/synth/ (two pytest runs in one checkout): an entry appears whole (renamed
into place) and disappears whole (renamed away, then removed), a session removes no other session's
half-made entry, and keeping is best-effort: a synthesis that could not be kept is still returned.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from canary_stack.constants import PROJECT_ROOT
from support import synthesis
from support.file_digest import add_files
from support.scans import installed
from support.synthesis import Synthesis

SYNTHESES = PROJECT_ROOT / "build" / "synth"
SOURCE_TREES = (PROJECT_ROOT / "canary_stack", PROJECT_ROOT / "crystal_src")
SOURCE_FILES = (
    PROJECT_ROOT / "package.json",
    PROJECT_ROOT / "package-lock.json",
    PROJECT_ROOT / "node_modules" / ".package-lock.json",
    Path(synthesis.__file__),
    Path(__file__),
)
ENVIRONMENT = ("CDK_", "JSII_", "AWS_", "ESBUILD_")
ASSEMBLY, INDEX = "assembly", "index.json"  # an entry: the cloud assembly; its stacks and every file's hash
# A folder starting with "." is being made or removed by a session; one this old belongs to none.
ABANDONED_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class Inputs:
    """What the syntheses of a session read besides their context: `digest` hashes all of it,
    `sources` the files alone (hashed again after each synthesis)."""

    digest: str
    sources: str
    trees: Sequence[Path]
    files: Sequence[Path]


def node(environ: Mapping[str, str]) -> str:
    """Which Node.js runs the kernel (jsii's JSII_NODE, else `node` on PATH), and its version."""
    name = environ.get("JSII_NODE", "node")
    found = shutil.which(name, path=environ.get("PATH"))
    if found is None:
        return f"no {name}"
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = "no answer"
    return f"{os.path.realpath(found)} {version.strip()}"


def sources_digest(trees: Sequence[Path], files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<no file>") + b"\0")
    for tree in trees:
        add_files(digest, [tree], relative_to=tree.parent)
    return digest.hexdigest()


def read_inputs(
    *,
    trees: Sequence[Path] = SOURCE_TREES,
    files: Sequence[Path] = SOURCE_FILES,
    python: Path = Path(sys.executable),
    environ: Mapping[str, str] = os.environ,
) -> Inputs:
    """The inputs of this session's syntheses, read now (the module's docstring)."""
    sources = sources_digest(trees, files)
    digest = hashlib.sha256()
    runtime = [sys.version, node(environ), *installed(python)]
    variables = [f"{name}={environ[name]}" for name in sorted(environ) if name.startswith(ENVIRONMENT)]
    for part in [*runtime, *variables, sources]:
        digest.update(part.encode() + b"\0")
    return Inputs(digest=digest.hexdigest()[:32], sources=sources, trees=tuple(trees), files=tuple(files))


def synthesize_once(inputs: Inputs, outdir: Path, **cli_context: str) -> Synthesis:
    """`synthesis.synthesize(outdir, **cli_context)`, or a copy in `outdir` of the cloud assembly an
    earlier synthesis of the same configuration from the same `inputs` made."""
    context = json.dumps(synthesis.app_context(**cli_context), sort_keys=True)
    entry = SYNTHESES / f"{inputs.digest[:16]}-{hashlib.sha256(context.encode()).hexdigest()[:16]}"
    if (entry / INDEX).is_file():
        try:
            return restore(entry, outdir)
        except (OSError, ValueError, KeyError):
            remove(entry)  # damaged (a file missing or changed): made again below
            shutil.rmtree(outdir, ignore_errors=True)
            outdir.mkdir(parents=True)
    made = synthesis.synthesize(outdir, **cli_context)
    if sources_digest(inputs.trees, inputs.files) == inputs.sources:
        keep(made, entry)
    return made


def stack_templates(assembly: Path) -> dict[str, str]:
    """The template file of each stack in a cloud assembly, by stack name (its manifest.json)."""
    artifacts = json.loads((assembly / "manifest.json").read_text())["artifacts"]
    return {
        properties.get("stackName", name): properties["templateFile"]
        for name, artifact in artifacts.items()
        if artifact["type"] == "aws:cloudformation:stack"
        for properties in [artifact["properties"]]
    }


def read_templates(assembly: Path, stacks: Mapping[str, str]) -> dict[str, dict]:
    return {name: json.loads((assembly / file).read_text()) for name, file in stacks.items()}


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def restore(entry: Path, outdir: Path) -> Synthesis:
    """The kept assembly copied into `outdir`; ValueError when the copy is not the assembly that was kept."""
    index = json.loads((entry / INDEX).read_text())
    shutil.copytree(entry / ASSEMBLY, outdir, symlinks=True, dirs_exist_ok=True)
    if file_hashes(outdir) != index["files"]:
        raise ValueError(f"{entry.name}: its files are not the ones it was kept with")
    return Synthesis(outdir=outdir, templates=read_templates(outdir, index["stacks"]))


def keep(made: Synthesis, entry: Path) -> None:
    """Keeps `made` as `entry`, whole or not at all, and removes the other generations' entries.
    The template files must read back as the synthesis returned them: that is what `restore` gives."""
    partial = entry.with_name(f".{entry.name}.{os.getpid()}")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(made.outdir, partial / ASSEMBLY, symlinks=True)
        stacks = stack_templates(partial / ASSEMBLY)
        if read_templates(partial / ASSEMBLY, stacks) != made.templates:
            shutil.rmtree(partial, ignore_errors=True)
            raise AssertionError(f"the template files in {made.outdir} differ from what the synthesis returned")
        index = {"stacks": stacks, "files": file_hashes(partial / ASSEMBLY)}
        (partial / INDEX).write_text(json.dumps(index, indent=1, sort_keys=True))
        remove_other_generations(entry.name.split("-", 1)[0])
        if entry.exists() and not (entry / INDEX).is_file():
            remove(entry)  # left half-made by an older version of this file, or damaged by hand
        try:
            partial.rename(entry)
        except OSError:  # another session or worker kept the same configuration first
            shutil.rmtree(partial, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        warnings.warn(f"build/synth/: {entry.name} not kept ({err})", stacklevel=2)


def remove(entry: Path) -> None:
    """Removes an entry in one step for whoever reads it (renamed away first), then its files."""
    trash = entry.with_name(f".removed-{entry.name}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        entry.rename(trash)
    except OSError:
        return  # gone already
    shutil.rmtree(trash, ignore_errors=True)


def remove_other_generations(generation: str) -> None:
    """Every whole entry of another generation, and what an interrupted session left an hour ago or more."""
    abandoned = time.time() - ABANDONED_AFTER_SECONDS
    for other in SYNTHESES.iterdir() if SYNTHESES.is_dir() else []:
        if not other.name.startswith("."):
            if other.name.split("-", 1)[0] != generation:
                remove(other)
            continue
        try:
            if other.stat().st_mtime < abandoned:
                shutil.rmtree(other, ignore_errors=True)
        except FileNotFoundError:
            pass
