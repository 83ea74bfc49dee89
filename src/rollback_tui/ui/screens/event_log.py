"""`l`: the event log — every breach, recovery, operator action and outcome, in full, oldest first.

Toasts fade and the verdict bar shows only what is true now; this keeps what happened. It formats the
journal-backed log (SessionState.log) in the timeline's words (core/read/timeline.py), as the report does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rollback_tui.core.read.timeline import LogLine, event_log
from rollback_tui.core.state import SessionState
from rollback_tui.ui.panes.base import View

# The glyph the timeline puts in front of a line → the tone it is coloured in (the glyph says it alone).
GLYPH_TONE = {"✗": "fail", "!": "warn", "?": "warn", "⟲": "warn", "✓": "ok", "☑": "ok"}


def log_table(lines: list[LogLine], view: View) -> Table:
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=True)
    table.add_column("Time", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("Event", ratio=1)  # wrapped, never cut: the whole text is the point
    for line in lines:
        tone = GLYPH_TONE.get(line.glyph)
        style = view.tone(tone, bold=tone == "fail") if tone else ""
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(line.ts)),
            Text(line.glyph, style=style),
            Text(view.redact(line.text), style=style if tone == "fail" else ""),
        )
    return table


class EventLogScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("l", "dismiss", "Close", show=False),
        Binding("home", "scroll('home')", "Oldest", show=False),
        Binding("end", "scroll('end')", "Newest", show=False),
    ]

    def __init__(self, state: Callable[[], SessionState], view: Callable[[], View]) -> None:
        super().__init__()
        self.state = state
        self.make_view = view
        self._shown = -1  # how many events the body shows (repaint only when more arrive)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="log-dialog"):
            yield Static(id="log-body")

    def on_mount(self) -> None:
        self.render_log()
        if getattr(self.app, "live", False):
            self.set_interval(1.0, self.render_log)

    def render_log(self) -> None:
        state = self.state()
        if len(state.log) == self._shown:
            return
        self._shown = len(state.log)
        lines = event_log(state)
        dropped = f" · {state.log.dropped} older notices in the journal" if state.log.dropped else ""
        dialog = self.query_one("#log-dialog", VerticalScroll)
        dialog.border_title = f"Event log ({len(lines)}){dropped} — Esc closes · Home/End"
        at_end = dialog.scroll_y >= dialog.max_scroll_y
        body = log_table(lines, self.make_view()) if lines else Text("Nothing has happened yet.")
        self.query_one("#log-body", Static).update(body)
        if at_end:  # follow new lines, unless the operator scrolled up to read
            dialog.call_after_refresh(dialog.scroll_end, animate=False)

    def action_scroll(self, where: str) -> None:
        dialog = self.query_one("#log-dialog", VerticalScroll)
        (dialog.scroll_home if where == "home" else dialog.scroll_end)(animate=False)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
