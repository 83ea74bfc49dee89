"""`y`: readiness — what every playbook item needs from here, and what cannot run and why.

The session checks at its start (Engine.start_readiness, journaled as ReadinessChecked); this screen shows
the latest journaled check through the read model (core/read/readiness.py), as `check ready` and the report
do — items that cannot run first. In the cockpit `r` checks again through the engine (a new journaled check:
nothing is sent, each need bounded by seconds); a viewer only reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rollback_tui.core import events as ev
from rollback_tui.core.read.readiness import ReadinessRow, ReadinessView
from rollback_tui.core.read.words import took
from rollback_tui.core.state import SessionState
from rollback_tui.ui.panes.base import View, clock

Recheck = Callable[[], Awaitable[object]]


def item_groups(view: ReadinessView) -> list[list[ReadinessRow]]:
    """The table's rows per item (its first row names it), those that cannot run first, in playbook order."""
    groups: list[list[ReadinessRow]] = []
    for row in view.rows():
        if row.item or not groups:
            groups.append([row])
        else:
            groups[-1].append(row)
    return sorted(groups, key=lambda rows: rows[0].ready)


def readiness_table(checked: ev.ReadinessChecked, view: View, width: int) -> Table:
    """An item's line (✓/✗ and its name), then one line per need: what, status, why. The why column takes
    what the others leave and wraps: the reason is the point, never cut."""
    table = Table(box=None, padding=(0, 1), header_style="bold", expand=True)
    table.add_column("", no_wrap=True)
    table.add_column("Item · need", overflow="fold", max_width=max(20, width * 2 // 5))
    table.add_column("Status", no_wrap=True)
    table.add_column("Why", ratio=1)
    for rows in item_groups(ReadinessView(checked)):
        first = rows[0]
        glyph = Text(first.glyph, style=view.tone("ok" if first.ready else "fail", bold=not first.ready))
        table.add_row(glyph, Text(view.redact(first.item), style="bold"), "", "")
        for row in rows:
            tone = "ok" if row.ok else "warn" if row.status == "unknown" else "fail"
            table.add_row(
                "",
                Text(f"  {view.redact(row.need)}"),
                Text(row.status, style=view.tone(tone, bold=not row.ok)),
                Text(view.redact(row.why), style="" if row.ok else view.tone(tone)),
            )
    return table


class ReadinessScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("y", "dismiss", "Close", show=False),
        Binding("r", "recheck", "Check again"),
    ]

    def __init__(
        self, state: Callable[[], SessionState], view: Callable[[], View], recheck: Recheck | None
    ) -> None:
        """`recheck`: the engine's new journaled check (the cockpit's); None for a viewer."""
        super().__init__()
        self.state = state
        self.make_view = view
        self.recheck = recheck
        self.checking = False
        self._shown: object = False  # the check the body shows (repaint only when another is journaled)

    def compose(self) -> ComposeResult:
        with Vertical(id="readiness-dialog"):
            yield Static(id="readiness-head")
            with VerticalScroll(id="readiness-scroll"):
                yield Static(id="readiness-body")

    def on_mount(self) -> None:
        self.render_readiness()
        if getattr(self.app, "live", False):  # the session's own check may come in while this is open
            self.set_interval(1.0, self.render_readiness)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "recheck" and self.recheck is None)

    def render_readiness(self, *, force: bool = False) -> None:
        checked = self.state().readiness
        if checked is self._shown and not force:
            return
        self._shown = checked
        view = self.make_view()
        again = "" if self.recheck is None else " · r checks again"
        self.query_one("#readiness-dialog").border_title = f"Readiness — Esc closes{again}"
        head = self.query_one("#readiness-head", Static)
        body = self.query_one("#readiness-body", Static)
        if checked is None:
            head.update(Text("No readiness check journaled yet.", style="bold"))
            body.update(Text(self._checking_words(), style=view.tone("stale")))
            return
        model = ReadinessView(checked)
        line = Text(view.redact(model.headline), style=view.tone("ok" if model.ready else "fail", bold=True))
        line.append(f" · checked {clock(checked.ts)} in {took(checked.duration_s)}", style=view.tone("stale"))
        if self.checking:
            line.append(" · checking again…", style=view.tone("warn", bold=True))
        head.update(line)
        body.update(readiness_table(checked, view, body.size.width or self.app.size.width))

    def _checking_words(self) -> str:
        if self.checking:
            return "Checking now…"
        if self.recheck is None:
            return "The session checks at its start; nothing was journaled yet."
        return "The session checks at its start; r checks now."

    def action_recheck(self) -> None:
        if self.recheck is None or self.checking:
            return
        self.run_worker(self._recheck(self.recheck), group="readiness", exit_on_error=False)

    async def _recheck(self, recheck: Recheck) -> None:
        self.checking = True
        self.render_readiness(force=True)
        try:
            await recheck()
        except Exception as exc:  # a check that crashed is said, never fatal
            self.notify(f"The readiness check failed: {type(exc).__name__}: {exc}", severity="error")
        finally:
            self.checking = False
            self.render_readiness(force=True)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
