"""Asks why the operator overrides an automatic checklist item; the answer is journaled with the tick."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class ReasonPrompt(ModalScreen[str | None]):
    """Dismisses with the reason typed (never empty), or None on Esc."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-dialog"):
            yield Static(Text(self.question, style="bold"), id="reason-question")
            yield Static("Type the reason (journaled with your name), Enter to confirm, Esc to cancel:")
            yield Input(placeholder="why", id="reason-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        reason = self.query_one(Input).value.strip()
        if reason:
            self.dismiss(reason)

    def action_cancel(self) -> None:
        self.dismiss(None)
