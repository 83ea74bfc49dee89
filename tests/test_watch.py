"""`rollback-tui watch`: the cockpit's panes, read-only, following a live session.

The live tests run a real headless rehearsal (`rehearse --headless` on the embedded lab, a subprocess)
and follow it with the real WatchApp — from its journal file and from its Redis mirror, joining at the
start or late — until the session has ended; the viewer's fold must then equal the journal's, event for
event, and the final verdict stays on screen.
"""

from __future__ import annotations

import asyncio
import html
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Static

from conftest import require_redis_server
from rollback_tui.core.checklist import verdict as exit_verdict
from rollback_tui.core.follow import FileFollower, LineFold
from rollback_tui.core.journal import read_journal
from rollback_tui.core.resume import fold_journal
from rollback_tui.core.state import fold
from rollback_tui.core.verdict import verdict
from rollback_tui.playbook.load import load_playbook
from rollback_tui.session.mirror import MirrorTarget, StreamFollower
from rollback_tui.ui.commands import COMMANDS
from rollback_tui.ui.screens.help import READ_ONLY
from rollback_tui.ui.watch import WatchApp
from test_ui import plain
from test_ui_support import JOURNALS, demo_playbook
from watch_support import (
    REPO,
    finish,
    journal_holds,
    start_rehearsal,
    start_writer,
    state_digest,
    wait_for,
)

DEMO = REPO / "playbooks" / "demo.yaml"


def screen_text(app: WatchApp) -> str:
    svg = app.export_screenshot()
    rows = re.findall(r"<text[^>]*>(.*?)</text>", svg)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", row) for row in rows)).replace("\xa0", " ")


async def follow_to_the_end(
    app: WatchApp, proc: subprocess.Popen[str], journal: Path, timeout: float = 180
) -> tuple[str, float]:
    """Run the viewer until the rehearsal has exited and the viewer holds its journal's last event; then
    check the view stays open. Returns the screen's text and the view's staleness bound."""
    async with app.run_test(size=(160, 45)) as pilot:
        deadline = time.monotonic() + timeout
        while proc.poll() is None or app.state.last_n < fold_journal(journal)[0].last_n:
            assert time.monotonic() < deadline, f"the viewer holds n={app.state.last_n}"
            await pilot.pause(0.2)
        await pilot.pause(1.5)  # the session is over: the view stays, the clock stopped at its end
        assert app.is_running
        await pilot.pause()
        text = screen_text(app)
        stale_after = app.view().stale_after_s
    code, _, err = finish(proc)
    assert code in (0, 1), err[-3000:]
    return text, stale_after


async def shows(app: WatchApp, pilot, words: str, timeout: float = 10) -> str:
    """Wait until the screen shows `words`; the screen's text, spaces collapsed (styled runs come apart)."""
    deadline = time.monotonic() + timeout
    while words not in (text := " ".join(screen_text(app).split())):
        assert time.monotonic() < deadline, f"{words!r} not on screen after {timeout:g} s: {text[-600:]}"
        await pilot.pause(0.1)
    return text


def check_final_view(app: WatchApp, shown: tuple[str, float], journal: Path) -> None:
    text, stale_after = shown
    source = fold(read_journal(journal).events)  # the source's fold: every event, in journal order
    assert state_digest(app.state) == state_digest(source)
    assert source.ended is not None
    word = verdict(source, source.ended.ts, stale_after).word
    assert word in text  # the final verdict, not one gone stale since
    assert "SESSION ENDED" in text
    holds = exit_verdict(app.playbook, source).complete
    assert ("exit criteria hold" if holds else "exit criteria not met") in text


@pytest.mark.integration
@pytest.mark.parametrize("joins", ["at-the-start", "late"])
async def test_watch_follows_a_live_rehearsal_from_its_journal_file(joins: str, tmp_path: Path) -> None:
    require_redis_server()
    journal = tmp_path / "rehearsal.jsonl"
    proc = start_rehearsal(journal, tmp_path)
    if joins == "late":  # the rollback is under way: a viewer joins the call now
        wait_for(lambda: journal_holds(journal, b'"kind":"rollback_requested"'), 120, "the rollback")
    seen: list = []
    follower = FileFollower(journal, LineFold(on_event=seen.append))
    app = WatchApp(follower, load_playbook(DEMO), source=str(journal), journal_name=journal.name)
    shown = await follow_to_the_end(app, proc, journal)
    assert seen == read_journal(journal).events  # event for event, each once, in journal order
    check_final_view(app, shown, journal)


@pytest.mark.integration
@pytest.mark.parametrize("joins", ["at-the-start", "late"])
async def test_watch_follows_a_live_rehearsal_through_its_redis_mirror(
    joins: str, redis_server: str, tmp_path: Path
) -> None:
    journal = tmp_path / f"mirrored-{joins}.jsonl"
    proc = start_rehearsal(journal, tmp_path, "--mirror", redis_server)
    target = MirrorTarget.parse(f"{redis_server}/{journal.stem}", session_required=True)
    if joins == "late":
        wait_for(lambda: journal_holds(journal, b'"kind":"rollback_requested"'), 120, "the rollback")
    seen: list = []
    follower = StreamFollower(target, LineFold(on_event=seen.append), block_ms=200)
    playbook = None
    deadline = time.monotonic() + 60
    while playbook is None:  # what `watch redis://…` reads first: the playbook the mirror published
        playbook = await follower.playbook()
        assert time.monotonic() < deadline, "the mirror never published the session"
        await asyncio.sleep(0.1)
    app = WatchApp(follower, playbook, source=target.watch_url, journal_name=journal.name)
    shown = await follow_to_the_end(app, proc, journal)
    assert seen == read_journal(journal).events
    check_final_view(app, shown, journal)
    assert f"viewers: rollback-tui watch {target.watch_url}" in journal.read_text()  # the session said where


async def test_the_viewer_has_no_action_keys_and_nothing_it_presses_reaches_the_session(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "finished.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-full.jsonl").read_bytes())
    before = journal.read_bytes()
    app = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    scopes = ("screen", "steps")  # the cockpit screen's keys and the Runbook pane's
    operator_keys = [k.key for c in COMMANDS if c.scope in scopes and not c.watch for k in c.keys]
    assert set(operator_keys) >= {"g", "f", "s", "r", "c", "t", "space", "e", "a", "enter", "R"}
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.5)
        app.cockpit.panes["steps"].focus()  # the Runbook pane's own keys run steps in the cockpit only
        await pilot.pause()
        assert not set(app.active_bindings) & set(operator_keys)
        for key in operator_keys:
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.cockpit, f"{key} opened {app.screen!r}"
        await pilot.press("question_mark")
        await pilot.pause()
        help_text = screen_text(app)
        assert READ_ONLY.split(":")[0] in help_text and "Run the playbook's release gates" not in help_text
        await pilot.press("escape", "p")
        await pilot.pause()
        assert app.cockpit.presenting and "ROLLBACK" in screen_text(app)
    assert journal.read_bytes() == before  # nothing a viewer does reaches the session


def test_watch_refuses_what_it_cannot_show(tmp_path: Path, redis_server: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rollback_tui", "watch", *args],
            capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    missing = run(str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such journal" in missing.stderr
    nobody = run(f"{redis_server}/no-such-session")
    assert nobody.returncode == 2 and "no mirrored session 'no-such-session'" in nobody.stderr
    inline = run("redis://:hunter22@127.0.0.1:1/0/s")
    assert inline.returncode == 2 and "inline credential" in inline.stderr and "hunter22" not in inline.stderr


async def test_the_presenter_layout_hides_what_the_playbook_has_nothing_for(tmp_path: Path) -> None:
    """A playbook with replicas, steps and a checklist only: no fanout, traffic or gates pane, and no
    rollback, breach or timing tile — nothing on the call's screen that could only ever say 'nothing'."""
    from rollback_tui.core import events as ev
    from rollback_tui.core.journal import Journal
    from rollback_tui.playbook.model import Playbook
    from rollback_tui.ui.panes.presenter import tiles

    playbook = Playbook.model_validate(
        {
            "name": "bare",
            "title": "Bare rollback",
            "replicas": [{"name": "api", "url": "http://127.0.0.1:9", "role": "stable"}],
            "steps": [{"name": "look", "title": "Look", "do": [{"manual": "look"}]}],
            "checklist": [{"name": "looked", "text": "Looked around", "rule": "manual"}],
        }
    )
    journal = tmp_path / "bare.jsonl"
    writer = Journal(journal)
    started = {"playbook": "bare.yaml", "playbook_name": "bare", "playbook_title": "Bare"}
    writer.append(
        ev.SessionStarted(**started, environment="staging", operator="alice", host="h", version="0")
    )
    writer.append(ev.HealthSample(replica="api", status="ok", latency_ms=3.0))
    writer.close()
    app = WatchApp(
        FileFollower(journal), playbook, source=journal.name, journal_name=journal.name, present=True
    )
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause(0.5)
        shown = {
            name
            for name in ("fanout", "traffic", "gates", "steps", "checklist")
            if app.cockpit.panes[name].display
        }
        assert shown == {"steps", "checklist"}
        head, rows = tiles(app.state, playbook, app.view())
        assert head.value == "HEALTHY" and [[t.label for t in row] for row in rows] == [["CHECKLIST"]]
        text = screen_text(app)
        assert "ROLLBACK" not in text and "ACTIVE BREACH" not in text and "0/1" in text
        await pilot.press("p")  # back to the panes, as the cockpit lays them out for this playbook
        await pilot.pause()
        assert all(app.cockpit.panes[name].display for name in ("traffic", "gates", "health"))
        assert not app.cockpit.panes["fanout"].display  # no realtime section: the Runbook takes its room


async def test_a_journal_no_cockpit_writes_is_not_live_and_its_clock_stands_at_its_last_event(
    tmp_path: Path,
) -> None:
    """A recorded session whose cockpit never ended it (killed long ago): not LIVE, the last event with
    its date, and the session clock and health ages at the last event — not counted against today."""
    journal = tmp_path / "abandoned.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-full.jsonl").read_bytes())
    app = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    async with app.run_test(size=(160, 45)) as pilot:
        text = await shows(app, pilot, "NOT LIVE")
        assert "○ NOT LIVE · no cockpit is writing this journal · 245 events" in text
        assert "last event 2026-01-01 12:00:45" in text  # recorded on another day: the date says so
        assert "● LIVE" not in text
        assert "session 00:45 (to the last event)" in text
        assert "no sample for" not in text
        verdict = plain(app.query_one("#verdict", Static))  # the verdict too, not a rollback under way now
        assert "as of the last event" in verdict, verdict


async def test_a_journal_a_writer_holds_is_live_until_the_writer_is_killed_and_again_once_resumed(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "held.jsonl"
    writer = start_writer(journal, JOURNALS / "rehearsal-full.jsonl")
    resumed = None
    app = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            text = await shows(app, pilot, "● LIVE · 245 events")
            assert "NOT LIVE" not in text and "(to the last event)" not in text
            writer.kill()  # SIGKILL: no session end written, the kernel drops the writer's lock
            writer.wait()
            killed = time.monotonic()
            text = await shows(app, pilot, "○ NOT LIVE · no cockpit is writing this journal", timeout=5)
            assert time.monotonic() - killed < 5
            assert "session 00:45 (to the last event)" in text
            resumed = start_writer(journal, "--resume")  # a cockpit writes the journal again
            text = await shows(app, pilot, "● LIVE")
            assert "NOT LIVE" not in text and "(to the last event)" not in text
            assert app.state.resumes == 1
    finally:
        for proc in (writer, resumed):
            if proc is not None:
                proc.kill()
                proc.communicate()
