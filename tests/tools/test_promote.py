"""canary_stack.ops.promote: the canary image's hash from a cloud assembly, and cdk.json rewritten to it."""

from __future__ import annotations

import difflib
import io
import json
from pathlib import Path

import pytest
from git_repo import git_repository

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.ops import promote
from canary_stack.ops.cli import UsageError
from canary_stack.ops.committed import parse_cdk_json

CANARY = "ca1eaa1edf0f32c0d9804a8daa09a5d4023eed29fd554d4fd15ed96afa26a2f5"
OLD = "0" * 64
CDK_JSON_100 = json.dumps({"context": {"canaryWeight": 100, "productionImage": OLD}}, indent=2) + "\n"


def assembly(tmp_path: Path, images: dict) -> Path:
    """A cloud assembly folder with the asset manifest `cdk synth` writes (trimmed to what is read)."""
    folder = tmp_path / "cdk.out"
    folder.mkdir()
    manifest = {"version": "53.0.0", "files": {"f" * 64: {"source": {"path": "x"}}}, "dockerImages": images}
    (folder / "CrystalCanary.assets.json").write_text(json.dumps(manifest, indent=1))
    return folder


def image(asset_hash: str) -> dict:
    return {
        "displayName": "Images/Canary/Copy/asset",
        "source": {"directory": f"asset.{asset_hash}"},
        "destinations": {"current_account-current_region": {"imageTag": asset_hash}},
    }


def test_the_canary_hash_is_the_one_docker_image_of_the_assembly(tmp_path):
    assert promote.canary_image_hash(assembly(tmp_path, {CANARY: image(CANARY)})) == CANARY


@pytest.mark.parametrize(
    "images, message",
    [
        ({}, "CrystalCanary.assets.json must list exactly one Docker image (the canary's), found 0"),
        ({CANARY: image(CANARY), OLD: image(OLD)}, "must list exactly one Docker image (the canary's), found 2"),
        ({"latest": image("latest")}, "the canary image's asset hash must be 64 lowercase hex digits, got 'latest'"),
        ({CANARY.upper(): image(CANARY)}, "must be 64 lowercase hex digits"),
    ],
)
def test_an_assembly_without_exactly_one_image_hash_is_refused(tmp_path, images, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        promote.canary_image_hash(assembly(tmp_path, images))


def test_a_folder_without_the_manifest_is_refused(tmp_path):
    with pytest.raises(UsageError, match="the cloud assembly has no CrystalCanary.assets.json"):
        promote.canary_image_hash(tmp_path)


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_real_cdk_json_changes_only_in_the_two_values():
    before = (ROOT / "cdk.json").read_text()
    after = promote.promoted_cdk_json(before, CANARY)
    assert after is not None and after.endswith("}\n") and not after.endswith("\n\n")
    for line in changed_lines(before, after):
        assert line.startswith(
            ('-    "canaryWeight": ', '-    "productionImage": ', '+    "canaryWeight": 0,')
        ) or line == (f'+    "productionImage": "{CANARY}",'), line
    assert f'+    "productionImage": "{CANARY}",' in changed_lines(before, after)
    context = json.loads(after)["context"]
    assert list(context)[:2] == ["canaryWeight", "productionImage"]  # side by side, as a reviewer reads them
    others = {k: v for k, v in json.loads(before)["context"].items() if k != "productionImage"}
    assert {k: v for k, v in context.items() if k != "productionImage"} == {**others, "canaryWeight": 0}
    assert promote.promoted_cdk_json(after, CANARY) is None  # idempotent


def test_an_earlier_production_image_and_weight_are_replaced_in_place():
    before = json.dumps({"app": "x", "context": {"productionImage": OLD, "a": True, "canaryWeight": 100}}, indent=2)
    after = promote.promoted_cdk_json(before + "\n", CANARY)
    assert (
        after
        == json.dumps({"app": "x", "context": {"a": True, "canaryWeight": 0, "productionImage": CANARY}}, indent=2)
        + "\n"
    )


def test_a_committed_weight_written_0_0_at_the_canary_image_is_nothing_to_promote():
    # The CLI hands 0.0 over as 0: already promoted.
    assert (
        promote.promoted_cdk_json(f'{{"context": {{"canaryWeight": 0.0, "productionImage": "{CANARY}"}}}}', CANARY)
        is None
    )


def test_a_cdk_json_without_context_gets_both_values():
    after = promote.promoted_cdk_json('{"app": "x"}', CANARY)
    assert after is not None
    assert parse_cdk_json(after) == {"canaryWeight": 0, "productionImage": CANARY}


def test_promote_refuses_a_malformed_cdk_json_before_synthesizing(tmp_path):
    (tmp_path / "cdk.json").write_text('{"context": {"canaryWeight": 10,}}')
    out, err = io.StringIO(), io.StringIO()
    assert promote.main([], root=tmp_path, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("promote: error: cdk.json is not valid JSON: Expecting property name")


def test_an_uncommitted_change_to_the_image_is_refused_before_synthesizing(tmp_path):
    # The canary ran the committed image: a hash of the working tree's could name one nobody tested.
    repository = git_repository(tmp_path, {"crystal_src/src/server.cr": "puts 1\n", "cdk.json": CDK_JSON_100})
    (repository / "crystal_src" / "src" / "server.cr").write_text("puts 2\n")
    out, err = io.StringIO(), io.StringIO()
    assert promote.main(["--unverified"], root=repository, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "promote: error: crystal_src/ has files that are not HEAD's ('crystal_src/src/server.cr'; changed, untracked, "
        "ignored or skip-worktree): the canary ran the committed image; commit, stash or remove them, then promote\n"
    )
    assert (repository / "cdk.json").read_text() == CDK_JSON_100
