"""`make integ`'s verdict: reads the assertion results from `cdk deploy --outputs-file` and exits 0 only
if every assertion ran and passed.

integ-tests-alpha's assertions do not fail the deployment when they fail (that is integ-runner's job,
which reads the same outputs): each writes `{"status": "success"}` or `{"status": "fail", "message":
...}` to a stack output `AssertionResults...`. Usage: python -m integ.results OUTPUTS_FILE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from integ.names import ASSERTION_COUNT, ASSERTIONS_STACK_NAME, RESULT_OUTPUT_PREFIX


def verdict(outputs: object) -> tuple[bool, list[str]]:
    """(passed, lines to print) for the parsed outputs file ({stack: {output: value}})."""
    stack = outputs.get(ASSERTIONS_STACK_NAME) if isinstance(outputs, dict) else None
    if not isinstance(stack, dict):
        return False, [f"FAIL no outputs of {ASSERTIONS_STACK_NAME}: the deploy did not finish (see above)"]
    results = {k: v for k, v in sorted(stack.items()) if k.startswith(RESULT_OUTPUT_PREFIX)}
    lines: list[str] = []
    passed = len(results) == ASSERTION_COUNT
    if not passed:
        lines.append(f"FAIL expected {ASSERTION_COUNT} assertion results, found {len(results)}")
    for name, raw in results.items():
        try:
            result = json.loads(raw)
        except (TypeError, ValueError):
            result = None
        if isinstance(result, dict) and result.get("status") == "success":
            lines.append(f"ok   {name}")
            continue
        passed = False
        message = result.get("message") if isinstance(result, dict) else None
        lines.append(f"FAIL {name}: {message if message is not None else raw!r}")
    return passed, lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m integ.results OUTPUTS_FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        outputs = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        outputs = None
    except ValueError as err:
        print(f"FAIL {path} is not JSON ({err})")
        return 1
    passed, lines = verdict(outputs)
    print("\n".join(lines))
    print("deploy check passed" if passed else "deploy check FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
