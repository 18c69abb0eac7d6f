"""tests/support/synthesis_cache.py: a kept synthesis is reused only for exactly the same inputs.

A stand-in for `synthesis.synthesize` writes a small cloud assembly and records every call, so each
test sees whether `synthesize_once` synthesized or copied from build/synth/ (here a temporary
folder). The last test holds the one thing the stand-in cannot: a real synthesis's template files
read back as jsii returned the templates.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support import synthesis, synthesis_cache
from support.configurations import PIPELINE_CONTEXT
from support.synthesis import Synthesis


@pytest.fixture
def calls(tmp_path, monkeypatch) -> list[dict[str, str]]:
    """Every synthesis the stand-in made, by its -c values."""
    made: list[dict[str, str]] = []

    def fake_synthesize(outdir: Path, **cli_context: str) -> Synthesis:
        made.append(cli_context)
        template = {"Resources": {"Rule": {"Properties": {"Weight": cli_context.get("canaryWeight")}}}}
        manifest = {
            "artifacts": {
                "CrystalCanary": {
                    "type": "aws:cloudformation:stack",
                    "properties": {"templateFile": "CrystalCanary.template.json"},
                },
                "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
            }
        }
        (outdir / "manifest.json").write_text(json.dumps(manifest))
        (outdir / "CrystalCanary.template.json").write_text(json.dumps(template))
        (outdir / "asset.abc").mkdir()
        (outdir / "asset.abc" / "index.js").write_text("exports.handler = 1;\n")
        return Synthesis(outdir=outdir, templates={"CrystalCanary": template})

    monkeypatch.setattr(synthesis, "synthesize", fake_synthesize)
    monkeypatch.setattr(synthesis_cache, "SYNTHESES", tmp_path / "synth")
    return made


@pytest.fixture
def sources(tmp_path) -> dict[str, Path]:
    """An app and an image source tree, a lock file and a virtualenv of their own."""
    app, image, venv = tmp_path / "canary_stack", tmp_path / "crystal_src", tmp_path / "venv"
    for folder in (
        app / "routers",
        image / "src",
        venv / "bin",
        venv / "lib/python3.11/site-packages/aws_cdk_lib-2.0.dist-info",
    ):
        folder.mkdir(parents=True)
    (app / "routers" / "alb.py").write_text("WEIGHTED = True\n")
    (image / "src" / "server.cr").write_text('puts "hi"\n')
    (tmp_path / "package-lock.json").write_text('{"esbuild": "0.25.0"}\n')
    (venv / "pyvenv.cfg").write_text("version = 3.11.7\n")
    node = tmp_path / "node"
    node.write_text("#!/bin/sh\necho v24.11.1\n")
    node.chmod(0o755)
    return {
        "app": app,
        "image": image,
        "lock": tmp_path / "package-lock.json",
        "python": venv / "bin" / "python",
        "node": node,
    }


def digest(sources: dict[str, Path], **environ: str) -> synthesis_cache.Inputs:
    return synthesis_cache.read_inputs(
        trees=[sources["app"], sources["image"]],
        files=[sources["lock"]],
        python=sources["python"],
        environ={"JSII_NODE": str(sources["node"]), "PATH": os.environ["PATH"], **environ},
    )


def outdir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_configuration_from_the_same_inputs_is_a_copy_of_the_first_synthesis(calls, sources, tmp_path):
    inputs = digest(sources)
    first = synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "a"), canaryWeight="10")
    again = synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "b"), canaryWeight="10")
    assert calls == [{"canaryWeight": "10"}]
    assert again.outdir == tmp_path / "b"
    assert again.templates == first.templates
    assert files(again.outdir) == files(first.outdir)  # the assets too, not only the templates
    assert "asset.abc/index.js" in files(again.outdir)


def test_another_configuration_is_synthesized(calls, sources, tmp_path):
    inputs = digest(sources)
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "a"), canaryWeight="10")
    other = synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "b"), canaryWeight="50")
    assert calls == [{"canaryWeight": "10"}, {"canaryWeight": "50"}]
    assert other.template["Resources"]["Rule"]["Properties"]["Weight"] == "50"


@pytest.mark.parametrize(
    "change",
    [
        "a file of the app",
        "a new file in the app",
        "a file of the image",
        "the lock file",
        "a Python package",
        "the Node.js version",
        "a CDK_ variable",
        "a JSII_ variable",
    ],
)
def test_any_change_to_what_a_synthesis_reads_synthesizes_again(calls, sources, tmp_path, change):
    before = digest(sources)
    synthesis_cache.synthesize_once(before, outdir(tmp_path, "a"), canaryWeight="10")
    environ = {}
    if change == "a file of the app":
        (sources["app"] / "routers" / "alb.py").write_text("WEIGHTED = False\n")
    elif change == "a new file in the app":
        (sources["app"] / "routers" / "lattice.py").write_text("")
    elif change == "a file of the image":
        (sources["image"] / "src" / "server.cr").write_text('puts "CANARY"\n')
    elif change == "the lock file":
        sources["lock"].write_text('{"esbuild": "0.25.1"}\n')
    elif change == "a Python package":
        site = sources["python"].parent.parent / "lib" / "python3.11" / "site-packages"
        (site / "aws_cdk_lib-2.0.dist-info").rename(site / "aws_cdk_lib-2.1.dist-info")
    elif change == "the Node.js version":
        sources["node"].write_text("#!/bin/sh\necho v24.12.0\n")
    elif change == "a CDK_ variable":
        environ = {"CDK_DISABLE_STACK_TRACE": "1"}
    else:
        environ = {"JSII_DEPRECATED": "fail"}
    after = digest(sources, **environ)
    assert after.digest != before.digest
    synthesis_cache.synthesize_once(after, outdir(tmp_path, "b"), canaryWeight="10")
    assert len(calls) == 2


def test_bytecode_and_unrelated_variables_do_not_count(sources):
    before = digest(sources, HOME="/root")
    (sources["app"] / "__pycache__").mkdir()
    (sources["app"] / "__pycache__" / "stack.cpython-311.pyc").write_bytes(b"\0")
    assert digest(sources, HOME="/home/someone", TMPDIR="/tmp/x").digest == before.digest


def test_one_generation_is_kept(calls, sources, tmp_path):
    synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "a"), canaryWeight="10")
    synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "b"), canaryWeight="50")
    (sources["app"] / "routers" / "alb.py").write_text("changed = 1\n")
    inputs = digest(sources)
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "c"), canaryWeight="10")
    kept = sorted(p.name for p in (tmp_path / "synth").iterdir())
    assert len(kept) == 1 and kept[0].startswith(inputs.digest[:16])


def test_a_failed_synthesis_keeps_nothing(calls, sources, tmp_path, monkeypatch):
    def failing(outdir: Path, **cli_context: str) -> Synthesis:
        raise RuntimeError("a construct threw")

    monkeypatch.setattr(synthesis, "synthesize", failing)
    with pytest.raises(RuntimeError, match="a construct threw"):
        synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "a"), canaryWeight="10")
    assert not (tmp_path / "synth").exists() or not list((tmp_path / "synth").iterdir())


def test_template_files_that_differ_from_the_synthesis_are_not_kept(calls, sources, tmp_path, monkeypatch):
    stand_in = synthesis.synthesize

    def drifting(outdir: Path, **cli_context: str) -> Synthesis:
        made = stand_in(outdir, **cli_context)
        return Synthesis(outdir=made.outdir, templates={"CrystalCanary": {"Resources": {}}})

    monkeypatch.setattr(synthesis, "synthesize", drifting)
    with pytest.raises(AssertionError, match="differ from what the synthesis returned"):
        synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "a"), canaryWeight="10")
    assert not list((tmp_path / "synth").iterdir())


def test_a_damaged_entry_is_synthesized_again(calls, sources, tmp_path):
    inputs = digest(sources)
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "a"), canaryWeight="10")
    (entry,) = (tmp_path / "synth").iterdir()
    (entry / synthesis_cache.ASSEMBLY / "CrystalCanary.template.json").unlink()
    again = synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "b"), canaryWeight="10")
    assert len(calls) == 2
    assert again.template["Resources"]["Rule"]["Properties"]["Weight"] == "10"
    assert (entry / synthesis_cache.ASSEMBLY / "CrystalCanary.template.json").is_file()


def test_a_real_synthesis_reads_back_from_its_files_as_jsii_returned_it(tmp_path):
    # What `restore` hands the tests is the files; what the tests got before was jsii's `stack.template`.
    made = synthesis.synthesize(tmp_path, **PIPELINE_CONTEXT)
    stacks = synthesis_cache.stack_templates(tmp_path)
    assert sorted(stacks) == ["CrystalCanary", "CrystalCanaryPipeline"]
    assert synthesis_cache.read_templates(tmp_path, stacks) == made.templates


def test_an_entry_missing_any_file_is_synthesized_again(calls, sources, tmp_path):
    inputs = digest(sources)
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "a"), canaryWeight="10")
    (entry,) = (tmp_path / "synth").iterdir()
    (entry / synthesis_cache.ASSEMBLY / "asset.abc" / "index.js").unlink()  # not a template
    again = synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "b"), canaryWeight="10")
    assert len(calls) == 2
    assert "asset.abc/index.js" in files(again.outdir)
    assert (entry / synthesis_cache.ASSEMBLY / "asset.abc" / "index.js").is_file()


def test_an_entry_without_its_index_is_replaced(calls, sources, tmp_path):
    inputs = digest(sources)
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "a"), canaryWeight="10")
    (entry,) = (tmp_path / "synth").iterdir()
    (entry / synthesis_cache.INDEX).unlink()
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "b"), canaryWeight="10")
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "c"), canaryWeight="10")
    assert len(calls) == 2  # the second synthesis was kept again, whole
    assert (entry / synthesis_cache.INDEX).is_file()


def test_sources_changed_during_the_session_are_not_kept(calls, sources, tmp_path):
    inputs = digest(sources)  # the session starts
    (sources["image"] / "src" / "server.cr").write_text('puts "saved during the run"\n')
    synthesis_cache.synthesize_once(inputs, outdir(tmp_path, "a"), canaryWeight="10")
    assert not (tmp_path / "synth").exists() or not list((tmp_path / "synth").iterdir())
    synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "b"), canaryWeight="10")
    assert len(calls) == 2


def test_another_session_s_half_made_entry_is_left_alone_until_it_is_an_hour_old(calls, sources, tmp_path):
    synth_folder = tmp_path / "synth"
    young = synth_folder / ".0123456789abcdef-0123456789abcdef.99999"
    old = synth_folder / ".fedcba9876543210-0123456789abcdef.99998"
    for folder in (young, old):
        (folder / synthesis_cache.ASSEMBLY).mkdir(parents=True)
    hour_ago = time.time() - synthesis_cache.ABANDONED_AFTER_SECONDS - 60
    os.utime(old, (hour_ago, hour_ago))
    synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "a"), canaryWeight="10")
    assert young.is_dir() and not old.exists()


def test_a_synthesis_that_cannot_be_kept_is_still_returned(calls, sources, tmp_path):
    (tmp_path / "synth").write_text("a file where the folder should be")
    with pytest.warns(UserWarning, match="not kept"):
        made = synthesis_cache.synthesize_once(digest(sources), outdir(tmp_path, "a"), canaryWeight="10")
    assert made.template["Resources"]["Rule"]["Properties"]["Weight"] == "10"
    assert (tmp_path / "synth").read_text() == "a file where the folder should be"
