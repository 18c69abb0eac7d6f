"""AWS's own checkers on what we synthesize: cfn-lint on every template, cdk-nag on every synth."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from aws_cdk import aws_s3 as s3
from support.configurations import HOSTED_ZONE, HTTPS_CONTEXT, PIPELINE_CONTEXT
from support.scans import scan
from support.synthesis import CLI_CONTEXT, ROOT, cdk_json_context

from canary_stack import cdk_app

CONFIGURATIONS = [
    {"canaryWeight": "10"},
    # A promotion's shape (weight 0, production on another image), on Graviton, in an adopted repository.
    {
        "canaryWeight": "0",
        "productionImage": "0123456789abcdef" * 4,
        "cpuArchitecture": "arm64",
        "adoptRepository": "true",
    },
    {"canaryWeight": "10", "trafficRouter": "appmesh"},
    {"canaryWeight": "10", "trafficRouter": "lattice"},
    {"canaryWeight": "10", **HTTPS_CONTEXT, "hostedZoneId": HOSTED_ZONE},  # HTTPS, its Rule and DNS record
    PIPELINE_CONTEXT,  # the canary stack and the pipeline stack
]


def test_cfn_lint_finds_no_errors_and_no_unlisted_warnings(synth):
    # One cfn-lint run over every configuration's templates (its start-up is most of its cost).
    templates = sorted(p for context in CONFIGURATIONS for p in synth(**context).outdir.glob("*.template.json"))
    assert len(templates) == len(CONFIGURATIONS) + 1
    # .cfnlintrc.yaml in the project root lists the ignored warnings with their reasons. A clean
    # verdict on the same templates is kept in build/scans/ (tests/support/scans.py).
    cfn_lint = str(Path(sys.executable).with_name("cfn-lint"))
    result = scan(
        "cfn-lint",
        [cfn_lint, "--format", "parseable", *map(str, templates)],
        inputs=templates,
        config=[ROOT / ".cfnlintrc.yaml"],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_unacknowledged_finding_fails_synthesis(tmp_path):
    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT}, outdir=str(tmp_path))
    stack = cdk_app.build(app)
    # A bucket without SSL enforcement, access logs or encryption settings: several AwsSolutions findings.
    s3.CfnBucket(stack, "CarelessBucket")
    with pytest.raises(Exception, match="^ValidationFailed: ERROR") as failure:
        app.synth()
    report = str(failure.value)
    errors = [block for block in report.split("\n\n") if block.startswith(("ValidationFailed: ERROR", "ERROR"))]
    # Every error is the new bucket's: the shipped stack itself has no unacknowledged finding.
    assert errors and all("CrystalCanary/CarelessBucket " in block for block in errors), report
    assert "AwsSolutions-S10" in report


def test_a_synthesis_that_fails_validation_leaves_nothing_deployable(synth, tmp_path):
    """CDK writes the templates before cdk-nag runs: app.py's synth() must remove them, and a
    previous run's, when validation fails (issue: `cdk deploy --app cdk.out` would ship them)."""
    outdir = tmp_path / "cdk.out"
    shutil.copytree(synth(canaryWeight="10").outdir, outdir)  # a previous, good synthesis
    assert (outdir / "manifest.json").exists() and list(outdir.glob("*.template.json"))
    (outdir / "notes.txt").write_text("not the assembly's")

    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT}, outdir=str(outdir))
    stack = cdk_app.build(app)
    s3.CfnBucket(stack, "CarelessBucket")  # unacknowledged AwsSolutions findings
    with pytest.raises(Exception, match="^ValidationFailed"):
        cdk_app.synth(app)
    assert not list(outdir.glob("*.template.json"))
    assert not (outdir / "manifest.json").exists()
    assert not list(outdir.glob("*.assets.json"))
    assert (outdir / "notes.txt").exists()  # only the assembly's own files are removed


def test_the_shipped_app_synthesizes_clean_under_cdk_nag(synth):
    # Synthesis would have raised on any unacknowledged finding; the template exists.
    assert synth(canaryWeight="10").template["Resources"]
