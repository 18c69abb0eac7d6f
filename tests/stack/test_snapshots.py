"""Checked-in templates of representative configurations: a change to what the app synthesizes shows
up in a pull request as a change under snapshots/, next to the code that caused it.

`make snapshot` runs this module with UPDATE_SNAPSHOTS=1, which writes the files instead of
comparing, from the same `synth` fixture: what is written is exactly what is compared. Asset
hashes stay in (a changed image is a change a reviewer should see); synthesis is deterministic, so
identical inputs give identical files. The optional pipeline stack is not snapshotted: it is not
part of every deployment, and tests/stack/test_pipeline.py asserts on it.
"""

from __future__ import annotations

import json
import os

import pytest
from synthesis import ROOT

SNAPSHOTS = ROOT / "snapshots"
STACK = "CrystalCanary"
UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
REFRESH = "run `make snapshot` and commit snapshots/ if the change is intended"

# name -> the -c context of `cdk synth`, as strings, as from the CLI
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "appmesh-w0": {"canaryWeight": "0", "trafficRouter": "appmesh"},
    "appmesh-w10": {"canaryWeight": "10", "trafficRouter": "appmesh"},
    "alb-w10": {"canaryWeight": "10"},  # the default router
}


def snapshot_path(name: str):
    return SNAPSHOTS / f"{STACK}.{name}.template.json"


def render(template: dict) -> str:
    """The file's exact text: pretty, key order as synthesized, one trailing newline."""
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def changed_keys(old: dict, new: dict) -> list[str]:
    """`Section.Key` of what differs, to say in the failure what changed."""
    keys = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            keys.append(section)
    return keys


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_snapshot_is_current(synth, name):
    path = snapshot_path(name)
    template = synth(**CONFIGURATIONS[name]).templates[STACK]
    text = render(template)
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        return
    context = " ".join(f"-c {k}={v}" for k, v in CONFIGURATIONS[name].items())
    where = f"snapshots/{path.name} (cdk synth {context})"
    assert path.is_file(), f"{where} is missing: {REFRESH}"
    stored = path.read_text(encoding="utf-8")
    if stored == text:
        return
    try:
        old = json.loads(stored)
    except ValueError:
        pytest.fail(f"{where} is not valid JSON. To refresh: {REFRESH}", pytrace=False)
    new = template
    what = ", ".join(changed_keys(old, new)[:10]) or "formatting only"
    pytest.fail(f"{where} is stale; changed: {what}. To refresh: {REFRESH}", pytrace=False)


def test_no_snapshot_without_a_configuration():
    expected = {snapshot_path(name).name for name in CONFIGURATIONS}
    extra = sorted(p.name for p in SNAPSHOTS.glob("*.json") if p.name not in expected)
    if UPDATE:
        for name in extra:
            (SNAPSHOTS / name).unlink()
        return
    assert not extra, f"snapshots/ has files no configuration produces: {extra}; {REFRESH}"
