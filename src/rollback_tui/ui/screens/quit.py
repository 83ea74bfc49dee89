"""`q` while something runs or the exit criteria are unmet: say what would stop and what the verdict is.

Staying is the default (Enter, Esc, q, ctrl+c); only `y` (or the button) quits, so no single key ends the
session with traffic running or the evidence incomplete.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from rollback_tui.core.checklist import ExitVerdict
from rollback_tui.core.verdict import Verdict
from rollback_tui.ui.screens.confirm import fit_scroll

MAX_WHAT_ROWS = 40  # what the dialog says, on a tall screen, as app.tcss sets it


@dataclass(frozen=True)
class QuitConcerns:
    """Why quitting now deserves a question: what runs, the headline, the exit criteria."""

    running: list[str]
    verdict: Verdict
    exit: ExitVerdict
    exported: str = ""  # the latest journaled export in words (`12:00:13Z to …/exports/s (4 files)`)

    @property
    def any(self) -> bool:
        return bool(self.running) or not self.exit.complete

    @property
    def verdict_line(self) -> str:
        """`✗ FAILING — P0 candidate-5xx · gate api-tests failed`: the headline the bar shows."""
        wrong = sorted((r for r in self.verdict.ranked if r.rank > 0), key=lambda r: -r.rank)
        return self.verdict.headline + (f" — {' · '.join(r.text for r in wrong)}" if wrong else "")


def describe_quit(concerns: QuitConcerns, *, exports: bool) -> Group:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("Still running", ", ".join(concerns.running) or "nothing")
    grid.add_row("Verdict", concerns.verdict_line)
    missing = concerns.exit.missing
    if concerns.exit.complete:
        grid.add_row("Exit criteria", "✓ met")
    else:
        grid.add_row("Exit criteria", f"✗ not met ({len(missing)} missing)")
        for line in missing[:4]:
            grid.add_row("", f"· {line}")
        if len(missing) > 4:
            grid.add_row("", f"· and {len(missing) - 4} more")
    grid.add_row("Evidence", f"exported {concerns.exported}" if concerns.exported else "not exported yet")
    stops = "Quitting stops what runs and journals the end of the session"
    return Group(
        Text("Quit the cockpit?\n", style="bold"),
        grid,
        Text(f"\n{stops}{', then exports the evidence' if exports else ''}.", style="dim"),
    )


class QuitDialog(ModalScreen[bool]):
    """Dismisses with True to quit, False to stay."""

    BINDINGS = [
        Binding("escape", "stay", "Stay"),
        Binding("n", "stay", "Stay", show=False),
        Binding("q", "stay", "Stay", show=False),  # q twice must not quit
        Binding("y", "leave", "Quit", show=False),
    ]

    def __init__(self, concerns: QuitConcerns, *, exports: bool) -> None:
        super().__init__()
        self.concerns = concerns
        self.exports = exports

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog"):
            with VerticalScroll(id="quit-scroll"):
                yield Static(describe_quit(self.concerns, exports=self.exports), id="quit-what")
            with Horizontal(id="quit-buttons"):
                yield Button("Stay (Esc)", id="stay", variant="primary")
                yield Button("Quit anyway (y)", id="leave", variant="error")

    def on_mount(self) -> None:
        self.query_one("#quit-dialog").border_title = "Quit?"
        # The dialog says what the passing toasts said (where the evidence went): at 100x30 an export's
        # toast lay over it and its buttons, and the cockpit's own copy showed through the backdrop.
        self.app.clear_notifications()
        for screen in self.app.screen_stack:
            for rack in screen.query("#textual-toastrack"):
                rack.remove_children()
        self.query_one("#stay", Button).focus()  # Enter stays
        self.call_after_refresh(self._fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        """A long verdict and many missing exit criteria scroll, so that the dialog's border and buttons
        stay on a short screen (100x30) instead of running off its bottom."""
        fit_scroll(self, self.query_one("#quit-dialog"), self.query_one("#quit-scroll"), MAX_WHAT_ROWS)

    @on(Button.Pressed, "#leave")
    def action_leave(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#stay")
    def action_stay(self) -> None:
        self.dismiss(False)

    def action_cancel(self) -> None:
        """What q and ctrl+c do on a dialog (ui/app.py close_dialog): stay."""
        self.action_stay()
