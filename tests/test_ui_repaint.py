"""The repaint scheduler on its own: events mark panes dirty; dirty panes repaint in coalesced batches."""

from __future__ import annotations

from textual.message import Message

from rollback_tui.ui.messages import ALL_PANES, StateChanged
from rollback_tui.ui.repaint import RepaintScheduler


class Recorder:
    def __init__(self, *, live: bool) -> None:
        self.painted: list[list[str]] = []
        self.posted: list[Message] = []
        self.holding: frozenset[str] = frozenset()
        self.scheduler = RepaintScheduler(
            self.painted.append, live=live, post=self.posted.append, hold=lambda: self.holding
        )


def test_a_flood_of_marks_posts_one_message_and_paints_once() -> None:
    r = Recorder(live=False)
    r.scheduler.flush()  # the first flush paints every pane
    assert r.painted == [sorted(ALL_PANES)]
    for i in range(1000):
        r.scheduler.mark({"fanout"} if i % 2 else {"health", "verdict"})
    assert len(r.posted) == 1 and isinstance(r.posted[0], StateChanged)
    r.scheduler.flush()
    r.scheduler.flush()  # nothing left: no empty repaint
    assert r.painted[1:] == [["fanout", "health", "verdict"]]
    r.scheduler.mark({"status"})  # dirty again after a flush: one more message
    assert len(r.posted) == 2


def test_queued_state_changed_messages_replace_each_other() -> None:
    first, second = StateChanged(), StateChanged()
    assert second.can_replace(first)


def test_held_panes_stay_dirty_until_released() -> None:
    r = Recorder(live=True)
    r.holding = ALL_PANES
    r.scheduler.mark({"traffic"})
    r.scheduler.flush()
    assert r.painted == [] and "traffic" in r.scheduler.dirty
    r.holding = frozenset()
    r.scheduler.flush()
    assert r.painted == [sorted(ALL_PANES)]


def test_panes_not_held_repaint_while_the_held_ones_wait() -> None:
    """A dialog holds the panes behind it, not the status bar's clock."""
    r = Recorder(live=True)
    r.scheduler.flush()
    r.holding = ALL_PANES - {"status"}
    r.scheduler.mark({"status", "health"})
    r.scheduler.flush()
    assert r.painted[-1] == ["status"] and r.scheduler.dirty == {"health"}
    r.scheduler.flush()  # nothing ready: no empty repaint
    assert len(r.painted) == 2
    r.holding = frozenset()
    r.scheduler.flush()
    assert r.painted[-1] == ["health"] and not r.scheduler.dirty


def test_live_marks_wait_for_the_timer_and_post_nothing() -> None:
    r = Recorder(live=True)
    r.scheduler.flush()
    r.scheduler.mark({"gates"})
    assert r.posted == [] and r.painted == [sorted(ALL_PANES)]
    r.scheduler.flush()
    assert r.painted[-1] == ["gates"]
