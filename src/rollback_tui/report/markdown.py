"""The Markdown evidence report: what the incident review reads.

Sections follow the playbook: header, exit verdict, baseline facts, timeline, runbook steps, gates, fanout,
traffic distribution, guardrails with time-to-detect and RTO, data-collection failures (what could not be
observed, why and when), the evidence checklist, exit criteria and (when the playbook asks for one) the
incident follow-up skeleton. Output depends only on the journal — no clock reads — so a recorded journal has
a golden report. The whole text passes through the Redactor last.

Counts, guardrail values, step statuses, traffic totals, verdict reasons and timeline lines come from the
read model (core/read/), as on the screen and in the headless log: this module only lays them out.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import PurePath

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import ItemStatus, guardrail_gaps
from rollback_tui.core.guardrails import GuardrailEvaluator
from rollback_tui.core.read.checklist import how
from rollback_tui.core.read.guardrails import (
    breach_evidence,
    breach_number,
    breach_sides,
    breach_window,
    recovered_text,
    sides_text,
    standings,
    time_to_detect_s,
    value_text,
)
from rollback_tui.core.read.incident import incident_fields
from rollback_tui.core.read.readiness import ReadinessView
from rollback_tui.core.read.steps import status_word
from rollback_tui.core.read.summary import SessionSummary, summarize
from rollback_tui.core.read.words import num, pct
from rollback_tui.core.redact import Redactor
from rollback_tui.core.state import SessionState
from rollback_tui.core.text import routing_text
from rollback_tui.playbook.model import Playbook, SelectorRemoval
from rollback_tui.report.evidence import Evidence, GateRun, iso

FANOUT_RESULTS_SHOWN = 50


def render_markdown(
    playbook: Playbook,
    state: SessionState,
    events: Iterable[ev.Event] | Evidence,
    *,
    journal_name: str | None = None,
    artefacts: Mapping[str, str] | None = None,
    warnings: Iterable[str] = (),
    redactor: Redactor | None = None,
) -> str:
    """Render the report. `events` is the journal's events (or an Evidence already gathered from them).

    `artefacts` maps a GateFinished.artefact path to where the export put it (relative to the report).
    """
    evidence = events if isinstance(events, Evidence) else Evidence.from_events(events)
    summary = summarize(playbook, state, incident=evidence.incident)
    report = summary.checklist
    doc = _Doc()
    _header(doc, playbook, state, journal_name, summary)
    _facts(doc, playbook, state)
    _timeline(doc, evidence)
    _steps(doc, summary)
    _gates(doc, playbook, evidence, artefacts or {})
    _fanout(doc, state, evidence)
    _traffic(doc, state, evidence, summary)
    _guardrails(doc, playbook, state, summary)
    _readiness(doc, state)
    _data_collection(doc, evidence)
    _checklist(doc, "Evidence checklist", report.items, "This playbook has no evidence checklist.")
    _checklist(doc, "Exit criteria", report.exit_criteria, "This playbook has no exit criteria.")
    if playbook.follow_up:
        _follow_up(doc, playbook, evidence)
    warnings = list(warnings) + evidence.warnings
    if warnings:
        doc.h(2, "Journal warnings")
        for warning in warnings[:50]:
            doc.li(_code(PurePath(warning.split(":", 1)[0]).name + ":" + warning.split(":", 1)[-1]))
        if len(warnings) > 50:
            doc.li(f"… {len(warnings) - 50} more")
        doc.blank()
    return (redactor or Redactor())(doc.text())


# --- building blocks ------------------------------------------------------------------------------


class _Doc:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def h(self, level: int, text: str) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")
        self.lines += ["#" * level + " " + text, ""]

    def p(self, text: str) -> None:
        self.lines += [text, ""]

    def li(self, text: str, indent: int = 0) -> None:
        self.lines.append("  " * indent + "- " + text)

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def table(self, header: list[str], rows: Iterable[list[str]]) -> None:
        self.blank()
        self.lines.append("| " + " | ".join(header) + " |")
        self.lines.append("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        self.lines.append("")

    def code(self, lines: Iterable[str]) -> None:
        body = list(lines)
        fence = "```"
        while any(fence in line for line in body):
            fence += "`"
        self.blank()
        self.lines += [fence + "text", *body, fence, ""]

    def text(self) -> str:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"


def _cell(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", "")


def _code(value: object) -> str:
    text = str(value).replace("\n", " ")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if text else "-"


def _check(ok: bool | None) -> str:
    return {True: "ok", False: "FAILED", None: "not checked"}[ok]


# --- sections -------------------------------------------------------------------------------------


def _header(
    doc: _Doc, playbook: Playbook, state: SessionState, journal_name: str | None, summary: SessionSummary
) -> None:
    started = state.started
    doc.h(1, f"Rollback evidence report — {playbook.title}")
    if summary.incident is not None:
        doc.p(f"**Summary.** {summary.incident.text}")
    rows = [
        ["Playbook", f"{playbook.name} ({_code(started.playbook) if started and started.playbook else '-'})"],
        ["Environment", playbook.environment],
        *([label.capitalize(), value] for label, value in incident_fields(state.incident)),
        ["Operator", f"{started.operator} on {started.host}" if started else "-"],
        ["Session start", iso(started.ts) if started else "-"],
        [
            "Session end",
            f"{iso(state.ended.ts)} ({state.ended.reason})"
            if state.ended
            else f"not ended (last event {iso(state.last_ts)})",
        ],
        ["Resumed", f"{state.resumes} time(s)" if state.resumes else "no"],
        [
            "Journal",
            (f"{_code(journal_name)}, " if journal_name else "")
            + f"{sum(state.counts.values())} events (copy: `journal.jsonl`)",
        ],
        ["rollback-tui", started.version if started else "-"],
    ]
    doc.table(["", ""], rows)
    verdict = summary.checklist.verdict
    if verdict.complete:
        doc.h(2, "Exit verdict: COMPLETE")
        doc.p("Every exit criterion holds.")
    else:
        doc.h(2, "Exit verdict: NOT COMPLETE")
        doc.p("Missing:")
        for line in verdict.missing:
            doc.li(line)
        doc.blank()
    doc.p(f"Checklist: {summary.counts.text} checked.")
    health = summary.verdict
    doc.p(f"Session at its end ({iso(summary.now)}): {health.headline}")
    for problem in health.problems:
        doc.li(f"Why: {problem}")
    doc.blank()
    if playbook.objective:
        doc.p(f"Objective: {playbook.objective.strip()}")


def _facts(doc: _Doc, playbook: Playbook, state: SessionState) -> None:
    doc.h(2, "Baseline facts")
    order = {f.name: i for i, f in enumerate(playbook.facts)}
    titles = {f.name: f.title for f in playbook.facts}
    phases = {"baseline": 0, "check": 1, "after_rollback": 2}
    captured = sorted(state.facts.values(), key=lambda f: (order.get(f.fact, 999), f.fact, phases[f.phase]))
    if captured:
        rows = []
        for f in captured:
            values = f.values_text()
            agree = "-" if f.agree is None else ("yes" if f.agree else "NO")
            if f.error:
                values += f" ({'error' if f.observed else 'unknown, could not observe'}: {f.error})"
            rows.append([titles.get(f.fact, f.fact), f.phase, values, agree, f.source, iso(f.ts)])
        doc.table(["Fact", "Phase", "Values", "Agree", "Source", "Captured (UTC)"], rows)
    else:
        doc.p("No facts were captured.")
    missing = [f.name for f in playbook.facts if f"{f.name}@baseline" not in state.facts]
    if missing:
        doc.p("Not captured at baseline: " + ", ".join(missing) + ".")
    if state.replicas:
        doc.p("Replica identity (last health sample):")
        rows = [
            [
                r.name,
                r.role,
                r.status,
                r.image or "-",
                r.commit or "-",
                r.channel_prefix or "-",
                r.transport or "-",
                f"{r.samples} / {r.failures}",
            ]
            for r in state.replicas.values()
        ]
        doc.table(
            ["Replica", "Role", "Status", "Image", "Commit", "Prefix", "Transport", "Samples / failed"], rows
        )


def _timeline(doc: _Doc, evidence: Evidence) -> None:
    doc.h(2, "Timeline")
    entries = evidence.timeline
    if not entries:
        doc.p("No timeline events.")
        return
    rows = [[iso(e.ts), e.text] for e in evidence.timeline_head]
    if evidence.timeline_omitted:
        rows.append(["…", f"{evidence.timeline_omitted} entries omitted (see journal.jsonl)"])
    rows += [[iso(e.ts), e.text] for e in evidence.timeline_tail]
    doc.table(["Time (UTC)", "Event"], rows)


def _steps(doc: _Doc, summary: SessionSummary) -> None:
    doc.h(2, "Runbook steps")
    if not summary.steps:
        doc.p("This playbook has no runbook steps.")
        return
    for row in summary.steps:
        where = " (the tracker's step at the end)" if row.current else ""
        doc.li(f"**{row.index + 1}. {row.title}** ({row.name}): {status_word(row.status)}{where}")
        for item in row.items:
            doc.li(item.text + (f" (when {item.when.replace('_', ' ')})" if item.when != "always" else ""), 1)
    doc.blank()


def _gates(doc: _Doc, playbook: Playbook, evidence: Evidence, artefacts: Mapping[str, str]) -> None:
    doc.h(2, "Gates")
    runs = list(evidence.gate_runs.values())
    if not runs:
        doc.p("No gate was run.")
        return
    if evidence.gate_runs_dropped:
        doc.p(f"{evidence.gate_runs_dropped} older gate runs are only in the journal.")
    known = [g.name for g in playbook.gates]
    names = known + sorted({r.gate for r in runs} - set(known))
    for name in names:
        gate_runs = [r for r in runs if r.gate == name]
        if not gate_runs:
            continue
        title = next((g.title for g in playbook.gates if g.name == name), "")
        doc.h(3, f"{name}" + (f" — {title}" if title else ""))
        shown: set[str] = set()  # scripts already printed under this gate
        for run in gate_runs:
            _gate_run(doc, run, artefacts, shown)


def _gate_run(doc: _Doc, run: GateRun, artefacts: Mapping[str, str], shown: set[str]) -> None:
    done = run.finished
    outcome = "DID NOT FINISH"
    if done:
        outcome = "COULD NOT RUN" if done.outcome == "error" else done.outcome.replace("_", " ").upper()
    doc.p(f"**Run {run.run}: {outcome}**")
    started = run.started_ts if run.started_ts is not None else (done.started_ts if done else None)
    # A multi-line argument (python3 -c SCRIPT) is printed as a block, not squeezed onto the command line.
    scripts = [arg for arg in run.argv if "\n" in arg]
    new_scripts = [s for s in scripts if s not in shown]
    shown.update(scripts)
    command, script_note = run.command, ""
    if scripts:
        command = " ".join("<script>" if "\n" in a else shlex.quote(a) for a in run.argv)
        script_note = f"; the script {'below' if new_scripts else 'as above'}"
    doc.li(f"Command: {_code(command)} on {run.where} (by {run.actor}){script_note}")
    if done and done.last_seen_ts is not None:  # interrupted: when it really ended is unknown
        seen, resumed = iso(done.last_seen_ts), iso(done.ts)
        doc.li(f"Started {iso(started)}, last seen {seen}; recorded as interrupted on resume at {resumed}")
    else:
        doc.li(f"Started {iso(started)}, finished {iso(done.ts) if done else '-'}")
    if done:
        code = done.exit_code if done.exit_code is not None else "-"
        doc.li(f"Exit code {code}, duration {done.duration_s:.3f} s, {done.output_lines} output lines")
        if done.error:
            doc.li(f"Error: {done.error}")
    if done and done.artefact:
        where = artefacts.get(done.artefact)
        name = PurePath(done.artefact).name
        doc.li(
            f"Full output: `{where}` in the bundle"
            if where
            else f"Full output: `{name}` (not copied; the journal warnings say why)"
        )
    doc.blank()
    for script in new_scripts:
        doc.p("Script:")
        doc.code(script.strip("\n").splitlines())
    if run.tail:
        doc.p(f"Last {len(run.tail)} of {run.journaled_lines} journaled output lines:")
        doc.code(run.tail)


def _fanout(doc: _Doc, state: SessionState, evidence: Evidence) -> None:
    doc.h(2, "Realtime fanout")
    results = state.fanout.results
    doc.p(f"{len(results)} fanout check(s); {state.fanout.frames_total} frames received in total.")
    if len(results) > FANOUT_RESULTS_SHOWN:
        doc.p(f"Showing the last {FANOUT_RESULTS_SHOWN}; the rest are in the journal.")
    for r in results[-FANOUT_RESULTS_SHOWN:]:
        doc.h(3, f"Run {r.run} ({r.phase}): {'PASSED' if r.passed else 'FAILED'} at {iso(r.ts)}")
        prefixes = ", ".join(_code(p) for p in r.prefixes_seen) or "-"
        doc.li(f"Thread {_code(r.thread_id)}; sent {', '.join(_code(i) for i in r.sent) or '-'}")
        for session, ids in r.received.items():
            doc.li(f"Session {session} received {len(ids)}: {', '.join(_code(i) for i in ids) or '-'}")
        doc.li(
            f"Cross-replica latency {num(r.cross_latency_ms, ' ms')}; ordering {_check(r.ordering_ok)}; "
            f"replay {_check(r.replay_ok)}; prefixes seen {prefixes}"
        )
        for reason in r.reasons:
            doc.li(f"Reason: {reason}")
        frames = evidence.frames.get(r.run, [])
        if frames:
            rows = [
                [
                    _code(f.event_id),
                    f.session,
                    f.replica,
                    "-" if f.seq is None else str(f.seq),
                    iso(f.received_at, ms=True),
                    num(None if f.latency_ms is None else round(f.latency_ms, 2), " ms"),
                    "yes" if f.replay else "",
                ]
                for f in frames
            ]
            doc.table(["Event ID", "Session", "Replica", "Seq", "Received (UTC)", "Latency", "Replay"], rows)
        else:
            doc.blank()
            doc.p("Receive timestamps: frames of this run are not retained (see journal.jsonl).")


def _traffic(doc: _Doc, state: SessionState, evidence: Evidence, summary: SessionSummary) -> None:
    doc.h(2, "Replica traffic distribution")
    rows = evidence.traffic.rows()
    if not rows:
        doc.p("No synthetic traffic was recorded.")
        return
    order = [n for n in state.replicas if n in evidence.traffic.replicas]
    order += [n for n in evidence.traffic.replicas if n not in order]
    for totals in (evidence.traffic_total, summary.traffic):
        doc.li(totals.text())
        if totals.requests:
            doc.li(totals.split_text(order), 1)
    doc.blank()
    applied = state.traffic.rollback_applied
    doc.p(
        f"Share of requests per replica, in {len(rows)} time buckets of {evidence.traffic.width:g} s or less."
    )
    unattributed = evidence.traffic.unattributed  # requests no replica answered, a column per reason
    if unattributed:
        doc.p("Columns after the replicas count requests no replica answered: failures of the service.")
    table = []
    for row in rows:
        shares = [_percent(row.served.get(n, 0), row.requests) for n in order]
        failed = [_percent(row.unattributed.get(r, 0), row.requests) for r in unattributed]
        start, end = row.first_ts or 0.0, row.last_ts or 0.0
        note = "rollback applied" if applied and start <= applied.ts <= end else ""
        err = _percent(row.errors_5xx, row.requests)
        table.append([f"{iso(start)} to {iso(end)[11:]}", str(row.requests), *shares, *failed, err, note])
    doc.table(["Window (UTC)", "Requests", *order, *unattributed, "5xx", "Note"], table)


def _percent(count: int, total: int) -> str:
    return pct(count / total) if total else "-"


def _guardrails(doc: _Doc, playbook: Playbook, state: SessionState, summary: SessionSummary) -> None:
    doc.h(2, "Guardrails, time to detect and RTO")
    if summary.guardrails:
        doc.p(f"At the end of the session ({iso(summary.now)}):")
        for reading in summary.guardrails:
            doc.li(reading.line)
        doc.blank()
    _breach_table(doc, playbook, state.traffic.breach_log)
    active = standings(state)
    held = sorted(s.breach.guardrail for s in active if s.held)
    if held:
        doc.p("Still breached at the end: " + ", ".join(held) + ".")
    blind = [s for s in active if not s.held]
    if blind:
        doc.p("Breached, then unknown at the end (neither still breached nor recovered):")
        for standing in blind:
            doc.li(f"{standing.breach.guardrail} — {standing.when}")
        doc.blank()
    _queried(doc, playbook, state)
    gaps = guardrail_gaps(playbook, state)
    if gaps:
        doc.p("Neither ok nor breached at the end (no verdict without data):")
        for gap in gaps:
            doc.li(gap)
        doc.blank()
    _rollback_section(doc, playbook, state)


def _breach_table(
    doc: _Doc, playbook: Playbook, log: list[ev.GuardrailBreach | ev.GuardrailRecovered]
) -> None:
    if log:
        rows = []
        for e in log:
            if isinstance(e, ev.GuardrailBreach):
                ttd = num(time_to_detect_s(e), " s") if e.first_bad_ts is not None else "-"
                threshold = breach_number(e, e.threshold)
                rows.append(
                    [
                        iso(e.ts),
                        e.guardrail,
                        f"breach {e.severity}",
                        f"{e.metric} {breach_number(e, e.value)}{breach_sides(e)}{breach_evidence(e)}",
                        f"{threshold} {breach_window(e)}",
                        iso(e.first_bad_ts),
                        ttd,
                    ]
                )
            else:
                rows.append([iso(e.ts), e.guardrail, "recovered", _recovered_value(e, playbook), "", "", ""])
        doc.table(
            ["Time (UTC)", "Guardrail", "Event", "Value", "Threshold", "Bad window from", "Detect within"],
            rows,
        )
    else:
        doc.p("No guardrail was breached.")


def _rollback_section(doc: _Doc, playbook: Playbook, state: SessionState) -> None:
    t = state.traffic
    if t.rollback.stage == "none":
        doc.p("No rollback was executed.")
        doc.blank()
        return
    attempts = f" (after {t.rollback.attempts} attempts)" if t.rollback.attempts > 1 else ""
    doc.p(f"Rollback: **{t.rollback.words}**{attempts}")
    if t.rollback_requested:
        r = t.rollback_requested
        doc.li(f"Requested {iso(r.ts)} by {r.actor} ({r.action}): {r.reason or '-'}")
    if t.rollback_applied:
        a = t.rollback_applied
        state_word = "applied" if a.ok else f"FAILED ({a.error})"
        doc.li(f"{state_word.capitalize() if a.ok else state_word} {iso(a.ts)} via {a.driver}")
        for label, routing in (("before", a.before), ("after", a.after)):
            if routing:
                doc.li(f"{label}: {routing_text(routing)}", 1)
    if t.rollback_verified:
        v = t.rollback_verified
        action = next((x for x in playbook.actions if x.name == v.action), None)
        budget = action.rto_budget_s if isinstance(action, SelectorRemoval) else None
        doc.li(
            f"Verified {iso(v.ts)}: {'ok' if v.ok else 'NOT ok'}, "
            f"{pct(v.stable_share)} of {v.requests} requests on stable"
        )
        if v.error:
            doc.li(f"Not verified: {v.error}", 1)
        doc.li(f"Time to detect: {num(v.time_to_detect_s, ' s')}")
        doc.li(f"RTO: {num(v.rto_s, ' s')}" + (f" (budget {budget:g} s)" if budget is not None else ""))
        if v.time_to_mitigate_s is not None:
            mitigate = num(v.time_to_mitigate_s, " s")
            doc.li(f"Time to mitigate (first bad window → verified, at most): {mitigate}")
    doc.blank()


def _queried(doc: _Doc, playbook: Playbook, state: SessionState) -> None:
    """The guardrails read from Prometheus: each query as evaluated, its window, last value and time."""
    rails = [r for r in playbook.guardrails if r.metric == "query"]
    if not rails:
        return
    evaluator = GuardrailEvaluator.from_state(playbook, state)
    rows = []
    for rail in rails:
        sample = state.metrics.get(rail.name)
        if sample is None:
            rows.append(
                [
                    rail.name,
                    rail.server or "-",
                    _code(rail.query),
                    f"{rail.window_s:g} s",
                    "never evaluated",
                    "-",
                ]
            )
            continue
        reading = evaluator.reading(rail, sample.ts)  # as judged then, not at export time
        value = f"unknown: {reading.unknown}" if reading.unknown else value_text(rail, reading.value)
        if reading.sides is not None:
            value += f" ({sides_text(rail, reading.sides)})"
        rows.append(
            [rail.name, sample.server, _code(sample.query), f"{sample.window_s:g} s", value, iso(sample.ts)]
        )
    doc.p("Guardrails read from Prometheus, as last evaluated:")
    doc.table(["Guardrail", "Server", "Query", "Window", "Last value", "Evaluated (UTC)"], rows)


def _readiness(doc: _Doc, state: SessionState) -> None:
    doc.h(2, "Readiness")
    if state.readiness is None:
        doc.p("No readiness check was journaled.")
        return
    view = ReadinessView(state.readiness)
    doc.p(f"Checked at {iso(state.readiness.ts)}: {view.headline}.")
    for item in view.not_ready:
        doc.li(f"{item.label} — {view.why(item.item, item.name)}")
    doc.blank()


def _data_collection(doc: _Doc, evidence: Evidence) -> None:
    doc.h(2, "Data-collection failures")
    if not evidence.blind:
        doc.p(
            "None journaled: every probe, fact, gate, health check and guardrail that reported could observe."
        )
        return
    doc.p("What could not be observed (unknown: neither ok nor failed), why, and when.")
    if evidence.blind_dropped:
        doc.p(f"{evidence.blind_dropped} older episodes are only in the journal.")
    rows = [
        [
            b.subject,
            b.reason,
            iso(b.since),
            iso(b.last),
            str(b.times),
            iso(b.until) if b.until else "still unknown",
        ]
        for b in evidence.blind
    ]
    doc.table(["What", "Why", "Unknown since (UTC)", "Last (UTC)", "Times", "Until (UTC)"], rows)


def _recovered_value(e: ev.GuardrailRecovered, playbook: Playbook) -> str:
    rail = next((g for g in playbook.guardrails if g.name == e.guardrail), None)
    if e.metric is not None or rail is None:  # as journaled: the event log's words
        return recovered_text(e)
    return f"{rail.metric} {value_text(rail, e.value)}"


def _checklist(doc: _Doc, title: str, statuses: list[ItemStatus], empty: str) -> None:
    doc.h(2, title)
    if not statuses:
        doc.p(empty)
        return
    for s in statuses:
        flag = " — **was ticked automatically, no longer holds**" if s.held_before_but_not_now else ""
        doc.li(f"[{'x' if s.checked else ' '}] **{s.text}** ({s.name}, {how(s)}: {s.rule}){flag}")
        for line in s.evidence:
            doc.li(line, 1)
    doc.blank()


def _follow_up(doc: _Doc, playbook: Playbook, evidence: Evidence) -> None:
    doc.h(2, "Incident follow-up")
    doc.p("Skeleton for the incident review; the timeline is pre-filled from the journal.")
    for section in playbook.follow_up:
        doc.h(3, section)
        if "timeline" in section.lower():
            for entry in evidence.timeline:
                doc.li(f"{iso(entry.ts)} — {entry.text}")
            if evidence.timeline_omitted:
                doc.li(f"… {evidence.timeline_omitted} entries omitted (see journal.jsonl)")
            doc.blank()
        else:
            doc.p("_To be written._")
