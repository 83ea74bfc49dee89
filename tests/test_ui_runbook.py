"""Running the real runbook from the cockpit (issue 14, the cockpit's side): changes are typed-confirmed with
a preview of what runs and where; the Runbook pane selects a step, runs its items in order, retries a failed
one and asks the operator for what only they can give. Commands are real processes: stand-in scripts put
first on PATH record their argv."""

from __future__ import annotations

import os
import shlex
import stat
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.steps import step_rows
from rollback_tui.playbook.load import load_playbook
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine
from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.screens.actions import ActionsScreen
from rollback_tui.ui.screens.confirm import ConfirmAction, where_text
from rollback_tui.ui.screens.reason import TextPrompt
from test_ui import flat, notifications, pane_text, plain, wait_for
from test_ui_support import demo_playbook

SIZE = (120, 40)
PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
SECRET = "s3cr3t-project-4711"


@pytest.fixture
def railway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `railway` first on PATH: it appends its argv to a file and prints what railway would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "railway-calls"
    script = bin_dir / "railway"
    script.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "print('Set variables for worker')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RAILWAY_PROJECT_ID", SECRET)
    return calls


def production_cockpit(tmp_path: Path) -> tuple[Engine, CockpitApp]:
    engine = Engine(load_playbook(PLAYBOOKS / "production-rollback.yaml"), Journal(tmp_path / "j.jsonl"))
    return engine, CockpitApp(engine, live=False)


def dialog_text(app: CockpitApp) -> str:
    return flat(plain(app.screen.query_one("#confirm-what", Static)))


async def test_a_then_enter_never_runs_a_production_change_unconfirmed(tmp_path: Path, railway: Path) -> None:
    """The reproducer: `a` then Enter ran the pre-highlighted production action with no confirmation."""
    engine, app = production_cockpit(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        assert isinstance(app.screen, ActionsScreen)
        await pilot.press("enter")  # the redeploy, before the last known good commit is known: refused
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is app.cockpit
        assert any("capture the last known good commit first" in n for n in notifications(app))

        engine.record_fact("last-known-good", "0123456789abcdef0123456789abcdef01234567")
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), what="the redeploy's preview")
        shown = dialog_text(app)
        assert "Changes yes — in production" in shown
        assert "Runs local (this machine) Commands prepare: git worktree add" in shown
        assert "web: railway up --project '${RAILWAY_PROJECT_ID}' --environment production" in shown
        assert "(in .rollback/last-known-good)" in shown
        assert "{commit} is 0123456789abcdef0123456789abcdef01234567" in shown
        assert SECRET not in shown  # a ${VAR} is shown by name, never by value
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is app.cockpit and any("declined; nothing ran" in n for n in notifications(app))

        await pilot.press("a", "down", "down", "enter")  # pause-ingestion: a plain command, in production
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), what="pause-ingestion's preview")
        command = "railway variables --service worker --environment production"
        command += " --set INGESTION_TRIGGERS_PAUSED=true"
        assert command in dialog_text(app)
        await pilot.press(*"pause", "enter")  # half the name: refused, nothing runs
        await pilot.pause()
        assert isinstance(app.screen, ConfirmAction)
        assert "is not 'pause-ingestion'" in plain(app.screen.query_one("#confirm-error", Static))
        assert not railway.exists()
        await pilot.press(*"-ingestion", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is app.cockpit
    assert railway.read_text().splitlines() == [command.removeprefix("railway ")]
    events = read_journal(engine.journal.path).events
    declined = [
        e.detail["name"] for e in events if e.kind == "operator_action" and e.action == "decline_action"
    ]
    assert declined == ["redeploy-last-known-good"]
    confirmed = [(e.action, e.typed, e.actor) for e in events if e.kind == "action_confirmed"]
    assert confirmed == [("pause-ingestion", "pause-ingestion", engine.operator)]
    assert [e.action for e in events if e.kind == "action_started"] == ["pause-ingestion"]


def test_where_a_command_runs_is_named_and_share_mode_hides_the_address() -> None:
    doc = demo_playbook().model_dump()
    doc["hosts"] = [{"name": "bastion", "host": "10.1.2.3", "user": "deploy", "port": 2222}]
    playbook = Playbook.model_validate(doc)
    assert where_text("local", playbook, share=False) == "local (this machine)"
    assert where_text("bastion", playbook, share=False) == "SSH deploy@10.1.2.3:2222 (host bastion)"
    assert "10.1.2.3" not in where_text("bastion", playbook, share=True)


def runbook_playbook(tmp_path: Path) -> Playbook:
    """Two steps: gates that are real processes (one fails until a file exists), a manual task, a change."""
    py = sys.executable
    flaky = f"import os, sys\nsys.exit(0 if os.path.exists({str(tmp_path / 'fixed')!r}) else 3)"
    go = str(tmp_path / "go")
    waits = f"import os, time\nwhile not os.path.exists({go!r}):\n    time.sleep(0.05)\nprint('ok')"
    doc = demo_playbook().model_dump()
    doc["gates"] = [
        {"name": "quick", "title": "Quick gate", "argv": [py, "-c", "print('fine')"]},
        {"name": "flaky", "title": "Flaky gate", "argv": [py, "-c", flaky]},
        {"name": "slow", "title": "Waits for go", "argv": [py, "-c", waits]},
    ]
    doc["actions"] = [
        {
            "kind": "command",
            "name": "drain",
            "title": "Drain the queue",
            "destructive": True,
            "command": {"argv": ["railway", "run", "--project", "${RAILWAY_PROJECT_ID}", "drain"]},
        }
    ]
    doc["steps"] = [
        {
            "name": "baseline",
            "title": "1. Capture baseline",
            "description": "Record what runs before anything changes.",
            "do": [
                {"gate": "quick", "note": "The quick one first"},
                {"gate": "flaky"},
                {"manual": "Record the SurrealDB image tag"},
            ],
        },
        {
            "name": "drain",
            "title": "2. Drain",
            "do": [{"gate": "slow"}, {"action": "drain", "note": "Drain before the redeploy"}],
        },
    ]
    doc["checklist"] = []
    doc["exit_criteria"] = []
    return Playbook.model_validate(doc)


def item_lines(app: CockpitApp) -> list[str]:
    """The shown step's item rows: `✓ passed   gate: quick`."""
    lines = pane_text(app, "steps").splitlines()
    return [
        line.strip() for line in lines if any(f" {kind}: " in line for kind in ("gate", "manual", "action"))
    ]


async def test_the_runbook_pane_runs_a_step_asks_for_the_manual_item_and_retries_the_failed_one(
    tmp_path: Path, railway: Path
) -> None:
    engine = Engine(runbook_playbook(tmp_path), Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        app.cockpit.panes["steps"].focus()
        await pilot.pause()
        text = pane_text(app, "steps")
        assert "Next: 1. Capture baseline" in text and "The quick one first" in text  # the item's note
        await pilot.press("z")  # zoomed: the resolved commands in full, and the step's description
        await pilot.pause()
        text = flat(pane_text(app, "steps"))
        assert f"$ {shlex.join([sys.executable, '-c', 'print(' + repr('fine') + ')'])}" in text
        assert "Record what runs before anything changes." in text
        await pilot.press("z")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt), what="the manual item's question")
        assert "Record the SurrealDB image tag" in flat(
            plain(app.screen.query_one("#reason-question", Static))
        )
        await pilot.press(*"tag 3.0.1 from the helm values", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.state.step == "baseline"  # running it moved the tracker there
        assert (
            engine.state.gates["quick"].status == "passed" and engine.state.gates["flaky"].status == "failed"
        )
        engine.journal.flush()
        assert "tag 3.0.1 from the helm values" in engine.journal.path.read_text()  # journaled
        lines = item_lines(app)
        assert lines[0].startswith("✓ passed") and "gate: quick" in lines[0]
        assert any(line.startswith("✗ failed") and "gate: flaky" in line for line in lines), lines
        assert "R retries" in app.cockpit.panes["steps"].border_subtitle

        (tmp_path / "fixed").write_text("")
        await pilot.press("R")  # runs the failed item again, only that one
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.state.gates["flaky"].status == "passed"
        assert len(engine.state.gates["quick"].history) == 1
        assert not any(line.startswith("✗") for line in item_lines(app))

        await pilot.press("down")  # step 2: a gate that waits, then a change that confirms
        await pilot.pause()
        assert "Selected: 2. Drain" in pane_text(app, "steps")
        await pilot.press("enter")
        await wait_for(pilot, lambda: engine.state.gates.get("slow") is not None, what="the slow gate")

        def slow_running() -> bool:
            return any(line.startswith("▶ running") and "gate: slow" in line for line in item_lines(app))

        await wait_for(pilot, slow_running, what="per-item progress")
        assert "Now: 2. Drain  ⠋ running" in pane_text(app, "steps")  # running it moved the tracker
        (tmp_path / "go").write_text("")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), what="the drain confirmation")
        assert "railway run --project '${RAILWAY_PROJECT_ID}' drain" in dialog_text(app)
        assert not railway.exists()
        await pilot.press(*"drain", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert railway.read_text().splitlines() == [f"run --project {SECRET} drain"]
    engine.journal.flush()
    assert SECRET not in engine.journal.path.read_text()  # the value ran; the journal only knows its name


async def test_declining_a_change_in_a_step_runs_nothing(tmp_path: Path, railway: Path) -> None:
    engine = Engine(runbook_playbook(tmp_path), Journal(tmp_path / "j.jsonl"), operator="alice")
    (tmp_path / "go").write_text("")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        app.cockpit.panes["steps"].focus()
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), what="the confirmation")
        await pilot.press(*"dra", "ctrl+c")  # ctrl+c declines, as Esc does
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is app.cockpit and app.is_running
    assert not railway.exists()


async def test_a_manual_prompt_left_empty_answers_nothing(tmp_path: Path) -> None:
    engine = Engine(runbook_playbook(tmp_path), Journal(tmp_path / "j.jsonl"), operator="alice")
    (tmp_path / "fixed").write_text("")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        app.run_step_named("baseline")  # as the palette's "Run step 1: baseline"
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt), what="the manual item's question")
        await pilot.press("enter")  # empty: not an answer
        assert isinstance(app.screen, TextPrompt) and app.screen.query_one(Input).value == ""
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen is app.cockpit
    assert engine.state.gates["quick"].status == "passed"  # the step ran…
    manual = step_rows(engine.playbook, engine.state, time.time())[0].items[2]
    assert manual.status != "passed"  # …and the task nobody confirmed is not done
