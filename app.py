#!/usr/bin/env python3
"""The CDK app (cdk.json's "app"), and the only reader of context and environment.

A bad context value stops it with one line, exit code 2 and no template; a synthesis that fails
validation (cdk-nag) exits 1 with the report. Either way the output folder is left with nothing
that `cdk deploy --app <folder>` could ship. The stacks: canary_stack/cdk_app.py.
"""

import os
import sys
from pathlib import Path

from canary_stack.assembly import remove_deployable
from canary_stack.config import ConfigError
from canary_stack.context import attribute, parse_environment
from canary_stack.toolchain import exit_now, prepare_toolchain, remove_at_exit


def main() -> int:
    outdir = os.environ.get("CDK_OUTDIR") or None  # the CLI's -o (cdk.out): cleaned when this fails
    try:
        # What the CLI merged from -c and the context files; an error names the file of its value.
        context = attribute(Path.cwd(), parse_environment(os.environ))
        config = context.config()
    except ConfigError as err:
        if outdir:
            remove_deployable(Path(outdir))
        print(f"error: {err}", file=sys.stderr)
        return 2
    remove_at_exit(prepare_toolchain(os.environ))  # before aws_cdk loads: jsii starts Node.js then
    from canary_stack import cdk_app

    try:
        cdk_app.synthesize(config, context=context.values, outdir=outdir)
    except cdk_app.ValidationFailed as failed:
        print(
            f"{failed.report}\nerror: synthesis failed validation; no template was left in {failed.outdir}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    exit_now(main())
