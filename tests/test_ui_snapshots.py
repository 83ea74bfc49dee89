"""Snapshot tests rendered from a recorded journal: deterministic (UTC, NO_COLOR, fixed size, no timers).

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

SIZE = (120, 40)


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


def cockpit(**kw: object) -> CockpitApp:
    engine = replay_engine("three-replicas.jsonl", Path("session.jsonl"))
    # Pin the feature set so the snapshots do not change as later issues land in the engine.
    engine.features = frozenset(FEATURES)  # type: ignore[attr-defined]
    return CockpitApp(engine, live=False, **kw)  # type: ignore[arg-type]


def test_cockpit_dark(snap_compare) -> None:
    assert snap_compare(cockpit(), terminal_size=SIZE)


def test_cockpit_high_contrast(snap_compare) -> None:
    assert snap_compare(cockpit(theme="rollback-high-contrast"), terminal_size=SIZE)


def test_cockpit_share_mode_wide(snap_compare) -> None:
    assert snap_compare(cockpit(share=True), terminal_size=(200, 50))


def test_cockpit_small_terminal(snap_compare) -> None:
    assert snap_compare(cockpit(), terminal_size=(100, 30))
