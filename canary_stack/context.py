"""The one reader of CDK context: every source the CDK CLI reads, merged as the CLI merges them.

The CLI builds the app's context from four bags and takes each key from the first bag that has it
(aws/aws-cdk-cli, packages/aws-cdk/lib/cli/user-configuration.ts, `Configuration.loadConfigFiles`
and `Context.get`; the pinned CLI: node_modules/aws-cdk/lib/cli/user-configuration.js). The guide
says only that "the AWS CDK CLI value takes precedence" over cdk.json
(https://docs.aws.amazon.com/cdk/v2/guide/get-context-var.html):

    1. `-c key=value` on the command line        (always a string)
    2. cdk.json's "context"                       (the project's committed configuration)
    3. cdk.context.json                           (the project's context cache, also committed)
    4. ~/.cdk.json's "context"                    (the user's defaults)

A value of `null` in a file counts as set (only a missing key falls through). The CLI then hands the
merged context to the app as JSON.stringify's text (CDK_CONTEXT_JSON), so every JSON number goes
through a JavaScript double: `10.0` reaches the app as `10`, `1e2` as `100`, 2^53 + 1 as 2^53.

`read_context` gives what the app will get, with the file each value came from, so a tool's error
can say `cdk.context.json: canaryWeight must be ...`. The app, which only sees CDK_CONTEXT_JSON,
reads that with `parse_environment` through the same JSON rules.

Standard library and config.py only: the app and the operator tools (which never start the CDK)
both import it.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from canary_stack.config import CanaryConfig, ConfigError, is_known_key
from canary_stack.text import shorten

CDK_JSON = "cdk.json"
CDK_CONTEXT_JSON = "cdk.context.json"
USER_CDK_JSON = "~/.cdk.json"
COMMAND_LINE = "-c"  # the origin of a value given as `-c key=value`

# What the CLI puts into CDK_CONTEXT_JSON for the app, and where it spills what does not fit.
CONTEXT_ENV = "CDK_CONTEXT_JSON"
CONTEXT_OVERFLOW_ENV = "CDK_CONTEXT_OVERFLOW_LOCATION"

# The CLI refuses these in a file's context (user-configuration.ts, prohibitContextKeys).
_PROHIBITED = ("default-account", "default-region")
# JavaScript prints a whole number below 10^21 with all its digits and from there on with an
# exponent (Number.prototype.toString); Python reads the latter back as a float, as the app does.
_JS_EXPONENT_FROM = 1e21
# JavaScript's `.` matches no line terminator: `-c a=1\n2` gives the CLI `a` = `1`.
_JS_LINE_END = re.compile("[\n\r\u2028\u2029]")


class ContextError(ConfigError):
    """A context source that cannot be read (missing, not JSON, nested too deeply); one line."""


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


def parse_json(text: str, name: str) -> Any:
    """JSON text as JSON.parse reads it (numbers as doubles); ContextError naming `name` otherwise."""
    try:
        return json.loads(text, parse_float=_js_number, parse_int=_js_number, parse_constant=_not_json)
    except RecursionError:
        # JSON.parse reads far deeper than Python's parser; no value of this app nests beyond a few levels.
        raise ContextError(
            f"{name} nests JSON arrays or objects deeper than Python reads (about 1,000 levels)"
        ) from None
    except ValueError as err:
        # json's message names line and column: `Expecting property name ...: line 7 column 3`.
        raise ContextError(f"{name} is not valid JSON: {_one_line(err)}") from None


def parse_cdk_json(text: str, name: str = CDK_JSON) -> dict[str, Any]:
    """The "context" object of a cdk.json (or ~/.cdk.json) from its text."""
    document = parse_json(text, name)
    if not isinstance(document, dict):
        raise ContextError(f"{name} must hold a JSON object, got {shorten(document)}")
    context = document.get("context", {})
    if not isinstance(context, dict):
        raise ContextError(f'{name}: "context" must be a JSON object, got {shorten(context)}')
    return context


def parse_context_file(text: str, name: str = CDK_CONTEXT_JSON) -> dict[str, Any]:
    """cdk.context.json: the whole file is the context object."""
    document = parse_json(text, name)
    if not isinstance(document, dict):
        raise ContextError(f"{name} must hold a JSON object, got {shorten(document)}")
    return document


def parse_context_arg(item: str) -> tuple[str, str]:
    """One `-c key=value` as the CLI splits it: at the first '='. ContextError for what the CLI would
    ignore (no '='), refuse (an `aws:` key) or cut short (a line break: the CLI keeps what precedes it)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ContextError(f"-c must be key=value, got {shorten(item)}")
    if re.match(r"aws:.", key):
        raise ContextError(f"-c keys starting with 'aws:' are the CDK's own, got {shorten(key)}")
    if _JS_LINE_END.search(value):
        raise ContextError(f"-c {shorten(key)}: a value is one line (the CDK CLI would cut it), got {shorten(value)}")
    return key, value


@dataclass(frozen=True)
class Context:
    """The merged context and, per key, where its value came from (a file name or `-c`)."""

    values: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)

    def origin(self, key: str) -> str | None:
        return self.origins.get(key)

    def with_command_line(self, command_line: Mapping[str, str]) -> Context:
        """This context under `-c` values (they win over every file)."""
        return Context({**self.values, **command_line}, {**self.origins, **dict.fromkeys(command_line, COMMAND_LINE)})

    def config(self) -> CanaryConfig:
        """The app's configuration for this context. ConfigError names the file of the value it
        refuses (`cdk.context.json: canaryWeight must be ...`); a `-c` value's error is the app's own."""
        for key in sorted(self.values):
            if not is_known_key(key):
                try:  # the app's own line for it: from_context checks the keys before any value
                    CanaryConfig.from_context(self.values.get, keys=[key])
                except ConfigError as err:
                    raise self._from(key, err) from None
        asked: list[str] = []

        def get(key: str) -> Any:
            asked.append(key)
            return self.values.get(key)

        try:
            return CanaryConfig.from_context(get, keys=list(self.values))
        except ConfigError as err:
            # The parser checks each value right after it reads it, and names it: the culprit is the
            # last one read that the message names (tests/tools/test_context.py tries every parameter).
            culprit = next((key for key in reversed(asked) if key in str(err)), None)
            raise self._from(culprit, err) from None

    def _from(self, key: str | None, err: ConfigError) -> ConfigError:
        origin = self.origins.get(key) if key is not None else None
        if origin is None or origin == COMMAND_LINE:
            return err
        return ConfigError(f"{origin}: {err}")


def _one_line(text: object) -> str:
    return re.sub(r"[ \t]*[\r\n]+[ \t]*", " ", str(text)).strip()


def _read(path: Path, name: str, parse: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
    """A context file's context; {} when there is no such file, as the CLI (fs.pathExists) has it."""
    try:
        # fs-extra's readJson, which the CLI uses, drops a byte order mark: so does utf-8-sig.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise ContextError(f"cannot read {name}: {_one_line(err)}") from None
    context = parse(text, name)
    for key in _PROHIBITED:
        if key in context:
            raise ContextError(f"{name}: context key {key!r} is no longer supported by the CDK CLI; remove it")
    return context


def user_cdk_json(environ: Mapping[str, str] = os.environ) -> Path:
    """~/.cdk.json as Node.js finds it (os.homedir(): $HOME first)."""
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".cdk.json"


def read_context(
    root: Path,
    command_line: Mapping[str, str] | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    require_cdk_json: bool = True,
) -> Context:
    """The context `cdk synth -c ...` run in `root` gives the app, with each value's origin.

    ContextError (one line naming the file) for a file that cannot be read, and for no cdk.json in
    `root` unless `require_cdk_json` is false.
    """
    root = Path(root)
    if require_cdk_json and not (root / CDK_JSON).exists():
        raise ContextError(f"no {CDK_JSON} in {root}: run this from the project's checkout")
    # Lowest precedence first: each later bag wins, as the CLI's first-bag-that-has-it lookup does.
    bags = [
        (USER_CDK_JSON, _read(user_cdk_json(environ), USER_CDK_JSON, parse_cdk_json)),
        (CDK_CONTEXT_JSON, _read(root / CDK_CONTEXT_JSON, CDK_CONTEXT_JSON, parse_context_file)),
        (CDK_JSON, _read(root / CDK_JSON, CDK_JSON, parse_cdk_json)),
    ]
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name, bag in bags:
        values.update(bag)
        origins.update(dict.fromkeys(bag, name))
    return Context(values, origins).with_command_line(command_line or {})


def parse_command_line(items: Sequence[str]) -> dict[str, str]:
    """`-c key=value` arguments as the CLI reads them (the last of a repeated key wins)."""
    return dict(parse_context_arg(item) for item in items)


def parse_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The context the CLI handed the app: CDK_CONTEXT_JSON and, for what did not fit there, the
    file named by CDK_CONTEXT_OVERFLOW_LOCATION (aws-cdk-lib's App reads both the same way).
    ContextError (one line) for text that is not a JSON object."""
    context: dict[str, Any] = {}
    if environ.get(CONTEXT_ENV):
        document = parse_json(environ[CONTEXT_ENV], CONTEXT_ENV)
        if not isinstance(document, dict):
            raise ContextError(f"{CONTEXT_ENV} must hold a JSON object, got {shorten(document)}")
        context.update(document)
    overflow = environ.get(CONTEXT_OVERFLOW_ENV)
    if overflow:
        context.update(_read(Path(overflow), CONTEXT_OVERFLOW_ENV, parse_context_file))
    return context


def attribute(root: Path, values: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> Context:
    """The app's context (from CDK_CONTEXT_JSON) with origins: a key takes the file the CLI would
    have taken it from when that file holds the same value, else it came from `-c` (or the CLI's
    own settings). Files that cannot be read name no origin: the app's errors stay its own."""
    try:
        files = read_context(root, environ=environ, require_cdk_json=False)
    except ContextError:
        files = Context({})
    origins = {
        key: files.origins[key] for key, value in values.items() if key in files.values and files.values[key] == value
    }
    return Context(dict(values), origins)
