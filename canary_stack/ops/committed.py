"""The configuration `cdk synth` gets without -c: every context source the CDK CLI reads, merged.

    python -m canary_stack.ops.committed KEY      e.g. `canaryWeight` -> 10

The CLI merges cdk.json's "context", cdk.context.json and ~/.cdk.json's "context" (in that order of
precedence; canary_stack/context.py cites the CLI's source) and passes the result to the app as
JSON.stringify's text, so every number goes through a JavaScript double (`10.0` reaches the app as
`10`). `committed_context` gives the same values, so every tool, the pipeline's buildspec and the
tests read the one answer `cdk synth` and `cdk deploy` get; `committed_config` parses them with the
app's own `CanaryConfig.from_context`, and an error names the file a bad value came from.

Exit codes of the command: 0 the value printed, 2 a missing or malformed context file, an invalid
configuration or an unknown key (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from canary_stack.config import DEFAULTS, CanaryConfig
from canary_stack.constants import PROJECT_ROOT
from canary_stack.context import CDK_JSON, parse_cdk_json, read_context
from canary_stack.ops.cli import EXIT_OK, UsageError
from canary_stack.ops.command import Command
from canary_stack.text import shorten

__all__ = ["CDK_JSON", "committed_config", "committed_context", "committed_value", "main", "parse_cdk_json"]


def committed_context(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The context `cdk synth` run in ROOT without -c gives the app. ContextError (one line naming
    the file) when cdk.json is missing, or a context file is unreadable or malformed."""
    return read_context(root).values


def committed_config(root: Path = PROJECT_ROOT) -> CanaryConfig:
    """The app's configuration for that context. ConfigError names the file of a refused value."""
    return read_context(root).config()


def _attribute(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()  # canaryWeight -> canary_weight


def committed_value(key: str, root: Path = PROJECT_ROOT) -> Any:
    """The value the app uses for context KEY when no -c is given: parsed by the app where its
    configuration has a plain field of that name (so `" 10"` prints as `10`), else as set, else the
    app's default."""
    context = read_context(root)
    config = context.config()  # the whole configuration must be valid, not just KEY
    if key not in DEFAULTS and key not in context.values:
        raise UsageError(
            f"unknown context parameter {shorten(key)}; known parameters: {', '.join(DEFAULTS)}"
            " (or a key set in cdk.json)"
        )
    parsed = getattr(config, _attribute(key), None)
    if isinstance(parsed, (str, int)) and key in DEFAULTS:
        return parsed
    return context.values.get(key, DEFAULTS.get(key))


def render(value: Any) -> str:
    """A value as a shell script reads it: strings bare, everything else as JSON (`true`, `10`)."""
    return value if isinstance(value, str) else json.dumps(value)


class Committed(Command):
    name = "committed"
    prog = "python -m canary_stack.ops.committed"
    positional = "KEY"
    description = __doc__.strip().splitlines()[0]

    def __init__(self, root: Path = PROJECT_ROOT, **streams: TextIO | None) -> None:
        super().__init__(**streams)
        self.root = root

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        if len(args) != 1 or not args[0] or args[0].startswith("-"):
            raise UsageError(f"expected one context key, e.g. canaryWeight, got {shorten(' '.join(args))}")
        self.out.write(render(committed_value(args[0], self.root)) + "\n")
        return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    return Committed(root, stdout=stdout, stderr=stderr).main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
