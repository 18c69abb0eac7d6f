"""verify and rollout, split by concern (issue 17.3): each module small enough to read in one sitting."""

from __future__ import annotations

import pytest

from canary_stack.constants import PROJECT_ROOT as ROOT

# verify: urls (the URL), probe (requests and their bounds), stats (counts, interval), report (what is
# printed), versions (which answers are the canary's). rollout: traffic (the bake's probe), cloud (AWS
# reads), plan (the plan and the dry run), steps (the step loop).
MODULES = ["verify", "rollout", "urls", "probe", "stats", "report", "versions", "traffic", "cloud", "plan", "steps"]
MAX_LINES = 450


@pytest.mark.parametrize("name", MODULES)
def test_no_module_of_verify_or_rollout_is_over_450_lines(name):
    lines = (ROOT / "canary_stack" / "ops" / f"{name}.py").read_text().count("\n")
    assert lines <= MAX_LINES, f"{name}.py has {lines} lines"


def test_callers_still_find_what_they_import():
    # tests/stack/test_observability.py builds a Rollout; the pipeline runs the modules by name.
    from canary_stack.ops.rollout import Rollout, SubprocessRunner, build_parser, main
    from canary_stack.ops.verify import EXIT_OUTSIDE, EXIT_UNMEASURABLE, parse_commit, parse_url

    assert all(callable(f) for f in (main, Rollout, SubprocessRunner, build_parser, parse_commit, parse_url))
    assert (EXIT_OUTSIDE, EXIT_UNMEASURABLE) == (1, 3)
