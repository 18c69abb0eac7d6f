"""The documentation against the code: README.md, docs/*.md and tests/README.md.

What can drift is checked here: the parameter table of docs/configuration.md against
`canary_stack/config.py`'s DEFAULTS, every relative link (file and heading), every `make` target and
`python -m` module a page names, and the README's size (a newcomer's first read).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from canary_stack.config import DEFAULTS
from canary_stack.constants import PROJECT_ROOT as ROOT

README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "tests" / "README.md"]
MAX_README_BYTES = 12 * 1024

# Pages two parallel branches are writing (the Lattice router; what `cdk destroy` leaves behind). The
# docs already link to them; until they are merged a link to them may point at nothing. Remove this
# allowance once both are merged (test_pending_pages_are_still_missing fails to say so).
PENDING_PAGES: set[str] = set()
# Parameters documented ahead of the code (the HTTPS domain name and its Route 53 zone, being added
# in a parallel branch): a row may name them while DEFAULTS does not yet. Once DEFAULTS has one, its
# row is checked like any other; remove it from here (test_pending_parameters_are_still_missing).
PENDING_PARAMETERS: set[str] = set()

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def code_spans(text: str) -> list[str]:
    """The contents of inline code spans (one space of padding trimmed, as Markdown does)."""
    spans = []
    for match in _CODE_SPAN.finditer(text):
        content = match.group(2)
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        spans.append(content)
    return spans


def prose(markdown: str) -> str:
    """The text with fenced blocks removed and code spans blanked: a link inside code is no link."""
    return _CODE_SPAN.sub("`code`", _FENCE.sub("", markdown))


def code(markdown: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands are written."""
    fences = [m.group(0) for m in _FENCE.finditer(markdown)]
    return fences + code_spans(_FENCE.sub("", markdown))


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table row (a `\\|` inside a cell is not a separator)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def table(markdown: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """The header and the body rows of the one table whose first header cell is `first_header`."""
    lines = markdown.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and split_row(line)[0] == first_header]
    assert len(starts) == 1, f"expected one table headed {first_header!r}, found {len(starts)}"
    start = starts[0]
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[start + 1].strip()), "a header row needs its separator row"
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(split_row(line))
    return split_row(lines[start]), rows


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lowercase, punctuation dropped, spaces to hyphens,
    a repeated one suffixed -1, -2, ..."""
    anchors: set[str] = set()
    for match in _HEADING.finditer(_FENCE.sub("", markdown)):
        slug = re.sub(r"[^\w\- ]", "", match.group(2).strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in anchors:
            n += 1
            candidate = f"{slug}-{n}"
        anchors.add(candidate)
    return anchors


def documented_default(value: Any) -> str:
    """A DEFAULTS value as the table spells it: as `-c` would, and `none` for unset (None or "")."""
    if value is None or value == "":
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def shown_default(cell: str) -> str:
    """What a default cell says: `none` when it starts with that word, else its first code span."""
    if cell.startswith("none"):
        return "none"
    spans = code_spans(cell)
    return spans[0] if spans else cell


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


# --- the parameter table -------------------------------------------------------------------------


PARAMETER_HEADER, PARAMETER_TABLE = table(read(CONFIGURATION), "parameter")


@pytest.fixture(scope="module")
def parameter_rows() -> dict[str, list[list[str]]]:
    """The rows of docs/configuration.md's parameter table, by the parameter each names."""
    rows: dict[str, list[list[str]]] = {}
    for row in PARAMETER_TABLE:
        names = code_spans(row[0])
        assert len(names) == 1 and row[0] == f"`{names[0]}`", f"a row must name one parameter in code: {row[0]!r}"
        rows.setdefault(names[0], []).append(row)
    return rows


def test_every_parameter_has_exactly_one_row(parameter_rows):
    counts = {name: len(parameter_rows.get(name, [])) for name in DEFAULTS}
    assert {name: n for name, n in counts.items() if n != 1} == {}, "parameters without exactly one row"


def test_no_row_names_a_parameter_the_app_does_not_know(parameter_rows):
    unknown = sorted(set(parameter_rows) - set(DEFAULTS) - PENDING_PARAMETERS)
    assert unknown == [], "rows for parameters that canary_stack/config.py's DEFAULTS does not have"


def test_every_row_shows_the_default_the_app_uses(parameter_rows):
    column = PARAMETER_HEADER.index("default")
    wrong = {}
    for name, value in DEFAULTS.items():
        if name not in parameter_rows:
            continue  # test_every_parameter_has_exactly_one_row says so
        cell = parameter_rows[name][0][column]
        if shown_default(cell) != documented_default(value):
            wrong[name] = (cell, documented_default(value))
    assert wrong == {}, "default cells that disagree with DEFAULTS: {parameter: (cell, expected)}"


def test_pending_parameters_are_still_missing():
    merged = sorted(PENDING_PARAMETERS & set(DEFAULTS))
    assert merged == [], f"DEFAULTS has {merged} now: remove them from PENDING_PARAMETERS"


# --- links, commands, size -----------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page: Path):
    broken = []
    for _text, target in _LINK.findall(prose(read(page))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
            continue
        if not resolved.exists():
            if relative(resolved) not in PENDING_PAGES:
                broken.append(target)
            continue
        if fragment and resolved.suffix == ".md" and fragment not in heading_anchors(read(resolved)):
            broken.append(f"{target} (no such heading)")
    assert broken == []


def test_pending_pages_are_still_missing():
    merged = sorted(name for name in PENDING_PAGES if (ROOT / name).exists())
    assert merged == [], f"{merged} exist now: remove them from PENDING_PAGES"


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_make_target_named_exists(page: Path):
    phony = re.search(r"^\.PHONY:(.*)$", read(ROOT / "Makefile"), re.M)
    assert phony is not None
    targets = set(phony.group(1).split())
    named = {m for block in code(read(page)) for m in re.findall(r"\bmake ([a-z][a-z-]*)", block)}
    assert sorted(named - targets) == []


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_python_module_named_exists(page: Path):
    named = {m for block in code(read(page)) for m in re.findall(r"python -m ([A-Za-z_][\w.]*)", block)}
    assert sorted(m for m in named - {"pytest"} if not module_exists(m)) == []


def test_readme_fits_a_first_read():
    size = len(README.read_bytes())
    assert size <= MAX_README_BYTES, f"README.md is {size} bytes; move reference material to docs/"


def test_readme_set_up_section_gives_the_two_commands():
    text = read(README)
    section = re.search(r"^## Set up\b.*?(?=^## )", text, re.M | re.S)
    assert section is not None, "README.md needs a '## Set up' section"
    commands = re.findall(r"^\$ (make [a-z]+)", section.group(0), re.M)
    assert commands[:2] == ["make synth", "make test"]
