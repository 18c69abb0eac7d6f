"""How an error line shows a value the user gave: as they wrote it, and never a whole page of it.

The app's config (canary_stack/config.py) and the operator tools (canary_stack/ops) both print
values back, so this module imports only the standard library.
"""

from __future__ import annotations

import json

MAX_SHOWN = 60  # characters of a value an error line shows before it is cut
KEPT = 40  # characters kept of a value that is cut


def shorten(value: object, limit: int = MAX_SHOWN, *, quote: bool = True) -> str:
    """A value for a one-line message: a string quoted (`'abc'`), anything else as JSON wrote it
    (`true`, `null`, `10.5`, `[1, 2]`: cdk.json's values, not Python's `True`/`None`).

    Longer than `limit` characters: the first ones, an ellipsis and the full length, e.g.
    `'aaaa…' (3000 characters)`. Line breaks and control characters show escaped, so the message
    stays one line. `quote=False` leaves a string unquoted (a word inside a message).
    """
    if isinstance(value, str):
        text = value
    else:
        try:
            text, quote = json.dumps(value, ensure_ascii=False), False
        except (TypeError, ValueError):
            text, quote = str(value), False
    if len(text) > limit:
        if quote:
            cut = _quoted(text[:KEPT])
            cut = cut[:-1] + "…" + cut[-1]  # inside the quotes: the value goes on
        else:
            cut = _escaped(text[:KEPT]) + "…"
        return f"{cut} ({len(text)} characters)"
    return _quoted(text) if quote else _escaped(text)


def _quoted(text: str) -> str:
    # repr() escapes line breaks and control characters; it picks double quotes for a value
    # holding a single one, which still reads as what was typed.
    return repr(text)


def _escaped(text: str) -> str:
    return repr(text)[1:-1] if any(not c.isprintable() for c in text) else text
