"""A session that cannot be lost by a key (issue 14 item 5): q asks when something runs or the verdict is
open, ctrl+c closes dialogs, the event log keeps what toasts only flashed, exports carry no toasts."""

from __future__ import annotations

import sys
from pathlib import Path

from textual.widgets import Static

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine
from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.screens.confirm import ConfirmRollback
from rollback_tui.ui.screens.event_log import EventLogScreen
from rollback_tui.ui.screens.help import HelpScreen
from rollback_tui.ui.screens.quit import QuitDialog
from test_ui import flat, journal_events, plain, wait_for
from test_ui_support import demo_playbook, replay_engine

SIZE = (120, 40)


def with_slow_gate(marker: Path) -> Playbook:
    """The demo playbook whose only gate runs (a real process) until it is killed."""
    doc = demo_playbook().model_dump()
    code = f"import time\nopen({str(marker)!r}, 'w').write('started')\ntime.sleep(60)"
    doc["gates"] = [{"name": "slow", "title": "A slow gate", "argv": [sys.executable, "-c", code]}]
    doc["checklist"] = [{"name": "ok", "text": "The slow gate passed", "rule": "gate_passed", "gate": "slow"}]
    doc["steps"] = [{"name": "gates", "title": "Run the gates", "do": [{"gate": "slow"}]}]
    doc["exit_criteria"] = [{"name": "signed-off", "text": "Signed off", "rule": "manual"}]
    return Playbook.model_validate(doc)


def quit_text(app: CockpitApp) -> str:
    return flat(plain(app.screen.query_one("#quit-what", Static)))


async def test_q_with_a_gate_running_asks_says_the_verdict_and_stays_on_esc(tmp_path: Path) -> None:
    marker = tmp_path / "gate-started"
    engine = Engine(with_slow_gate(marker), Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await wait_for(pilot, marker.exists, what="the gate's process")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        shown = quit_text(app)
        assert "Still running gates slow" in shown
        assert "Verdict ? NO DATA — no health samples yet" in shown
        assert "Exit criteria ✗ not met (1 missing) · Signed off" in shown
        for key in ("escape", "q", "enter"):  # every way but `y` stays
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.cockpit and app.is_running, key
            assert engine.state.gates["slow"].status == "running"
            await pilot.press("q")
            await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: engine.state.ended is not None, what="the session's end")
    quits = [e for e in journal_events(engine) if isinstance(e, ev.OperatorAction) and e.action == "quit"]
    assert [(q.actor, q.detail["running"]) for q in quits] == [("alice", ["gates slow"])]
    assert quits[0].detail["missing"] and quits[0].detail["verdict"].startswith("? NO DATA")
    assert engine.state.gates["slow"].status == "cancelled"  # the gate ended with the session


async def test_q_quits_at_once_when_nothing_runs_and_the_exit_criteria_hold(tmp_path: Path) -> None:
    engine = Engine(with_slow_gate(tmp_path / "unused"), Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.tick("signed-off", True)
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await wait_for(pilot, lambda: engine.state.ended is not None, what="the session's end")
        assert not isinstance(app.screen, QuitDialog)
    assert not [e for e in journal_events(engine) if isinstance(e, ev.OperatorAction) and e.action == "quit"]


async def test_ctrl_c_closes_the_rollback_dialog_instead_of_quitting(tmp_path: Path) -> None:
    """The reproducer: ctrl+c inside the confirmation quit the cockpit (and stopped the lab)."""
    engine = replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmRollback)
        await pilot.press(*"blue", "ctrl+c")
        await pilot.pause()
        assert app.is_running and app.screen is app.cockpit
        assert engine.state.ended is None
        assert engine.state.traffic.rollback.stage == "cancelled"  # declined, as Esc would journal it
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("ctrl+c")
        assert app.screen is app.cockpit
        await pilot.press("ctrl+c")  # on the cockpit: as q, which asks (the verdict is failing)
        await pilot.pause()
        assert isinstance(app.screen, QuitDialog)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert app.screen is app.cockpit and app.is_running
    cancelled = [e for e in journal_events(engine) if isinstance(e, ev.RollbackCancelled)]
    assert len(cancelled) == 1


async def test_the_event_log_keeps_a_recovered_p1_breach_and_operator_actions(tmp_path: Path) -> None:
    engine = replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        engine.emit(
            ev.GuardrailBreach(
                guardrail="ws-drops",
                severity="P1",
                metric="ws_disconnects",
                value=9,
                threshold=5,
                window_s=10,
                scope="all",
            )
        )
        engine.emit(ev.GuardrailRecovered(guardrail="ws-drops", value=1))
        app.clear_notifications()  # whatever a toast said is gone
        await pilot.press("l")
        await pilot.pause()
        assert isinstance(app.screen, EventLogScreen)
        log = flat(plain(app.screen.query_one("#log-body", Static)))
        assert "P1 guardrail ws-drops breached" in log and "Guardrail ws-drops recovered (1)" in log
        # Folded from the journal: the recorded session's operator actions and outcomes, in full.
        assert "P0 guardrail candidate-5xx breached: http_5xx_rate 50.0% > 2.0% over 10 s" in log
        assert "Rollback remove-blue-next requested by alice (typed 'blue-next')" in log
        assert "Rollback remove-blue-next verified ok: 100.0% of 200 requests on stable" in log
        assert "Checklist no-blockers ticked by alice: PR-15 ok" in log
        assert log.index("Session started") < log.index("candidate-5xx breached") < log.index("ws-drops")
        dialog = app.screen.query_one("#log-dialog")
        assert dialog.max_scroll_y > 0 and dialog.scroll_y == dialog.max_scroll_y  # scrolls; newest shown
        await pilot.press("home")
        await pilot.pause()
        assert dialog.scroll_y == 0
        await pilot.press("escape")
        assert app.screen is app.cockpit


async def test_an_exported_screenshot_carries_no_toasts(tmp_path: Path) -> None:
    engine = replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        app.notify("TOASTMARKER covers the checklist", timeout=60)
        await pilot.pause()
        assert "TOASTMARKER" in app.export_screenshot()  # it is on screen
        paths = await engine.export(tmp_path / "out")
        await pilot.pause()
        assert "TOASTMARKER" in app.export_screenshot()  # and it still is, afterwards
    svg = next(p for p in paths if p.name == "cockpit.svg").read_text()
    assert "TOASTMARKER" not in svg and "Evidence" in svg and "checklist" in svg


async def test_the_quit_dialog_scrolls_inside_and_keeps_its_border_and_buttons_on_a_100x30_screen(
    tmp_path: Path,
) -> None:
    """Many long missing exit criteria under the verdict at 100x30: the dialog ran off the screen's
    bottom, its buttons and border with it. What it says scrolls instead (as the rollback confirmation)."""
    doc = with_slow_gate(tmp_path / "unused").model_dump()
    long = "the on-call engineer confirms with the service owner, in writing, that " * 3
    doc["exit_criteria"] = [{"name": f"c{i}", "text": f"{i}: {long}", "rule": "manual"} for i in range(6)]
    engine = Engine(Playbook.model_validate(doc), Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog), what="the quit dialog")
        await pilot.pause()
        dialog = app.screen.query_one("#quit-dialog").region
        assert dialog.y >= 0 and dialog.bottom <= 30, dialog
        for button in ("#stay", "#leave"):
            region = app.screen.query_one(button).region
            assert region.area and dialog.y < region.y and region.bottom < dialog.bottom, (button, region)
        scroll = app.screen.query_one("#quit-scroll")
        assert scroll.max_scroll_y > 0  # it says more than fits: it scrolls, inside the dialog
        assert "(6 missing)" in quit_text(app) and "and 2 more" in quit_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.cockpit
