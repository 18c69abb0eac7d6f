"""`python -m canary_stack.ops TOOL ...`: the operator tools that have no module of their own to run.

    python -m canary_stack.ops pipeline STEP     the delivery pipeline's build steps (ops/pipeline.py)

Exit code 2 with one line for anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from canary_stack.ops.cli import EXIT_OK, UsageError
from canary_stack.ops.command import Command
from canary_stack.text import shorten

TOOLS = ("pipeline",)


class Ops(Command):
    name = "canary_stack.ops"
    prog = "python -m canary_stack.ops"
    defer_signals = False  # the tool it runs handles its own signals

    def parse(self, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
        if argv in (["-h"], ["--help"]):
            self.out.write(f"usage: {self.prog} {{{','.join(TOOLS)}}} ...\n\n{__doc__}")
            raise SystemExit(EXIT_OK)
        if not argv or argv[0] not in TOOLS:
            given = shorten(argv[0]) if argv else "nothing"
            raise UsageError(f"expected a tool, {', '.join(TOOLS)}; got {given}")
        return argparse.Namespace(tool=argv[0]), argv[1:]

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        from canary_stack.ops import pipeline

        return pipeline.main(args, stdout=self.out, stderr=self.err)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    return Ops(stdout=stdout, stderr=stderr).main(argv)


if __name__ == "__main__":
    sys.exit(main())
