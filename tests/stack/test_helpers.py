"""One home per CDK helper: one way to acknowledge a cdk-nag finding, and logical ids computed, never spelled."""

from __future__ import annotations

import re

import aws_cdk as cdk

from canary_stack.constants import PROJECT_ROOT
from canary_stack.nag import acknowledge


def test_only_nag_py_spells_an_awssolutions_acknowledgment_id():
    spelled = [
        path.relative_to(PROJECT_ROOT).as_posix()
        for path in (PROJECT_ROOT / "canary_stack").rglob("*.py")
        if '"AwsSolutions::' in path.read_text()  # also the end of f"AwsSolutions::
    ]
    assert spelled == ["canary_stack/nag.py"]


def test_no_hand_written_logical_id_in_the_constructs():
    # A CDK logical id ends in an 8-digit uppercase hex hash; ours are computed (Stack.get_logical_id).
    pattern = re.compile(r"[\"'<][A-Za-z][A-Za-z0-9]*[0-9A-F]{8}[\"'>.]")
    found = {
        path.name: pattern.findall(path.read_text())
        for path in (PROJECT_ROOT / "canary_stack").rglob("*.py")
        if pattern.search(path.read_text())
    }
    assert found == {}


def test_acknowledge_records_each_finding_with_its_reason_on_the_construct():
    stack = cdk.Stack(cdk.App(), "S")
    acknowledge(stack, "AwsSolutions-S1", "one")
    acknowledge(stack, ["AwsSolutions-S2", "AwsSolutions-S3"], "two")
    # An empty list is refused: test_construct_arguments.py.
    recorded = [m.data for m in stack.node.metadata if m.type == "aws:cdk:acknowledged-rules"]
    assert recorded == [
        {"AwsSolutions::AwsSolutions-S1": "one"},
        {"AwsSolutions::AwsSolutions-S2": "two"},
        {"AwsSolutions::AwsSolutions-S3": "two"},
    ]
