"""When panes repaint: events only mark panes dirty; dirty panes are repainted in batches.

A flood of fanout frames then costs one repaint per tick, not one per frame. Live, a timer flushes at most
REFRESH_HZ times a second. Without timers (replay, snapshots) the first mark after a flush posts one
StateChanged message, which replaces its queued copies, and its handler flushes. Panes the app holds (those
behind a dialog, say) wait, still dirty, while the others repaint.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from textual.message import Message
from textual.message_pump import MessagePump

from rollback_tui.ui.messages import ALL_PANES, StateChanged

REFRESH_HZ = 15


class RepaintScheduler:
    def __init__(
        self,
        paint: Callable[[list[str]], object],
        *,
        live: bool,
        post: Callable[[Message], object],
        hold: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        """`paint` repaints the named panes; those `hold()` names wait and stay dirty."""
        self._paint = paint
        self._post = post
        self._hold = hold
        self.live = live
        self.dirty: set[str] = set(ALL_PANES)  # nothing is painted before the first flush

    def start(self, node: MessagePump) -> None:
        """Live: flush on a timer owned by `node`. Otherwise marks post StateChanged (see the module doc)."""
        if self.live:
            node.set_interval(1 / REFRESH_HZ, self.flush)

    def mark(self, panes: Iterable[str]) -> None:
        before = bool(self.dirty)
        self.dirty.update(panes)
        if not self.live and self.dirty and not before:
            self._post(StateChanged())

    def flush(self) -> None:
        if not self.dirty:
            return
        held = self.dirty.intersection(self._hold())
        ready = self.dirty - held
        if ready:
            self.dirty = held
            self._paint(sorted(ready))
