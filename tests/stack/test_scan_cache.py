"""tests/support/scans.py: a scanner's clean verdict is reused only for exactly the same inputs.

A stand-in scanner in a virtualenv of its own records every run, so each test sees whether `scan`
started it or answered from build/scans/ (here a temporary folder).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import scans

SCANNER = f"""#!{sys.executable}
import pathlib, sys
args = sys.argv[1:]
with open(pathlib.Path(__file__).with_name("runs"), "a") as log:
    log.write(" ".join(args) + "\\n")
print("scanned", *(len(pathlib.Path(a).read_bytes()) for a in args if a.endswith(".json")))
sys.exit(1 if "--fail" in args else 0)
"""


@pytest.fixture
def scanner(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(scans, "SCANS", tmp_path / "scans")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "python3.11" / "site-packages" / "scanner-1.0.dist-info").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("version = 3.11.7\n")
    executable = venv / "bin" / "scanner"
    executable.write_text(SCANNER)
    executable.chmod(0o755)
    return executable


def runs(scanner: Path) -> int:
    log = scanner.with_name("runs")
    return len(log.read_text().splitlines()) if log.exists() else 0


def templates(folder: Path, **contents: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (folder / f"{name}.template.json").write_text(text)
    return sorted(folder.glob("*.template.json"))


def run(scanner: Path, inputs: list[Path], *options: str, config: list[Path] | None = None):
    return scans.scan("fake", [str(scanner), *options, *map(str, inputs)], inputs=inputs, config=config or [])


def test_the_same_inputs_elsewhere_are_answered_from_the_first_clean_run(scanner, tmp_path):
    first = run(scanner, templates(tmp_path / "a", alb='{"a": 1}', lattice="{}"))
    again = run(scanner, templates(tmp_path / "b", alb='{"a": 1}', lattice="{}"))
    assert (first.returncode, first.stdout) == (again.returncode, again.stdout) == (0, "scanned 8 2\n")
    assert runs(scanner) == 1


@pytest.mark.parametrize(
    "change",
    ["a template's bytes", "a template's name", "one template more", "an option", "the config file", "a package"],
)
def test_any_change_to_what_the_scanner_reads_runs_it_again(scanner, tmp_path, change):
    config = tmp_path / ".scannerrc"
    config.write_text("ignore: [W1]\n")
    run(scanner, templates(tmp_path / "a", alb='{"a": 1}'), config=[config])
    inputs, options = templates(tmp_path / "b", alb='{"a": 1}'), []
    if change == "a template's bytes":
        inputs = templates(tmp_path / "c", alb='{"a": 2}')
    elif change == "a template's name":
        inputs = templates(tmp_path / "c", lattice='{"a": 1}')
    elif change == "one template more":
        inputs = templates(tmp_path / "b", lattice="{}")
    elif change == "an option":
        options = ["--strict"]
    elif change == "the config file":
        config.write_text("ignore: []\n")
    else:
        (scanner.parent.parent / "lib" / "python3.11" / "site-packages" / "rules-2.0.dist-info").mkdir()
    run(scanner, inputs, *options, config=[config])
    assert runs(scanner) == 2


def test_a_finding_is_never_kept(scanner, tmp_path):
    inputs = templates(tmp_path / "a", alb="{}")
    assert [run(scanner, inputs, "--fail").returncode for _ in range(2)] == [1, 1]
    assert runs(scanner) == 2
    assert not list((tmp_path / "scans").glob("*.json"))


def test_one_entry_per_scanner_name(scanner, tmp_path):
    run(scanner, templates(tmp_path / "a", alb="{}"))
    run(scanner, templates(tmp_path / "b", alb='{"changed": true}'))
    assert len(list((tmp_path / "scans").glob("fake-*.json"))) == 1
