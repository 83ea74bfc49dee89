"""The JSON evidence bundle: a machine-readable summary plus every journaled event.

`{"format": "rollback-tui-bundle/1", "events": [...], "summary": {...}, "artefacts": [...]}`. The summary
holds the verdict, checklist with evidence, time-to-detect and RTO, gate outcomes and fanout results; the
events are the journal's lines as they are (redacted once more), streamed into the file by the export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import ItemStatus
from rollback_tui.core.read.checklist import how, rule_holds
from rollback_tui.core.read.guardrails import standings
from rollback_tui.core.read.incident import incident_fields
from rollback_tui.core.read.readiness import ReadinessView
from rollback_tui.core.read.summary import summarize
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook, SelectorRemoval
from rollback_tui.report.evidence import Evidence, iso

FORMAT = "rollback-tui-bundle/1"
SUMMARY_FANOUT = 200  # newest fanout results in the summary (all of them are in the events)


def _status(s: ItemStatus) -> dict[str, Any]:
    return {
        "name": s.name,
        "text": s.text,
        "rule": s.rule,
        "checked": s.checked,
        "auto": s.auto,
        "how": how(s),
        "rule_holds": rule_holds(s),  # also when an operator's tick decides; None: a manual item
        "held_before_but_not_now": s.held_before_but_not_now,
        "actor": s.actor,
        "note": s.note,
        "evidence": s.evidence,
    }


def _dump(event: ev.Event | None, *exclude: str) -> dict[str, Any] | None:
    if event is None:
        return None
    data = event.model_dump(mode="json", exclude={"kind", *exclude})
    data["time"] = iso(event.ts)
    return data


def build_summary(
    playbook: Playbook,
    state: SessionState,
    evidence: Evidence,
    *,
    journal_name: str | None = None,
    artefacts: Mapping[str, str] | None = None,
    warnings: Iterable[str] = (),
) -> dict[str, Any]:
    read = summarize(playbook, state, incident=evidence.incident)  # what the report and headless verdict say
    report = read.checklist
    started, t = state.started, state.traffic
    verified, stand = t.rollback_verified, standings(state)
    action = next((a for a in playbook.actions if verified and a.name == verified.action), None)
    artefacts = artefacts or {}
    gates = []
    for run in evidence.gate_runs.values():
        done = run.finished
        gates.append(
            {
                "gate": run.gate,
                "run": run.run,
                "command": run.argv,
                "where": run.where,
                "started": iso(run.started_ts) if run.started_ts is not None else None,
                "finished": iso(done.ts) if done else None,
                "outcome": done.outcome if done else "unfinished",
                "exit_code": done.exit_code if done else None,
                "duration_s": done.duration_s if done else None,
                "output_lines": done.output_lines if done else None,
                "journaled_output_lines": run.journaled_lines,
                "artefact": artefacts.get(done.artefact) if done and done.artefact else None,
                "output_tail": list(run.tail),
            }
        )
    return {
        "session": {
            "playbook": playbook.name,
            "title": playbook.title,
            "playbook_path": started.playbook if started else None,
            "environment": playbook.environment,
            "operator": started.operator if started else None,
            "host": started.host if started else None,
            "version": started.version if started else None,
            "started": iso(started.ts) if started else None,
            "ended": iso(state.ended.ts) if state.ended else None,
            "end_reason": state.ended.reason if state.ended else None,
            "resumes": state.resumes,
            "journal": journal_name,
            "events": sum(state.counts.values()),
            "counts": dict(sorted(state.counts.items())),
            **dict(incident_fields(state.incident)),
        },
        "incident": read.incident.as_dict(iso) if read.incident else None,  # the report's summary paragraph
        "verdict": {
            "complete": report.verdict.complete,
            "missing": report.verdict.missing,
            "session": read.verdict.word,
            "why": read.verdict.problems,
        },
        "checklist_counts": read.counts.as_dict(),
        "checklist": [_status(s) for s in report.items],
        "exit_criteria": [_status(s) for s in report.exit_criteria],
        "rollback": {
            "state": t.rollback.stage,
            "failure": t.rollback.failure,
            "attempts": t.rollback.attempts,
            "requested": _dump(t.rollback_requested),
            "applied": _dump(t.rollback_applied),
            "verified": _dump(verified),
            "time_to_detect_s": verified.time_to_detect_s if verified else None,
            "rto_s": verified.rto_s if verified else None,
            "time_to_mitigate_s": verified.time_to_mitigate_s if verified else None,
            "rto_budget_s": action.rto_budget_s if isinstance(action, SelectorRemoval) else None,
        },
        "guardrails": [{"event": e.kind, **(_dump(e) or {})} for e in t.breach_log],
        "guardrail_values": {"at": iso(read.now), "values": [r.as_dict() for r in read.guardrails]},
        "steps": [r.as_dict() for r in read.steps],
        # Still breached: only those whose guardrail still observes; the others breached, then went blind.
        "active_breaches": sorted(s.breach.guardrail for s in stand if s.held),
        "breaches_unknown_since": [
            {
                "guardrail": s.breach.guardrail,
                "breached": iso(s.breach.ts),
                "since": iso(s.since),
                "why": s.why,
            }
            for s in stand
            if not s.held
        ],
        "gates": gates,
        "fanout": [_dump(r) for r in state.fanout.results[-SUMMARY_FANOUT:]],
        "fanout_results_total": len(state.fanout.results),
        "fanout_frames_total": state.fanout.frames_total,
        "facts": [_dump(f) for f in state.facts.values()],
        "traffic": [
            {
                "start": iso(row.first_ts),
                "end": iso(row.last_ts),
                "requests": row.requests,
                "per_replica": dict(row.served),
                "errors_5xx": row.errors_5xx,
                **({"unattributed": dict(row.unattributed)} if row.unattributed else {}),
            }
            for row in evidence.traffic.rows()
        ],
        "data_collection_failures": [
            {
                "what": b.subject,
                "why": b.reason,
                "since": iso(b.since),
                "last": iso(b.last),
                "times": b.times,
                "until": iso(b.until) if b.until else None,
            }
            for b in evidence.blind
        ],
        "traffic_totals": [evidence.traffic_total.as_dict(), read.traffic.as_dict()],
        "readiness": ReadinessView(state.readiness).as_dict() if state.readiness else None,
        "exports": [_dump(e, "directory") for e in state.exports],
        "warnings": list(warnings) + evidence.warnings,
    }


def build_bundle(
    playbook: Playbook, state: SessionState, events: Iterable[ev.Event], **summary_kw: Any
) -> dict[str, Any]:
    """The whole bundle as a dict (for short journals and tests; the export streams instead)."""
    events = list(events)
    evidence = Evidence.from_events(events)
    return {
        "format": FORMAT,
        "events": [e.model_dump(mode="json") for e in events],
        "summary": build_summary(playbook, state, evidence, **summary_kw),
        "artefacts": sorted(set((summary_kw.get("artefacts") or {}).values())),
    }


BUNDLE_HEAD = '{"format": "' + FORMAT + '",\n "events": [\n'


def bundle_tail(summary: dict[str, Any], artefacts: list[str]) -> str:
    """Everything after the events array. The summary comes last so the events can stream in first."""
    rest = json.dumps({"summary": summary, "artefacts": artefacts}, indent=1, ensure_ascii=False)
    return "\n],\n" + rest[1:] + "\n"
