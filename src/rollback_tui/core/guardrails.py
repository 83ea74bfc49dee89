"""Guardrails: playbook thresholds evaluated over sliding windows of observed events.

`GuardrailEvaluator.observe(event)` takes every journaled event and returns the derived events
(GuardrailBreach / GuardrailRecovered) the engine should journal. A breach fires when the metric
exceeds its threshold (strictly greater) and has done so for `sustained_s`; it carries the value, the
threshold, the window and the timestamp of the first bad sample, so time-to-detect is
`breach.ts - breach.first_bad_ts`.

A guardrail whose source could not observe (a probe with an unset `${VAR}`, a replica host that does not
resolve from here, a gate that could not run, a Prometheus query that errs, times out or finds no series)
is *unknown* with the reason: never a breach, never "ok". `status_changes()` hands out the GuardrailStatus
events to journal when a guardrail first has data, turns unknown, is unknown for another reason, or
recovers — once per change, not once per poll.

A guardrail with a `baseline` judges the candidate against the stable replicas: the same metric over the
same window on both sides, compared as a ratio or a difference, and only once each side has
`min_samples` — so load that slows every replica alike trips nothing, while a bad candidate still does.

A request no replica answered (a TrafficWindow's `unattributed`: answered without a replica identity, or
not answered at all) is a failed request of the service: it counts in `scope: all` 5xx rates, numerator
and denominator. It cannot be attributed to a role, so candidate and stable rates do not see it.

A 5xx rate with `detection: {mode: sequential}` is decided by a sequential test (core/sequential.py) on
every in-scope response, in the order the traffic windows recorded them, over its `window_s`: it breaches
on the response that made the evidence conclusive, whatever the number of requests (the test's bound is
its minimum evidence), and the breach carries that evidence. `conclusive()` is fed each response before
its window closes, so the traffic generator can close the window on the deciding response: the breach is
journaled at once, decided from the journaled window like every other (a fold replays it exactly).
Its value on screen is the rate over the window: over the threshold it shows as "over" (not conclusive
yet) whatever the count; within it, only with MIN_REQUESTS (never "ok" on a handful).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rollback_tui.core import events as ev
from rollback_tui.core.sequential import Cusum, Evidence, SequentialTest
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Baseline, Guardrail, Playbook, SyntheticTraffic

MIN_REQUESTS = 10  # a rate over fewer requests is noise, not evidence
RATIO_CAP = 1e6  # a ratio over a zero baseline: as good as infinitely worse, and still a JSON number
_OBSERVED = frozenset({"traffic_window", "health_sample", "probe_result", "gate_finished", "metric_sample"})
_TRAFFIC = frozenset({"http_5xx_rate", "ws_disconnects", "idempotency_collisions", "p95_latency_ms"})
_PROBED = frozenset({"dead_letters_growth", "http_json"})


class _Health(Protocol):
    """A replica's last health sample (the journaled HealthSample, or the state's ReplicaState)."""

    @property
    def status(self) -> str: ...

    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Reading:
    """A guardrail's metric now: its value, or none — `unknown` says why it could not observe.

    `sides` are (candidate, stable) when it was judged against the baseline; `at` is when its query
    was evaluated (metric: query); `evidence` is where a sequential test stands (its strongest run)."""

    value: float | None = None
    unknown: str | None = None
    sides: tuple[float, float] | None = None
    at: float | None = None
    evidence: Evidence | None = None

    @property
    def status(self) -> Literal["observed", "unknown", "waiting"]:
        if self.value is not None:
            return "observed"
        return "unknown" if self.unknown else "waiting"


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a baseline comparison: the metric's value over the window and how many samples."""

    value: float | None
    samples: float


def compare(how: str, candidate: float, stable: float) -> float:
    """The candidate against the stable baseline: a ratio (1.0 is alike) or a difference (0.0 is alike)."""
    if how == "difference":
        return candidate - stable
    if stable > 0:
        return candidate / stable
    return 1.0 if candidate <= 0 else RATIO_CAP


def judge_baseline(baseline: Baseline, candidate: Side, stable: Side) -> Reading:
    """A verdict only when both sides have their samples: fewer is noise, not evidence ("waiting")."""
    need = baseline.min_samples
    if stable.samples >= need and candidate.samples == 0:
        # The candidate serves nothing (removed from the selectors): it cannot be doing worse than stable.
        neutral = 0.0 if baseline.compare == "difference" else 1.0
        return Reading(neutral)
    if candidate.samples < need or stable.samples < need:
        return Reading()
    if candidate.value is None or stable.value is None:
        return Reading()
    value = compare(baseline.compare, candidate.value, stable.value)
    return Reading(value, sides=(candidate.value, stable.value))


@dataclass
class _Track:
    rail: Guardrail
    first_bad_ts: float | None = None
    breached: bool = False
    status: str | None = None  # the last journaled GuardrailStatus (None: none yet)
    reason: str | None = None  # and its reason, while unknown
    live: Cusum | None = None  # sequential: the test as of the last window, fed responses since
    breached_at: float | None = None  # sequential: when its breach was decided


def sequential_test(rail: Guardrail) -> SequentialTest | None:
    """The sequential test of a rail with `detection: {mode: sequential}`, else None."""
    if rail.detection is None or rail.detection.mode != "sequential":
        return None
    return SequentialTest.of(rail.threshold, rail.detection.false_alarm_rate, rail.detection.detect_rates)


@dataclass
class GuardrailEvaluator:
    playbook: Playbook
    windows: deque[ev.TrafficWindow] = field(default_factory=lambda: deque(maxlen=3600))
    health: dict[str, _Health] = field(default_factory=dict)
    probes: dict[str, deque[ev.ProbeResult]] = field(default_factory=dict)
    gates: dict[str, ev.GateFinished] = field(default_factory=dict)
    samples: dict[str, ev.MetricSample] = field(default_factory=dict)  # guardrail → its last query result
    tracks: dict[str, _Track] = field(init=False)

    def __post_init__(self) -> None:
        self.tracks = {g.name: _Track(g) for g in self.playbook.guardrails}
        self.roles = {r.name: r.role for r in self.playbook.replicas}
        self._changes: list[ev.GuardrailStatus] = []
        self.tests = {g.name: t for g in self.playbook.guardrails if (t := sequential_test(g)) is not None}
        for name, test in self.tests.items():
            self.tracks[name].live = test.start()

    @classmethod
    def from_state(cls, playbook: Playbook, state: SessionState) -> GuardrailEvaluator:
        """An evaluator over what the state holds, to read values from (the engine's own one journals)."""
        evaluator = cls(playbook)
        evaluator.windows = deque(state.traffic.windows, maxlen=3600)
        evaluator.probes = state.probe_history  # read only: this evaluator never observes
        evaluator.health = {name: r for name, r in state.replicas.items() if r.samples}
        evaluator.gates = {name: g.history[-1] for name, g in state.gates.items() if g.history}
        evaluator.samples = dict(state.metrics)
        return evaluator

    def resume(self, state: SessionState) -> None:
        """Carry on from a resumed journal: what it already says about each guardrail is not repeated."""
        for name, rail in state.rails.items():
            if name in self.tracks:
                self.tracks[name].status, self.tracks[name].reason = rail.status, rail.reason

    def status_changes(self) -> list[ev.GuardrailStatus]:
        """The GuardrailStatus events to journal since the last call (see the module docstring)."""
        changes, self._changes = self._changes, []
        return changes

    def observe(self, event: ev.Event) -> list[ev.Event]:
        if event.kind not in _OBSERVED:
            return []  # the common case on the hot path: fanout frames, gate output
        if isinstance(event, ev.TrafficWindow):
            self.windows.append(event)
            tracks = self._tracks_of(_TRAFFIC)
        elif isinstance(event, ev.HealthSample):
            self.health[event.replica] = event
            tracks = self._tracks_of({"health_failing"})
        elif isinstance(event, ev.ProbeResult):
            self.probes.setdefault(event.probe, deque(maxlen=1000)).append(event)
            tracks = [t for t in self._tracks_of(_PROBED) if t.rail.probe == event.probe]
        elif isinstance(event, ev.GateFinished):
            self.gates[event.gate] = event
            tracks = self._tracks_of({"gate_failed"})
        elif isinstance(event, ev.MetricSample):
            self.samples[event.guardrail] = event
            tracks = [self.tracks[event.guardrail]] if event.guardrail in self.tracks else []
        else:
            return []
        out: list[ev.Event] = []
        for track in tracks:
            if track.rail.name in self.tests:
                assert isinstance(event, ev.TrafficWindow)
                reading, crossed, track.live = self._sequential(track.rail, event.ts, event)
                self._track_status(track, reading, event.ts)
                derived = self._evaluate_sequential(track, reading, crossed, event.ts)
            else:
                reading = self.reading(track.rail, event.ts)
                self._track_status(track, reading, event.ts)
                derived = self._evaluate(track, reading, event.ts)
            if derived is not None:
                out.append(derived)
        return out

    def conclusive(self, replica: str | None, status: int) -> bool:
        """Fed every synthetic response as it comes back, before its traffic window closes (`replica`
        None: no replica answered it). True when a sequential guardrail's evidence has just become
        conclusive: the caller closes the window now, and observing it journals the breach."""
        failed = replica is None or status >= 500
        decided = False
        for name in self.tests:
            track = self.tracks[name]
            if track.breached or track.live is None or not self._counts(track.rail, replica):
                continue
            decided = track.live.step(failed) or decided
        return decided

    def _counts(self, rail: Guardrail, replica: str | None) -> bool:
        """A response in the rail's scope: its replicas' answers; with `all`, the unanswered ones too."""
        return rail.scope == "all" if replica is None else self._in_scope(rail, replica)

    def _tracks_of(self, metrics: set[str] | frozenset[str]) -> list[_Track]:
        return [t for t in self.tracks.values() if t.rail.metric in metrics]

    # --- evaluation -------------------------------------------------------------------------------

    def _track_status(self, track: _Track, reading: Reading, ts: float) -> None:
        status = reading.status
        # Unknown for another reason is a change too ("no series", then NaN): the evidence says the latest.
        if status == track.status and (status != "unknown" or reading.unknown == track.reason):
            return
        # Waiting is journaled only as the end of unknown, or while breached: observed → waiting (the window
        # emptied) is not news, but a breach that can no longer be judged is (neither held nor recovered).
        if status == "waiting" and track.status != "unknown" and not track.breached:
            return
        track.status, track.reason = status, reading.unknown
        # Stamped with the observation that changed it: "unknown since" is when the blind sample came in.
        change = ev.GuardrailStatus(guardrail=track.rail.name, status=status, reason=reading.unknown, ts=ts)
        self._changes.append(change)

    def _evaluate(self, track: _Track, reading: Reading, now: float) -> ev.Event | None:
        rail, value = track.rail, reading.value
        if value is None:  # no data, or unknown: neither a breach nor a recovery
            return None
        if value > rail.threshold:
            if track.first_bad_ts is None:
                track.first_bad_ts = self._first_bad_ts(rail, now)
            held = now - track.first_bad_ts
            if not track.breached and held >= rail.sustained_s:
                track.breached = True
                return ev.GuardrailBreach(
                    guardrail=rail.name,
                    severity=rail.severity,
                    metric=rail.metric,
                    value=round(value, 4),
                    threshold=rail.threshold,
                    window_s=rail.window_s,
                    # A query's value covers its window: its first bad sample may lie at the window's start,
                    # so TTD is measured from there (never understated); the sustain clock is not.
                    first_bad_ts=track.first_bad_ts - (rail.window_s if rail.metric == "query" else 0.0),
                    scope=rail.scope,
                    unit=rail.unit if rail.metric == "query" else None,
                    candidate=None if reading.sides is None else round(reading.sides[0], 4),
                    baseline=None if reading.sides is None else round(reading.sides[1], 4),
                    compare=None if rail.baseline is None else rail.baseline.compare,
                )
            return None
        track.first_bad_ts = None
        if track.breached:
            track.breached = False
            return _recovered(rail, value)
        return None

    def _evaluate_sequential(
        self, track: _Track, reading: Reading, crossed: Evidence | None, now: float
    ) -> ev.Event | None:
        """Breach on the response that made the test conclusive. Recover once the window holds nothing
        from before the breach, its rate is within the threshold and its evidence is not conclusive: a
        few good answers right after the deciding one (their window still mostly from before the fault)
        are no recovery."""
        rail = track.rail
        if crossed is not None and not track.breached:
            track.breached, track.breached_at = True, now
            return ev.GuardrailBreach(
                guardrail=rail.name,
                severity=rail.severity,
                metric=rail.metric,
                value=round(crossed.rate, 4),
                threshold=rail.threshold,
                window_s=rail.window_s,
                first_bad_ts=crossed.since,  # the start of the window that held the run's first failure
                scope=rail.scope,
                requests=crossed.requests,
                errors=crossed.errors,
                statistic=round(crossed.statistic, 3),
                bound=round(crossed.bound, 3),
                alternative=crossed.alternative,
            )
        value = reading.value
        within = value is not None and value <= rail.threshold
        after = track.breached_at is None or now - rail.window_s >= track.breached_at
        if track.breached and within and after and not (reading.evidence and reading.evidence.conclusive):
            track.breached = False
            return _recovered(rail, value or 0.0)
        return None

    def _sequential(
        self, rail: Guardrail, now: float, newest: ev.TrafficWindow | None = None
    ) -> tuple[Reading, Evidence | None, Cusum]:
        """The rail's test replayed over its window (started afresh at the window's start): its reading,
        the evidence at the test's first conclusive response within `newest` (None: not there), and the
        test as it stands after the last response."""
        cusum = self.tests[rail.name].start()
        crossed: Evidence | None = None
        recent = self._recent(rail, now)
        for w in recent:
            start, order = w.ts - w.window_s, w.responses()
            if order is None:  # the order is not recorded: the window's counts, at once
                errors, requests = self._failures(rail, w)
                decided = bool(requests) and cusum.batch(requests, errors, start)
                if decided and w is newest and crossed is None:
                    crossed = cusum.evidence()
                continue
            for replica, bad in order:
                if self._counts(rail, replica) and cusum.step(bad, start) and w is newest and crossed is None:
                    crossed = cusum.evidence()
        return self._sequential_reading(rail, recent, cusum), crossed, cusum

    def _sequential_reading(self, rail: Guardrail, recent: list[ev.TrafficWindow], cusum: Cusum) -> Reading:
        """The rate over the window with the test's evidence: over the threshold it is shown whatever the
        count ("over", not conclusive yet); within it, only with MIN_REQUESTS."""
        errors = requests = 0
        for w in recent:
            bad, seen = self._failures(rail, w)
            errors, requests = errors + bad, requests + seen
        evidence = cusum.evidence()
        if not requests:
            served = sum(sum(w.per_replica.values()) for w in recent)
            return Reading(0.0 if served >= MIN_REQUESTS else None, evidence=evidence)
        rate = errors / requests
        shown = rate > rail.threshold or requests >= MIN_REQUESTS
        return Reading(rate if shown else None, evidence=evidence)

    def _first_bad_ts(self, rail: Guardrail, now: float) -> float:
        """Start of the earliest window (within the guardrail's window) that already held bad samples.

        Conservative: the first bad sample lies somewhere in that window, so time-to-detect measured from
        its start can overstate the real figure by up to one traffic window, never understate it. Other
        sources (health, probes, gates, queries): the observation that first crossed it.
        """
        if rail.metric not in _TRAFFIC:
            return now
        for w in self._recent(rail, now):
            if self._window_is_bad(rail, w):
                return w.ts - w.window_s
        return now

    def _window_is_bad(self, rail: Guardrail, w: ev.TrafficWindow) -> bool:
        if rail.baseline is not None:  # that window alone, compared (its sample count aside)
            candidate, stable = self._side(rail, [w], "candidate"), self._side(rail, [w], "stable")
            if candidate.value is None or stable.value is None:
                return False
            return compare(rail.baseline.compare, candidate.value, stable.value) > rail.threshold
        if rail.metric == "http_5xx_rate":
            errors, _ = self._failures(rail, w)
            return errors > 0
        if rail.metric == "ws_disconnects":
            return w.ws_disconnects > 0
        if rail.metric == "idempotency_collisions":
            return w.idempotency_collisions > 0
        if rail.metric == "p95_latency_ms":
            return w.p95_ms is not None and w.p95_ms > rail.threshold
        return True

    def _in_scope(self, rail: Guardrail, replica: str) -> bool:
        return rail.scope == "all" or self.roles.get(replica) == rail.scope

    def _failures(self, rail: Guardrail, w: ev.TrafficWindow) -> tuple[int, int]:
        """(failed, requests) of one window in the rail's scope; `all` includes the unattributed ones."""
        requests = sum(n for r, n in w.per_replica.items() if self._in_scope(rail, r))
        errors = sum(n for r, n in w.errors_5xx.items() if self._in_scope(rail, r))
        if rail.scope == "all":
            requests += w.failed_unattributed
            errors += w.failed_unattributed
        return errors, requests

    def _recent(self, rail: Guardrail, now: float) -> list[ev.TrafficWindow]:
        return [w for w in self.windows if w.ts >= now - rail.window_s]

    def value(self, rail: Guardrail, now: float) -> float | None:
        """The metric's current value, or None when there is no data to judge (or it is unknown)."""
        return self.reading(rail, now).value

    def reading(self, rail: Guardrail, now: float) -> Reading:
        """The metric's current value, or why there is none."""
        metric = rail.metric
        if metric == "health_failing":
            return self._health(rail)
        if metric in _PROBED:
            return self._probe_value(rail, now)
        if metric == "gate_failed":
            return self._gate(rail)
        if metric == "query":
            return self._query(rail, now)
        if rail.name in self.tests:
            return self._sequential(rail, now)[0]
        if rail.baseline is not None:
            recent = self._recent(rail, now)
            candidate, stable = self._side(rail, recent, "candidate"), self._side(rail, recent, "stable")
            return judge_baseline(rail.baseline, candidate, stable)
        return Reading(self._traffic(rail, now))

    def _side(self, rail: Guardrail, windows: list[ev.TrafficWindow], role: str) -> Side:
        """The synthetic metric over `windows` for the replicas of one role (a side of a baseline)."""
        names = {r for r, their_role in self.roles.items() if their_role == role}
        if rail.metric == "http_5xx_rate":
            requests = sum(n for w in windows for r, n in w.per_replica.items() if r in names)
            errors = sum(n for w in windows for r, n in w.errors_5xx.items() if r in names)
            return Side(errors / requests if requests else None, requests)
        # p95: each replica's p95 per window, weighted by the requests it answered (quantiles do not add)
        weighted = [
            (p95, w.per_replica.get(r, 0))
            for w in windows
            for r, p95 in w.p95_by_replica.items()
            if r in names
        ]
        samples = sum(n for _, n in weighted)
        return Side(sum(p * n for p, n in weighted) / samples if samples else None, samples)

    def _traffic(self, rail: Guardrail, now: float) -> float | None:
        metric = rail.metric
        if metric == "http_5xx_rate":
            recent = self._recent(rail, now)
            requests = errors = 0
            for w in recent:
                bad, seen = self._failures(rail, w)
                errors, requests = errors + bad, requests + seen
            if requests >= MIN_REQUESTS:
                return errors / requests
            # Plenty of traffic served but none of it by the scope (blue-next removed): nothing is failing.
            # A few requests do reach it: too few to call a rate either way, so no verdict (not "0 %").
            # Requests no replica answered do not count as served: they say nothing about the scope.
            served = sum(sum(w.per_replica.values()) for w in recent)
            if requests == 0 and served >= MIN_REQUESTS:
                return 0.0
            return None
        if metric == "ws_disconnects":
            recent = self._recent(rail, now)
            return float(sum(w.ws_disconnects for w in recent)) if recent else None
        if metric == "idempotency_collisions":
            recent = self._recent(rail, now)
            return float(sum(w.idempotency_collisions for w in recent)) if recent else None
        if metric == "p95_latency_ms":
            p95s = [w.p95_ms for w in self._recent(rail, now) if w.p95_ms is not None]
            return sum(p95s) / len(p95s) if p95s else None
        return None

    def _health(self, rail: Guardrail) -> Reading:
        scoped = {r: s for r, s in self.health.items() if self._in_scope(rail, r)}
        if not scoped:
            return Reading()
        failing = sum(1 for s in scoped.values() if s.status not in ("ok", "degraded", "unknown"))
        blind = [f"{r}: {s.error or 'not observed'}" for r, s in scoped.items() if s.status == "unknown"]
        # Replicas it cannot see could only add to the failures: a breach stands, "within" cannot be said.
        if blind and failing <= rail.threshold:
            return Reading(unknown="; ".join(blind))
        return Reading(float(failing))

    def _probe_value(self, rail: Guardrail, now: float) -> Reading:
        """An HTTP JSON probe's value (the generic metric source): its last value, or its growth over the
        window (`dead_letters_growth` is growth of the dead-letters count)."""
        history = [p for p in self.probes.get(rail.probe or "", ()) if p.ts >= now - rail.window_s]
        if history and not history[-1].ok:  # the newest poll gave no value: nothing can be judged
            last = history[-1]
            how = "" if not last.observed else " failed"  # the probe could not look, or its target failed
            return Reading(unknown=f"probe {last.probe}{how}: {last.error or 'no detail'}")
        if history and _number(history[-1].value) is None:
            return Reading(
                unknown=f"probe {rail.probe} value is not a number: {str(history[-1].value)[:40]!r}"
            )
        counts = [v for v in (_number(p.value) for p in history if p.ok) if v is not None]
        if rail.metric == "dead_letters_growth" or rail.reduce == "growth":
            return Reading(counts[-1] - min(counts) if len(counts) >= 2 else None)
        return Reading(counts[-1] if counts else None)

    def _query(self, rail: Guardrail, now: float) -> Reading:
        """The last evaluation of the guardrail's query, judged: what failed is unknown, never ok."""
        sample = self.samples.get(rail.name)
        if sample is None:
            return Reading()
        stale_s = max(3 * rail.interval_s, rail.interval_s + 10)
        if now - sample.ts > stale_s:
            return Reading(
                unknown=f"its query has not been evaluated for {now - sample.ts:.0f} s", at=sample.ts
            )
        errors = sample.errors
        counted = [k for k in ("samples", "baseline_samples") if k in errors]
        if counted:
            return Reading(unknown="; ".join(errors[k] for k in counted), at=sample.ts)
        if rail.baseline is not None:
            if "value" in errors or "baseline" in errors:
                reason = "; ".join(errors[k] for k in ("value", "baseline") if k in errors)
                return Reading(unknown=reason, at=sample.ts)
            candidate = Side(sample.value, sample.samples or 0.0)
            stable = Side(sample.baseline, sample.baseline_samples or 0.0)
            reading = judge_baseline(rail.baseline, candidate, stable)
            return Reading(reading.value, sides=reading.sides, at=sample.ts)
        if rail.min_samples is not None and (sample.samples or 0.0) < rail.min_samples:
            return Reading(at=sample.ts)
        if "value" in errors:
            # Some of it could not be seen: a value over the threshold stands, "within" cannot be said.
            if sample.value is not None and sample.value > rail.threshold:
                return Reading(sample.value, at=sample.ts)
            return Reading(unknown=errors["value"], at=sample.ts)
        return Reading(sample.value, at=sample.ts)

    def _gate(self, rail: Guardrail) -> Reading:
        finished = self.gates.get(rail.gate or "")
        if finished is None:
            return Reading()
        if finished.outcome == "error":  # it never ran (missing binary, unset ${VAR}, SSH refused)
            return Reading(unknown=f"gate {finished.gate} could not run: {finished.error or 'no detail'}")
        if finished.outcome == "cancelled":
            return Reading(unknown=f"gate {finished.gate} was cancelled before it gave a result")
        if finished.outcome == "interrupted":
            why = finished.error or "outcome unknown"
            return Reading(unknown=f"gate {finished.gate} was interrupted: {why}")
        return Reading(float(finished.outcome != "passed"))


def guardrail_readings(playbook: Playbook, state: SessionState, now: float) -> dict[str, Reading]:
    """Each guardrail's reading from the state, judged the way the engine judges it."""
    evaluator = GuardrailEvaluator.from_state(playbook, state)
    return {rail.name: evaluator.reading(rail, now) for rail in playbook.guardrails}


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def no_data(rail: Guardrail) -> str:
    """Why a guardrail has nothing to judge yet, in words."""
    if rail.baseline is not None:
        need = rail.baseline.min_samples
        return f"fewer than {need} samples on the candidate or stable side in its {rail.window_s:g} s window"
    if rail.metric == "gate_failed":
        return f"gate {rail.gate} has not run"
    if rail.metric == "health_failing":
        return "no health sample yet"
    if rail.metric == "dead_letters_growth" or (rail.metric == "http_json" and rail.reduce == "growth"):
        return f"fewer than 2 counts from probe {rail.probe} within its {rail.window_s:g} s window"
    if rail.metric == "http_json":
        return f"no value from probe {rail.probe} within its {rail.window_s:g} s window"
    if rail.metric == "query":
        if rail.min_samples is not None:
            return f"fewer than {rail.min_samples} samples within its {rail.window_s:g} s window"
        return "its query has not been evaluated yet"
    if rail.metric == "http_5xx_rate":
        return f"fewer than {MIN_REQUESTS} requests within its {rail.window_s:g} s window"
    return f"no traffic within its {rail.window_s:g} s window"


def thin_evidence(playbook: Playbook, rate_rps: float) -> list[str]:
    """Why candidate-scoped 5xx guardrails cannot judge at this synthetic rate (empty when they can).

    A rate needs MIN_REQUESTS in the rail's window (a sequential test: as many failed responses as its
    bound needs); the candidate gets `candidate_share_min` of the traffic.
    """
    lb = playbook.load_balancer
    synthetic = lb.synthetic_traffic if lb and lb.synthetic_traffic else SyntheticTraffic()
    share = synthetic.candidate_share_min
    out = []
    for rail in playbook.guardrails:
        if rail.metric != "http_5xx_rate" or rail.scope != "candidate":
            continue
        expected = rate_rps * share * rail.window_s
        test = sequential_test(rail)
        fewest = MIN_REQUESTS if test is None else test.fewest_errors()
        if expected < fewest:
            need = fewest / (share * rail.window_s)
            what = (
                f"{MIN_REQUESTS} candidate requests per {rail.window_s:g} s window"
                if test is None
                else f"at least {fewest} candidate responses within its {rail.window_s:g} s window "
                "(the bound of its sequential test, all of them failed)"
            )
            out.append(
                f"{rail.name} needs {what}; {rate_rps:g} rps at {share:.0%} gives ~{expected:.0f}, so it "
                f"cannot trip — use ≥ {need:.0f} rps or a longer window_s"
            )
    return out


def _recovered(rail: Guardrail, value: float) -> ev.GuardrailRecovered:
    """A recovery, with what its value reads in (as its breach did): the event log says it without the
    playbook."""
    return ev.GuardrailRecovered(
        guardrail=rail.name,
        value=round(value, 4),
        metric=rail.metric,
        unit=rail.unit if rail.metric == "query" else None,
        compare=None if rail.baseline is None else rail.baseline.compare,
    )
