"""Unknown is neither ok nor failed: what could not be observed, with its reason.

A probe, fact, gate, replica health check or guardrail that could not look (an unset `${VAR}`, a host
that does not resolve from here, a missing binary, auth refused) is *unknown*; one that looked and saw a
failure (refused, timed out, 5xx) is not. `observation(event)` says which an event is; `UnknownWatch`
turns them into one Notice when something becomes unknown and one when it observes again — not one per
poll. The report lists the same episodes as data-collection failures (report/evidence.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback_tui.core import events as ev
from rollback_tui.core.state import SessionState

KINDS = frozenset({"probe_result", "health_sample", "fact_captured", "gate_finished", "guardrail_status"})


@dataclass(frozen=True, slots=True)
class Observation:
    subject: str  # "probe dead-letters", "replica api health", "fact commit", "gate smoke", "guardrail x"
    source: str  # the Notice source: probes | health | facts | gates | guardrails
    reason: str | None  # why it could not observe; None: it did observe (ok or failed)


def observation(event: ev.Event) -> Observation | None:
    """Whether this event observed its subject; None for events that observe nothing (or say nothing)."""
    if event.kind not in KINDS:
        return None
    if isinstance(event, ev.ProbeResult):
        return Observation(f"probe {event.probe}", "probes", _why(not event.observed, event.error))
    if isinstance(event, ev.HealthSample):
        unknown = event.status == "unknown"
        return Observation(f"replica {event.replica} health", "health", _why(unknown, event.error))
    if isinstance(event, ev.FactCaptured):
        return Observation(f"fact {event.fact}", "facts", _why(not event.observed, event.error))
    if isinstance(event, ev.GateFinished):
        if event.outcome == "cancelled":  # the operator stopped it: it says nothing either way
            return None
        return Observation(f"gate {event.gate}", "gates", _why(event.outcome == "error", event.error))
    if isinstance(event, ev.GuardrailStatus):
        unknown = event.status == "unknown"
        return Observation(f"guardrail {event.guardrail}", "guardrails", _why(unknown, event.reason))
    return None


def _why(unknown: bool, reason: str | None) -> str | None:
    return (reason or "no detail") if unknown else None


class UnknownWatch:
    """Notices for what became unknown and what observes again: once per change, never per poll."""

    def __init__(self) -> None:
        self.unknown: dict[str, str] = {}  # subject → reason, while it cannot observe

    @classmethod
    def from_state(cls, state: SessionState) -> UnknownWatch:
        """Start from what a resumed journal already says, so it is not announced twice."""
        watch = cls()
        last: list[ev.Event] = [*state.probes.values(), *state.facts.values()]
        last += [g.history[-1] for g in state.gates.values() if g.history]
        for event in sorted(last, key=lambda e: e.ts):  # a fact's newest phase decides
            watch.observe(event)
        for name, replica in state.replicas.items():
            if replica.samples and replica.status == "unknown":
                watch.unknown[f"replica {name} health"] = replica.error or "no detail"
        for name, rail in state.rails.items():
            if rail.status == "unknown":
                watch.unknown[f"guardrail {name}"] = rail.reason or "no detail"
        return watch

    def observe(self, event: ev.Event) -> list[ev.Notice]:
        seen = observation(event)
        if seen is None:
            return []
        was = self.unknown.get(seen.subject)
        if seen.reason is not None:
            self.unknown[seen.subject] = seen.reason  # the latest reason, for the notice when it ends
            if was is not None:
                return []
            message = f"{seen.subject} unknown (could not observe): {seen.reason}"
            return [ev.Notice(level="warning", source=seen.source, message=message)]
        if was is None:
            return []
        del self.unknown[seen.subject]
        return [ev.Notice(source=seen.source, message=f"{seen.subject} no longer unknown (was: {was})")]
