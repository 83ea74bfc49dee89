"""Snapshots of the watch view and the presenter layout, from recorded journals (deterministic: UTC,
NO_COLOR, fixed sizes, no timers; see tests/test_ui_snapshots.py). Regenerate after an intended change with
`pytest tests/test_watch_snapshots.py --snapshot-update`, then look at the SVGs before accepting them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_tui.core.follow import FileFollower
from rollback_tui.core.journal import Journal
from rollback_tui.core.resume import fold_journal
from rollback_tui.ui.watch import WatchApp
from test_ui_snapshots import cockpit, pinned_environment  # noqa: F401 - the fixture, autouse
from test_ui_support import JOURNALS, demo_playbook
from watch_support import ended_journal

SIZES = [(100, 30), (160, 45)]


def viewer(journal: Path, *, present: bool = False) -> WatchApp:
    follower = FileFollower(journal)
    follower.poll()  # live=False runs no follower task: the journal is folded here, as a viewer would
    app = WatchApp(
        follower, demo_playbook(), source=journal.name, journal_name=journal.name, present=present, live=False
    )
    app.follow_status = ("info", "following")
    return app


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_watch_view_of_a_session_under_way(snap_compare, size: tuple[int, int], tmp_path: Path) -> None:
    journal = tmp_path / "midway.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-midway.jsonl").read_bytes())
    writer = Journal(journal, next_n=fold_journal(journal)[0].last_n + 1)  # held, as its cockpit holds it
    try:
        assert snap_compare(viewer(journal), terminal_size=size)
    finally:
        writer.close()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_watch_view_of_a_session_no_cockpit_writes(
    snap_compare, size: tuple[int, int], tmp_path: Path
) -> None:
    """Not ended, and nobody holds the journal: NOT LIVE, the last event's date, the clock at that event."""
    journal = tmp_path / "midway.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-midway.jsonl").read_bytes())
    assert snap_compare(viewer(journal), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_watch_view_once_the_session_has_ended(snap_compare, size: tuple[int, int], tmp_path: Path) -> None:
    journal = ended_journal(JOURNALS / "rehearsal-full.jsonl", tmp_path / "ended.jsonl")
    assert snap_compare(viewer(journal), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_presenter_layout(snap_compare, size: tuple[int, int], tmp_path: Path) -> None:
    journal = ended_journal(JOURNALS / "rehearsal-full.jsonl", tmp_path / "ended.jsonl")
    assert snap_compare(viewer(journal, present=True), terminal_size=size)


def test_cockpit_presenter_key(snap_compare) -> None:
    """`p` in the operator's cockpit: the same board over the cockpit's own state."""

    async def present(pilot) -> None:
        await pilot.pause()
        await pilot.press("p")
        await pilot.pause()

    assert snap_compare(cockpit(), terminal_size=(160, 45), run_before=present)
