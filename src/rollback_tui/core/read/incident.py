"""The incident in words: who runs it, and the summary paragraph the report opens with and the headless
verdict prints — what broke, when it was detected, when it was mitigated, the impact on the synthetic
traffic, the state now, and what could not be observed.

What broke and the traffic while it lasted are folded from the events in journal order (`IncidentFold`):
the session state keeps only the newest traffic windows, so the report's evidence pass and the headless
run each feed one. The mitigation is the rollback state machine's (core/rollback.py), the state now the
verdict's (core/verdict.py), the unknowns core/unknown.py's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import hms
from rollback_tui.core.read.guardrails import breach_text
from rollback_tui.core.read.traffic import WINDOW_EDGE_S, TrafficTotals
from rollback_tui.core.read.words import num, pct
from rollback_tui.core.unknown import KINDS as OBSERVING_KINDS
from rollback_tui.core.unknown import observation

if TYPE_CHECKING:
    from rollback_tui.core.state import SessionState
    from rollback_tui.core.verdict import Verdict

# A breach's first bad sample lies at most its window plus its sustained time back (≤ 3600 s each, as
# validated): traffic windows that old are kept until something breaks, so the impact starts there.
LOOKBACK_S = 7200.0


# --- who runs it ---------------------------------------------------------------------------------


def incident_text(e: ev.IncidentRecorded) -> str:
    """`incident INC-42 · commander bob · scribe carol` — what was recorded."""
    parts = [f"{label} {value}" for label, value in incident_fields(e)]
    return " · ".join(parts) or "no incident, commander or scribe"


def incident_fields(e: ev.IncidentRecorded | None) -> list[tuple[str, str]]:
    """(label, value) of what was recorded: the report's header rows, the status bar."""
    if e is None:
        return []
    fields = (("incident", e.incident), ("commander", e.commander), ("scribe", e.scribe))
    return [(label, value) for label, value in fields if value]


# --- what broke, folded in journal order ----------------------------------------------------------


@dataclass(frozen=True)
class Trouble:
    """The first sign that something broke: a guardrail breach, a replica failing its health check, a
    failed gate, check, probe or fact."""

    what: str  # in words: `P0 guardrail candidate-5xx breached: http_5xx_rate 20.0% > 2.0% over 10 s`
    detected_ts: float
    first_bad_ts: float | None = None  # a breach's first bad sample

    @property
    def start_ts(self) -> float:
        return self.first_bad_ts if self.first_bad_ts is not None else self.detected_ts

    @property
    def time_to_detect_s(self) -> float | None:
        return None if self.first_bad_ts is None else round(self.detected_ts - self.first_bad_ts, 3)


TROUBLE_KINDS = frozenset(
    {"guardrail_breach", "gate_finished", "fanout_result", "probe_result", "fact_captured", "health_sample"}
)
FAILING = frozenset({"down", "timeout", "junk"})  # a replica that does not answer is failing
# What the fold looks at (a set lookup keeps every other kind — fanout frames above all — cheap).
KINDS = TROUBLE_KINDS | OBSERVING_KINDS | {"traffic_window", "rollback_verified"}


def trouble(e: ev.Event) -> Trouble | None:
    """The event as a sign that something broke, or None. Unknown (could not observe) is never one."""
    if isinstance(e, ev.HealthSample):
        if e.status not in FAILING:
            return None
        return Trouble(f"replica {e.replica} {e.status}" + (f": {e.error}" if e.error else ""), e.ts)
    if isinstance(e, ev.GuardrailBreach):
        what = f"{e.severity} guardrail {e.guardrail} breached: {breach_text(e)}"
        return Trouble(what, e.ts, e.first_bad_ts)
    if isinstance(e, ev.GateFinished) and e.outcome in ("failed", "timed_out"):
        code = f" (exit {e.exit_code})" if e.exit_code is not None else ""
        return Trouble(f"gate {e.gate} {e.outcome.replace('_', ' ')}{code}", e.ts)
    if isinstance(e, ev.FanoutResult) and not e.passed:
        reasons = "; ".join(dict.fromkeys(e.reasons)) or "no reason given"
        return Trouble(f"fanout check {e.run} ({e.phase.replace('_', ' ')}) failed: {reasons}", e.ts)
    if isinstance(e, ev.ProbeResult) and e.observed and not e.ok:
        return Trouble(f"probe {e.probe} failed: {e.error or f'value {e.value}'}", e.ts)
    if isinstance(e, ev.FactCaptured) and e.observed and (e.error or e.agree is False):
        how = f"failed: {e.error}" if e.error else f"disagreed: {e.values_text()}"
        return Trouble(f"fact {e.fact} ({e.phase.replace('_', ' ')}) {how}", e.ts)
    return None


@dataclass
class Unobserved:
    reason: str  # the first reason it could not observe
    until: float | None = None  # when it observed again; None: still unknown at the end
    latest: str | None = None  # the reason it gave last, when that is another one (said beside the first)


@dataclass
class IncidentFold:
    """Observe every event in journal order: the first trouble, the traffic from it until the rollback
    verified after it (the incident window), and every subject that could not be observed."""

    trouble: Trouble | None = None
    mitigated_ts: float | None = None  # the first rollback verified after the trouble
    traffic: TrafficTotals = field(default_factory=lambda: TrafficTotals("incident window"))
    unobserved: dict[str, Unobserved] = field(default_factory=dict)  # subject → first episode
    _recent: deque[ev.TrafficWindow] = field(default_factory=deque)  # before the trouble, LOOKBACK_S
    _unknown_now: set[str] = field(default_factory=set)

    def observe(self, e: ev.Event) -> None:
        kind = e.kind
        if kind not in KINDS:
            return
        if kind == "traffic_window":
            self._window(e)  # type: ignore[arg-type]
            return
        # A health sample (the commonest kind) matters only while, or as, something is unknown.
        health = kind == "health_sample"
        if kind in OBSERVING_KINDS and (not health or self._unknown_now or e.status == "unknown"):  # type: ignore[attr-defined]
            self._observed(e)
        if self.trouble is None:
            found = trouble(e) if kind in TROUBLE_KINDS else None
            if found is not None:
                self._open(found)
        elif kind == "rollback_verified" and e.ok and self.mitigated_ts is None:  # type: ignore[attr-defined]
            self.mitigated_ts = e.ts

    def _window(self, w: ev.TrafficWindow) -> None:
        if self.trouble is None:
            self._recent.append(w)
            while self._recent and self._recent[0].ts < w.ts - LOOKBACK_S:
                self._recent.popleft()
        elif self.mitigated_ts is None:
            self.traffic.add(w)

    def _open(self, found: Trouble) -> None:
        self.trouble = found
        for w in self._recent:  # the windows that end after the first bad sample (a start may be early)
            if w.ts > found.start_ts + WINDOW_EDGE_S:
                self.traffic.add(w)
        self._recent.clear()

    def _observed(self, e: ev.Event) -> None:
        seen = observation(e)
        if seen is None:
            return
        if seen.reason is None:
            if seen.subject in self._unknown_now:
                self._unknown_now.discard(seen.subject)
                self.unobserved[seen.subject].until = e.ts
            return
        self._unknown_now.add(seen.subject)
        episode = self.unobserved.get(seen.subject)
        if episode is None:
            self.unobserved[seen.subject] = Unobserved(seen.reason)
        else:
            episode.until = None
            episode.latest = None if seen.reason == episode.reason else seen.reason


# --- the paragraph ---------------------------------------------------------------------------------


_TIMES = ("first_bad", "detected", "mitigated")


@dataclass(frozen=True)
class IncidentSummary:
    sentences: list[str]
    data: dict[str, Any]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def as_dict(self, iso: Callable[[float | None], str | None]) -> dict[str, Any]:
        """As data for the bundle, with times as `iso` writes them."""
        out = {k: iso(v) if k in _TIMES and v is not None else v for k, v in self.data.items()}
        return {**out, "text": self.text}


def incident_summary(
    fold: IncidentFold, state: SessionState, verdict: Verdict, now: float
) -> IncidentSummary:
    t = fold.trouble
    sentences = [_what_broke(t), *_detected(t), *_mitigated(fold, state), *_impact(fold, now)]
    sentences += [_now(verdict, now), _unobserved(fold)]
    rollback = state.traffic.rollback
    data: dict[str, Any] = {
        "what_broke": t.what if t else None,
        "first_bad": t.first_bad_ts if t else None,
        "detected": t.detected_ts if t else None,
        "time_to_detect_s": t.time_to_detect_s if t else None,
        "mitigated": fold.mitigated_ts,
        "time_to_mitigate_s": _time_to_mitigate(fold),
        "rollback": rollback.stage,
        "impact": {**fold.traffic.as_dict(), "window": _window_text(fold, now)} if t else None,
        "state": verdict.word,
        "unobserved": [
            {"what": subject, "why": u.reason, "latest_why": u.latest, "still_unknown": u.until is None}
            for subject, u in fold.unobserved.items()
        ],
    }
    return IncidentSummary([s for s in sentences if s], data)


def _what_broke(t: Trouble | None) -> str:
    if t is None:
        return "Nothing broke: no guardrail breached; no replica, gate, check, probe or fact failed."
    return f"What broke: {t.what}."


def _detected(t: Trouble | None) -> list[str]:
    if t is None:
        return []
    if t.time_to_detect_s is None:
        return [f"Detected at {hms(t.detected_ts)}."]
    return [
        # first_bad_ts is the start of the window that held the first bad sample (a query's: of its
        # range): an upper bound on the time to detect, never the sample's own time.
        f"Detected at {hms(t.detected_ts)}, within {num(t.time_to_detect_s, ' s')} of the first bad sample "
        f"(in the window from {hms(t.first_bad_ts)})."
    ]


def _time_to_mitigate(fold: IncidentFold) -> float | None:
    if fold.trouble is None or fold.mitigated_ts is None:
        return None
    return round(fold.mitigated_ts - fold.trouble.start_ts, 3)


def _mitigated(fold: IncidentFold, state: SessionState) -> list[str]:
    r = state.traffic.rollback
    name = f"rollback {r.action}"
    if fold.mitigated_ts is not None:
        v = state.traffic.rollback_verified
        how = f"{', '.join(r.replicas) or r.action} out of traffic"
        if v is not None and v.ok:
            how += f"; {pct(v.stable_share)} of {v.requests} requests on stable"
        rto = f", RTO {num(v.rto_s, ' s')}" if v is not None and v.rto_s is not None else ""
        seconds = num(_time_to_mitigate(fold), " s")
        bound = fold.trouble is not None and fold.trouble.first_bad_ts is not None  # an upper bound, as above
        took = f"within {seconds} of the first bad sample" if bound else f"{seconds} after it was detected"
        return [f"Mitigated at {hms(fold.mitigated_ts)} by {name} ({how}): {took}{rto}."]
    if r.stage == "failed":
        return [f"Not mitigated: {name} FAILED — {r.failure}."]
    if r.in_progress:
        return [f"Not mitigated yet: {name} {r.words}."]
    if r.stage == "cancelled":
        why = f" ({r.failure})" if r.failure else ""
        return [f"Not mitigated: {name} was declined by {r.actor}{why}."]
    if fold.trouble is None:
        return [f"Rollback {r.action} {r.words} at {hms(r.ended_ts)}."] if r.stage == "verified" else []
    if r.stage == "verified":
        return [f"Not mitigated: {name} was verified at {hms(r.ended_ts)}, before this broke."]
    return ["Not mitigated: no rollback was executed" + _recovery(fold.trouble, state) + "."]


def _recovery(t: Trouble, state: SessionState) -> str:
    """`; candidate-5xx recovered at 12:01:00Z` when the breach that broke recovered on its own."""
    for e in state.traffic.breach_log:
        if isinstance(e, ev.GuardrailRecovered) and e.ts > t.detected_ts and f" {e.guardrail} " in t.what:
            return f"; {e.guardrail} recovered at {hms(e.ts)}"
    return ""


def _window_text(fold: IncidentFold, now: float) -> str:
    assert fold.trouble is not None
    start = fold.trouble.start_ts
    if fold.mitigated_ts is not None:
        return f"{hms(start)} → {hms(fold.mitigated_ts)}, {num(round(fold.mitigated_ts - start, 3), ' s')}"
    return f"{hms(start)} → end of session {hms(now)}, not mitigated"


def _impact(fold: IncidentFold, now: float) -> list[str]:
    if fold.trouble is None:
        return []
    t = fold.traffic
    window = f"the incident window ({_window_text(fold, now)})"
    if not t.requests:
        return [f"Impact: no synthetic traffic was recorded in {window}."]
    failed = sum(t.unattributed.values())
    unanswered = f", {failed} answered by no replica" if failed else ""
    return [
        f"Impact in {window}: {t.requests} requests, {t.errors_5xx} 5xx ({pct(t.error_rate)}){unanswered}."
    ]


def _now(verdict: Verdict, now: float) -> str:
    problems = verdict.problems
    return f"Now ({hms(now)}): {verdict.headline}" + (f" — {'; '.join(problems)}." if problems else ".")


def _unobserved(fold: IncidentFold) -> str:
    if not fold.unobserved:
        return "Everything that reported could be observed."
    parts = [
        f"{subject} ({u.reason}{f'; later {u.latest}' if u.latest else ''}; {_until(u)})"
        for subject, u in fold.unobserved.items()
    ]
    return "Could not be observed: " + ", ".join(parts) + "."


def _until(u: Unobserved) -> str:
    return "still unknown at the end" if u.until is None else f"until {hms(u.until)}"
