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

from rollback_tui.core.read.actions import LastRun
from rollback_tui.core.text import one_line
from rollback_tui.session.preview import ActionPreview
from rollback_tui.ui.panes.base import View

# A last run's status (core/read/actions.py) → the tone it is shown in.
_RAN_TONE = {"passed": "ok", "verified": "ok", "running": "warn", "failed": "fail", "timed_out": "fail"}


def last_run_mark(run: LastRun, view: View) -> Text:
    """`✓ ran 12:03:10Z by alice`, `✗ failed … — why`, redacted, in its outcome's tone."""
    tone = _RAN_TONE.get(run.status, "stale")
    return Text(view.redact(run.text), style=view.tone(tone, bold=tone == "fail"))


def action_label(preview: ActionPreview, blocked: Text | None = None, ran: Text | None = None) -> Text:
    """Title (and `! changes`), kind and first command; `blocked`: the readiness check's `✗ cannot run: …`;
    `ran`: its last run from the journal (last_run_mark)."""
    label = Text(preview.title, style="bold")
    if preview.changes:
        label.append("  ! changes", style="bold reverse")
    detail = preview.kind.replace("_", " ")
    if preview.commands:
        more = f"  (+{len(preview.commands) - 1} more)" if len(preview.commands) > 1 else ""
        detail += f" · {one_line(preview.commands[0].text, 64)}{more}"
    label.append(f"\n  {detail}", style="dim")
    for mark in (ran, blocked):
        if mark is not None:
            label.append("\n  ")
            label.append_text(mark)
    return label


class ActionsScreen(ModalScreen[str | None]):
    """Dismisses with the chosen action's name, or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        previews: Sequence[ActionPreview],
        blocked: Mapping[str, Text] | None = None,
        ran: Mapping[str, Text] | None = None,
    ) -> None:
        """`blocked`: action name → why the journaled readiness check says it cannot run from here (marked
        before it is chosen; still choosable — the check may be out of date); `ran`: action name → its
        last run as journaled."""
        super().__init__()
        self.previews = list(previews)
        self.blocked = dict(blocked or {})
        self.ran = dict(ran or {})

    def compose(self) -> ComposeResult:
        with Vertical(id="actions-dialog"):
            yield Static(
                "An action marked ! changes something: choosing it shows what it runs and where, "
                "and asks you to type its name.",
                id="actions-prompt",
            )
            yield OptionList(
                *(
                    Option(action_label(p, self.blocked.get(p.name), self.ran.get(p.name)), id=p.name)
                    for p in self.previews
                )
            )

    def on_mount(self) -> None:
        self.query_one("#actions-dialog").border_title = "Playbook actions — Enter chooses, Esc cancels"
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(str(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
