"""One line per event: the headless progress log and the report's timeline say the same thing.

`describe(event)` is the text, or None for an event the timeline leaves out (kinds without the `timeline`
trait, an info-less one such as a probe that answered). `glyph(event)` is the mark the headless log puts
in front of it. Every kind with the `timeline` trait has a describer here (tests/test_event_traits.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rollback_tui.core import events as ev
from rollback_tui.core.read.guardrails import breach_text, recovered_text, time_to_detect_s
from rollback_tui.core.read.incident import incident_text
from rollback_tui.core.read.readiness import ReadinessView
from rollback_tui.core.read.words import num, pct
from rollback_tui.core.text import one_line, weight_changes

if TYPE_CHECKING:
    from rollback_tui.core.state import SessionState

DETAIL_MAX = 100  # characters of one detail value (the journal keeps it whole)


def _detail(detail: dict[str, Any]) -> str:
    """`k=v, …` with each value on one line: an argv joined, a script cut to its first line with …."""
    parts = []
    for key, value in detail.items():
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}={one_line(text, DETAIL_MAX + 1)}")
    return ", ".join(parts)


def _backends(routing: dict[str, Any]) -> str:
    return ", ".join(routing.get("backends", [])) or "-"


def _session_started(e: ev.SessionStarted) -> str:
    return (
        f"Session started by {e.operator} on {e.host} "
        f"(playbook {e.playbook_name}, environment {e.environment}, rollback-tui {e.version})"
    )


def _session_resumed(e: ev.SessionResumed) -> str:
    return (
        f"Session resumed by {e.operator} ({e.recovered_events} events recovered, "
        f"{e.skipped_lines} lines skipped)"
    )


def _incident(e: ev.IncidentRecorded) -> str:
    return f"Incident recorded by {e.actor}: {incident_text(e)}"


def _operator_action(e: ev.OperatorAction) -> str:
    return f"Operator {e.actor}: {e.action}" + (f" ({_detail(e.detail)})" if e.detail else "")


def _fact(e: ev.FactCaptured) -> str:
    agree = "" if e.agree is None else (" — agree" if e.agree else " — DISAGREE")
    return f"Fact {e.fact} captured ({e.phase}): {e.values_text()}{agree}" + (
        f" — {e.error}" if e.error else ""
    )


def _probe(e: ev.ProbeResult) -> str | None:
    if e.ok:
        return None  # a value is a measurement (steps and guardrails show it); a failure is an event
    if not e.observed:  # it could not look: unknown, not a failure of the target
        return f"Probe {e.probe} could not observe: {e.error or 'no detail'}"
    return f"Probe {e.probe} FAILED: {e.error or f'value {e.value}'}"


def _selector(e: ev.SelectorState) -> str:
    return f"Routing ({e.source}): selector {_detail(e.selector)}; backends {', '.join(e.backends) or '-'}"


def _breach(e: ev.GuardrailBreach) -> str:
    ttd = f"; time to detect within {num(time_to_detect_s(e), ' s')}" if e.first_bad_ts is not None else ""
    return f"{e.severity} guardrail {e.guardrail} breached: {breach_text(e)}{ttd}"


def _applied(e: ev.RollbackApplied) -> str:
    if not e.ok:
        return f"Rollback {e.action} via {e.driver} FAILED: {e.error}"
    change = f"{_backends(e.before)} → {_backends(e.after)}"
    weights = weight_changes(e.before, e.after)  # a weight-based driver: which weights it moved
    moved = f"; weights {weights}" if weights else ""
    return f"Rollback {e.action} applied via {e.driver}: backends {change}{moved}"


def _verified(e: ev.RollbackVerified) -> str:
    text = (
        f"Rollback {e.action} verified {'ok' if e.ok else 'NOT ok'}: {pct(e.stable_share)} of "
        f"{e.requests} requests on stable; time to detect within {num(e.time_to_detect_s, ' s')}; "
        f"RTO {num(e.rto_s, ' s')}"
    )
    if e.time_to_mitigate_s is not None:
        text += f"; time to mitigate {num(e.time_to_mitigate_s, ' s')}"
    return text + (f" — {e.error}" if e.error else "")


def _gate_finished(e: ev.GateFinished) -> str:
    code = f"exit {e.exit_code}" if e.exit_code is not None else "no exit code"
    outcome = "could not run" if e.outcome == "error" else e.outcome.replace("_", " ")
    return f"Gate {e.gate} {outcome} (run {e.run}, {code}, {e.duration_s:.3g} s)"


def _fanout(e: ev.FanoutResult) -> str:
    verdict = "passed" if e.passed else "FAILED"
    text = f"Fanout run {e.run} ({e.phase}) {verdict}: {len(e.sent)} events sent on {e.thread_id}"
    return text + (f" — {'; '.join(dict.fromkeys(e.reasons))}" if e.reasons and not e.passed else "")


_ITEM_WORDS = {"failed": "FAILED", "needs_input": "needs input"}


def _item_finished(e: ev.StepItemFinished) -> str:
    text = f"Step {e.step} item {e.index + 1} {_ITEM_WORDS.get(e.outcome, e.outcome)}: {e.item}"
    text += f" — {e.reason}" if e.reason else ""
    return text + (f" (by {e.actor}: {one_line(e.note, DETAIL_MAX + 1)})" if e.note else "")


def _part(action: str, part: str) -> str:
    return f"{action} ({part})" if part else action


def _argv(argv: list[str], where: str) -> str:
    return one_line(shlex.join(argv), DETAIL_MAX + 1) + ("" if where == "local" else f" @ {where}")


def _action_confirmed(e: ev.ActionConfirmed) -> str:
    how = "with --allow-destructive" if e.via != "typed" else f"typed {e.typed!r}"
    shown = "; ".join(
        (f"{c['label']}: " if c.get("label") else "")
        + _argv(list(c.get("argv", [])), c.get("where", "local"))
        for c in e.commands
    )
    return f"Action {e.action} confirmed by {e.actor} ({how})" + (f": {shown}" if shown else "")


def _action_started(e: ev.ActionStarted) -> str:
    text = f"Action {_part(e.action, e.part)} started by {e.actor}"
    return text + (f": {_argv(e.argv, e.where)}" if e.argv else "")


def _action_finished(e: ev.ActionFinished) -> str:
    outcome = "could not run" if e.outcome == "error" else e.outcome.replace("_", " ")
    code = f"exit {e.exit_code}, " if e.exit_code is not None else ""
    text = f"Action {_part(e.action, e.part)} {outcome} ({code}{e.duration_s:.3g} s)"
    return text + (f" — {e.error}" if e.error else "")


def _flags(e: ev.FlagsRead) -> str:
    if not e.observed:
        return f"Flags of {e.action} could not be read {e.phase} the change: {e.error or 'no detail'}"
    values = ", ".join(f"{k}={'(not set)' if v is None else v}" for k, v in e.values.items())
    return f"Flags of {e.action} read {e.phase} the change: {values or '-'}" + (
        f" — {e.error}" if e.error else ""
    )


def _dead_letters(e: ev.DeadLettersInspected) -> str:
    if not e.observed or e.count is None:
        return f"Dead letters ({e.probe}) could not be inspected: {e.error or 'no count'}"
    newest = "; ".join(one_line(item, DETAIL_MAX + 1) for item in e.newest[:3])
    return f"Dead letters ({e.probe}): {e.count}" + (f" — newest: {newest}" if newest else "")


def _ticked(e: ev.ChecklistTicked) -> str:
    how = "automatically" if e.auto else f"by {e.actor}"
    return f"Checklist {e.item} {'ticked' if e.checked else 'unticked'} {how}" + (
        f": {e.note}" if e.note else ""
    )


DESCRIBERS: dict[type[ev.Event], Callable[[Any], str | None]] = {
    ev.SessionStarted: _session_started,
    ev.SessionResumed: _session_resumed,
    ev.SessionEnded: lambda e: f"Session ended ({e.reason})",
    ev.StepEntered: lambda e: f"Step {e.step} entered (by {e.actor})",
    ev.StepItemStarted: lambda e: f"Step {e.step} item {e.index + 1} started: {e.item} (by {e.actor})",
    ev.StepItemFinished: _item_finished,
    ev.ActionConfirmed: _action_confirmed,
    ev.ActionStarted: _action_started,
    ev.ActionFinished: _action_finished,
    ev.FlagsRead: _flags,
    ev.DeadLettersInspected: _dead_letters,
    ev.IncidentRecorded: _incident,
    ev.ReadinessChecked: lambda e: ReadinessView(e).timeline_text(),
    ev.OperatorAction: _operator_action,
    ev.Notice: lambda e: f"{e.level.capitalize()} from {e.source}: {e.message}",
    ev.FactCaptured: _fact,
    ev.ProbeResult: _probe,
    ev.SelectorState: _selector,
    ev.GuardrailBreach: _breach,
    ev.GuardrailRecovered: lambda e: f"Guardrail {e.guardrail} recovered ({recovered_text(e)})",
    ev.RollbackRequested: lambda e: (
        f"Rollback {e.action} requested by {e.actor} (typed {e.confirmed_text!r}): {e.reason or '-'}"
    ),
    ev.RollbackApplying: lambda e: (
        f"Rollback {e.action} applying via {e.driver} (backends before: {_backends(e.before)})"
    ),
    ev.RollbackApplied: _applied,
    ev.RollbackVerified: _verified,
    ev.RollbackFailed: lambda e: f"Rollback {e.action} FAILED while {e.stage}: {e.reason}",
    ev.RollbackCancelled: lambda e: (
        f"Rollback {e.action} declined by {e.actor}" + (f": {e.reason}" if e.reason else "")
    ),
    ev.GateStarted: lambda e: f"Gate {e.gate} started (run {e.run}, {e.where}, by {e.actor})",
    ev.GateFinished: _gate_finished,
    ev.FanoutResult: _fanout,
    ev.ChecklistTicked: _ticked,
    ev.ExportWritten: lambda e: f"Evidence exported ({len(e.files)} files) by {e.actor}",
}


def describe(e: ev.Event) -> str | None:
    """The one-line text for an event, or None for one the timeline leaves out."""
    describer = DESCRIBERS.get(type(e))
    return describer(e) if describer is not None else None


_OK_GLYPH = {True: "✓", False: "✗"}
_NOTICE_GLYPH = {"info": "·", "warning": "!", "error": "✗"}
_GATE_GLYPH = {"passed": "✓", "failed": "✗", "timed_out": "✗", "cancelled": "!"}


def glyph(e: ev.Event) -> str:
    """The mark in front of the line in the headless log: ✓ / ✗ for outcomes, ! for warnings, ⟲ …"""
    if isinstance(e, ev.Notice):
        return _NOTICE_GLYPH.get(e.level, "·")
    if isinstance(e, ev.GateFinished):  # could not run, interrupted: its outcome is unknown
        return _GATE_GLYPH.get(e.outcome, "?")
    if isinstance(e, ev.FanoutResult):
        return _OK_GLYPH[e.passed]
    if isinstance(e, ev.RollbackApplied | ev.RollbackVerified):
        return _OK_GLYPH[e.ok]
    if isinstance(e, ev.FactCaptured):
        return "?" if not e.observed else "✗" if e.error or e.agree is False else "·"
    if isinstance(e, ev.ProbeResult):
        return "?" if not e.observed else "✗"
    if isinstance(e, ev.ChecklistTicked):
        return "☑" if e.checked else "☐"
    if isinstance(e, ev.StepItemFinished):
        return _ITEM_GLYPH[e.outcome]
    if isinstance(e, ev.ActionFinished):
        return _GATE_GLYPH.get(e.outcome, "?")
    if isinstance(e, ev.FlagsRead | ev.DeadLettersInspected):
        return "?" if not e.observed else "·"
    if isinstance(e, ev.ReadinessChecked):
        return "✓" if all(i.ready for i in e.items) else "!"
    return _KIND_GLYPH.get(e.kind, "·")


_ITEM_GLYPH = {
    "passed": "✓",
    "failed": "✗",
    "unknown": "?",
    "skipped": "-",
    "needs_input": "!",
    "cancelled": "!",
}
_KIND_GLYPH = {
    "step_entered": "▶",
    "step_item_started": "▷",
    "action_started": "▷",
    "action_confirmed": "⚠",
    "guardrail_breach": "!",
    "guardrail_recovered": "✓",
    "rollback_requested": "⟲",
    "rollback_applying": "⟲",
    "rollback_failed": "✗",
    "rollback_cancelled": "⟲",
}


@dataclass(frozen=True)
class LogLine:
    ts: float
    kind: str
    glyph: str
    text: str


def event_log(state: SessionState) -> list[LogLine]:
    """The cockpit's event log: what the session's log kept (SessionState.log), in the timeline's words."""
    return [LogLine(e.ts, e.kind, glyph(e), text) for e in state.log if (text := describe(e)) is not None]
