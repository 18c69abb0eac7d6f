"""Probe traffic during a bake: steady, bounded GETs on the weighted path and on the header path.

"Elastic Load Balancing reports metrics to CloudWatch only when requests are flowing through the
load balancer" (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-cloudwatch-metrics.html),
and the canary's alarms treat missing data as not breaching: a bake without users would pass
whatever the canary does. So every bake sends its own requests to URL/crystal/api, at a fixed rate:

* on the weighted path (no header), split by the router like users' requests;
* on the header path (`canary-fleet: true`), which every router sends to the canary at any weight,
  so the canary's alarms have data even at weight 0 or 1.

Bounded: at most `rate` requests a second on each path, at most `limit` in a bake (both paths
together), at most MAX_IN_FLIGHT at once, each within `timeout`. The header path's answers that
carry the canary's commit are the bake's evidence: a bake that saw fewer than the stated minimum
is no evidence that the canary is healthy, and fails its step.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from canary_stack.constants import CANARY_HEADER, CANARY_HEADER_VALUE
from canary_stack.ops.probe import CANCELLED, Outcome, RequestPool, fetch
from canary_stack.ops.report import seen_commits

WEIGHTED = "weighted"
HEADER = "header"
MAX_IN_FLIGHT = 8
USER_AGENT = "canary-rollout-probe"  # so access logs can tell the probe from users
# A tick is due when its time has come within this much: a clock that lands a hair short of it
# (floating point) does not make the loop sleep for nothing.
_EPSILON = 1e-6

Fetcher = Callable[[str, float, float | None, Mapping[str, str] | None], Outcome]


def header_requests(bake: float, rate: float, limit: int) -> int:
    """How many requests a bake of `bake` seconds sends on the header path: one each 1/rate seconds
    from its start, while fewer than `limit` were sent on both paths."""
    if rate <= 0:
        return 0
    return min(math.ceil(bake * rate - _EPSILON), limit // 2)


@dataclass
class PathCounts:
    sent: int = 0
    commits: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def answered(self) -> int:
        return sum(self.commits.values())

    def add(self, outcome: Outcome) -> None:
        kind, value = outcome
        (self.commits if kind == "ok" else self.errors)[value] += 1


@dataclass
class BakeTraffic:
    """What a bake's probe requests saw, per path."""

    canary_commit: str
    paths: dict[str, PathCounts] = field(default_factory=lambda: {WEIGHTED: PathCounts(), HEADER: PathCounts()})

    @property
    def evidence(self) -> int:
        """Canary requests this bake saw: header-path answers carrying the canary's commit. (The
        weighted path's cannot be told from production's when both answer the same commit.)"""
        return self.paths[HEADER].commits[self.canary_commit]

    def describe(self) -> str:
        parts = []
        for name, counts in self.paths.items():
            part = f"{name} path {counts.sent} sent, {counts.answered} answered"
            if counts.commits:
                part += f" ({seen_commits(counts.commits)})"
            if counts.errors:
                reason, times = counts.errors.most_common(1)[0]
                part += f", {sum(counts.errors.values())} failed (most common: {reason} x{times})"
            parts.append(part)
        return "; ".join(parts)


class Prober:
    """Sends a bake's probe requests. The bake's loop calls `send_due(now)` whenever it wakes, and
    sleeps until the time it returns at the latest; `finish()` waits for what is in flight."""

    def __init__(
        self,
        url: str,
        *,
        rate: float,
        limit: int,
        canary_commit: str,
        timeout: float,
        fetcher: Fetcher = fetch,
    ):
        self.url = url
        self.rate = rate
        self.limit = limit
        self.timeout = timeout
        self.fetcher = fetcher
        self.pool = RequestPool(MAX_IN_FLIGHT, timeout)
        self.traffic = BakeTraffic(canary_commit)
        self.start: float | None = None
        self.ticks = 0

    def _sent(self) -> int:
        return sum(counts.sent for counts in self.traffic.paths.values())

    def send_due(self, now: float) -> float | None:
        """Sends every tick due by `now` (a tick: one request on each path); returns when the next
        one is due, or None when the bake's limit is reached."""
        if self.start is None:
            self.start = now
        while self._sent() + 2 <= self.limit:
            due = self.start + self.ticks / self.rate
            if due > now + _EPSILON:
                return due
            self._send(WEIGHTED, {"User-Agent": USER_AGENT})
            self._send(HEADER, {"User-Agent": USER_AGENT, CANARY_HEADER: CANARY_HEADER_VALUE})
            self.ticks += 1
        return None

    def _send(self, path: str, headers: Mapping[str, str] | None) -> None:
        while self.pool.full:  # a slow service lowers the rate; it never raises what is in flight
            self._record(self.pool.wait())
        self.pool.start(lambda: self.fetcher(self.url, self.timeout, None, headers), tag=path)
        self.traffic.paths[path].sent += 1

    def _record(self, ended: list[tuple[str, Outcome]]) -> None:
        for path, outcome in ended:
            if outcome != CANCELLED:
                self.traffic.paths[path].add(outcome)

    def collect(self) -> None:
        """Records what ended meanwhile, without waiting."""
        self._record(self.pool.wait(until=0.0))

    def finish(self) -> BakeTraffic:
        self._record(self.pool.drain())
        return self.traffic
