"""Checked-in templates of representative configurations: a change to what the app synthesizes shows
up in a pull request as a change under snapshots/, next to the code that caused it.

`make snapshot` runs this module with UPDATE_SNAPSHOTS=1, which writes the files instead of
comparing, from the same `synth` fixture: what is written is exactly what is compared. Asset
hashes stay in (a changed image is a change a reviewer should see); synthesis is deterministic, so
identical inputs give identical files. The optional pipeline stack is not snapshotted: it is not
part of every deployment, and tests/stack/test_pipeline.py asserts on it.
"""

from __future__ import annotations

import pytest
from support.snapshot_files import check_no_extra_snapshots, check_snapshot
from support.synthesis import ROOT

SNAPSHOTS = ROOT / "snapshots"
STACK = "CrystalCanary"

# name -> the -c context of `cdk synth`, as strings, as from the CLI
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "appmesh-w0": {"canaryWeight": "0", "trafficRouter": "appmesh"},
    "appmesh-w10": {"canaryWeight": "10", "trafficRouter": "appmesh"},
    "alb-w10": {"canaryWeight": "10"},  # the default router
    "lattice-w10": {"canaryWeight": "10", "trafficRouter": "lattice"},
}


def snapshot_path(name: str):
    return SNAPSHOTS / f"{STACK}.{name}.template.json"


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_snapshot_is_current(synth, name):
    context = " ".join(f"-c {k}={v}" for k, v in CONFIGURATIONS[name].items())
    template = synth(**CONFIGURATIONS[name]).templates[STACK]
    check_snapshot(snapshot_path(name), template, f"snapshots/{snapshot_path(name).name} (cdk synth {context})")


def test_no_snapshot_without_a_configuration():
    check_no_extra_snapshots(SNAPSHOTS, (snapshot_path(name).name for name in CONFIGURATIONS))
