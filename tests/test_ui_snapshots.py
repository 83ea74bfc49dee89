"""Snapshot tests rendered from recorded journals: deterministic (UTC, NO_COLOR, fixed size, no timers).

`live=False` means no refresh timers and no spinners: the clock stands still at the journal's last event.
Regenerate after an intended change with `pytest tests/test_ui_snapshots.py --snapshot-update`, then look
at the SVGs in tests/__snapshots__/test_ui_snapshots/ before accepting them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.features import FEATURES
from test_ui_support import replay_engine

SIZE = (160, 45)
FULL = "rehearsal-full.jsonl"
PANES = ("health", "fanout", "traffic", "gates", "steps", "checklist")
THEMES = ("rollback-dark", "rollback-high-contrast", "rollback-light")


@pytest.fixture(autouse=True)
def pinned_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """UTC clock, no colour, and a relative journal path so the status bar reads the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.chdir(tmp_path)
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def cockpit(journal: str = FULL, **kw: object) -> CockpitApp:
    engine = replay_engine(journal, Path("session.jsonl"))
    # Pin the feature set so the snapshots do not change as later issues land in the engine.
    engine.features = frozenset(FEATURES)  # type: ignore[misc]
    return CockpitApp(engine, live=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("theme", THEMES)
def test_cockpit_theme(snap_compare, theme: str) -> None:
    assert snap_compare(cockpit(theme=theme), terminal_size=SIZE)


@pytest.mark.parametrize("pane", PANES)
def test_pane_zoomed(snap_compare, pane: str) -> None:
    """Each pane on its own (zoomed, as `z` does), so a change in one pane shows up in one snapshot."""
    app = cockpit()

    async def zoom(pilot) -> None:
        # After the first frame, as an operator would (the cockpit screen composes its panes after the app's
        # ready callback): the focused pane the zoom hides hands its focus on, into the checklist.
        await pilot.pause()
        app.screen.maximize(app.query_one(f"#{pane}"), container=False)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 24), run_before=zoom)


def test_cockpit_share_mode_wide(snap_compare) -> None:
    assert snap_compare(cockpit(share=True, theme="rollback-high-contrast"), terminal_size=(200, 50))


def test_cockpit_small_terminal(snap_compare) -> None:
    assert snap_compare(cockpit(), terminal_size=(100, 30))


def test_cockpit_failing_health(snap_compare) -> None:
    """A replica down and a prefix mismatch, before any later feature ran."""
    assert snap_compare(cockpit("three-replicas.jsonl"), terminal_size=(120, 40))


def test_gate_detail_screen(snap_compare) -> None:
    app = cockpit()

    async def open_failed_gate(pilot) -> None:
        await pilot.pause()  # the cockpit screen composes its panes after the app's ready callback
        app.query_one("#gates-table").focus()
        await pilot.press("down", "enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=open_failed_gate)
