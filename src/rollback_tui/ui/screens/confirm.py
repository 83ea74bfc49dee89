"""Confirmation for destructive actions: names exactly what changes; typing the replica set confirms."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from rollback_tui.playbook.model import Playbook, SelectorRemoval


def describe_removal(action: SelectorRemoval, playbook: Playbook) -> Text:
    """What the selector removal will change, in plain words."""
    text = Text()
    text.append(f"{action.title}\n\n", style="bold")
    lb = playbook.load_balancer
    if lb is not None:
        selector = ",".join(f"{k}={v}" for k, v in lb.selector.items())
        text.append("Load balancer  ", style="bold")
        text.append(f"{lb.name}  (selector {selector}, via {lb.traffic_control.driver})\n")
    text.append("Removes        ", style="bold")
    text.append(", ".join(action.remove_replicas) + f"  (replica set {action.replica_set})\n")
    keep = [r.name for r in playbook.replicas if r.name not in action.remove_replicas]
    text.append("Keeps serving  ", style="bold")
    text.append((", ".join(keep) or "nothing") + "\n")
    text.append("Then verifies  ", style="bold")
    text.append(
        f"{action.verify_requests} requests reach only the kept replicas "
        f"(RTO budget {action.rto_budget_s:g}s)"
    )
    return text


class ConfirmRollback(ModalScreen[str | None]):
    """Dismisses with the typed text when it matches the replica set, or None on cancel."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, action: SelectorRemoval, playbook: Playbook) -> None:
        super().__init__()
        self.action = action
        self.playbook = playbook

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(describe_removal(self.action, self.playbook), id="confirm-what")
            yield Static(
                Text.assemble("\nType ", (self.action.replica_set, "bold"), " to confirm, Esc to cancel:"),
                id="confirm-prompt",
            )
            yield Input(placeholder=self.action.replica_set, id="confirm-input")
            yield Static("", id="confirm-error")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (Esc)", id="cancel")
                yield Button(
                    f"Remove {self.action.replica_set}", id="confirm", variant="error", disabled=True
                )

    def on_mount(self) -> None:
        self.query_one("#confirm-dialog").border_title = "Confirm rollback"
        self.query_one(Input).focus()

    @property
    def matches(self) -> bool:
        return self.query_one(Input).value.strip() == self.action.replica_set

    @on(Input.Changed)
    def _changed(self) -> None:
        self.query_one("#confirm", Button).disabled = not self.matches
        self.query_one("#confirm-error", Static).update("")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self._confirm()

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if not self.matches:
            typed = self.query_one(Input).value.strip()
            self.query_one("#confirm-error", Static).update(
                Text(f"✗ '{typed}' is not '{self.action.replica_set}' — nothing changed", style="bold")
            )
            return
        self.dismiss(self.query_one(Input).value.strip())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
