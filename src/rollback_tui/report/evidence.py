"""What the report needs beyond SessionState, gathered in one pass over the events (bounded memory).

SessionState keeps the *current* picture (last gate run, last 300 traffic windows…); the report also
needs history: every gate run with its output tail, the frames of each fanout run, the traffic split over
the whole session (downsampled), and a timeline. Everything here is bounded so a million-event journal
costs the same memory as a short one.
"""

from __future__ import annotations

import shlex
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from rollback_tui.core import events as ev
from rollback_tui.core.read.incident import KINDS as INCIDENT_KINDS
from rollback_tui.core.read.incident import IncidentFold
from rollback_tui.core.read.timeline import describe
from rollback_tui.core.read.traffic import TrafficTotals
from rollback_tui.core.state import SessionState, TapFrame
from rollback_tui.core.unknown import KINDS as OBSERVING_KINDS
from rollback_tui.core.unknown import observation

GATE_TAIL = 20  # output lines of each gate run shown in the report
MAX_GATE_RUNS = 200
MAX_FANOUT_RUNS = 100
FRAMES_PER_RUN = 60
TIMELINE_HEAD = 400
TIMELINE_TAIL = 400
TRAFFIC_ROWS = 30
MAX_BLIND = 200  # data-collection failure episodes kept for the report (the journal has them all)
_TIMELINE = ev.TIMELINE  # kinds with a line in the timeline (core/read/timeline.py describes them)
_WATCHED = OBSERVING_KINDS | {"metric_sample"}  # what data-collection failures are folded from


def iso(ts: float | None, *, ms: bool = False) -> str:
    """UTC ISO-8601 timestamp ('2026-01-01T04:12:03Z'; with milliseconds when `ms`)."""
    if ts is None:
        return "-"
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    if ms:
        base += f".{round((ts % 1) * 1000) % 1000:03d}"
    return base + "Z"


@dataclass
class GateRun:
    gate: str
    run: str
    argv: list[str] = field(default_factory=list)
    where: str = "local"
    actor: str = "engine"
    started_ts: float | None = None
    finished: ev.GateFinished | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=GATE_TAIL))
    journaled_lines: int = 0

    @property
    def command(self) -> str:
        return shlex.join(self.argv) if self.argv else "?"


class TrafficHistory:
    """Traffic windows folded into at most `rows` time buckets whose width doubles as the session grows
    (each bucket the same totals the cockpit and the headless verdict add up)."""

    def __init__(self, rows: int = TRAFFIC_ROWS) -> None:
        self.max_rows = rows
        self.origin: float | None = None
        self.width = 1.0
        self.buckets: dict[int, TrafficTotals] = {}
        self.replicas: list[str] = []
        self.unattributed: list[str] = []  # reasons no replica answered, in order of first sight

    def add(self, w: ev.TrafficWindow) -> None:
        start = w.ts - w.window_s
        if self.origin is None:
            self.origin, self.width = start, max(w.window_s, 1.0)
        index = int((start - self.origin) // self.width)
        while index >= self.max_rows:
            self._halve()
            index = int((start - self.origin) // self.width)
        index = max(index, 0)
        row = self.buckets.get(index)
        if row is None:
            row = self.buckets[index] = TrafficTotals("time bucket")
        row.add(w)
        self.replicas += [name for name in w.per_replica if name not in self.replicas]
        self.unattributed += [r for r in w.unattributed if r not in self.unattributed]

    def _halve(self) -> None:
        self.width *= 2
        merged: dict[int, TrafficTotals] = {}
        for index in sorted(self.buckets):
            row = self.buckets[index]
            if index // 2 in merged:
                merged[index // 2].merge(row)
            else:
                merged[index // 2] = row
        self.buckets = merged

    def rows(self) -> list[TrafficTotals]:
        return [self.buckets[i] for i in sorted(self.buckets)]


@dataclass
class Blind:
    """One data-collection failure: `subject` could not observe from `since` (until `until`, if ever)."""

    subject: str
    reason: str
    since: float
    last: float
    times: int = 1
    until: float | None = None  # when it ended: it observed again (or failed to for another reason)


@dataclass
class TimelineEntry:
    ts: float
    kind: str
    text: str


class Evidence:
    """Observe every event (after SessionState has folded it); render from the result."""

    def __init__(self) -> None:
        self.events = 0
        self.timeline_head: list[TimelineEntry] = []
        self.timeline_tail: deque[TimelineEntry] = deque(maxlen=TIMELINE_TAIL)
        self.timeline_total = 0
        self.gate_runs: OrderedDict[str, GateRun] = OrderedDict()
        self.gate_runs_dropped = 0
        self.frames: OrderedDict[str, list[ev.FanoutFrame | TapFrame]] = OrderedDict()
        self.traffic = TrafficHistory()
        self.traffic_total = TrafficTotals("whole session")
        self.warnings: list[str] = []
        self._blind: list[Blind] = []  # oldest first, at most MAX_BLIND
        self.blind_dropped = 0
        self._blind_open: dict[str, Blind] = {}  # subject → its episode while it cannot observe
        # guardrail subject → the time of its last query evaluation while unknown, not yet counted: it is
        # the same unknown again unless a GuardrailStatus stamped with that time says it changed.
        self._evaluated: dict[str, float] = {}
        self.incident = IncidentFold()  # what broke, the traffic while it lasted: the summary paragraph

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], state: SessionState | None = None) -> Evidence:
        evidence = cls()
        for event in events:
            if state is not None:
                state.apply(event)
            evidence.observe(event)
        return evidence

    # --- derived ------------------------------------------------------------------------------

    @property
    def blind(self) -> list[Blind]:
        """The data-collection failure episodes, oldest first (at most MAX_BLIND)."""
        for subject in list(self._evaluated):
            self._count_evaluation(subject)
        return self._blind

    @property
    def timeline(self) -> list[TimelineEntry]:
        return self.timeline_head + list(self.timeline_tail)

    @property
    def timeline_omitted(self) -> int:
        return self.timeline_total - len(self.timeline_head) - len(self.timeline_tail)

    # --- the fold -----------------------------------------------------------------------------

    def observe(self, event: ev.Event) -> None:
        self.events += 1
        kind = event.kind
        if kind in INCIDENT_KINDS:
            self.incident.observe(event)
        if kind == "health_sample":  # the commonest kind: only an unknown (or the end of one) matters
            if self._blind_open or event.status == "unknown":  # type: ignore[attr-defined]
                self._observed(event)
            return
        if kind in _WATCHED:
            self._observed(event)
        if kind == "fanout_frame":
            self._frame(event)  # type: ignore[arg-type]
            return
        if kind == "fanout_tap_batch":
            kept = self.frames.get(event.run)  # type: ignore[attr-defined]
            room = FRAMES_PER_RUN - (len(kept) if kept is not None else 0)
            for row in event.rows[: max(room, 1)]:  # type: ignore[attr-defined]
                self._frame(TapFrame(event.run, *row))  # type: ignore[attr-defined]
            return
        if kind == "traffic_window":
            self.traffic.add(event)  # type: ignore[arg-type]
            self.traffic_total.add(event)  # type: ignore[arg-type]
            return
        if kind == "gate_output":
            run = self.gate_runs.get(event.run)  # type: ignore[attr-defined]
            if run is not None:
                run.tail.append(event.line)  # type: ignore[attr-defined]
                run.journaled_lines += 1
            return
        if kind == "gate_started":
            self._gate_run(event.gate, event.run)  # type: ignore[attr-defined]
            run = self.gate_runs[event.run]  # type: ignore[attr-defined]
            run.argv, run.where, run.actor, run.started_ts = (
                event.argv,  # type: ignore[attr-defined]
                event.where,  # type: ignore[attr-defined]
                event.actor,  # type: ignore[attr-defined]
                event.ts,
            )
        elif kind == "gate_finished":
            assert isinstance(event, ev.GateFinished)
            self._gate_run(event.gate, event.run).finished = event
        if kind in _TIMELINE:
            text = describe(event)
            if text is not None:
                self._timeline(TimelineEntry(event.ts, kind, text))

    def _query_evaluated(self, event: ev.MetricSample) -> None:
        """A guardrail's query was evaluated. Only its changes are journaled (GuardrailStatus, stamped with
        the evaluation's time), so an evaluation while it is unknown that no change follows was unknown for
        the same reason: it counts in the episode's times and last."""
        subject = f"guardrail {event.guardrail}"
        self._count_evaluation(subject)
        if subject in self._blind_open:
            self._evaluated[subject] = event.ts

    def _count_evaluation(self, subject: str) -> None:
        ts = self._evaluated.pop(subject, None)
        episode = self._blind_open.get(subject)
        if ts is not None and episode is not None and ts > episode.last:
            episode.last, episode.times = ts, episode.times + 1

    def _observed(self, event: ev.Event) -> None:
        if isinstance(event, ev.MetricSample):
            self._query_evaluated(event)
            return
        seen = observation(event)
        if seen is None:
            return
        if isinstance(event, ev.GuardrailStatus):
            if self._evaluated.get(seen.subject) == event.ts:  # this change is that evaluation's outcome
                del self._evaluated[seen.subject]
            self._count_evaluation(seen.subject)
        episode = self._blind_open.get(seen.subject)
        if seen.reason is None:
            if episode is not None:
                episode.until = event.ts
                del self._blind_open[seen.subject]
            return
        if episode is not None and episode.reason == seen.reason:
            episode.last, episode.times = event.ts, episode.times + 1
            return
        if episode is not None:  # another reason: a new episode
            episode.until = event.ts
        episode = self._blind_open[seen.subject] = Blind(seen.subject, seen.reason, event.ts, event.ts)
        self._blind.append(episode)
        if len(self._blind) > MAX_BLIND:
            self._blind.pop(0)
            self.blind_dropped += 1

    def credit_output(self, per_run: dict[str, int]) -> None:
        """Count gate output lines that a fast fold skipped (their text is not needed: only the tail)."""
        for run, count in per_run.items():
            if run in self.gate_runs:
                self.gate_runs[run].journaled_lines += count

    def _gate_run(self, gate: str, run: str) -> GateRun:
        if run not in self.gate_runs:
            self.gate_runs[run] = GateRun(gate, run)
            if len(self.gate_runs) > MAX_GATE_RUNS:
                self.gate_runs.popitem(last=False)
                self.gate_runs_dropped += 1
        return self.gate_runs[run]

    def _frame(self, frame: ev.FanoutFrame | TapFrame) -> None:
        frames = self.frames.get(frame.run)
        if frames is None:
            frames = self.frames[frame.run] = []
            if len(self.frames) > MAX_FANOUT_RUNS:
                self.frames.popitem(last=False)
        if len(frames) < FRAMES_PER_RUN:
            frames.append(frame)

    def _timeline(self, entry: TimelineEntry) -> None:
        self.timeline_total += 1
        if len(self.timeline_head) < TIMELINE_HEAD:
            self.timeline_head.append(entry)
        else:
            self.timeline_tail.append(entry)
