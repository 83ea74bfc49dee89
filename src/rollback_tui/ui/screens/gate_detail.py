"""Enter on a gate: its state, the full command, the whole output tail and where the artefact is."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rollback_tui.core.state import GateState
from rollback_tui.ui.panes.base import View


class GateDetail(ModalScreen[None]):
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("q", "dismiss", "Close", show=False)]

    def __init__(self, name: str, lookup: Callable[[], GateState | None], view: Callable[[], View]) -> None:
        super().__init__()
        self.gate_name = name
        self.lookup = lookup
        self.make_view = view

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="gate-dialog"):
            yield Static(id="gate-detail")

    def on_mount(self) -> None:
        self.query_one("#gate-dialog").border_title = f"Gate {self.gate_name} — Esc closes"
        self.render_detail()
        if getattr(self.app, "live", False):
            self.set_interval(0.5, self.render_detail)

    def render_detail(self) -> None:
        gate, view = self.lookup(), self.make_view()
        self.query_one("#gate-detail", Static).update(describe_gate(self.gate_name, gate, view))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


def describe_gate(name: str, gate: GateState | None, view: View) -> Group:
    if gate is None:
        return Group(Text(f"{name} has not run yet — press g to run the gates.", style="bold"))
    head = Text()
    head.append_text(view.status(gate.status))
    head.append(f"  {gate.name}", style="bold")
    if gate.exit_code is not None:
        head.append(f"  exit {gate.exit_code}")
    if gate.duration_s is not None:
        head.append(f"  {gate.duration_s:.1f}s")
    elif gate.started_ts is not None:
        head.append(f"  running for {max(0.0, view.now - gate.started_ts):.1f}s")
    last = gate.history[-1] if gate.history else None
    where = Text("where     ", style="bold")
    where.append(view.redact(gate.where))
    artefact = Text("artefact  ", style="bold")
    artefact.append(
        view.redact(last.artefact) if last and last.artefact else "— (written when the gate ends)"
    )
    parts = [head, where, artefact]
    if last and last.error:
        parts.append(Text(f"error     {view.redact(last.error)}", style=view.tone("fail", bold=True)))
    parts.append(Text("\ncommand", style="bold underline"))
    parts.append(Text(view.redact(" ".join(gate.argv)), style="dim"))
    parts.append(
        Text(
            f"\noutput (last {len(gate.tail)} of {gate.output_lines} lines; the artefact has them all)",
            style="bold underline",
        )
    )
    parts.append(Text(view.redact("\n".join(gate.tail)) or "no output"))
    return Group(*parts)
