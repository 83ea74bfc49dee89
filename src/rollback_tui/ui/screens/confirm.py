"""Confirmation for whatever changes something: names exactly what changes (the selector, the resolved
commands and where they run); typing the confirmation word — the replica set, the action's name — confirms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import Button, Input, Static

from rollback_tui.playbook.model import Playbook, SelectorRemoval
from rollback_tui.session.preview import ActionPreview
from rollback_tui.ui.panes.base import HIDDEN

MAX_PREVIEW_ROWS = 24  # the preview's height on a tall screen, as app.tcss sets it


def fit_scroll(screen: Screen[Any], dialog: Widget, scroll: Widget, cap: int, spare: int = 0) -> None:
    """Lower `scroll`'s max height (at most `cap`) to what the screen leaves once the dialog's other
    children, border and padding (and `spare` rows) are on it: its border and buttons stay on screen."""
    rest = sum(w.outer_size.height for w in dialog.children if w is not scroll) + spare
    room = screen.size.height - rest - dialog.styles.gutter.height
    scroll.styles.max_height = max(3, min(cap, room))


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


def where_text(where: str, playbook: Playbook, share: bool) -> str:
    """`local (this machine)` or `SSH deploy@10.0.0.5:22 (host bastion)`; share mode hides the address."""
    if where == "local":
        return "local (this machine)"
    host = next((h for h in playbook.hosts if h.name == where), None)
    if host is None:
        return f"SSH host {where}"
    address = HIDDEN if share and host.sensitive else f"{host.user}@{host.host}:{host.port}"
    return f"SSH {address} (host {host.name})"


def describe_preview(
    preview: ActionPreview, playbook: Playbook, redact: Callable[[str], str], share: bool
) -> Group:
    """The action, whether and why it changes something, and each resolved command with where it runs."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("Action", f"{preview.name} ({preview.kind.replace('_', ' ')})")
    if preview.changes:
        grid.add_row("Changes", Text(f"yes — in {preview.environment}", style="bold"))
    else:
        grid.add_row("Changes", "no (declared read-only)")
    wheres = dict.fromkeys(c.where for c in preview.commands)
    if wheres:
        grid.add_row("Runs", "; ".join(redact(where_text(w, playbook, share)) for w in wheres))
    for i, command in enumerate(preview.commands):
        shown = Text(f"{command.label}: ", style="bold") if command.label else Text()
        shown.append(redact(command.text), style="dim")
        if command.cwd:
            shown.append(f"\n(in {redact(command.cwd)})", style="dim italic")
        grid.add_row("" if i else ("Commands" if len(preview.commands) > 1 else "Command"), shown)
    for i, flag in enumerate(preview.flags):
        grid.add_row("" if i else "Flags", redact(flag.text))
    if preview.watch:
        grid.add_row("Watches", f"{', '.join(preview.watch)} (polled while it runs)")
    for note in preview.notes:
        grid.add_row("Note", redact(note))
    return Group(Text(f"{preview.title}\n", style="bold"), grid)


class TypedConfirm(ModalScreen[str | None]):
    """Dismisses with the typed text when it is the confirmation word, or None on cancel (Esc, ctrl+c)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, what: RenderableType, word: str, *, title: str, button: str) -> None:
        super().__init__()
        self.what = what
        self.word = word
        self.title_text = title
        self.button = button

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            with VerticalScroll(id="confirm-scroll"):
                yield Static(self.what, id="confirm-what")
            yield Static(
                Text.assemble("\nType ", (self.word, "bold"), " to confirm, Esc to cancel:"),
                id="confirm-prompt",
            )
            yield Input(placeholder=self.word, id="confirm-input")
            yield Static("", id="confirm-error")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel (Esc)", id="cancel")
                yield Button(self.button, id="confirm", variant="error", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-dialog").border_title = self.title_text
        self.query_one(Input).focus()
        self.call_after_refresh(self._fit)

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        """A long preview (a redeploy's commands) scrolls, so that the dialog's border, prompt, input and
        buttons stay on a short screen (100x30) instead of running off its bottom."""
        dialog, scroll = self.query_one("#confirm-dialog"), self.query_one("#confirm-scroll")
        spare = 0 if self.query_one("#confirm-error").outer_size.height else 1  # room for a refusal line
        fit_scroll(self, dialog, scroll, MAX_PREVIEW_ROWS, spare)

    @property
    def matches(self) -> bool:
        return self.query_one(Input).value.strip() == self.word

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
                Text(f"✗ '{typed}' is not '{self.word}' — nothing changed", style="bold")
            )
            return
        self.dismiss(self.query_one(Input).value.strip())

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmRollback(TypedConfirm):
    def __init__(self, action: SelectorRemoval, playbook: Playbook) -> None:
        super().__init__(
            describe_removal(action, playbook),
            action.replica_set,
            title="Confirm rollback",
            button=f"Remove {action.replica_set}",
        )
        self.action = action


class ConfirmAction(TypedConfirm):
    def __init__(
        self, preview: ActionPreview, playbook: Playbook, redact: Callable[[str], str], share: bool
    ) -> None:
        super().__init__(
            describe_preview(preview, playbook, redact, share),
            preview.confirm_text,
            title=f"Confirm {preview.name} — it changes {preview.environment}",
            button=f"Run {preview.name}",
        )
        self.preview = preview
