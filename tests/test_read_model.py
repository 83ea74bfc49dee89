"""Screen, headless log and report are formatted from one read model: they agree number for number.

A recorded session (tests/data/journals/rehearsal-full.jsonl: a failed gate, a P0 breach, a verified
rollback) is rendered three ways — the cockpit's panes, the headless text log and verdict, the Markdown
report — and each shows the same checklist counts, guardrail values with their window, step statuses,
traffic totals, verdict reasons and timeline lines.
"""

from __future__ import annotations

import re
from pathlib import Path

from textual.widgets import OptionList, Static

from rollback_tui.cli.headless import progress_line, verdict_lines
from rollback_tui.core import events as ev
from rollback_tui.core.journal import read_journal
from rollback_tui.core.read.steps import status_word
from rollback_tui.core.read.summary import SessionSummary, summarize
from rollback_tui.core.read.traffic import TrafficTotals
from rollback_tui.core.read.words import pct
from rollback_tui.core.state import fold
from rollback_tui.playbook.model import Playbook
from rollback_tui.report.evidence import Evidence
from rollback_tui.report.markdown import render_markdown
from rollback_tui.ui.app import CockpitApp
from test_ui import flat, pane_text, plain
from test_ui_support import JOURNALS, demo_playbook, replay_engine

JOURNAL = "rehearsal-full.jsonl"
ORDER = ["stable-a", "stable-b", "blue-next"]


async def screen_text(tmp_path: Path) -> dict[str, str]:
    """What the cockpit shows for the recorded session, pane by pane (each zoomed, so nothing is cut)."""
    engine = replay_engine(JOURNAL, tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    shown: dict[str, str] = {}
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        shown["verdict"] = plain(app.query_one("#verdict", Static))
        for pane in ("traffic", "steps"):
            app.screen.maximize(app.query_one(f"#{pane}"), container=False)
            await pilot.pause()
            shown[pane] = pane_text(app, pane)
            app.screen.minimize()
            await pilot.pause()
        options = app.query_one("#checklist-items", OptionList)
        items = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        shown["checklist"] = "\n".join([plain(app.query_one("#checklist-note", Static)), *items])
    return shown


def headless_text(summary: SessionSummary, events: list) -> str:
    """The headless text log of the same events, then its verdict."""
    session_traffic = TrafficTotals("whole session")
    lines = []
    for event in events:
        if event.kind == "traffic_window":
            session_traffic.add(event)
        line = progress_line(event)
        if line is not None:
            lines.append(line)
    return "\n".join(lines + verdict_lines(summary, session_traffic, Path("session.jsonl"), ORDER))


async def test_screen_headless_log_and_report_agree_number_for_number(tmp_path: Path) -> None:
    playbook = demo_playbook()
    events = read_journal(JOURNALS / JOURNAL).events
    state = fold(events)
    summary = summarize(playbook, state)
    screen = {name: flat(text) for name, text in (await screen_text(tmp_path)).items()}
    log = flat(headless_text(summary, events))
    report = flat(render_markdown(playbook, state, events))

    # Checklist counts: evidence items and exit criteria, counted once (the screen said "5/7 done" where the
    # report said "4/5 checked").
    counts = summary.counts.text
    assert counts == "evidence 4/5 · exit criteria 1/2"
    assert counts in screen["checklist"] and counts in log and counts in report
    marks = re.findall(r"[☑☐]", screen["checklist"])
    checked = [s.checked for s in summary.checklist.items + summary.checklist.exit_criteria]
    assert marks == ["☑" if c else "☐" for c in checked]

    # Guardrails: the same value over the same window, labelled with it.
    lines = {r.rail.name: f"{r.glyph} {r.label} {r.text}" for r in summary.guardrails}
    assert lines == {
        "candidate-5xx": "✗ BREACH P0 candidate-5xx 50.0% > 2.0% over 10 s",
        "ws-drops": "✓ ok ws-drops 0 ≤ 5 over 10 s",
    }
    for line in lines.values():
        assert line in screen["traffic"] and line in log and line in report, line

    # Traffic totals over that same window, and the split per replica.
    totals = summary.traffic
    assert totals.text().startswith("last 10 s: 180 req · 5xx 6 (3.3%)")
    assert totals.text() in screen["traffic"] and totals.text() in log and totals.text() in report
    split = totals.split_text(ORDER)
    assert split in log and split in report
    for name in ORDER:
        errors = totals.errors.get(name, 0)
        share = re.escape(pct(totals.share(name)))
        assert re.search(rf"{name}(?: out)? [█░]* ?{share} (✗ )?{errors} 5xx", screen["traffic"]), name

    # Step statuses: a step whose gate failed is not "✓" on screen while the report says it failed.
    statuses = {row.name: row.status for row in summary.steps}
    assert statuses == {
        "baseline": "failed",
        "fanout-before": "passed",
        "canary": "passed",
        "trigger": "passed",
        "verify": "passed",
        "cleanup": "not_run",
    }
    marks = {"failed": "✗", "passed": "✓", "not_run": ""}
    for row in summary.steps:
        title = f"{row.index + 1}. {row.title}"
        mark = "▶" if row.current else marks[row.status]
        assert f"{mark} {title}".strip() in screen["steps"], (row, screen["steps"])
        assert f"**{title}** ({row.name}): {status_word(row.status)}" in report
        assert f"step {row.text}" in log
    current = next(row for row in summary.steps if row.current)
    for item in current.items:  # the "Now" list: the same item statuses
        assert f"{status_word(item.status)} {item.label}" in screen["steps"]
        assert item.text in report and item.text in log

    # Verdict: the headline's reasons are the headless "why" and the report's, with their details.
    assert summary.verdict.reasons == ["P0 candidate-5xx", "gate api-tests failed"]
    assert "P0 candidate-5xx · gate api-tests failed" in screen["verdict"]
    for problem in summary.verdict.problems:
        assert f"why: {problem}" in log and f"Why: {problem}" in report
    assert "gate api-tests failed — exit 101" in summary.verdict.problems

    # Timeline: the headless log and the report say each event in the same words, the same number of times.
    timeline = [entry.text for entry in Evidence.from_events(events).timeline]
    clocked = [line for line in headless_text(summary, events).splitlines() if line[:2].isdigit()]
    logged = [line.split(" ", 2)[2] for line in clocked]  # after "12:00:00Z ✓ "
    assert len(timeline) > 10 and timeline == logged
    assert all(f"| {text} |" in report for text in timeline)


def test_a_step_item_is_never_claimed_passed_or_not_run_without_a_record() -> None:
    """Each item's status is what the journal holds: a fact still pending is manual, not passed; a probe's
    result shows; a guardrail item is its reading now; an item with no journaled outcome is "no record",
    not "not run"."""
    data = demo_playbook().model_dump(by_alias=True, exclude_unset=True)
    data["facts"] = [{"name": "surreal-tag", "title": "Surreal image tag", "source": "manual"}]
    data["probes"] = [{"name": "dead-letters", "url": "http://127.0.0.1:9/dl", "json_path": "count"}]
    data["steps"] = [
        {"name": "baseline", "title": "Baseline", "do": [{"fact": "surreal-tag"}, {"probe": "dead-letters"}]},
        {
            "name": "canary",
            "title": "Canary",
            "do": [{"check": "traffic"}, {"check": "guardrail_watch"}, {"guardrail": "candidate-5xx"}],
        },
    ]
    playbook = Playbook.model_validate(data)
    state = fold(
        [
            ev.FactCaptured(fact="surreal-tag", values={"-": None}, source="manual:pending"),
            ev.ProbeResult(probe="dead-letters", ok=False, error="HTTP 503"),
            ev.TrafficWindow(window_s=1, requests=20, per_replica={"stable-a": 20}),
        ]
    )
    rows = {row.name: row for row in summarize(playbook, state).steps}
    assert [i.status for i in rows["baseline"].items] == ["manual", "failed"]
    assert rows["baseline"].status == "failed"
    # The guardrail is judged as the traffic pane judges it now: 20 requests, none to the candidate.
    assert [i.status for i in rows["canary"].items] == ["ok", "no_record", "ok"]
    assert rows["canary"].status == "passed"


def test_a_fact_item_with_an_expectation_is_failed_by_another_value_in_a_journal_before_the_runner() -> None:
    """A journal without the runner's own item outcomes judges a fact item by its capture: a value other
    than the playbook's `expect` is failed there too, not passed."""
    data = demo_playbook().model_dump(by_alias=True, exclude_unset=True)
    data["facts"] = [{"name": "tag", "title": "Surreal image tag", "source": "manual", "expect": "3.0.0"}]
    data["steps"] = [{"name": "baseline", "title": "Baseline", "do": [{"fact": "tag"}]}]
    playbook = Playbook.model_validate(data)
    for value, status in (("n/a (lab)", "failed"), ("3.0.0", "passed")):
        state = fold([ev.FactCaptured(fact="tag", values={"-": value}, source="manual:alice")])
        assert [i.status for i in summarize(playbook, state).steps[0].items] == [status]


def test_the_report_words_a_step_status_as_the_steps_pane_does() -> None:
    from rollback_tui.ui.panes.base import STATUS

    statuses = ["passed", "ok", "failed", "timed_out", "error", "cancelled", "interrupted", "unobserved"]
    statuses += ["running", "queued", "not_run", "manual", "no_record", "partial", "skipped", "needs_input"]
    assert {s: status_word(s) for s in statuses} == {s: STATUS[s][1] for s in statuses}
