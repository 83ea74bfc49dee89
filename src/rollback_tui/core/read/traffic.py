"""Traffic totals over a labelled window: requests, the split per replica, 5xx, latency, drops.

One accumulator for every front end: the traffic pane and the report (over the last window the 5xx
guardrail judges), the report and the headless verdict (over the whole session), `check traffic` (over
its run). A rate is never shown without its window.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rollback_tui.core import events as ev
from rollback_tui.core.read.words import ms, pct

if TYPE_CHECKING:
    from rollback_tui.core.state import SessionState
    from rollback_tui.playbook.model import Playbook

DEFAULT_WINDOW_S = 10.0  # a guardrail's default window_s
# A traffic window's start is known as its end minus its duration, journaled to the millisecond: it may come
# out up to half a millisecond before the end of the window it followed. Starts are compared with this slack.
WINDOW_EDGE_S = 0.001


def split_window_s(playbook: Playbook) -> float:
    """The window the traffic split is shown over: the one the (first) 5xx guardrail judges."""
    rail = next((g for g in playbook.guardrails if g.metric == "http_5xx_rate"), None)
    return rail.window_s if rail is not None else DEFAULT_WINDOW_S


@dataclass
class TrafficTotals:
    label: str  # the window, in words: "last 10 s", "whole session", "5 s run"
    windows: int = 0
    requests: int = 0
    served: dict[str, int] = field(default_factory=dict)  # replica → requests it answered
    errors: dict[str, int] = field(default_factory=dict)  # replica → 5xx it answered
    unattributed: dict[str, int] = field(default_factory=dict)  # why no replica answered → requests
    ws_disconnects: int = 0
    idempotency_collisions: int = 0
    transport_errors: int = 0
    first_ts: float | None = None  # start of the earliest window
    last_ts: float | None = None  # end of the latest window
    _p50: tuple[float, int] = (0.0, 0)  # (sum, count) of the windows' percentiles
    _p95: tuple[float, int] = (0.0, 0)
    p95_max_ms: float | None = None

    @classmethod
    def of(cls, label: str, windows: Iterable[ev.TrafficWindow]) -> TrafficTotals:
        totals = cls(label)
        for w in windows:
            totals.add(w)
        return totals

    def add(self, w: ev.TrafficWindow) -> None:
        self.windows += 1
        self.requests += w.requests
        for name, n in w.per_replica.items():
            self.served[name] = self.served.get(name, 0) + n
        for name, n in w.errors_5xx.items():
            self.errors[name] = self.errors.get(name, 0) + n
        for reason, n in w.unattributed.items():
            self.unattributed[reason] = self.unattributed.get(reason, 0) + n
        self.ws_disconnects += w.ws_disconnects
        self.idempotency_collisions += w.idempotency_collisions
        self.transport_errors += w.transport_errors
        self._span(w.ts - w.window_s, w.ts)
        if w.p50_ms is not None:
            self._p50 = (self._p50[0] + w.p50_ms, self._p50[1] + 1)
        if w.p95_ms is not None:
            self._p95 = (self._p95[0] + w.p95_ms, self._p95[1] + 1)
            self.p95_max_ms = w.p95_ms if self.p95_max_ms is None else max(self.p95_max_ms, w.p95_ms)

    def _span(self, start: float, end: float) -> None:
        self.first_ts = start if self.first_ts is None else min(self.first_ts, start)
        self.last_ts = end if self.last_ts is None else max(self.last_ts, end)

    def merge(self, other: TrafficTotals) -> None:
        """Add another window's totals (the report folds its time buckets together as they grow)."""
        self.windows += other.windows
        self.requests += other.requests
        for mine, theirs in (
            (self.served, other.served),
            (self.errors, other.errors),
            (self.unattributed, other.unattributed),
        ):
            for name, n in theirs.items():
                mine[name] = mine.get(name, 0) + n
        self.ws_disconnects += other.ws_disconnects
        self.idempotency_collisions += other.idempotency_collisions
        self.transport_errors += other.transport_errors
        if other.first_ts is not None and other.last_ts is not None:
            self._span(other.first_ts, other.last_ts)
        self._p50 = (self._p50[0] + other._p50[0], self._p50[1] + other._p50[1])
        self._p95 = (self._p95[0] + other._p95[0], self._p95[1] + other._p95[1])
        if other.p95_max_ms is not None:
            self.p95_max_ms = max(self.p95_max_ms or other.p95_max_ms, other.p95_max_ms)

    # --- derived ------------------------------------------------------------------------------

    @property
    def errors_5xx(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float | None:
        return self.errors_5xx / self.requests if self.requests else None

    @property
    def p50_ms(self) -> float | None:
        """Mean of the windows' p50 (what the p95 guardrail does with p95)."""
        total, n = self._p50
        return total / n if n else None

    @property
    def p95_ms(self) -> float | None:
        total, n = self._p95
        return total / n if n else None

    def share(self, replica: str) -> float:
        return self.served.get(replica, 0) / self.requests if self.requests else 0.0

    def replicas(self, order: Iterable[str] = ()) -> list[str]:
        """`order` first (the playbook's replicas), then any other replica that answered."""
        names = list(order)
        return names + sorted((set(self.served) | set(self.errors)) - set(names))

    # --- words --------------------------------------------------------------------------------

    def text(self) -> str:
        """`last 10 s: 200 req · 5xx 6 (3.0%) · p50 9.0 ms · p95 25 ms · ws drops 0 · idem. 0`."""
        if not self.requests:
            return f"{self.label}: no traffic"
        return (
            f"{self.label}: {self.requests} req · 5xx {self.errors_5xx} ({pct(self.error_rate)})"
            f" · p50 {ms(self.p50_ms)} · p95 {ms(self.p95_ms)}"
            f" · ws drops {self.ws_disconnects} · idem. {self.idempotency_collisions}"
            + (f" · no replica answered {sum(self.unattributed.values())}" if self.unattributed else "")
        )

    def split_text(self, order: Iterable[str] = ()) -> str:
        """`stable-a 50.0% (0 5xx) · stable-b 49.0% (0 5xx) · balancer unreachable 1.0%` — the replicas, then
        the requests no replica answered, by reason."""
        served = [f"{n} {pct(self.share(n))} ({self.errors.get(n, 0)} 5xx)" for n in self.replicas(order)]
        failed = [f"{why} {pct(k / self.requests)}" for why, k in sorted(self.unattributed.items())]
        return " · ".join(served + failed)

    def as_dict(self) -> dict[str, object]:
        return {
            "window": self.label,
            "requests": self.requests,
            "per_replica": dict(self.served),
            "errors_5xx": dict(self.errors),
            "unattributed": dict(self.unattributed),
            "error_rate": None if self.error_rate is None else round(self.error_rate, 4),
            "p95_ms_mean": None if self.p95_ms is None else round(self.p95_ms, 1),
            "ws_disconnects": self.ws_disconnects,
            "idempotency_collisions": self.idempotency_collisions,
            "transport_errors": self.transport_errors,
        }


def recent_traffic(state: SessionState, now: float, window_s: float) -> TrafficTotals:
    """Totals of the traffic windows that ended within `window_s` of `now` (the windows a guardrail over
    `window_s` judges at `now`, chosen the same way)."""
    since = now - window_s
    return TrafficTotals.of(f"last {window_s:g} s", (w for w in state.traffic.windows if w.ts >= since))


def traffic_since(state: SessionState, since: float, label: str) -> TrafficTotals:
    """Totals of the traffic windows that began at or after `since`: what was sent from then on, none of
    it from before (a check judges only the traffic it looked at)."""
    windows = (w for w in state.traffic.windows if w.ts - w.window_s >= since - WINDOW_EDGE_S)
    return TrafficTotals.of(label, windows)
