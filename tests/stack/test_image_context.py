"""The canary image's build context, and so its asset hash (the tag `make promote` names), is exactly
the files the Dockerfile needs: nothing git does not track, and never a file a symlink points to
outside the repository (issue 18.6). Hashes are the CDK's own, from a DockerImageAsset with the
options canary_stack/image.py gives the real one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ecr_assets as ecr_assets

from canary_stack.constants import CRYSTAL_SRC
from canary_stack.image import PLATFORMS, image_asset_options
from canary_stack.ops.promote import IMAGE_PATHSPECS


def asset_hash(directory: Path, architecture: str = "x86_64") -> str:
    stack = cdk.Stack(cdk.App(), "Hash")
    options = image_asset_options(PLATFORMS[architecture][0])  # type: ignore[index]
    asset = ecr_assets.DockerImageAsset(stack, "Image", directory=str(directory), **options._values)
    return asset.asset_hash


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of crystal_src/'s committed files (no build leftovers)."""
    copy = tmp_path / "crystal_src"
    shutil.copytree(CRYSTAL_SRC, copy, ignore=shutil.ignore_patterns("bin", "lib", ".crystal-cache"))
    return copy


def test_the_real_image_is_hashed_with_these_options(synth, source):
    """The library passes the options through: the app's canary hash is this test's hash of crystal_src/."""
    manifest = json.loads((synth().outdir / "CrystalCanary.assets.json").read_text())
    (canary_hash,) = manifest["dockerImages"]
    assert canary_hash == asset_hash(CRYSTAL_SRC)


def test_a_source_change_changes_the_hash(source):
    before = asset_hash(source)
    (source / "src" / "server.cr").write_text((source / "src" / "server.cr").read_text() + "\n# changed\n")
    assert asset_hash(source) != before


JUNK = {
    "src/.server.cr.swp": "vim swap",
    "src/server.cr~": "emacs backup",
    "src/#server.cr#": "emacs autosave",
    "src/crystal_backend/.app.cr.un~": "vim undo",
    "src/__pycache__/x.cpython-311.pyc": "bytecode",
    "src/notes.txt": "an untracked note",
    "notes.txt": "an untracked note",
    "bin/server": "a local build",
    ".crystal-cache/x": "a compiler cache",
    "spec/extra_spec.cr": "specs are not in the image",
}


@pytest.mark.parametrize("path", sorted(JUNK))
def test_files_the_dockerfile_does_not_copy_leave_the_hash_alone(source, path):
    before = asset_hash(source)
    (source / path).parent.mkdir(parents=True, exist_ok=True)
    (source / path).write_text(JUNK[path])
    assert asset_hash(source) == before


def test_an_editor_lock_link_leaves_the_hash_alone(source):
    # Emacs marks a file being edited with a dangling link `.#name` -> user@host.pid.
    before = asset_hash(source)
    os.symlink("user@host.1234:1700000000", source / "src" / ".#server.cr")
    assert asset_hash(source) == before


def test_a_link_out_of_the_repository_is_hashed_as_the_link_not_its_target(source, tmp_path):
    outside = tmp_path / "outside.cr"
    outside.write_text("puts 1\n")
    os.symlink(outside, source / "src" / "linked.cr")
    with_link = asset_hash(source)
    outside.write_text("puts 2\n")  # what the link points to changes; nothing in the repository does
    assert asset_hash(source) == with_link


def test_promote_watches_exactly_what_the_hash_covers():
    # promote refuses files that are not HEAD's among IMAGE_PATHSPECS: they must be the build context.
    assert IMAGE_PATHSPECS == [
        "crystal_src/Dockerfile",
        "crystal_src/.dockerignore",
        "crystal_src/code_hash.txt",
        ":(glob)crystal_src/src/**/*.cr",
        ":(glob,exclude)crystal_src/src/**/.*",
    ]
    assert (CRYSTAL_SRC / ".dockerignore").read_text().splitlines()[-4:] == [
        "*",
        "!code_hash.txt",
        "!src/**/*.cr",
        "src/**/.*",
    ]
