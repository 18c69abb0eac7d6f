"""`python -m canary_stack.ops TOOL ...`: the operator tools that have no module of their own to run.

    python -m canary_stack.ops pipeline STEP     the delivery pipeline's build steps (ops/pipeline.py)

Exit code 2 with one line for anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from canary_stack.ops.cli import EXIT_OK, EXIT_USAGE, UsageError, usage_line
from canary_stack.text import shorten

TOOLS = ("pipeline",)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        out.write(f"usage: python -m canary_stack.ops {{{','.join(TOOLS)}}} ...\n\n{__doc__}")
        return EXIT_OK
    if not args or args[0] not in TOOLS:
        given = shorten(args[0]) if args else "nothing"
        err.write(usage_line("canary_stack.ops", UsageError(f"expected a tool, {', '.join(TOOLS)}; got {given}")))
        return EXIT_USAGE
    from canary_stack.ops import pipeline

    return pipeline.main(args[1:], stdout=out, stderr=err)


if __name__ == "__main__":
    sys.exit(main())
