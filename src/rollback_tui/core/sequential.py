"""Sequential detection of a 5xx rate over its threshold, decided on every response.

For each rate p1 it is tuned to catch (`detect_rates`, all over the threshold p0) the test keeps Page's
CUSUM of the log-likelihood ratio of p1 against p0: every failed response adds log(p1/p0), every other
one subtracts log((1-p0)/(1-p1)), and the sum never goes below 0 (the run of evidence starts again).
A breach is called when one of them reaches the bound log(J / false_alarm_rate), J the number of rates.

Why that bound holds the false-alarm rate: each CUSUM is at most the log of its Shiryaev-Roberts sum, so
a crossing implies the equal-weight mixture of those sums reached 1 / false_alarm_rate; while the true rate
is at or under the threshold that mixture minus the number of responses is a supermartingale, so the
mean number of in-scope responses to a false alarm is at least 1 / false_alarm_rate (fewer crossings
still when the rate is lower; with no failed response there is none at all). Starting the runs again at
the start of the guardrail's window, or taking a window without its response order as one batch, only
lowers the sums: the bound still holds.

The evidence of a breach is self-checking: its run's `requests` and `errors` give the statistic,
errors·log(p1/p0) - (requests - errors)·log((1-p0)/(1-p1)), and its 5xx rate is over the threshold
(a positive sum needs errors/requests > log((1-p0)/(1-p1)) / log(p1(1-p0)/(p0(1-p1))) > p0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_MULTIPLES = (
    2.0,
    5.0,
    10.0,
)  # detect_rates by default: these times the threshold (see SequentialTest.of)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A run of the test: in-scope responses and failures since it began, its statistic and the bound."""

    requests: int
    errors: int
    statistic: float
    bound: float
    alternative: float  # the 5xx rate (p1) this run's statistic weighs against the threshold
    since: float | None = None  # what the caller stamped the run's first response with (its window start)

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def conclusive(self) -> bool:
        return self.statistic >= self.bound


@dataclass(frozen=True, slots=True)
class SequentialTest:
    """The parameters: the threshold (p0), the rates tuned for (p1 each), the false-alarm rate."""

    threshold: float
    rates: tuple[float, ...]
    false_alarm_rate: float

    @classmethod
    def of(
        cls, threshold: float, false_alarm_rate: float, rates: list[float] | None = None
    ) -> SequentialTest:
        """By default 2, 5 and 10 times the threshold, none past halfway from the threshold to 1."""
        ceiling = (1 + threshold) / 2
        chosen = rates or sorted({min(ceiling, threshold * m) for m in DEFAULT_MULTIPLES})
        return cls(threshold, tuple(chosen), false_alarm_rate)

    @property
    def bound(self) -> float:
        return math.log(len(self.rates) / self.false_alarm_rate)

    def fewest_errors(self) -> int:
        """Failed responses it needs at the least (all of them failed) before it can call a breach."""
        return math.ceil(self.bound / max(math.log(p1 / self.threshold) for p1 in self.rates))

    def start(self) -> Cusum:
        return Cusum(self)


@dataclass(slots=True)
class _Run:
    up: float  # added by a failed response
    down: float  # subtracted by any other
    statistic: float = 0.0
    requests: int = 0
    errors: int = 0
    since: float | None = None

    def add(self, requests: int, errors: int, at: float | None) -> None:
        total = self.statistic + errors * self.up - (requests - errors) * self.down
        if total <= 0:  # no evidence left: the run starts again
            self.statistic, self.requests, self.errors, self.since = 0.0, 0, 0, None
            return
        if not self.requests:
            self.since = at
        self.statistic, self.requests, self.errors = total, self.requests + requests, self.errors + errors


@dataclass(slots=True)
class Cusum:
    """The running test: `step` per response (or `batch` for responses whose order is not known)."""

    test: SequentialTest
    runs: list[_Run] = field(init=False)

    def __post_init__(self) -> None:
        p0 = self.test.threshold
        self.runs = [_Run(math.log(p1 / p0), math.log((1 - p0) / (1 - p1))) for p1 in self.test.rates]

    def step(self, failed: bool, at: float | None = None) -> bool:
        """One response (`at` stamps a run it starts); True when the evidence is conclusive after it."""
        errors = 1 if failed else 0
        for run in self.runs:
            run.add(1, errors, at)
        return self.conclusive

    def batch(self, requests: int, errors: int, at: float | None = None) -> bool:
        """Responses whose order is unknown, taken at once (never more evidence than one by one)."""
        for run in self.runs:
            run.add(requests, errors, at)
        return self.conclusive

    @property
    def conclusive(self) -> bool:
        bound = self.test.bound
        return any(run.statistic >= bound for run in self.runs)

    def evidence(self) -> Evidence:
        """The strongest run (the one closest to, or over, the bound)."""
        index = max(range(len(self.runs)), key=lambda i: self.runs[i].statistic)
        run = self.runs[index]
        rate = self.test.rates[index]
        return Evidence(run.requests, run.errors, run.statistic, self.test.bound, rate, run.since)
