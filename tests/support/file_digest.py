"""Hashing files by their names and bytes, for the results the suite keeps between runs (the Crystal
builds in build/crystal/, the syntheses in build/synth/)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def add_files(digest: Digest, roots: Iterable[Path], *, relative_to: Path) -> None:
    """Adds every file under `roots` (a root may be a file), in name order, as its path relative to
    `relative_to` and its bytes. Bytecode (__pycache__/) is no input of anything kept."""
    for root in roots:
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file() and "__pycache__" not in path.relative_to(relative_to).parts:
                digest.update(f"{path.relative_to(relative_to)}\0".encode())
                digest.update(path.read_bytes() + b"\0")
