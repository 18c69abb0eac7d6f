"""A scanner run (checkov, cfn-lint) whose clean verdict is kept in build/scans/ for the next run
that gives it exactly the same inputs.

A scanner is a pure function of what it reads: its own installed packages (their versions), its
options, its configuration file, and the name and bytes of each template. `scan` hashes all of
these; when an earlier run with the same hash found nothing, it answers with that run's output
instead of starting the scanner again (checkov costs about 7 s of CPU, cfn-lint about 1 s per
template). Any change to a template, an option, the ignore list or a scanner's version is a new
hash and runs the scanner. Only a clean verdict (exit 0) is kept: a finding or a crash is reported
fresh every time. Like the Crystal builds in build/crystal/ (crystal/support.py), a fresh clone (CI)
starts with none and runs every scanner; `make clean` removes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from canary_stack.constants import PROJECT_ROOT

SCANS = PROJECT_ROOT / "build" / "scans"


def installed(executable: Path) -> list[str]:
    """What decides a scanner's behaviour besides its input: its virtualenv's Python
    (pyvenv.cfg) and every installed distribution with its version (the dist-info folder names)."""
    venv = executable.parent.parent  # <venv>/bin/<scanner>
    config = venv / "pyvenv.cfg"
    packages = sorted(p.name for p in venv.glob("lib/python*/site-packages/*.dist-info"))
    return [config.read_text() if config.exists() else "no pyvenv.cfg", *packages]


def key(name: str, argv: Sequence[str], inputs: Sequence[Path], config: Sequence[Path]) -> str:
    """The hash of everything the run reads. Where the inputs lie is no input (a temporary folder):
    in the arguments, an input's path and its folder are placeholders, and the inputs count by their
    names and bytes, in no particular order."""
    paths, folders = {str(p) for p in inputs}, {str(p.parent) for p in inputs}
    options = ["<input>" if a in paths else "<folder>" if a in folders else a for a in argv[1:]]
    contents = sorted(f"{p.name}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in inputs)
    digest = hashlib.sha256()
    for part in [name, *installed(Path(argv[0])), *options, *contents]:
        digest.update(part.encode() + b"\0")
    for path in config:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:32]


def scan(
    name: str, argv: list[str], *, inputs: Sequence[Path], config: Sequence[Path] = (), timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Runs `argv` in the project root, or answers with the output of an earlier clean run of the
    same scanner on the same inputs (`inputs`: the templates; `config`: files it reads, such as
    .cfnlintrc.yaml). `name` names the cache entry: one is kept per name."""
    entry = SCANS / f"{name}-{key(name, argv, inputs, config)}.json"
    if entry.exists():
        kept = json.loads(entry.read_text())
        return subprocess.CompletedProcess(argv, 0, kept["stdout"], kept["stderr"])
    result = subprocess.run(argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode == 0:
        SCANS.mkdir(parents=True, exist_ok=True)
        for old in SCANS.glob(f"{name}-*.json"):
            old.unlink(missing_ok=True)
        partial = entry.with_name(f".{entry.name}.{os.getpid()}")
        partial.write_text(json.dumps({"stdout": result.stdout, "stderr": result.stderr}))
        os.replace(partial, entry)  # atomic: a concurrent session never reads half an entry
    return result
