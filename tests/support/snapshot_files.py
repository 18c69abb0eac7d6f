"""Checked-in templates (snapshots/): compare one with what was synthesized, or rewrite it.

`make snapshot` sets UPDATE_SNAPSHOTS=1: the same tests then write the files instead of comparing,
from the same synthesis, so what is written is exactly what is compared.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pytest

UPDATE = os.environ.get("UPDATE_SNAPSHOTS") == "1"
REFRESH = "run `make snapshot` and commit snapshots/ if the change is intended"


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


def check_snapshot(path: Path, template: dict, where: str) -> None:
    """Fails, naming what changed, unless `path` holds exactly `template` (rewrites it under UPDATE)."""
    text = render(template)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        return
    assert path.is_file(), f"{where} is missing: {REFRESH}"
    stored = path.read_text(encoding="utf-8")
    if stored == text:
        return
    try:
        old = json.loads(stored)
    except ValueError:
        pytest.fail(f"{where} is not valid JSON. To refresh: {REFRESH}", pytrace=False)
    what = ", ".join(changed_keys(old, template)[:10]) or "formatting only"
    pytest.fail(f"{where} is stale; changed: {what}. To refresh: {REFRESH}", pytrace=False)


def check_no_extra_snapshots(folder: Path, expected: Iterable[str]) -> None:
    """No file in `folder` that nothing produces any more (removed under UPDATE)."""
    wanted = set(expected)
    extra = sorted(p.name for p in folder.glob("*.json") if p.name not in wanted)
    if UPDATE:
        for name in extra:
            (folder / name).unlink()
        return
    assert not extra, f"{folder.name}/ has files nothing produces: {extra}; {REFRESH}"
