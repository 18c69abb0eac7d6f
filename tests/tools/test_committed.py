"""canary_stack.ops.committed: the context as the CDK CLI hands it to the app, one reader for all
(every source and its precedence: tests/tools/test_context.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.context import ContextError
from canary_stack.ops import committed
from canary_stack.ops.committed import committed_config, committed_context, parse_cdk_json

NUMBERS = '{"context": {"a": 10.0, "b": 1e2, "c": 12345678901234567890, "d": -0.0, "e": 1e21, "f": 0.1, "g": 1e400}}'


def through_javascript(text: str) -> dict:
    """What the CLI does: JSON.parse of cdk.json, then JSON.stringify of the context for the app."""
    script = "let d='';process.stdin.on('data',c=>d+=c).on('end',()=>process.stdout.write(JSON.stringify(JSON.parse(d).context)))"
    result = subprocess.run(["node", "-e", script], input=text, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_numbers_arrive_as_javascript_hands_them_over():
    context = parse_cdk_json(NUMBERS)
    assert context == through_javascript(NUMBERS)
    assert context["a"] == 10 and isinstance(context["a"], int)  # JSON 10.0 is the app's 10
    assert context["c"] == 12345678901234567000  # a double's digits, not Python's exact integer
    assert context["g"] is None  # Infinity has no JSON form: JSON.stringify writes null


def test_the_committed_context_is_the_clis_for_the_real_cdk_json():
    text = (ROOT / "cdk.json").read_text()
    assert committed_context(ROOT) == through_javascript(text)


def test_a_committed_10_0_is_the_weight_10(tmp_path):
    (tmp_path / "cdk.json").write_text('{"context": {"canaryWeight": 10.0, "productionImage": "' + "0" * 64 + '"}}')
    assert committed_config(tmp_path).canary_weight == 10
    out = io.StringIO()
    assert committed.main(["canaryWeight"], root=tmp_path, stdout=out) == 0
    assert out.getvalue() == "10\n"


def test_a_byte_order_mark_is_dropped_as_the_cli_does(tmp_path):
    (tmp_path / "cdk.json").write_bytes(b'\xef\xbb\xbf{"context": {"canaryWeight": 5}}')
    assert committed_context(tmp_path) == {"canaryWeight": 5}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"context": {"canaryWeight": 10,}}', "cdk.json is not valid JSON: Expecting property name"),
        ('{"context": []}', 'cdk.json: "context" must be a JSON object, got []'),
        ('{"context": "x"}', "cdk.json: \"context\" must be a JSON object, got 'x'"),
        ("[1]", "cdk.json must hold a JSON object, got [1]"),
        ('{"context": {"canaryWeight": NaN}}', "cdk.json is not valid JSON: NaN is not JSON"),
    ],
)
def test_a_malformed_cdk_json_is_one_usage_error(tmp_path, text, message):
    (tmp_path / "cdk.json").write_text(text)
    with pytest.raises(ContextError) as raised:
        committed_context(tmp_path)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_the_buildspec_command_prints_the_committed_weight():
    # The pipeline's buildspec runs exactly this command line to learn the committed weight.
    result = subprocess.run(
        [sys.executable, "-m", "canary_stack.ops.committed", "canaryWeight"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == f"{committed_config(ROOT).canary_weight}\n"
