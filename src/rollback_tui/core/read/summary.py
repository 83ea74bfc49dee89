"""Everything the end of a session is judged by, computed once: the report, the bundle and the headless
verdict format this (the cockpit shows the same pieces live, from the same functions)."""

from __future__ import annotations

from dataclasses import dataclass

from rollback_tui.core.checklist import ChecklistReport, evaluate
from rollback_tui.core.read import session_now
from rollback_tui.core.read.checklist import ChecklistCounts
from rollback_tui.core.read.guardrails import GuardrailReading, readings
from rollback_tui.core.read.incident import IncidentFold, IncidentSummary, incident_summary
from rollback_tui.core.read.steps import StepRow, step_rows
from rollback_tui.core.read.traffic import TrafficTotals, recent_traffic, split_window_s
from rollback_tui.core.state import SessionState
from rollback_tui.core.verdict import Verdict, stale_after_s, verdict
from rollback_tui.playbook.model import Playbook


@dataclass
class SessionSummary:
    now: float  # the moment it describes (the session's own clock unless a live caller says otherwise)
    checklist: ChecklistReport  # per item, and the exit verdict (complete / missing)
    counts: ChecklistCounts
    verdict: Verdict  # the headline and what is wrong (the "why")
    guardrails: list[GuardrailReading]
    steps: list[StepRow]
    traffic: TrafficTotals  # over the window the 5xx guardrail judges, ending at `now`
    incident: IncidentSummary | None = None  # the paragraph, when the events were folded for it


def summarize(
    playbook: Playbook, state: SessionState, now: float | None = None, incident: IncidentFold | None = None
) -> SessionSummary:
    """`incident`: the events folded in journal order (report/evidence.py, the headless run), for the
    summary paragraph."""
    now = session_now(state) if now is None else now
    report = evaluate(playbook, state)
    health = verdict(state, now, stale_after_s(playbook))
    return SessionSummary(
        now=now,
        checklist=report,
        counts=ChecklistCounts.of(report),
        verdict=health,
        guardrails=readings(playbook, state, now),
        steps=step_rows(playbook, state, now),
        traffic=recent_traffic(state, now, split_window_s(playbook)),
        incident=None if incident is None else incident_summary(incident, state, health, now),
    )
