"""Release gates: one row per gate (state, one-line command, last output), the highlighted gate's tail.

Enter on a row opens the gate detail screen (full output tail, artefact path). The command is always
ONE line: the demo's gates are long `python3 -c` scripts and their bodies belong in the detail screen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Static

from rollback_tui.core.state import GateState, SessionState
from rollback_tui.core.text import command_line, one_line
from rollback_tui.playbook.model import Gate, Playbook
from rollback_tui.ui.panes.base import Pane, View, blocked_mark, cannot_run, pending

RESULT_W, WHERE_W, TIME_W = 13, 6, 6


def gate_argv(spec: Gate | None, gate: GateState | None) -> list[str]:
    if gate is not None and gate.argv:
        return gate.argv
    if spec is None:
        return []
    return list(spec.argv) if spec.argv else [spec.run or ""]


def gate_labels(titles: dict[str, str], width: int, most: int) -> tuple[dict[str, str], int]:
    """Each gate's label in the Gate column, and the column's width: its title, cut to `width` — unless
    cut titles read alike (two `Browser E2E…`), then its name (what the tail, the toasts and the journal
    call it), the column widened up to `most` so the names fit."""
    if len({one_line(title, width) for title in titles.values()}) == len(titles):
        return titles, width
    return {name: name for name in titles}, max(width, min(most, max(map(len, titles))))


def gate_status(name: str, gate: GateState | None, view: View) -> str:
    """queued (asked for, not started yet), running, or the last outcome."""
    act = view.activity
    if name in act.gates_queued and (
        gate is None or (gate.status != "running" and (gate.started_ts or 0) < (act.gates_requested_at or 0))
    ):
        return "queued"
    return gate.status if gate else "not_run"


def elapsed(gate: GateState | None, view: View) -> str:
    if gate is None:
        return "—"
    if gate.status == "running" and gate.started_ts is not None:
        return f"{max(0.0, view.now - gate.started_ts):.1f}s"
    return f"{gate.duration_s:.1f}s" if gate.duration_s is not None else "—"


class GatesPane(Pane):
    TITLE = "Release gates"

    @dataclass
    class Opened(Message):
        """Enter on a gate row: the app opens the detail screen."""

        gate: str

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._columns_for: int = -1
        self._rows: tuple[str, ...] = ()

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="gates-table", cursor_type="row", show_cursor=True)
        table.can_focus = True
        yield table
        yield Static(id="gates-tail", classes="pane-body")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#gates-table", DataTable)

    def highlighted_gate(self) -> str | None:
        table = self.table
        if not self._rows or table.cursor_row is None or table.cursor_row >= len(self._rows):
            return None
        return self._rows[table.cursor_row]

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Opened(str(event.row_key.value)))

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        mark = getattr(self.app, "mark_dirty", None)
        if mark is not None:
            mark({"gates"})

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        specs = {g.name: g for g in playbook.gates}
        names = list(specs) + [n for n in state.gates if n not in specs]
        tail = self.query_one("#gates-tail", Static)
        if not names:
            tail.update(
                pending("Running gates", 6, view.key("run-gates"), view)
                if "gates" not in view.features
                else Text("This playbook defines no gates.", style="dim")
            )
            self.table.display = False
            return
        if not self.table.display:
            self.table.display = True
        width = max(40, self.content_size.width)
        show_where = width >= 90
        free = max(20, width - RESULT_W - (WHERE_W + 2 if show_where else 0) - TIME_W - 3 * 2)
        titles = {name: specs[name].title if name in specs else name for name in names}
        labels, title_w = gate_labels(titles, min(30, max(12, free // 4)), free * 2 // 5)
        command_w = max(10, (free - title_w) // 2)
        last_w = max(8, free - title_w - command_w)
        table = self.table
        if self._columns_for != width or tuple(names) != self._rows:
            table.clear(columns=True)
            table.add_column("Result", width=RESULT_W, key="result")
            table.add_column("Gate", width=title_w, key="gate")
            if show_where:
                table.add_column("Where", width=WHERE_W, key="where")
            table.add_column("Time", width=TIME_W, key="time")
            table.add_column("Command", width=command_w, key="command")
            table.add_column("Last output", width=last_w, key="last")
            for name in names:
                table.add_row(*[Text("")] * len(table.columns), key=name)
            self._columns_for, self._rows = width, tuple(names)
        running = 0
        why = cannot_run(state)
        for name in names:
            spec, gate = specs.get(name), state.gates.get(name)
            status = gate_status(name, gate, view)
            running += status == "running"
            result = view.status(status)
            if status == "running":
                result = Text(f"{view.activity.spinner} running", style=view.tone("warn", bold=True))
            last = gate.tail[-1] if gate and gate.tail else ""
            blocked = why("gate", name) if status == "not_run" else None
            if blocked:  # before anyone presses g: what the readiness check says stops it
                result = Text("✗ cannot run", style=view.tone("fail", bold=True))
                last = blocked.removeprefix("cannot run: ")
            cells = {
                "result": result,
                "gate": Text(one_line(labels[name], title_w), style="bold"),
                "where": Text(one_line(view.redact(spec.where if spec else (gate.where if gate else "")), 6)),
                "time": Text(elapsed(gate, view).rjust(TIME_W)),
                "command": Text(view.redact(command_line(gate_argv(spec, gate), command_w)), style="dim"),
                "last": Text(one_line(view.redact(last), last_w)),
            }
            if not show_where:
                del cells["where"]
            for column, value in cells.items():
                table.update_cell(name, column, value)
        if table.styles.height is None or table.styles.height.value != len(names) + 1:
            table.styles.height = len(names) + 1
        self._show_tail(state, view, tail, why)
        key = view.key("cancel-gates" if running else "run-gates")
        hint = f"{key} cancels · " if running and key else f"{key} runs all · " if key else ""
        self.border_subtitle = f"{f'{running} running · ' if running else ''}{hint}Enter details"

    def _show_tail(
        self, state: SessionState, view: View, tail: Static, why: Callable[[str, str], str | None]
    ) -> None:
        running = [g for g in state.gates.values() if g.status == "running"]
        name = running[0].name if running else self.highlighted_gate()
        gate = state.gates.get(name) if name else None
        blocked = why("gate", name) if name and gate is None else None
        if blocked:  # the row's cell is cut to its column: the whole reason, wrapped, for the highlighted one
            text = Text(f"{view.redact(name or '')}: ", style="bold")
            tail.update(text.append_text(blocked_mark(blocked, view)), layout=False)
            return
        if gate is None or not gate.tail:
            hint = "No output yet." if gate is None else f"{gate.name}: no output."
            tail.update(Text(hint, style="dim") if not view.compact else "", layout=False)
            return
        room = max(1, self.content_size.height - (len(self._rows) + 1) - 1)
        text = Text()
        text.append(
            f"{gate.name} · last {min(room, len(gate.tail))} of {gate.output_lines} lines", style="bold"
        )
        for line in list(gate.tail)[-room:]:
            text.append("\n")
            text.append(one_line(view.redact(line), max(10, self.content_size.width)), style="dim")
        text.no_wrap = True
        tail.update(text, layout=False)
