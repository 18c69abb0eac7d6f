"""What reviewers rely on: identical inputs give identical bytes, a weight step touches one resource,
the image copy re-runs exactly when the image changes, and promotion moves production onto the
canary's exact image without another copy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support.synthesis import CLI_CONTEXT, cdk_json_context, synthesize

from canary_stack import cdk_app
from canary_stack.constants import CRYSTAL_SRC


def changed(a: dict, b: dict) -> list[str]:
    ra, rb = a["Resources"], b["Resources"]
    return sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))


ROUTER_CONTEXT: dict[str, dict[str, str]] = {
    "appmesh": {"trafficRouter": "appmesh"},
    "alb": {},
    "lattice": {"trafficRouter": "lattice"},
}


@pytest.mark.parametrize("router", ["appmesh", "alb", "lattice"])
def test_same_inputs_synthesize_byte_identical_templates(synth, tmp_path, router):
    first = synth(canaryWeight="10", **ROUTER_CONTEXT[router])
    # A second, separate synthesis (the library's Date.now() differs between the two).
    second = synthesize(tmp_path, canaryWeight="10", **ROUTER_CONTEXT[router])
    name = "CrystalCanary.template.json"
    assert (first.outdir / name).read_bytes() == (second.outdir / name).read_bytes()
    assert not re.search(r"CustomResource\d{10,}", (second.outdir / name).read_text())


@pytest.mark.parametrize("router", ["appmesh", "alb", "lattice"])
@pytest.mark.parametrize("before, after", [("10", "50"), ("0", "10"), ("50", "100")])
def test_weight_step_changes_only_the_router(synth, router, before, after):
    a = synth(canaryWeight=before, **ROUTER_CONTEXT[router]).template
    b = synth(canaryWeight=after, **ROUTER_CONTEXT[router]).template
    (only,) = changed(a, b)
    if router == "lattice":
        # The weighted Lattice rule; the listener (production's) and the header rule do not change.
        assert a["Resources"][only]["Type"] == "AWS::VpcLattice::Rule"
        assert len(a["Resources"][only]["Properties"]["Action"]["Forward"]["TargetGroups"]) == 2
    elif router == "appmesh":
        assert a["Resources"][only]["Type"] == "AWS::AppMesh::Route"
        assert a["Resources"][only]["Properties"]["RouteName"] == "crystal-route"
    else:
        # The weighted listener rule carries the weights; the header rule and the listener do not change.
        assert a["Resources"][only]["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"
        assert "ForwardConfig" in a["Resources"][only]["Properties"]["Actions"][0]


def test_image_copy_has_a_stable_id_and_the_image_hash(synth):
    s = synth(canaryWeight="10")
    resources = s.template["Resources"]
    copies = {k: v for k, v in resources.items() if v["Type"] == "AWS::CloudFormation::CustomResource"}
    assert list(copies) == ["CanaryImageCopy"]
    content_hash = copies["CanaryImageCopy"]["Properties"]["ImageContentHash"]
    # It is the hash of the Docker image asset the deploy publishes.
    assets = json.loads((s.outdir / "CrystalCanary.assets.json").read_text())
    assert list(assets["dockerImages"]) == [content_hash]
    assert assets["dockerImages"][content_hash]["source"]["directory"].startswith("asset.")
    # And its CodeBuild copy job runs on a current CodeBuild image, not the retired standard:5.0.
    project = s.one("AWS::CodeBuild::Project")["Properties"]
    assert project["Environment"]["Image"] == "aws/codebuild/standard:7.0"
    assert content_hash in json.dumps(project["Source"]["BuildSpec"])


def synth_with_image(directory: Path, outdir: Path, **cli_context: str) -> dict:
    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT, **cli_context}, outdir=str(outdir))
    cdk_app.build(app, image_directory=directory)
    return app.synth().get_stack_by_name("CrystalCanary").template


@pytest.fixture(scope="module")
def image_variants(synth, tmp_path_factory):
    """Weight 0 with crystal_src/ as is (the session's synthesis of it), copied elsewhere, and with a
    changed code hash."""
    root = tmp_path_factory.mktemp("images")
    same, other = root / "same", root / "other"
    shutil.copytree(CRYSTAL_SRC, same, ignore=shutil.ignore_patterns("bin", "lib", ".crystal-cache"))
    shutil.copytree(same, other)
    (other / "code_hash.txt").write_text("CANARY2\n")
    return {
        "original": synth(canaryWeight="0").template,
        "same": synth_with_image(same, root / "s", canaryWeight="0"),
        "other": synth_with_image(other, root / "x", canaryWeight="0"),
        "dirs": {"original": CRYSTAL_SRC, "same": same, "other": other},
    }


def test_image_content_not_location_decides_the_hash(image_variants):
    assert changed(image_variants["original"], image_variants["same"]) == []


def app_image(template: dict, version: str) -> str:
    """The app container's image reference as a string (`...:<tag>` at the end)."""
    task = next(
        v
        for k, v in template["Resources"].items()
        if k.startswith(f"{version}Task") and v["Type"] == "AWS::ECS::TaskDefinition"
    )
    app = next(c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "app")
    return json.dumps(app["Image"])


def test_changed_image_reruns_the_copy_and_rolls_only_the_canary(image_variants):
    before, after = image_variants["original"], image_variants["other"]
    diff = changed(before, after)
    assert "CanaryImageCopy" in diff
    old = before["Resources"]["CanaryImageCopy"]["Properties"]["ImageContentHash"]
    new = after["Resources"]["CanaryImageCopy"]["Properties"]["ImageContentHash"]
    assert old != new and re.fullmatch(r"[0-9a-f]{64}", new)
    # The canary's task names the new image by its hash (an immutable tag), so ECS rolls it.
    assert app_image(after, "Canary").endswith(f':{new}"]]}}')
    assert after["Resources"]["CanaryImageCopy"]["Properties"]["DestinationTag"] == new
    epoch = next(
        k
        for k, v in after["Resources"].items()
        if v["Type"] == "Custom::ImageTag" and v["Properties"]["Tag"] == "epoch"
    )
    assert epoch in diff and after["Resources"][epoch]["Properties"]["SourceTag"] == new
    # Production never changes with crystal_src/ (it runs the hash cdk.json names); nor does the route.
    assert not [k for k in diff if k.startswith(("Production", "ImagesTaggerProductionTag"))]
    assert not [k for k in diff if before["Resources"][k]["Type"].startswith("AWS::AppMesh::")]
    # Everything that changed is part of publishing or running the canary image.
    assert all(k.startswith(("Canary", "ImagesCanary", "ImagesTaggerCanaryTag")) for k in diff), diff


def test_promoting_a_changed_canary_moves_production_onto_its_exact_image_without_a_copy(image_variants, tmp_path):
    """`make promote` after a canary of the changed image: productionImage := its hash, weight 0."""
    canary = image_variants["other"]
    new = canary["Resources"]["CanaryImageCopy"]["Properties"]["ImageContentHash"]
    assert new != cdk_json_context()["productionImage"]
    promoted = synth_with_image(image_variants["dirs"]["other"], tmp_path / "p", canaryWeight="0", productionImage=new)
    resources = promoted["Resources"]
    # Still the one copy of the canary's image; no second build, copy job or CodeBuild project.
    assert [k for k, v in resources.items() if v["Type"] == "AWS::CloudFormation::CustomResource"] == [
        "CanaryImageCopy"
    ]
    assert len([v for v in resources.values() if v["Type"] == "AWS::CodeBuild::Project"]) == 1
    # Production runs exactly the image the canary ran, and `vanilla` follows it.
    assert app_image(promoted, "Production").endswith(f':{new}"]]}}')
    assert app_image(promoted, "Canary").endswith(f':{new}"]]}}')
    vanilla = next(
        v for v in resources.values() if v["Type"] == "Custom::ImageTag" and v["Properties"]["Tag"] == "vanilla"
    )
    assert vanilla["Properties"]["SourceTag"] == new
    production = next(
        v for k, v in resources.items() if k.startswith("ProductionService") and v["Type"] == "AWS::ECS::Service"
    )
    assert any(d.startswith("ImagesTaggerProductionTag") for d in production["DependsOn"])
    # Promotion does not touch the canary's tasks or its copy.
    diff = changed(canary, promoted)
    assert not [k for k in diff if k.startswith(("Canary", "ImagesCanary"))], diff
