"""`a`: the playbook's command actions (lab fault injection, pausing ingestion, …), one keypress away.

A destructive action asks for its name to be typed before it runs; Esc cancels and nothing runs.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from rollback_tui.core.text import command_line
from rollback_tui.playbook.model import CommandAction


def action_label(action: CommandAction) -> Text:
    command = command_line(action.command.argv or [action.command.run or ""], 40)
    label = Text.assemble((action.title, "bold"), "  ", (command, "dim"))
    if action.destructive:
        label.append("  ! destructive: type its name", style="bold")
    return label


class ActionsScreen(ModalScreen[tuple[str, str] | None]):
    """Dismisses with (action name, typed confirmation) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, actions: list[CommandAction]) -> None:
        super().__init__()
        self.actions = {a.name: a for a in actions}
        self.chosen: CommandAction | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="actions-dialog"):
            yield OptionList(*(Option(action_label(a), id=a.name) for a in self.actions.values()))
            yield Static("", id="actions-prompt")
            yield Input(id="actions-confirm", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#actions-dialog").border_title = "Run a playbook action — Enter runs, Esc cancels"
        self.query_one(Input).display = False  # only a destructive action asks for its name
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        action = self.actions[str(event.option.id)]
        if not action.destructive:
            self.dismiss((action.name, ""))
            return
        self.chosen = action
        self.query_one("#actions-prompt", Static).update(
            Text.assemble("Type ", (action.name, "bold"), " to run this destructive action:")
        )
        field = self.query_one(Input)
        field.display = True
        field.disabled = False
        field.placeholder = action.name
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.chosen is None:
            return
        if event.value.strip() == self.chosen.name:
            self.dismiss((self.chosen.name, event.value.strip()))
        else:
            self.query_one("#actions-prompt", Static).update(f"{event.value!r} is not {self.chosen.name!r}")

    def action_cancel(self) -> None:
        self.dismiss(None)
