"""checkov, the third scanner beside cdk-nag and cfn-lint: 0 failed checks on every template we ship.

checkov runs from its own virtualenv (.venv-checkov, `make setup`, requirements-checkov.txt): it pins
packaging<24 and an old boto3 that this test environment cannot share. `--skip-download`: no calls
out, only the checks that ship with the pinned version. An accepted check is skipped on its one
resource with a reason (canary_stack/nag.py's skip_checkov writes Metadata.checkov.skip). A clean
scan of the same templates by the same checkov is kept in build/scans/ (tests/support/scans.py).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from support.configurations import HOSTED_ZONE, HTTPS_CONTEXT, PIPELINE_CONTEXT
from support.scans import scan
from support.synthesis import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
PINNED = "3.3.30"

# (name, context, stack): the default (ALB), App Mesh and Lattice canary stacks, HTTPS, and the pipeline.
TEMPLATES = [
    ("alb", {"trafficRouter": "alb", "canaryWeight": "10"}, "CrystalCanary"),
    (
        "alb-https",
        {"trafficRouter": "alb", "canaryWeight": "10", **HTTPS_CONTEXT, "hostedZoneId": HOSTED_ZONE},
        "CrystalCanary",
    ),
    ("appmesh", {"trafficRouter": "appmesh", "canaryWeight": "10"}, "CrystalCanary"),
    ("lattice", {"trafficRouter": "lattice", "canaryWeight": "10"}, "CrystalCanary"),
    ("pipeline", PIPELINE_CONTEXT, "CrystalCanaryPipeline"),
]


@pytest.fixture(scope="module")
def report(synth, tmp_path_factory) -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: run `make setup`")
    folder = tmp_path_factory.mktemp("checkov")
    for name, context, stack in TEMPLATES:
        shutil.copy(synth(**context).outdir / f"{stack}.template.json", folder / f"{name}.template.json")
    templates = sorted(folder.iterdir())
    result = scan(
        "checkov",
        [
            str(CHECKOV),
            "--framework",
            "cloudformation",
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
            "-d",
            str(folder),
        ],
        inputs=templates,
    )
    # Exit code 1 means failed checks; anything else (2: a crash, a bad option) is not a result.
    assert result.returncode in (0, 1), result.stderr[-3000:]
    output = json.loads(result.stdout)
    (report,) = output if isinstance(output, list) else [output]
    assert report["check_type"] == "cloudformation"
    return report


def test_the_pinned_checkov_runs(report):
    # The scan's own report names the version that produced it (no second checkov start-up, ~2 s).
    assert report["summary"]["checkov_version"] == PINNED


def test_every_template_was_scanned(synth, report):
    assert report["summary"]["parsing_errors"] == 0
    resources = sum(len(synth(**context).templates[stack]["Resources"]) for _, context, stack in TEMPLATES)
    assert report["summary"]["resource_count"] == resources


def test_no_failed_checks(report):
    failed = [
        f"{r['file_path'].rsplit('/', 1)[-1]}: {r['check_id']} {r['resource']} ({r['check_name']})"
        for r in report["results"]["failed_checks"]
    ]
    assert failed == [], "\n".join(failed)
    assert report["summary"]["failed"] == 0


def test_every_skip_is_on_one_resource_and_says_why(synth, report):
    skips = [
        (stack, logical_id, skip)
        for _, context, stack in TEMPLATES
        for logical_id, resource in synth(**context).templates[stack]["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert len(skips) == report["summary"]["skipped"]
    for stack, logical_id, skip in skips:
        assert set(skip) == {"id", "comment"}, (stack, logical_id)
        assert re.fullmatch(r"CKV2?_AWS_[0-9]+", skip["id"]), (stack, logical_id)
        assert len(skip["comment"]) > 30, (stack, logical_id, skip["id"])
