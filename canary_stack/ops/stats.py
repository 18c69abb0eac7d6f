"""The statistics of a measured split: answers per commit, the error budget, and a confidence
interval for the canary's share.

The Wilson score interval is used instead of the textbook normal ("Wald")
interval because the Wald interval collapses to a zero-width interval at
p = 0 and p = 1 -- exactly the shares a canary rollout starts and ends with.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# Two-sided 95 %: the 0.975 quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Return the Wilson score interval (low, high) for successes/n, as fractions in [0, 1].

    At successes == 0 the lower bound is exactly 0 and the upper bound is
    z^2 / (n + z^2); at successes == n it is the mirror image.
    """
    if isinstance(successes, bool) or isinstance(n, bool):
        raise TypeError("successes and n must be integers")
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n}, got {successes}")
    if z <= 0:
        raise ValueError(f"z must be positive, got {z}")

    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # The closed form gives exactly 0 / 1 at the edges in exact arithmetic;
    # pin them so float rounding cannot produce -1e-17 or 1.0000000000000002.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


# Largest share of failed requests that still yields a measurement.
MAX_ERROR_FRACTION = 0.05


def max_errors(requests: int) -> int:
    """How many failed requests a run of `requests` tolerates (5 %, at least 1)."""
    return max(1, math.floor(requests * MAX_ERROR_FRACTION))


@dataclass
class Summary:
    """What a run of requests saw: answers per commit, failures per reason, the canary's share."""

    requests: int
    counts: dict[str, int]
    errors: dict[str, int]
    canary_commit: str
    answered: int = 0
    canary: int = 0
    share: float | None = None
    interval: tuple[float, float] | None = None
    failed: int = 0

    @property
    def too_many_errors(self) -> bool:
        return self.answered == 0 or self.failed > max_errors(self.requests)

    @property
    def only_the_canary_answered(self) -> bool:
        """Every answer carries the canary's commit: after a promotion production answers it too."""
        return self.answered > 0 and self.canary == self.answered


def summarize(outcomes: Iterable[tuple[str, str]], requests: int, canary_commit: str) -> Summary:
    """Aggregate ("ok", commit) / ("error", reason) outcomes.

    `requests` is the number that was planned (the run may have been cut short); the error budget is
    relative to it.
    """
    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for kind, value in outcomes:
        (counts if kind == "ok" else errors)[value] += 1
    summary = Summary(
        requests=requests,
        counts=dict(sorted(counts.items())),
        errors=dict(errors.most_common()),
        canary_commit=canary_commit,
        answered=sum(counts.values()),
        canary=counts.get(canary_commit, 0),
        failed=sum(errors.values()),
    )
    if summary.answered:
        summary.share = summary.canary / summary.answered
        summary.interval = wilson_interval(summary.canary, summary.answered)
    return summary
