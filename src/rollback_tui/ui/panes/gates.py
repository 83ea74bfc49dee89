"""Gate results: each playbook gate with its last outcome and the tail of the running one."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View, pending


class GatesPane(StaticPane):
    TITLE = "Release gates"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        parts: list[RenderableType] = []
        if not state.gates and "gates" not in view.features:
            parts.append(pending("Running gates", 6, "g", view))
        names = [g.name for g in playbook.gates] + [
            n for n in state.gates if n not in {g.name for g in playbook.gates}
        ]
        if not names:
            parts.append(Text("This playbook defines no gates.", style="dim"))
            self.show(Group(*parts))
            return
        table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold", expand=True)
        table.add_column("Result", width=11, no_wrap=True)
        table.add_column("Gate", no_wrap=True, overflow="ellipsis", ratio=2)
        table.add_column("Where", no_wrap=True)
        table.add_column("Time", justify="right", no_wrap=True)
        table.add_column("Command", no_wrap=True, overflow="ellipsis", ratio=3)
        running = None
        for name in names:
            spec = next((g for g in playbook.gates if g.name == name), None)
            gate = state.gates.get(name)
            status = gate.status if gate else "not_run"
            if gate and gate.status == "running":
                running = gate
            command = " ".join(spec.argv) if spec and spec.argv else (spec.run if spec and spec.run else "")
            table.add_row(
                view.status(status),
                spec.title if spec else name,
                view.redact(spec.where if spec else (gate.where if gate else "")),
                f"{gate.duration_s:.1f}s" if gate and gate.duration_s is not None else "—",
                Text(view.redact(command or ""), style=view.tone("stale")),
            )
        parts.append(table)
        if running is not None and running.tail:
            room = max(1, self.content_size.height - len(names) - 3)
            parts.append(Text(f"\n{running.name} output:", style="bold"))
            for line in list(running.tail)[-room:]:
                parts.append(Text(view.redact(line), style="dim", no_wrap=True, overflow="ellipsis"))
        self.show(Group(*parts))
