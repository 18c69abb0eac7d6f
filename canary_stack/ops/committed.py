"""The committed configuration: cdk.json's `context`, read exactly as the CDK CLI hands it to the app.

    python -m canary_stack.ops.committed KEY      e.g. `canaryWeight` -> 10

The CLI reads cdk.json with JavaScript's JSON.parse and passes the context to the app as
JSON.stringify's text (CDK_CONTEXT_JSON). Every number goes through a JavaScript double on the
way: `10.0` reaches the app as `10`, `1e2` as `100`, and a whole number past 2^53 loses its last
digits. `committed_context` gives the same values, so every tool, the pipeline's buildspec and the
tests read the one answer `cdk synth` and `cdk deploy` get; `committed_config` parses them with the
app's own `CanaryConfig.from_context`.

Only cdk.json is read: cdk.context.json caches environment lookups, which this app does not make.

Exit codes of the command: 0 the value printed, 2 a missing or malformed cdk.json, an invalid
committed configuration or an unknown key (one line on stderr).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from canary_stack.config import DEFAULTS, CanaryConfig, ConfigError
from canary_stack.constants import PROJECT_ROOT
from canary_stack.ops.cli import EXIT_OK, EXIT_USAGE, UsageError, one_line, usage_line
from canary_stack.text import shorten

CDK_JSON = "cdk.json"
# JavaScript prints a whole number below 10^21 with all its digits and from there on with an
# exponent (Number.prototype.toString); Python reads the latter back as a float, as the app does.
_JS_EXPONENT_FROM = 1e21


def _js_number(text: str) -> int | float | None:
    """A JSON number as it comes out of JSON.parse then JSON.stringify."""
    value = float(text)  # JSON.parse: every number is an IEEE double
    if math.isinf(value):
        return None  # JSON.parse gives Infinity for 1e400; JSON.stringify writes null
    if value.is_integer() and abs(value) < _JS_EXPONENT_FROM:
        # Both languages print the shortest digits that read back as the same double: 2^53 + 1
        # becomes 9007199254740992, 12345678901234567890 becomes 12345678901234567000; -0 is 0.
        return int(Decimal(repr(value)))
    return value


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")  # Python's json accepts NaN/Infinity; JSON.parse does not


def parse_cdk_json(text: str) -> dict[str, Any]:
    """cdk.json's context from the file's text; raises UsageError with one line."""
    try:
        document = json.loads(text, parse_float=_js_number, parse_int=_js_number, parse_constant=_not_json)
    except ValueError as err:
        # json's message names line and column: `Expecting property name ...: line 7 column 3`.
        raise UsageError(f"{CDK_JSON} is not valid JSON: {one_line(err)}") from None
    if not isinstance(document, dict):
        raise UsageError(f"{CDK_JSON} must hold a JSON object, got {shorten(document)}")
    context = document.get("context", {})
    if not isinstance(context, dict):
        raise UsageError(f'{CDK_JSON}: "context" must be a JSON object, got {shorten(context)}')
    return context


def committed_context(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """`context` of ROOT/cdk.json as the CDK CLI gives it to the app. UsageError (one line) when the
    file is missing, unreadable, not JSON, or its `context` is not an object."""
    path = Path(root) / CDK_JSON
    try:
        # fs-extra's readJson, which the CLI uses, drops a byte order mark: so does utf-8-sig.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"no {CDK_JSON} in {root}: run this from the project's checkout") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {CDK_JSON}: {one_line(err)}") from None
    return parse_cdk_json(text)


def committed_config(root: Path = PROJECT_ROOT) -> CanaryConfig:
    """The app's configuration for the committed context, as `cdk synth` without -c would build it.
    Raises UsageError for an unreadable cdk.json and ConfigError (prefixed `cdk.json: `) for a value
    the app refuses."""
    return _config(committed_context(root))


def _config(context: dict[str, Any]) -> CanaryConfig:
    try:
        return CanaryConfig.from_context(context.get, keys=list(context))
    except ConfigError as err:
        raise ConfigError(f"{CDK_JSON}: {err}") from None


def _attribute(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()  # canaryWeight -> canary_weight


def committed_value(key: str, root: Path = PROJECT_ROOT) -> Any:
    """The value the app uses for context KEY when no -c is given: parsed by the app where its
    configuration has a plain field of that name (so `" 10"` prints as `10`), else as committed,
    else the app's default."""
    context = committed_context(root)
    config = _config(context)  # the whole committed configuration must be valid, not just KEY
    if key not in DEFAULTS and key not in context:
        raise UsageError(
            f"unknown context parameter {shorten(key)}; known parameters: {', '.join(DEFAULTS)}"
            " (or a key set in cdk.json)"
        )
    parsed = getattr(config, _attribute(key), None)
    if isinstance(parsed, (str, int)) and key in DEFAULTS:
        return parsed
    return context.get(key, DEFAULTS.get(key))


def render(value: Any) -> str:
    """A value as a shell script reads it: strings bare, everything else as JSON (`true`, `10`)."""
    return value if isinstance(value, str) else json.dumps(value)


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        out.write(f"usage: python -m canary_stack.ops.committed KEY\n\n{__doc__.strip().splitlines()[0]}\n")
        return EXIT_OK
    try:
        if len(args) != 1 or not args[0] or args[0].startswith("-"):
            raise UsageError(f"expected one context key, e.g. canaryWeight, got {shorten(' '.join(args))}")
        value = committed_value(args[0], root)
    except (UsageError, ConfigError) as exc:
        err.write(usage_line("committed", exc))
        return EXIT_USAGE
    out.write(render(value) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
