"""`?` help: generated from the command table (ui/commands.py), plus the glyph legend."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rollback_tui.ui.commands import Key

LEGEND = (
    ("✓", "ok / passed"),
    ("!", "degraded / warning"),
    ("✗", "down, timeout, failed, mismatch"),
    ("?", "junk, stale or no data yet"),
    ("·", "not run yet / not built yet"),
    ("▶", "running / current step"),
    ("☐ ☑", "checklist item open / done"),
)


def bindings_table(bindings: list[Binding], key_display) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), show_header=False)
    table.add_column(style="bold", no_wrap=True, justify="right")
    table.add_column()
    seen: dict[str, list[str]] = {}
    for binding in bindings:
        if not binding.description:
            continue
        seen.setdefault(binding.description, []).append(key_display(binding))
    for description, keys in seen.items():
        table.add_row(" / ".join(dict.fromkeys(keys)), description)
    return table


def missing_table(missing: Sequence[tuple[str, Key, str]]) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), show_header=False)
    table.add_column(style="dim", no_wrap=True, justify="right")
    table.add_column(style="dim")
    for label, key, why in missing:
        table.add_row(key.display or key.key, f"{label}: {why}")
    return table


READ_ONLY = (
    "Read-only view of the session: there are no action keys. Nothing pressed here reaches the session;\n"
    "it goes on, and this view follows it.\n"
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(
        self,
        bindings: list[Binding],
        missing: Sequence[tuple[str, Key, str]] = (),
        *,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.entries = bindings
        self.missing = list(missing)  # (label, key, why): commands this playbook does not offer
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        legend = Table(box=None, padding=(0, 2, 0, 0), show_header=False)
        legend.add_column(style="bold", justify="right", no_wrap=True)
        legend.add_column()
        for glyph, meaning in LEGEND:
            legend.add_row(glyph, meaning)
        with VerticalScroll(id="help-dialog"):
            if self.read_only:
                yield Static(Text(READ_ONLY, style="bold"))
            yield Static(Text("Keys", style="bold underline"))
            yield Static(bindings_table(self.entries, self.app.get_key_display))
            if self.missing:
                yield Static(Text("\nNot in this playbook", style="bold underline"))
                yield Static(missing_table(self.missing))
            yield Static(Text("\nStatus glyphs (colour only repeats them)", style="bold underline"))
            yield Static(legend)
            yield Static(Text("\nEsc, ? or q closes this help.", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#help-dialog").border_title = "Help"
