"""Pilot tests from an on-call engineer's first session with the cockpit (demo and production playbooks):
each one is a friction point met in tmux at 100x30 or 160x45 — a key that did nothing, a pane that said
the opposite of what was happening, text cut where it mattered — kept from coming back."""

from __future__ import annotations

from pathlib import Path

from textual.command import CommandPalette

from rollback_tui.core.follow import FileFollower
from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.watch import WatchApp
from test_ui import pane_text
from test_ui_support import JOURNALS, demo_playbook, replay_engine


async def test_ctrl_p_opens_the_command_palette_as_help_and_readme_say(tmp_path: Path) -> None:
    """`?` lists `: / ^p  Command palette`; ctrl+p did nothing, because binding `:` to the palette kept
    Textual from binding its own ctrl+p."""
    app = CockpitApp(replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl"), live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
    journal = tmp_path / "watched.jsonl"
    journal.write_bytes((JOURNALS / "three-replicas.jsonl").read_bytes())
    viewer = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    async with viewer.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(viewer.screen, CommandPalette)


async def test_traffic_a_runbook_step_started_shows_as_running_and_s_stops_it(tmp_path: Path) -> None:
    """A step's `check: traffic` starts synthetic traffic through the engine: the Traffic pane kept saying
    "○ no synthetic traffic · s starts it" while the split filled up, and `s` — pressed to start it — stopped
    it. The pane follows the journaled start and stop, whoever asked for them."""
    engine = replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert "no synthetic traffic" in app.cockpit.panes["traffic"].border_title + pane_text(app, "traffic")
        engine.start_traffic(actor="runbook")  # as the runbook runner's `check: traffic` does
        await pilot.pause()
        shown = pane_text(app, "traffic")
        rate = f"{engine.playbook.synthetic_rps:g} rps"
        assert "synthetic traffic running" in shown and rate in shown, shown
        assert "synthetic traffic" in app.cockpit.running_work()[0]  # and quitting would say so
        await pilot.press("s")
        await pilot.pause()
        assert not engine.running("traffic")
        assert "no synthetic traffic" in pane_text(app, "traffic")
