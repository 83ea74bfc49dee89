"""`a`: every action of the playbook (redeploy, flags, the rollback, commands…), one keypress away.

Choosing one only chooses it: whatever changes something then asks for a typed confirmation with the
preview of what it runs (ui/screens/confirm.py), so Enter on the highlighted line never runs a change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from rollback_tui.core.text import one_line
from rollback_tui.session.preview import ActionPreview


def action_label(preview: ActionPreview, blocked: Text | None = None) -> Text:
    """Title (and `! changes`), kind and first command; `blocked`: the readiness check's `✗ cannot run: …`."""
    label = Text(preview.title, style="bold")
    if preview.changes:
        label.append("  ! changes", style="bold reverse")
    detail = preview.kind.replace("_", " ")
    if preview.commands:
        more = f"  (+{len(preview.commands) - 1} more)" if len(preview.commands) > 1 else ""
        detail += f" · {one_line(preview.commands[0].text, 64)}{more}"
    label.append(f"\n  {detail}", style="dim")
    if blocked is not None:
        label.append("\n  ")
        label.append_text(blocked)
    return label


class ActionsScreen(ModalScreen[str | None]):
    """Dismisses with the chosen action's name, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, previews: Sequence[ActionPreview], blocked: Mapping[str, Text] | None = None) -> None:
        """`blocked`: action name → why the journaled readiness check says it cannot run from here (marked
        before it is chosen; still choosable — the check may be out of date)."""
        super().__init__()
        self.previews = list(previews)
        self.blocked = dict(blocked or {})

    def compose(self) -> ComposeResult:
        with Vertical(id="actions-dialog"):
            yield Static(
                "An action marked ! changes something: choosing it shows what it runs and where, "
                "and asks you to type its name.",
                id="actions-prompt",
            )
            yield OptionList(
                *(Option(action_label(p, self.blocked.get(p.name)), id=p.name) for p in self.previews)
            )

    def on_mount(self) -> None:
        self.query_one("#actions-dialog").border_title = "Playbook actions — Enter chooses, Esc cancels"
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
