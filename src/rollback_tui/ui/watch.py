"""`rollback-tui watch`: the cockpit's panes, read-only, following a live session.

A viewer is one more fold over the journal: a follower (core/follow.py for a journal file,
session/mirror.py for a Redis mirror) folds what the session journals into this app's own state, and the
app repaints the panes it dirtied — the same panes, painted the same way, as the operator's cockpit. It has
no engine and no operator keys (the command table gives it views only), so nothing a viewer does reaches
the session. A late viewer catches up from the start, then follows live; when the session ends, the
final verdict stays on screen (the clock stops at the session's end) and the view stays open. A journal
file no cockpit holds any more (killed before it ended the session, or recorded long ago) is not live:
the view says so, and its clock stands at the last event, until a cockpit writes it again (`resume`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from rollback_tui.core.checklist import verdict as exit_verdict
from rollback_tui.core.follow import LineFold
from rollback_tui.core.redact import Redactor
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.load import referenced_env_vars
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.app import PanesApp
from rollback_tui.ui.commands import bindings
from rollback_tui.ui.features import FEATURES
from rollback_tui.ui.messages import ALL_PANES, panes_for
from rollback_tui.ui.panes.base import View, clock
from rollback_tui.ui.screens.panes import PanesScreen


class Follower(Protocol):
    """What feeds a viewer: a fold, and a coroutine that keeps it current (FileFollower, StreamFollower)."""

    fold: LineFold
    on_status: Callable[[str, str], None]
    writing: bool | None  # whether a writer holds the session now; None where that cannot be told

    def run(self, on_kinds: Callable[[set[str]], None]) -> Coroutine[Any, Any, None]: ...


class WatchLine(Static):
    """What the view is following and how: live, waiting, unreachable — or the session's end and its
    exit verdict."""

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        app: WatchApp = self.app  # type: ignore[assignment]
        self.update(watch_text(state, playbook, view, app.source, app.follow_status), layout=False)


def watch_text(
    state: SessionState, playbook: Playbook, view: View, source: str, status: tuple[str, str]
) -> Text:
    level, words = status
    text = Text(" ")
    if state.ended is not None:
        result = exit_verdict(playbook, state)
        tone = "ok" if result.complete else "fail"
        text.append(f"■ SESSION ENDED {clock(state.ended.ts)}", style=view.tone(tone, bold=True))
        text.append(f" ({view.redact(state.ended.reason)}) · ")
        if result.complete:
            text.append("✓ exit criteria hold", style=view.tone("ok", bold=True))
        else:
            text.append("✗ exit criteria not met", style=view.tone("fail", bold=True))
            if result.missing:
                text.append(": " + view.redact("; ".join(result.missing)))
    elif level == "info" and words == "following":
        age = f" · last event {day_clock(state.last_ts)}" if state.last_ts else " · no events yet"
        if view.writer_gone:  # not ended, and no cockpit holds the journal: nothing more is coming
            text.append("○ NOT LIVE", style=view.tone("warn", bold=True))
            text.append(" · no cockpit is writing this journal")
        else:
            text.append("● LIVE", style=view.tone("ok", bold=True))
        text.append(f" · {state.last_n:,} events{age}")
    else:
        text.append(
            f"{'!' if level == 'warning' else '…'} {view.redact(words)}", style=view.tone("warn", bold=True)
        )
    text.append(f" · read-only view of {view.redact(source)} · ? help", style=view.tone("stale"))
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def day_clock(ts: float) -> str:
    """`12:00:45`, with its date in front when that is not today (`2025-01-12 12:00:45`)."""
    day = time.strftime("%Y-%m-%d", time.localtime(ts))
    return clock(ts) if day == time.strftime("%Y-%m-%d") else f"{day} {clock(ts)}"


class WatchScreen(PanesScreen):
    BINDINGS = bindings("screen", watch=True)

    def extra_lines(self) -> ComposeResult:
        line = self.panes["watch"] = WatchLine(id="watch-line")
        yield line


class WatchApp(PanesApp):
    """The panes, read-only, over a follower's fold (see the module doc)."""

    BINDINGS = bindings("app", watch=True)
    read_only = True

    def __init__(
        self,
        follower: Follower,
        playbook: Playbook,
        *,
        source: str,
        journal_name: str,
        theme: str | None = None,
        share: bool = False,
        present: bool = False,
        live: bool = True,
    ) -> None:
        super().__init__(theme=theme, share=share, live=live)
        self.follower = follower
        self.source = source
        self.follow_status: tuple[str, str] = ("info", "connecting")
        self._writer_gone_shown = False
        follower.on_status = self._on_status
        self.show_session(
            playbook,
            Redactor.from_env(referenced_env_vars(playbook)),
            # The session's engine had every feature: its panes show what it did, not "arrives with …".
            frozenset(FEATURES),
            WatchScreen(Path(journal_name), None, playbook, share=share, present=present),
        )
        self.title = "rollback-tui watch"

    @property
    def state(self) -> SessionState:
        return self.follower.fold.state

    @property
    def writer_gone(self) -> bool:
        """The session has not ended, yet no cockpit holds its journal (as far as the follower can tell)."""
        return self.state.ended is None and self.follower.writing is False

    def now(self) -> float:
        """Live, the clock moves; once the session has ended, it stands at its end (the final verdict); with
        no cockpit writing it, at its last event (nothing after that was observed)."""
        ended = self.state.ended
        if ended is not None:
            return ended.ts
        return time.time() if self.live and not self.writer_gone else (self.state.last_ts or 0.0)

    def view(self) -> View:
        view = super().view()
        view.writer_gone = self.writer_gone
        return view

    def wire(self) -> None:
        if self.live:
            self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        gone = self.writer_gone
        if gone == self._writer_gone_shown:
            self.mark_dirty({"watch"})
        else:  # the cockpit went away (or a resume came): every pane's clock stopped (or moves again)
            self._writer_gone_shown = gone
            self.mark_dirty(ALL_PANES)

    async def start_feeds(self) -> None:
        self.run_worker(self.follower.run(self._on_kinds), name="follow", group="follow", exit_on_error=False)

    def _on_kinds(self, kinds: Iterable[str]) -> None:
        dirty = {"watch"}
        for kind in kinds:
            dirty |= panes_for(kind)
        if "session_ended" in kinds or "session_resumed" in kinds:
            dirty |= {"verdict", "health", "status"}  # the clock stopped (or moves again)
        self.mark_dirty(dirty)

    def _on_status(self, level: str, words: str) -> None:
        if (level, words) == self.follow_status:
            return
        self.follow_status = (level, words)
        self.mark_dirty({"watch"})
        if level == "warning":
            self.notify(self.redact(words), severity="warning", timeout=6)
