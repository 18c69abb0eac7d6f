"""canary_stack/text.py: a user's value in an error line, as written and never longer than a line."""

from __future__ import annotations

import pytest

from canary_stack.text import shorten


@pytest.mark.parametrize(
    "value, shown",
    [
        ("abc", "'abc'"),
        ("", "''"),
        ("it's", '"it\'s"'),  # quoted so that it reads back as typed
        ("a\nb", "'a\\nb'"),
        ("\x1b[31mred", "'\\x1b[31mred'"),
        ("\u202eevil", "'\\u202eevil'"),  # a right-to-left override would reorder the line
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (10, "10"),
        (10.0, "10.0"),
        ([1, "a"], '[1, "a"]'),
        ({"k": True}, '{"k": true}'),
    ],
)
def test_value_is_shown_as_the_user_wrote_it(value, shown):
    assert shorten(value) == shown


def test_a_value_up_to_the_limit_is_whole_and_one_past_it_is_cut():
    assert shorten("x" * 78) == "'" + "x" * 78 + "'"  # 80 characters shown: a 64-character hash fits
    assert shorten("x" * 79) == "'" + "x" * 40 + "...' (79 characters)"
    assert shorten("x" * 3000) == "'" + "x" * 40 + "...' (3000 characters)"


def test_the_limit_is_a_parameter():
    assert shorten("abcdefghij", limit=12) == "'abcdefghij'"
    assert shorten("abcdefghijk", limit=12).endswith("(11 characters)")


def test_long_json_values_are_cut_too():
    shown = shorten(list(range(1000)))
    assert shown.startswith("[0, 1, 2, 3") and shown.endswith("characters)") and len(shown) < 70
