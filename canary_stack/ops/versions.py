"""Which answers are the canary's: known from the deployed stack, else from the source.

The service answers `{"commit": ...}` with the text of crystal_src/code_hash.txt as it was built
into its image. The canary runs the source of the checkout it was deployed from, so offline (verify
alone, no credentials) the canary's commit is that file's text. The deployed stack says more
(stack.py's outputs): the commit the canary's source embeds and the image (its asset hash, an
immutable tag) each version runs. When both versions run the same image (after a promotion, until
the next canary), their answers cannot be told apart and the split cannot be measured.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from canary_stack.constants import (
    OUTPUT_CANARY_COMMIT,
    OUTPUT_CANARY_IMAGE,
    OUTPUT_PRODUCTION_IMAGE,
    OUTPUT_TRAFFIC_ROUTER,
    OUTPUT_URL,
)
from canary_stack.text import shorten

CODE_HASH = Path("crystal_src") / "code_hash.txt"  # relative to a checkout

# The canary stack's CloudFormation outputs the tools read (stack.py).
URL_OUTPUT = OUTPUT_URL
CANARY_COMMIT_OUTPUT = OUTPUT_CANARY_COMMIT
CANARY_IMAGE_OUTPUT = OUTPUT_CANARY_IMAGE
PRODUCTION_IMAGE_OUTPUT = OUTPUT_PRODUCTION_IMAGE
TRAFFIC_ROUTER_OUTPUT = OUTPUT_TRAFFIC_ROUTER

# An image tag as ECR serves it (Docker / OCI distribution grammar); the stack's are asset hashes.
_IMAGE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class UnknownCanary(Exception):
    """Nothing says which commit the canary answers; the message is one line for the user."""


def parse_commit(raw: str) -> str:
    """The commit value the canary's answers carry: any non-blank printable text."""
    value = raw.strip()
    if not value or any(not c.isprintable() for c in value):
        raise argparse.ArgumentTypeError(
            f"must be the canary's commit value (printable, not blank), got {shorten(raw)}"
        )
    return value


def parse_image(raw: str) -> str:
    value = raw.strip()
    if not _IMAGE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"must be an image tag (1 to 128 letters, digits, '_', '.' or '-'; the stack's outputs give "
            f"asset hashes), got {shorten(raw)}"
        )
    return value


def source_commit(root: Path) -> str:
    """The commit the service built from the checkout at `root` answers (code_hash.txt, stripped as
    the Crystal source strips it)."""
    path = root / CODE_HASH
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UnknownCanary(f"cannot read the canary's commit from {CODE_HASH}: {type(err).__name__}") from None
    try:
        return parse_commit(text)
    except argparse.ArgumentTypeError:
        raise UnknownCanary(f"{CODE_HASH} must hold the canary's commit on one line, got {shorten(text)}") from None


@dataclass(frozen=True)
class Versions:
    """The canary's commit (and where that came from), and each version's image when known."""

    canary_commit: str
    source: str  # "--canary-commit", "the stack's CanaryCommit output" or "crystal_src/code_hash.txt"
    canary_image: str | None = None
    production_image: str | None = None

    @property
    def same_image(self) -> bool:
        return self.canary_image is not None and self.canary_image == self.production_image

    def verify_argv(self) -> list[str]:
        """verify's arguments that carry what is known."""
        argv = ["--canary-commit", self.canary_commit]
        if self.canary_image is not None and self.production_image is not None:
            argv += ["--canary-image", self.canary_image, "--production-image", self.production_image]
        return argv


def resolve(given: str | None, outputs: Mapping[str, str], root: Path) -> Versions:
    """The versions as well as they can be known: --canary-commit first, then what the deployed
    stack says, then the source. Raises UnknownCanary when none of them tells."""
    images = [_valid(outputs.get(name), parse_image) for name in (CANARY_IMAGE_OUTPUT, PRODUCTION_IMAGE_OUTPUT)]
    canary_image, production_image = images if None not in images else (None, None)
    if given is not None:
        return Versions(given, "--canary-commit", canary_image, production_image)
    from_stack = _valid(outputs.get(CANARY_COMMIT_OUTPUT), parse_commit)
    if from_stack is not None:
        return Versions(from_stack, f"the stack's {CANARY_COMMIT_OUTPUT} output", canary_image, production_image)
    try:
        commit = source_commit(root)
    except UnknownCanary as err:
        raise UnknownCanary(
            f"{err}, and the stack has no {CANARY_COMMIT_OUTPUT} output; give --canary-commit"
        ) from None
    return Versions(commit, str(CODE_HASH), canary_image, production_image)


def _valid(value: str | None, parse) -> str | None:
    if value is None:
        return None
    try:
        return parse(value)
    except argparse.ArgumentTypeError:
        return None
