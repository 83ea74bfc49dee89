"""SessionState: a fold over journal events. The UI renders it; the report reads it.

`apply(event)` is the only way state changes, so replaying a journal rebuilds exactly what the
operator saw. Everything here is plain data; nothing does I/O.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rollback_tui.core import events as ev
from rollback_tui.core.rollback import ROLLBACK_KINDS, RollbackStatus

LATENCY_HISTORY = 60
FANOUT_LOG = 500
GATE_TAIL = 200
PROBE_HISTORY = 720  # results kept per probe: an hour at a 5 s poll, longer than any guardrail window
LOG_ROUTINE = 1000  # routine timeline events (notices, probe failures) kept for the cockpit's event log
ROUTINE_KINDS = frozenset({"notice", "probe_result"})  # the only timeline kinds that come at a poll's rate


@dataclass
class ReplicaState:
    name: str
    role: str = "?"
    url: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    status: str = "unknown"  # ok | degraded | down | junk | timeout | unknown
    latency_ms: float | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    http_status: int | None = None
    image: str | None = None
    commit: str | None = None
    channel_prefix: str | None = None
    transport: str | None = None
    error: str | None = None
    last_ts: float | None = None
    samples: int = 0
    failures: int = 0

    @property
    def healthy(self) -> bool:
        return self.status == "ok"


@dataclass(slots=True)
class TapFrame:
    """A frame the Redis tap saw, shaped like a FanoutFrame for the panes (session "tap")."""

    run: str
    received_at: float
    channel: str
    replica: str
    thread_id: str
    event_id: str
    seq: int | None
    sent_at: float | None
    session: str = "tap"
    replay: bool = False

    @property
    def latency_ms(self) -> float | None:
        return round((self.received_at - self.sent_at) * 1000, 2) if self.sent_at else None


class FrameLog:
    """The newest FANOUT_LOG fanout frames, oldest first: what `deque(maxlen=FANOUT_LOG)` would hold.

    A Redis tap batch is kept as its rows and turned into TapFrames only when someone reads the log
    (the pane, a few times a second), and only for rows still among the newest FANOUT_LOG. A flood of
    tens of thousands of tapped frames per second then costs the fold O(1) per batch, not per frame.
    """

    __slots__ = ("_batched_rows", "_batches", "_frames")

    def __init__(self, maxlen: int = FANOUT_LOG) -> None:
        self._frames: deque[ev.FanoutFrame | TapFrame] = deque(maxlen=maxlen)
        self._batches: deque[tuple[str, list[ev.TapRow]]] = deque()  # (run, rows), not yet frames
        self._batched_rows = 0

    @property
    def maxlen(self) -> int:
        return self._frames.maxlen or 0

    def append(self, frame: ev.FanoutFrame | TapFrame) -> None:
        if self._batches:
            self._materialize()
        self._frames.append(frame)

    def add_rows(self, run: str, rows: list[ev.TapRow]) -> None:
        """Rows of a FanoutTapBatch (TAP_COLUMNS); older batches that fell out of the window are dropped."""
        if not rows:
            return
        batches = self._batches
        batches.append((run, rows))
        self._batched_rows += len(rows)
        limit = self.maxlen
        while self._batched_rows - len(batches[0][1]) >= limit:
            self._batched_rows -= len(batches.popleft()[1])

    def _materialize(self) -> None:
        frames, limit = self._frames, self.maxlen
        skip = max(0, self._batched_rows - limit)  # rows of the oldest batch beyond the window
        for run, rows in self._batches:
            if skip >= len(rows):
                skip -= len(rows)
                continue
            frames.extend([TapFrame(run, *row) for row in rows[skip:]])
            skip = 0
        self._batches.clear()
        self._batched_rows = 0

    def _view(self) -> deque[ev.FanoutFrame | TapFrame]:
        if self._batches:
            self._materialize()
        return self._frames

    def __len__(self) -> int:
        return min(len(self._frames) + self._batched_rows, self.maxlen)

    def __bool__(self) -> bool:
        return bool(self._frames) or self._batched_rows > 0

    def __iter__(self) -> Iterator[ev.FanoutFrame | TapFrame]:
        return iter(self._view())

    def __reversed__(self) -> Iterator[ev.FanoutFrame | TapFrame]:
        return reversed(self._view())

    def __getitem__(self, index: int) -> ev.FanoutFrame | TapFrame:
        return self._view()[index]

    def __repr__(self) -> str:
        return f"FrameLog({list(self)!r})"


@dataclass
class GateState:
    name: str
    status: str = "queued"  # queued | running | passed | failed | timed_out | cancelled | error | interrupted
    run: str | None = None
    argv: list[str] = field(default_factory=list)
    where: str = "local"
    started_ts: float | None = None
    finished_ts: float | None = None
    last_seen_ts: float | None = None  # the current run's newest journaled line (start or output)
    exit_code: int | None = None
    duration_s: float | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=GATE_TAIL))
    output_lines: int = 0
    history: list[ev.GateFinished] = field(default_factory=list)


@dataclass
class FanoutState:
    frames: FrameLog = field(default_factory=FrameLog)
    frames_total: int = 0
    sessions: dict[str, ev.FanoutSessionState] = field(default_factory=dict)
    results: list[ev.FanoutResult] = field(default_factory=list)
    started: dict[str, float] = field(default_factory=dict)  # run → when its first session was journaled

    @property
    def last_result(self) -> ev.FanoutResult | None:
        return self.results[-1] if self.results else None


@dataclass
class TrafficState:
    windows: deque[ev.TrafficWindow] = field(default_factory=lambda: deque(maxlen=300))
    selector: ev.SelectorState | None = None
    breaches: dict[str, ev.GuardrailBreach] = field(default_factory=dict)  # active breaches
    breach_log: list[ev.GuardrailBreach | ev.GuardrailRecovered] = field(default_factory=list)
    rollback: RollbackStatus = field(default_factory=RollbackStatus)  # the state machine; read this
    # The latest event of each kind, for the evidence trail (they may belong to an earlier attempt).
    rollback_requested: ev.RollbackRequested | None = None
    rollback_applied: ev.RollbackApplied | None = None
    rollback_verified: ev.RollbackVerified | None = None

    @property
    def last_window(self) -> ev.TrafficWindow | None:
        return self.windows[-1] if self.windows else None


@dataclass
class RailState:
    """What the journal says about a guardrail's data (its breaches are in TrafficState)."""

    name: str
    status: str = "waiting"  # waiting | observed | unknown
    reason: str | None = None  # why it is unknown
    since: float | None = None  # when the current status began
    observed_ts: float | None = None  # first time it had data to judge over its window


@dataclass
class ItemRun:
    """What the runbook runner journaled about one item of a step: its latest run."""

    step: str
    index: int
    item: str
    status: str = "running"  # running | passed | failed | unknown | skipped | needs_input | cancelled
    reason: str = ""
    note: str = ""
    actor: str = ""
    started_ts: float | None = None
    finished_ts: float | None = None
    runs: int = 0
    due: bool = False  # a conditional item whose condition held (StepItemFinished.due)


@dataclass
class ActionPart:
    """One part of an action run (a redeploy's service, a flag), or the whole action (`part` "")."""

    part: str
    status: str = "running"  # running | passed | failed | timed_out | cancelled | error | interrupted
    argv: list[str] = field(default_factory=list)
    where: str = "local"
    actor: str = ""
    started_ts: float | None = None
    finished_ts: float | None = None
    exit_code: int | None = None
    output: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ActionRun:
    """The latest run of a command action: the whole (`parts[""]`) and its parts in the order they ran."""

    name: str
    parts: dict[str, ActionPart] = field(default_factory=dict)

    @property
    def whole(self) -> ActionPart | None:
        return self.parts.get("")

    @property
    def status(self) -> str:
        return self.whole.status if self.whole is not None else "not_run"


@dataclass
class ChecklistEntry:
    item: str
    checked: bool = False
    actor: str | None = None
    note: str = ""
    auto: bool = False
    ts: float | None = None


class EventLog:
    """The session's timeline events, whole, for the cockpit's event log (core/read/timeline.py words them).

    Breaches, recoveries, operator actions, rollback stages, gate and fanout outcomes come at a human's or a
    state change's rate and are all kept, so none depends on a toast; notices and probe failures, which a
    dead feed produces at its poll rate, keep the newest LOG_ROUTINE.
    """

    __slots__ = ("_kept", "_routine", "dropped")

    def __init__(self) -> None:
        self._kept: list[ev.Event] = []
        self._routine: deque[ev.Event] = deque(maxlen=LOG_ROUTINE)
        self.dropped = 0  # routine events that fell out

    def add(self, event: ev.Event) -> None:
        if event.kind in ROUTINE_KINDS:
            self.dropped += len(self._routine) == LOG_ROUTINE
            self._routine.append(event)
        else:
            self._kept.append(event)

    def __len__(self) -> int:
        return len(self._kept) + len(self._routine)

    def __iter__(self) -> Iterator[ev.Event]:
        """Journal order."""
        return heapq.merge(self._kept, self._routine, key=lambda e: e.n)

    def __eq__(self, other: object) -> bool:
        """Two folds of the same events hold the same log."""
        if not isinstance(other, EventLog):
            return NotImplemented
        return self.dropped == other.dropped and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


@dataclass
class SessionState:
    started: ev.SessionStarted | None = None
    ended: ev.SessionEnded | None = None
    replicas: dict[str, ReplicaState] = field(default_factory=dict)
    gates: dict[str, GateState] = field(default_factory=dict)
    fanout: FanoutState = field(default_factory=FanoutState)
    traffic: TrafficState = field(default_factory=TrafficState)
    rails: dict[str, RailState] = field(default_factory=dict)  # guardrail → whether it can judge
    metrics: dict[str, ev.MetricSample] = field(default_factory=dict)  # guardrail → its last query result
    facts: dict[str, ev.FactCaptured] = field(default_factory=dict)
    probes: dict[str, ev.ProbeResult] = field(default_factory=dict)
    # Recent results per probe, for guardrails over a window (dead-letter growth).
    probe_history: dict[str, deque[ev.ProbeResult]] = field(default_factory=dict)
    checklist: dict[str, ChecklistEntry] = field(default_factory=dict)
    step: str | None = None  # the tracker: where the operator said they are, not what ran
    step_items: dict[tuple[str, int], ItemRun] = field(default_factory=dict)  # (step, index) → latest run
    actions: dict[str, ActionRun] = field(default_factory=dict)
    flags: dict[str, dict[str, ev.FlagsRead]] = field(default_factory=dict)  # action → before/after → read
    dead_letters: dict[str, ev.DeadLettersInspected] = field(default_factory=dict)  # probe → latest look
    incident: ev.IncidentRecorded | None = None  # the latest holds every field recorded
    readiness: ev.ReadinessChecked | None = None  # the latest check of what the items need from here
    notices: deque[ev.Notice] = field(default_factory=lambda: deque(maxlen=200))
    log: EventLog = field(default_factory=EventLog)  # timeline events, for the event log
    exports: list[ev.ExportWritten] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    last_n: int = 0
    last_ts: float | None = None
    resumes: int = 0

    # --- derived --------------------------------------------------------------------------------

    @property
    def prefixes(self) -> dict[str, str]:
        """Channel prefix reported by each replica that reported one."""
        return {name: r.channel_prefix for name, r in self.replicas.items() if r.channel_prefix is not None}

    @property
    def realtime_reported(self) -> bool:
        """Whether any replica reported a realtime channel prefix or transport: only then can they agree."""
        return bool(self.prefixes) or any(r.transport is not None for r in self.replicas.values())

    @property
    def prefix_mismatch(self) -> bool:
        return len(set(self.prefixes.values())) > 1

    @property
    def transport_expected(self) -> str:
        expected = self.started.transport_expected if self.started is not None else None
        return expected or "redis"

    @property
    def transport_mismatch(self) -> list[str]:
        """Replicas reporting another realtime transport than the playbook expects (their events do not
        fan out across replicas)."""
        expected = self.transport_expected
        return [n for n, r in self.replicas.items() if r.transport not in (None, expected)]

    # --- the fold -------------------------------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        self.counts[event.kind] += 1
        self.last_n = max(self.last_n, event.n)
        self.last_ts = event.ts
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event)

    def replica(self, name: str) -> ReplicaState:
        if name not in self.replicas:
            self.replicas[name] = ReplicaState(name=name)
        return self.replicas[name]

    def gate(self, name: str) -> GateState:
        if name not in self.gates:
            self.gates[name] = GateState(name=name)
        return self.gates[name]


def fold(events: list[ev.Event] | Any) -> SessionState:
    state = SessionState()
    for event in events:
        state.apply(event)
    return state


# --- handlers, one per event kind -----------------------------------------------------------------


def _session_started(s: SessionState, e: ev.SessionStarted) -> None:
    s.started = e
    for spec in e.replicas:
        r = s.replica(spec["name"])
        r.role = spec.get("role", "?")
        r.url = spec.get("url", "")
        r.labels = dict(spec.get("labels", {}))


def _session_resumed(s: SessionState, e: ev.SessionResumed) -> None:
    s.resumes += 1
    s.ended = None


def _session_ended(s: SessionState, e: ev.SessionEnded) -> None:
    s.ended = e


def _notice(s: SessionState, e: ev.Notice) -> None:
    s.notices.append(e)


def _step_entered(s: SessionState, e: ev.StepEntered) -> None:
    s.step = e.step


def _item_started(s: SessionState, e: ev.StepItemStarted) -> None:
    key = (e.step, e.index)
    runs = s.step_items[key].runs if key in s.step_items else 0
    s.step_items[key] = ItemRun(e.step, e.index, e.item, actor=e.actor, started_ts=e.ts, runs=runs + 1)


def _item_finished(s: SessionState, e: ev.StepItemFinished) -> None:
    run = s.step_items.setdefault((e.step, e.index), ItemRun(e.step, e.index, e.item, started_ts=e.ts))
    run.status, run.reason, run.note, run.actor, run.finished_ts = e.outcome, e.reason, e.note, e.actor, e.ts
    run.due = e.due


def _action_started(s: SessionState, e: ev.ActionStarted) -> None:
    run = s.actions.setdefault(e.action, ActionRun(e.action))
    if e.part == "":  # a new run of the action: its earlier parts belong to the previous one
        run.parts.clear()
    run.parts[e.part] = ActionPart(e.part, argv=list(e.argv), where=e.where, actor=e.actor, started_ts=e.ts)


def _action_finished(s: SessionState, e: ev.ActionFinished) -> None:
    run = s.actions.setdefault(e.action, ActionRun(e.action))
    part = run.parts.setdefault(e.part, ActionPart(e.part, started_ts=e.ts))
    part.status, part.exit_code, part.finished_ts = e.outcome, e.exit_code, e.ts
    part.output, part.error = list(e.output), e.error


def _flags_read(s: SessionState, e: ev.FlagsRead) -> None:
    s.flags.setdefault(e.action, {})[e.phase] = e


def _dead_letters(s: SessionState, e: ev.DeadLettersInspected) -> None:
    s.dead_letters[e.probe] = e


def _incident(s: SessionState, e: ev.IncidentRecorded) -> None:
    s.incident = e


def _readiness(s: SessionState, e: ev.ReadinessChecked) -> None:
    s.readiness = e


def _health_sample(s: SessionState, e: ev.HealthSample) -> None:
    r = s.replica(e.replica)
    r.status = e.status
    r.latency_ms = e.latency_ms
    r.http_status = e.http_status
    r.error = e.error
    r.last_ts = e.ts
    r.samples += 1
    if e.latency_ms is not None:
        r.latencies.append(e.latency_ms)
    if e.status not in ("ok", "degraded", "unknown"):  # unknown: not observed, so not a failure either
        r.failures += 1
    # Identity fields persist from the last sample that carried them.
    for attr in ("image", "commit", "channel_prefix", "transport"):
        value = getattr(e, attr)
        if value is not None:
            setattr(r, attr, value)


def _fact(s: SessionState, e: ev.FactCaptured) -> None:
    s.facts[f"{e.fact}@{e.phase}"] = e


def _probe(s: SessionState, e: ev.ProbeResult) -> None:
    s.probes[e.probe] = e
    s.probe_history.setdefault(e.probe, deque(maxlen=PROBE_HISTORY)).append(e)


def _fanout_frame(s: SessionState, e: ev.FanoutFrame) -> None:
    s.fanout.frames.append(e)
    s.fanout.frames_total += 1


def _tap_batch(s: SessionState, e: ev.FanoutTapBatch) -> None:
    s.fanout.frames.add_rows(e.run, e.rows)
    s.fanout.frames_total += len(e.rows)


def _fanout_session(s: SessionState, e: ev.FanoutSessionState) -> None:
    s.fanout.sessions[e.session] = e
    s.fanout.started.setdefault(e.run, e.ts)


def _fanout_result(s: SessionState, e: ev.FanoutResult) -> None:
    s.fanout.results.append(e)


def _traffic_window(s: SessionState, e: ev.TrafficWindow) -> None:
    s.traffic.windows.append(e)


def _selector(s: SessionState, e: ev.SelectorState) -> None:
    s.traffic.selector = e


def _breach(s: SessionState, e: ev.GuardrailBreach) -> None:
    s.traffic.breaches[e.guardrail] = e
    s.traffic.breach_log.append(e)


def _recovered(s: SessionState, e: ev.GuardrailRecovered) -> None:
    s.traffic.breaches.pop(e.guardrail, None)
    s.traffic.breach_log.append(e)


def _rail_status(s: SessionState, e: ev.GuardrailStatus) -> None:
    rail = s.rails.setdefault(e.guardrail, RailState(e.guardrail))
    if e.status != rail.status:  # another reason for the same unknown: unknown since the first one
        rail.since = e.ts
    rail.status, rail.reason = e.status, e.reason
    if e.status == "observed" and rail.observed_ts is None:
        rail.observed_ts = e.ts


def _metric_sample(s: SessionState, e: ev.MetricSample) -> None:
    s.metrics[e.guardrail] = e


def _rollback(s: SessionState, e: ev.Event) -> None:
    s.traffic.rollback.apply(e)
    if isinstance(e, ev.RollbackRequested):
        s.traffic.rollback_requested = e
    elif isinstance(e, ev.RollbackApplied):
        s.traffic.rollback_applied = e
    elif isinstance(e, ev.RollbackVerified):
        s.traffic.rollback_verified = e


def _gate_started(s: SessionState, e: ev.GateStarted) -> None:
    g = s.gate(e.gate)
    g.status, g.run, g.argv, g.where = "running", e.run, e.argv, e.where
    g.started_ts, g.finished_ts, g.exit_code, g.duration_s = e.ts, None, None, None
    g.last_seen_ts = e.ts
    g.tail.clear()
    g.output_lines = 0


def _gate_output(s: SessionState, e: ev.GateOutput) -> None:
    g = s.gate(e.gate)
    if g.run == e.run:
        g.tail.append(e.line)
        g.output_lines += 1
        g.last_seen_ts = max(g.last_seen_ts or e.ts, e.ts)  # a resume folds the kept tail last


def _gate_finished(s: SessionState, e: ev.GateFinished) -> None:
    g = s.gate(e.gate)
    g.status, g.exit_code, g.duration_s, g.finished_ts = e.outcome, e.exit_code, e.duration_s, e.ts
    g.history.append(e)


def _ticked(s: SessionState, e: ev.ChecklistTicked) -> None:
    s.checklist[e.item] = ChecklistEntry(e.item, e.checked, e.actor, e.note, e.auto, e.ts)


def _export(s: SessionState, e: ev.ExportWritten) -> None:
    s.exports.append(e)


_HANDLERS: dict[str, Any] = {
    "session_started": _session_started,
    "session_resumed": _session_resumed,
    "session_ended": _session_ended,
    "notice": _notice,
    "step_entered": _step_entered,
    "step_item_started": _item_started,
    "step_item_finished": _item_finished,
    "action_started": _action_started,
    "action_finished": _action_finished,
    "flags_read": _flags_read,
    "dead_letters_inspected": _dead_letters,
    "incident_recorded": _incident,
    "readiness_checked": _readiness,
    "health_sample": _health_sample,
    "fact_captured": _fact,
    "probe_result": _probe,
    "fanout_frame": _fanout_frame,
    "fanout_tap_batch": _tap_batch,
    "fanout_session": _fanout_session,
    "fanout_result": _fanout_result,
    "traffic_window": _traffic_window,
    "selector_state": _selector,
    "guardrail_breach": _breach,
    "guardrail_recovered": _recovered,
    "guardrail_status": _rail_status,
    "metric_sample": _metric_sample,
    **dict.fromkeys(ROLLBACK_KINDS, _rollback),
    "gate_started": _gate_started,
    "gate_output": _gate_output,
    "gate_finished": _gate_finished,
    "checklist_ticked": _ticked,
    "export_written": _export,
}


def _logged(handler: Any) -> Any:
    """A timeline kind's handler: it also goes to the event log."""

    def log_then_fold(s: SessionState, e: ev.Event) -> None:
        s.log.add(e)
        if handler is not None:
            handler(s, e)

    return log_then_fold


for _kind in ev.TIMELINE:
    _HANDLERS[_kind] = _logged(_HANDLERS.get(_kind))
