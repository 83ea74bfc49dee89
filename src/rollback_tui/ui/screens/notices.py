"""`n`: the notice log (feed failures, warnings, action errors), newest first."""

from __future__ import annotations

import time

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rollback_tui.core.events import Notice
from rollback_tui.ui.panes.status import NOTICE_GLYPH


class NoticesScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("n", "dismiss", "Close", show=False)]

    def __init__(self, notices: list[Notice], redact) -> None:
        super().__init__()
        self.notices = notices
        self.redact = redact

    def compose(self) -> ComposeResult:
        table = Table(box=None, padding=(0, 1), header_style="bold", expand=True)
        table.add_column("Time", no_wrap=True)
        table.add_column("Level", no_wrap=True)
        table.add_column("Source", no_wrap=True)
        table.add_column("Message", ratio=1)
        for notice in reversed(self.notices):
            glyph, _ = NOTICE_GLYPH.get(notice.level, ("·", "stale"))
            table.add_row(
                time.strftime("%H:%M:%S", time.localtime(notice.ts)),
                f"{glyph} {notice.level}",
                notice.source,
                self.redact(notice.message),
            )
        with VerticalScroll(id="notices-dialog"):
            yield Static(table if self.notices else "No notices.")

    def on_mount(self) -> None:
        self.query_one("#notices-dialog").border_title = f"Notices ({len(self.notices)}) — Esc closes"
