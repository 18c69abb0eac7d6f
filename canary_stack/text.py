"""How a user's value is shown in a one-line error: as they wrote it, and never longer than a line.

Standard library only: the app's configuration and the operator tools (which must not start the
CDK) both use it.
"""

from __future__ import annotations

import json

# A value longer than `limit` (80: a 64-character hash still shows whole) keeps this many characters:
# enough to recognise it, short enough for one line.
HEAD = 40


def shorten(value: object, limit: int = 80) -> str:
    """`value` as the user wrote it, cut to its first characters (and its length) past `limit`.

    A string (from `-c key=value` or a command line) is quoted, with anything unprintable escaped so
    the error stays one line and cannot drive the terminal; any other value is shown as JSON, the
    way `cdk.json` spells it (`true`, `10.0`, `null`), not in Python's spelling (`True`, `None`).
    """
    if isinstance(value, str):
        shown = repr(value)
        if len(shown) <= limit:
            return shown
        head = repr(value[:HEAD])
        return f"{head[:-1]}...{head[-1]} ({len(value)} characters)"
    try:
        shown = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError):
        shown = repr(value)
    if len(shown) <= limit:
        return shown
    return f"{shown[:HEAD]}... ({len(shown)} characters)"
