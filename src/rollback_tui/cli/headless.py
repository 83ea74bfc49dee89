"""Headless `rehearse`: the playbook's runbook without a UI, for CI and scripted drills; its progress log
and verdict are formatted from the same read model as the cockpit and the report."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rollback_tui import settings
from rollback_tui.cli.common import (
    Output,
    load_or_exit,
    open_journal,
    session_redactor,
    with_incident_options,
)
from rollback_tui.cli.watch import mirror_option
from rollback_tui.playbook.model import Playbook

if TYPE_CHECKING:
    from rollback_tui.core import events as ev
    from rollback_tui.core.read.summary import SessionSummary
    from rollback_tui.core.read.traffic import TrafficTotals


def _parse_injections(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`blue-next:error_rate=0.5` → {"blue-next": {"error_rate": 0.5}} (numbers parsed, else strings)."""
    out: dict[str, dict[str, Any]] = {}
    for raw in values:
        replica, sep, assignment = raw.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and replica and key):
            raise click.BadParameter(f"{raw!r}: expected REPLICA:KEY=VALUE, e.g. blue-next:error_rate=0.5")
        try:  # numbers, true/false and null as JSON reads them; anything else is a string
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        if not isinstance(parsed, bool | int | float | None):
            parsed = value
        out.setdefault(replica, {})[key] = parsed
    return out


@click.command()
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--headless", is_flag=True, required=True, help="Run without the UI (required for now).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", help="Progress output."
)
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="Export the evidence here.")
@click.option("--journal", type=click.Path(dir_okay=False), help="Journal file (default: per-user data dir).")
@click.option("--operator", help="Name recorded with operator actions (default: $USER).")
@click.option(
    "--lab/--no-lab",
    "use_lab",
    default=None,
    help="Start the embedded lab (default: if the playbook has lab sections).",
)
@click.option("--inject", multiple=True, help="Lab fault before the run: REPLICA:KEY=VALUE (repeatable).")
@click.option(
    "--tick",
    multiple=True,
    help="Tick a manual checklist item / exit criterion (NAME[=note]) or confirm a manual runbook task "
    "(STEP:N[=note], N counted from 1).",
)
@click.option("--fact", "facts", multiple=True, help="The value of a manual fact: NAME=VALUE (repeatable).")
@click.option("--only", multiple=True, help="Run only this step (repeatable; in playbook order).")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), help="Write a JUnit XML result here.")
@click.option(
    "--dry-run", is_flag=True, help="Print the resolved plan (steps, items, commands); run nothing."
)
@click.option("--watch", "watch_s", type=float, default=20.0, show_default=True, help="Guardrail watch (s).")
@click.option(
    "--rollback", type=click.Choice(["on_breach", "always", "never"]), default="on_breach", show_default=True
)
@click.option(
    "--allow-destructive", is_flag=True, help="Run the actions that change the system (redeploy, flags, …)."
)
@mirror_option
@with_incident_options
def rehearse(
    playbook_path: str,
    headless: bool,
    fmt: str,
    export_dir: str | None,
    journal: str | None,
    operator: str | None,
    use_lab: bool | None,
    inject: tuple[str, ...],
    tick: tuple[str, ...],
    facts: tuple[str, ...],
    only: tuple[str, ...],
    junit: str | None,
    dry_run: bool,
    watch_s: float,
    rollback: str,
    allow_destructive: bool,
    mirror: str | None,
    **incident: str | None,
) -> None:
    """Run the playbook's steps in order, headless; exit 0 only when the exit criteria hold."""
    from rollback_tui.session.rehearsal import RehearsalOptions

    playbook = load_or_exit(playbook_path)
    out = Output(session_redactor(playbook))  # the journal's redactor too: stdout masks what it masks
    out.capture_logs()
    injections = _parse_injections(inject)
    _refuse_bad_ticks_and_faults(playbook, tick, injections, out)
    checklist_ticks, task_ticks = _split_ticks(tick)
    options = RehearsalOptions(
        watch_s=watch_s,
        rollback=rollback,
        allow_destructive=allow_destructive,
        only=_known_steps(playbook, only, out),
        facts=_manual_facts(playbook, facts, out),
        ticks=task_ticks,
    )
    if dry_run:
        for line in plan_lines(playbook, options):
            out.line(line)
        sys.exit(0)
    if use_lab is None:
        use_lab = any(r.lab is not None for r in playbook.replicas)
    if injections and not use_lab:
        raise click.BadParameter("--inject needs the embedded lab (--lab)")
    if export_dir:
        _refuse_export_over_journal(playbook, journal, export_dir, out)
    from rollback_tui.lab.supervisor import LabError
    from rollback_tui.session.runtime import JournalUnavailable

    try:
        code = asyncio.run(
            _rehearse(
                playbook,
                playbook_path,
                options,
                fmt=fmt,
                export_dir=export_dir,
                journal=journal,
                operator=operator,
                use_lab=use_lab,
                injections=injections,
                ticks=checklist_ticks,
                junit=junit,
                out=out,
                mirror=mirror,
                incident=incident,
            )
        )
    except LabError as exc:
        out.line(f"error: the lab did not start: {exc}", err=True)
        sys.exit(2)
    except JournalUnavailable as exc:
        out.line(str(exc), err=True)
        sys.exit(2)
    sys.exit(code)


def _refuse_bad_ticks_and_faults(
    playbook: Playbook, ticks: tuple[str, ...], injections: dict[str, dict[str, Any]], out: Output
) -> None:
    """Before the lab starts: a typo in --tick or --inject is an error, never journaled as evidence."""
    from rollback_tui.session.engine import tick_refusal

    problems = []
    for raw in ticks:
        name, _, note = raw.partition("=")
        refusal = _task_refusal(playbook, name) if ":" in name else tick_refusal(playbook, name, note)
        if refusal:
            problems.append(f"--tick: {refusal}")
    replicas = {r.name for r in playbook.replicas}
    problems += [f"--inject: no replica named {name!r}" for name in injections if name not in replicas]
    _refuse(out, problems)


def _task_refusal(playbook: Playbook, key: str) -> str | None:
    """`STEP:N` must name a manual task of the runbook (N counted from 1)."""
    step_name, _, number = key.partition(":")
    step = next((s for s in playbook.steps if s.name == step_name), None)
    if step is None:
        return f"No runbook step named {step_name!r} (known: {', '.join(s.name for s in playbook.steps)})."
    manual = [str(i + 1) for i, item in enumerate(step.do) if item.manual]
    if number not in manual:
        tasks = ", ".join(manual) or "none"
        return f"{key}: step {step_name} has no manual task {number!r} (its manual tasks: {tasks})."
    return None


def _split_ticks(ticks: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, str]]:
    """Checklist ticks (NAME[=note]) and manual runbook tasks (STEP:N[=note] → note)."""
    tasks = {raw.partition("=")[0]: raw.partition("=")[2] for raw in ticks if ":" in raw.partition("=")[0]}
    return tuple(raw for raw in ticks if ":" not in raw.partition("=")[0]), tasks


def _refuse(out: Output, problems: list[str]) -> None:
    if problems:
        for problem in problems:
            out.line(f"error: {problem}", err=True)
        sys.exit(2)


def _manual_facts(playbook: Playbook, raw: tuple[str, ...], out: Output) -> dict[str, str]:
    """`--fact NAME=VALUE`: only a manual fact takes a value by hand (the others are observed)."""
    values, problems = {}, []
    facts = {f.name: f for f in playbook.facts}
    manual = ", ".join(n for n, f in facts.items() if f.source == "manual") or "none"
    for entry in raw:
        name, eq, value = entry.partition("=")
        if not eq or not value.strip():
            problems.append(f"--fact {entry!r}: expected NAME=VALUE")
        elif name not in facts:
            problems.append(f"--fact: no fact named {name!r} (manual facts: {manual})")
        elif facts[name].source != "manual":
            problems.append(f"--fact: {name} is observed ({facts[name].source}), not given by hand")
        else:
            values[name] = value.strip()
    _refuse(out, problems)
    return values


def _known_steps(playbook: Playbook, only: tuple[str, ...], out: Output) -> tuple[str, ...]:
    names = [s.name for s in playbook.steps]
    _refuse(
        out,
        [f"--only: no runbook step named {n!r} (known: {', '.join(names)})" for n in only if n not in names],
    )
    return only


def plan_lines(playbook: Playbook, options: Any) -> list[str]:
    """`--dry-run`: every step to run, its notes, each item with its resolved commands and whether it
    would run, from the same previews the cockpit shows. Nothing runs, nothing is journaled."""
    from rollback_tui.core.read.steps import step_title
    from rollback_tui.session.preview import step_preview

    lines = [f"Plan for {playbook.name} (environment {playbook.environment}) — --dry-run: nothing runs"]
    for number, step in enumerate(playbook.steps, start=1):
        if options.only and step.name not in options.only:
            continue
        preview = step_preview(playbook, step)
        lines.append(f"{number}. {step.name}: {step_title(step.title)}")
        lines += [f"   {line}" for line in ([preview.description] if preview.description else [])]
        for item in preview.items:
            would = _would(playbook, step.name, item, options)
            lines.append(f"   {item.index + 1}. {item.label}" + (f" — {item.note}" if item.note else ""))
            lines.append(f"      {would}")
            lines += [f"      {c.label + ': ' if c.label else ''}$ {c.text}" for c in item.commands]
    return lines


def _would(playbook: Playbook, step: str, item: Any, options: Any) -> str:
    """Whether the rehearsal would run this item, in words."""
    from rollback_tui.playbook.model import SelectorRemoval

    condition = f" ({item.condition.strip()})" if item.condition.strip() else ""
    if item.when == "optional":
        return "skipped: optional, the operator decides" + (
            f": {item.condition.strip()}" if condition else ""
        )
    when = {
        "on_breach": "runs only after a guardrail breach",
        "on_failure": "runs only if an item above fails",
    }
    prefix = when[item.when] + condition + "; " if item.when in when else ""
    if item.kind == "action" and isinstance(playbook.action(item.ref), SelectorRemoval):
        return prefix + f"the rollback follows --rollback {options.rollback}"
    if item.changes and not options.allow_destructive:
        return prefix + f"skipped: changes {playbook.environment}, runs only with --allow-destructive"
    if item.kind == "fact" and any(f.name == item.ref and f.source == "manual" for f in playbook.facts):
        given = options.facts.get(item.ref)
        return prefix + (f"records {given!r}" if given else f"needs input: --fact {item.ref}=VALUE")
    if item.kind == "manual":
        key = f"{step}:{item.index + 1}"
        return prefix + (
            "confirmed with --tick" if key in options.ticks else f"needs input: --tick {key}[=note]"
        )
    return prefix + ("runs" + (" (changes " + playbook.environment + ")" if item.changes else ""))


def _refuse_export_over_journal(
    playbook: Playbook, journal: str | None, export_dir: str, out: Output
) -> None:
    """Before the rehearsal runs (minutes): an export into the journal's own directory is refused."""
    from rollback_tui.report.export import ExportError, check_export_target
    from rollback_tui.session.engine import default_journal_path

    path = Path(journal) if journal else default_journal_path(playbook, settings.journal_dir())
    try:
        check_export_target(path, Path(export_dir))
    except ExportError as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)


async def _rehearse(
    playbook: Playbook,
    playbook_path: str,
    options: Any,
    *,
    fmt: str,
    export_dir: str | None,
    journal: str | None,
    operator: str | None,
    use_lab: bool,
    injections: dict[str, dict[str, Any]],
    ticks: tuple[str, ...],
    junit: str | None,
    out: Output,
    mirror: str | None = None,
    incident: dict[str, str | None],
) -> int:
    from rollback_tui.cli.checks import print_readiness
    from rollback_tui.core import events as ev
    from rollback_tui.core.read.incident import IncidentFold
    from rollback_tui.core.read.summary import summarize
    from rollback_tui.core.read.traffic import TrafficTotals
    from rollback_tui.session.engine import NotAvailable
    from rollback_tui.session.rehearsal import Rehearsal
    from rollback_tui.session.runtime import SessionRuntime

    lab = None
    if use_lab:
        from rollback_tui.lab.supervisor import Lab

        lab = Lab(playbook)
    runtime = SessionRuntime(
        playbook,
        playbook_path,
        journal=lambda pb: open_journal(pb, journal, out.redact),
        operator=operator,
        lab=lab,
        export_on_exit=True,  # to --export, else to the per-user exports directory (said at the end)
        export_dir=Path(export_dir) if export_dir else None,
        end_reason="rehearsal finished",
        mirror=mirror,
        incident=incident,
    )
    session_traffic = TrafficTotals("whole session")
    incident_fold = IncidentFold()  # what broke and the traffic while it lasted, in journal order
    async with runtime as engine:
        printer = _progress_printer(fmt, out)
        for notice in list(engine.state.notices):  # journaled as the session opened (the lab's, before us)
            printer(notice)
        engine.subscribe(printer)
        engine.subscribe(lambda e: session_traffic.add(e) if isinstance(e, ev.TrafficWindow) else None)
        engine.subscribe(incident_fold.observe)
        await engine.start()
        print_readiness(await engine.readiness(), fmt, out)  # what cannot run from here, before it runs
        for replica, faults in injections.items():
            assert lab is not None  # --inject needs the lab (checked before it starts)
            try:
                await engine.inject_fault(replica, faults, partial(lab.set_faults, replica, **faults))
            except NotAvailable as exc:  # journaled as an error notice; nothing to rehearse without it
                out.line(f"error: --inject {replica}: {exc}", err=True)
                return 2
        for raw in ticks:
            name, _, note = raw.partition("=")
            engine.tick(name, True, note)
        rehearsal = Rehearsal(engine, options)
        await rehearsal.run()
    summary = summarize(engine.playbook, engine.state, incident=incident_fold)  # after the end and export
    withheld = [f"{r.step} {r.index + 1}. {r.item}" for r in rehearsal.withheld]
    exported = str(runtime.exported[0].parent) if runtime.exported else None
    if fmt == "jsonl":
        doc = verdict_doc(summary, session_traffic, engine.journal.path)
        out.json(json.dumps({**doc, "not_run_changes": withheld, "export": exported}))
    else:
        order = [r.name for r in engine.playbook.replicas]
        for line in verdict_lines(summary, session_traffic, engine.journal.path, order):
            out.line(line)
        out.line(f"  evidence exported to {exported}" if exported else "  evidence NOT exported")
        for item in withheld:
            out.line(
                f"  - not run (changes {engine.playbook.environment}; needs --allow-destructive): {item}"
            )
    if junit:
        _write_junit(Path(junit), engine, summary, options.only, out)
    if runtime.export_error:
        out.line(f"error: export failed: {runtime.export_error}", err=True)
        return 2
    return 0 if summary.checklist.verdict.complete else 1


def _write_junit(
    path: Path, engine: Any, summary: SessionSummary, only: tuple[str, ...], out: Output
) -> None:
    """The JUnit result of the steps that were asked to run (private, like every export)."""
    import os

    from rollback_tui.report.junit import junit_xml

    rows = [row for row in summary.steps if not only or row.name in only]
    text = out.redact(junit_xml(engine.playbook.name, rows, engine.state))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def verdict_lines(
    summary: SessionSummary, session_traffic: TrafficTotals, journal: Path, order: list[str]
) -> list[str]:
    """The headless verdict in words: the read model the report is written from, line for line."""
    exit_verdict = summary.checklist.verdict
    head = "✓ exit criteria hold" if exit_verdict.complete else "✗ exit criteria not met"
    lines = [f"{head} — journal {journal}"]
    if summary.incident is not None:  # the paragraph the report opens with, a sentence a line
        lines += ["  summary:", *(f"    {sentence}" for sentence in summary.incident.sentences)]
    lines += [
        f"  checklist: {summary.counts.text} checked",
        f"  session: {summary.verdict.headline}",
    ]
    for totals in (session_traffic, summary.traffic):
        lines.append(f"  traffic {totals.text()}")
        if totals.requests:
            lines.append(f"    {totals.split_text(order)}")
    lines += [f"  guardrail {r.line}" for r in summary.guardrails]
    lines += [f"  step {row.text}" for row in summary.steps]
    lines += [f"  - missing: {missing}" for missing in exit_verdict.missing]
    lines += [f"  - why: {why}" for why in summary.verdict.problems]
    return lines


def verdict_doc(summary: SessionSummary, session_traffic: TrafficTotals, journal: Path) -> dict[str, Any]:
    """The headless verdict as one JSON document (`--format jsonl`, the last line)."""
    from rollback_tui.report.evidence import iso

    return {
        "kind": "rehearsal_verdict",
        "complete": summary.checklist.verdict.complete,
        "missing": summary.checklist.verdict.missing,
        "why": summary.verdict.problems,
        "session": summary.verdict.word,
        "checklist": summary.counts.as_dict(),
        "guardrails": [r.as_dict() for r in summary.guardrails],
        "steps": [row.as_dict() for row in summary.steps],
        "traffic": [session_traffic.as_dict(), summary.traffic.as_dict()],
        "incident": summary.incident.as_dict(iso) if summary.incident else None,
        "journal": str(journal),
    }


def _progress_printer(fmt: str, out: Output) -> Callable[[ev.Event], None]:
    def jsonl(event: ev.Event) -> None:
        out.json(event.model_dump_json())

    def text(event: ev.Event) -> None:
        line = progress_line(event)
        if line is not None:
            out.line(line)

    return jsonl if fmt == "jsonl" else text


def progress_line(event: ev.Event) -> str | None:
    """One line of the headless text log: the clock, a glyph and the report timeline's own words."""
    from rollback_tui.core.events import TIMELINE
    from rollback_tui.core.read.timeline import describe, glyph

    if event.kind not in TIMELINE:
        return None
    text = describe(event)
    if text is None:
        return None
    return f"{time.strftime('%H:%M:%S', time.gmtime(event.ts))}Z {glyph(event)} {text}"
