"""Asks the operator for one line of text that is journaled with their name: why they override an automatic
checklist item, the value of a manual fact, the note that confirms a manual runbook task."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class TextPrompt(ModalScreen[str | None]):
    """Dismisses with the text typed (never empty), or None on Esc (and ctrl+c)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, *, hint: str, placeholder: str, title: str = "") -> None:
        super().__init__()
        self.question = question
        self.hint = hint
        self.placeholder = placeholder
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="reason-dialog"):
            yield Static(Text(self.question, style="bold"), id="reason-question")
            yield Static(self.hint, id="reason-hint")
            yield Input(placeholder=self.placeholder, id="reason-input")

    def on_mount(self) -> None:
        self.query_one("#reason-dialog").border_title = self.title_text
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        text = self.query_one(Input).value.strip()
        if text:
            self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReasonPrompt(TextPrompt):
    """Why the operator overrides an automatic checklist item; the answer is journaled with the tick."""

    def __init__(self, question: str) -> None:
        super().__init__(
            question,
            hint="Type the reason (journaled with your name), Enter to confirm, Esc to cancel:",
            placeholder="why",
        )
