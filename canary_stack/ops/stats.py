"""Confidence interval for an observed traffic share.

The Wilson score interval is used instead of the textbook normal ("Wald")
interval because the Wald interval collapses to a zero-width interval at
p = 0 and p = 1 -- exactly the shares a canary rollout starts and ends with.
"""

from __future__ import annotations

import math

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
