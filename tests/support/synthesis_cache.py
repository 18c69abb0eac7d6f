"""A configuration's synthesis kept in build/synth/ for the next session that needs it from exactly
the same inputs.

A synthesis is a pure function of what it reads, which tests/stack/test_determinism.py holds on every
run (a fresh synthesis has the bytes of the `synth` fixture's, kept or not). What it reads:
* the context: cdk.json's (with cdk.context.json and ~/.cdk.json), the CLI's own, the -c values;
* the app's sources (canary_stack/, the Lambda handlers with it) and the image's (crystal_src/: its
  asset hash is the canary's image tag), and how the tests synthesize (support/synthesis.py, this file);
* what runs it: the Python packages of the virtualenv (their dist-info names), node_modules (its
  lock file: esbuild bundles the library's handlers), the Python and Node.js versions, and the
  CDK_*, JSII_* and AWS_* environment the Node.js kernel starts with.
`inputs_digest` hashes all of them once per session; `synthesize_once` answers a configuration
synthesized from the same digest with a copy of its cloud assembly, and otherwise synthesizes it and
keeps it. A change to any input synthesizes every configuration again; one generation is kept. Like
build/scans/ and build/crystal/, a fresh clone (CI, the pipeline's build) has none and synthesizes
everything; `make clean` removes them. The direct `synthesize` calls (determinism, the image
changes) always synthesize.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from canary_stack.constants import PROJECT_ROOT
from support import synthesis
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
ENVIRONMENT = ("CDK_", "JSII_", "AWS_")
ASSEMBLY, STACKS = "assembly", "stacks.json"  # an entry: the cloud assembly, and its stacks' template files


def node_version(environ: Mapping[str, str]) -> str:
    node = environ.get("JSII_NODE", "node")
    try:
        return subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except OSError:
        return "no Node.js"


def inputs_digest(
    *,
    trees: Sequence[Path] = SOURCE_TREES,
    files: Sequence[Path] = SOURCE_FILES,
    python: Path = Path(sys.executable),
    environ: Mapping[str, str] = os.environ,
) -> str:
    """The hash of everything a synthesis reads besides its context (the module's docstring)."""
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            digest.update((part if isinstance(part, bytes) else part.encode()) + b"\0")

    add(sys.version, node_version(environ), *installed(python))
    for name in sorted(environ):
        if name.startswith(ENVIRONMENT):
            add(name, environ[name])
    for path in files:
        add(path.name, path.read_bytes() if path.is_file() else b"<no file>")
    for tree in trees:
        for path in sorted(p for p in tree.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            add(f"{tree.name}/{path.relative_to(tree).as_posix()}", path.read_bytes())
    return digest.hexdigest()[:32]


def synthesize_once(inputs: str, outdir: Path, **cli_context: str) -> Synthesis:
    """`synthesis.synthesize(outdir, **cli_context)`, or a copy in `outdir` of the cloud assembly an
    earlier synthesis of the same configuration from the same `inputs` (`inputs_digest`) made."""
    context = json.dumps(synthesis.app_context(**cli_context), sort_keys=True)
    entry = SYNTHESES / f"{inputs[:16]}-{hashlib.sha256(context.encode()).hexdigest()[:16]}"
    if (entry / STACKS).is_file():
        try:
            return restore(entry, outdir)
        except (OSError, ValueError):
            shutil.rmtree(entry, ignore_errors=True)  # damaged (a half-removed folder): made again
            shutil.rmtree(outdir, ignore_errors=True)
            outdir.mkdir(parents=True)
    made = synthesis.synthesize(outdir, **cli_context)
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


def restore(entry: Path, outdir: Path) -> Synthesis:
    shutil.copytree(entry / ASSEMBLY, outdir, symlinks=True, dirs_exist_ok=True)
    stacks = json.loads((entry / STACKS).read_text())
    return Synthesis(outdir=outdir, templates=read_templates(outdir, stacks))


def keep(made: Synthesis, entry: Path) -> None:
    """Keeps `made` as `entry`, whole or not at all, and removes the other generations' entries.
    The template files must read back as the synthesis returned them: that is what `restore` gives."""
    partial = entry.with_name(f".{entry.name}.{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(made.outdir, partial / ASSEMBLY, symlinks=True)
    stacks = stack_templates(partial / ASSEMBLY)
    if read_templates(partial / ASSEMBLY, stacks) != made.templates:
        shutil.rmtree(partial, ignore_errors=True)
        raise AssertionError(f"the template files in {made.outdir} differ from what the synthesis returned")
    (partial / STACKS).write_text(json.dumps(stacks))
    generation = entry.name.split("-", 1)[0]
    for other in SYNTHESES.iterdir():
        if other.name.lstrip(".").split("-", 1)[0] != generation:
            shutil.rmtree(other, ignore_errors=True)
    try:
        partial.rename(entry)
    except OSError:  # another worker kept the same configuration first
        shutil.rmtree(partial, ignore_errors=True)
