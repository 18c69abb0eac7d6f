"""Make the canary's image production, through git: `make promote`.

    python -m canary_stack.ops.promote

1. synthesizes the working tree offline (as offline_diff does: no AWS account is contacted),
   after checking that crystal_src/ has no uncommitted change (the canary ran the committed image);
2. reads the canary image's asset hash from the cloud assembly's CrystalCanary.assets.json
   (`dockerImages` has exactly one entry, keyed by that hash: the image built from crystal_src/);
3. rewrites cdk.json: context `productionImage` := that hash, `canaryWeight` := 0. Nothing else
   in the file changes (2-space JSON, key order, trailing newline);
4. prints the offline diff of the working tree against HEAD and the `git commit` to run.

Deploying it is an ordinary deploy (or the merge of the pull request): production rolls onto the
canary's exact image, then the weight returns to 0. Undo is the revert of that commit. When
cdk.json already says so, there is nothing to promote (exit 0).

Exit codes: 0 promoted or nothing to promote, 1 synthesis or diff failed, 2 a cdk.json or cloud
assembly this cannot read (one line), 130 interrupted.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from canary_stack.constants import CRYSTAL_SRC, PROJECT_ROOT, STACK_NAME
from canary_stack.ops import offline_diff
from canary_stack.ops.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError, one_line, usage_line
from canary_stack.ops.committed import CDK_JSON, parse_cdk_json
from canary_stack.text import shorten

ASSET_HASH = re.compile(r"[0-9a-f]{64}")
PRODUCTION_IMAGE = "productionImage"
WEIGHT = "canaryWeight"


class Failed(Exception):
    """Synthesis or the diff failed; their output was shown."""


def canary_image_hash(assembly: Path, stack: str = STACK_NAME) -> str:
    """The asset hash of the one Docker image in `stack`'s asset manifest in a cloud assembly."""
    manifest = assembly / f"{stack}.assets.json"
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"the cloud assembly has no {manifest.name}") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read {manifest.name}: {one_line(err)}") from None
    images = document.get("dockerImages") if isinstance(document, dict) else None
    if not isinstance(images, dict) or len(images) != 1:
        count = len(images) if isinstance(images, dict) else 0
        raise UsageError(
            f"{manifest.name} must list exactly one Docker image (the canary's), found {count}: "
            f"{shorten(', '.join(images) if isinstance(images, dict) else images)}"
        )
    (asset_hash,) = images
    if not ASSET_HASH.fullmatch(asset_hash):
        raise UsageError(f"the canary image's asset hash must be 64 lowercase hex digits, got {shorten(asset_hash)}")
    return asset_hash


def promoted_cdk_json(text: str, asset_hash: str) -> str | None:
    """cdk.json's text with productionImage := asset_hash and canaryWeight := 0, every other byte
    as a 2-space JSON dump of the same document writes it; None when it already says so.

    productionImage is read as text, not with the app's parser, so any earlier form of it (a hash,
    or a word such as "pinned") is replaced.
    """
    context = parse_cdk_json(text)  # one-line errors for a malformed file; numbers as the CLI sees them
    weight = context.get(WEIGHT, 0)
    if context.get(PRODUCTION_IMAGE) == asset_hash and weight == 0 and not isinstance(weight, bool):
        return None
    document = json.loads(text)  # as written (10.0 stays 10.0), in order
    old = document.setdefault("context", {})
    new: dict[str, Any] = {}
    if WEIGHT not in old:
        new[WEIGHT] = 0
        new[PRODUCTION_IMAGE] = asset_hash
    for key, value in old.items():
        if key == PRODUCTION_IMAGE:
            continue
        new[key] = 0 if key == WEIGHT else value
        if key == WEIGHT:
            new[PRODUCTION_IMAGE] = asset_hash  # next to the weight, where a reviewer reads it
    document["context"] = new
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def synthesize(root: Path, outdir: Path, err: TextIO, stack: str = STACK_NAME) -> None:
    """`cdk synth` of the working tree into `outdir`, offline, with offline_diff's helpers."""
    synths = offline_diff.Synths(offline_diff.offline_env(os.environ), err, stack)
    try:
        synths.start("the working tree", root, outdir, {})
        synths.wait()
    except offline_diff.Failed as exc:
        raise Failed(str(exc)) from None
    finally:
        synths.kill()


def check_image_committed(root: Path) -> None:
    """The canary ran the committed image: an uncommitted change under crystal_src/ would give a
    hash no canary ever ran, and production would take an image nobody tested."""
    folder = CRYSTAL_SRC.relative_to(PROJECT_ROOT)
    try:
        changed = offline_diff.git(root, "status", "--porcelain", "--untracked-files=all", "--", str(folder))
    except offline_diff.Failed as err:
        raise UsageError(f"cannot ask git whether {folder}/ is committed: {err}") from None
    if changed:
        paths = [line.split(maxsplit=1)[-1] for line in changed.splitlines()]
        shown = paths[0] + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
        raise UsageError(
            f"{folder}/ has uncommitted changes ({shorten(shown)}): the canary ran the committed image; "
            "commit or stash them, then promote"
        )


def commit_command(asset_hash: str) -> str:
    return f"git commit -m 'Promote the canary image {asset_hash[:12]} to production' {CDK_JSON}"


def promote(root: Path, out: TextIO, err: TextIO) -> int:
    path = root / CDK_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {CDK_JSON}: {one_line(exc)}") from None
    parse_cdk_json(text)  # a malformed cdk.json is refused before a minute of synthesis
    check_image_committed(root)
    out.write("synthesizing the working tree (offline) to find the canary image's asset hash...\n")
    out.flush()
    with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
        synthesize(root, Path(tmp) / "cdk.out", err)
        asset_hash = canary_image_hash(Path(tmp) / "cdk.out")
    out.write(f"canary image: {asset_hash}\n")
    updated = promoted_cdk_json(text, asset_hash)
    if updated is None:
        out.write(f"nothing to promote: {CDK_JSON} already runs {asset_hash[:12]} as production at canaryWeight 0\n")
        return EXIT_OK
    path.write_text(updated, encoding="utf-8")
    out.write(f"{CDK_JSON}: {PRODUCTION_IMAGE} := {asset_hash}, {WEIGHT} := 0\n")
    out.write("what this changes in AWS (offline diff against HEAD):\n")
    out.flush()
    code = offline_diff.main(["--base", "HEAD"], root=root, stdout=out, stderr=err)
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    if code != EXIT_OK:
        err.write(
            f"promote: error: {CDK_JSON} was rewritten, but its diff failed (offline_diff exit {code}, above); "
            f"`git checkout {CDK_JSON}` undoes the rewrite\n"
        )
        return EXIT_FAILED
    out.write(
        "review the diff above: production's task definition takes the canary's image, the weight returns to 0.\n"
        f"then: {commit_command(asset_hash)}\n"
        "and merge the pull request (the pipeline deploys it) or `make deploy`; undo is `git revert` of that commit.\n"
    )
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        out.write("usage: python -m canary_stack.ops.promote\n\n" + __doc__.split("\n\n", 2)[2])
        return EXIT_OK
    if args:
        err.write(usage_line("promote", UsageError(f"takes no arguments, got {shorten(' '.join(args))}")))
        return EXIT_USAGE
    with offline_diff.INTERRUPTION:
        try:
            code = promote(root, out, err)
            offline_diff.INTERRUPTION.check()
            return code
        except UsageError as exc:
            err.write(usage_line("promote", exc))
            return EXIT_USAGE
        except (Failed, OSError) as exc:
            if offline_diff.INTERRUPTION.happened:
                return interrupted(err)
            err.write(f"promote: error: {one_line(exc)}\n")
            return EXIT_FAILED
        except KeyboardInterrupt:
            return interrupted(err)


def interrupted(err: TextIO) -> int:
    err.write(f"promote: interrupted; check `git diff {CDK_JSON}`\n")
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
