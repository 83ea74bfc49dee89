"""Runbook: the playbook's steps, and the selected step's items — run from here.

↑/↓ select a step, Enter runs its items in order, R runs its failed item again (the cockpit does the
running through the runbook runner; this pane only asks, with a message). Each step's and item's status
comes from the read model (core/read/steps.py), as in the report; with room to spare (a tall pane, or
zoomed with z) the step's notes and each item's resolved command are shown under it, secrets redacted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from rollback_tui.core.read.steps import ItemRow, StepRow, next_step, step_rows, step_title
from rollback_tui.core.state import SessionState
from rollback_tui.core.text import one_line
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.commands import bindings
from rollback_tui.ui.panes.base import StaticPane, View, blocked_mark, cannot_run

if TYPE_CHECKING:
    from rollback_tui.session.preview import StepPreview

# The mark of a step that is not the current one: its status, never its position ("✓" only if it passed).
STEP_GLYPH = {"passed": "✓", "failed": "✗", "partial": "◐", "running": "…", "unobserved": "?"}
# An item that can be run again: it failed, could not look, was declined or is waiting for an answer.
RETRYABLE = ("failed", "timed_out", "unobserved", "error", "cancelled", "needs_input", "interrupted")
# An item that has not run (or not yet this session): its line says what the readiness check says stops it.
NOT_RUN = ("not_run", "skipped", "no_record", "needs_input")
SETTLED = ("passed", "ok", "running", "queued")  # ran (or runs now): what it showed says it, not a forecast


def retry_index(row: StepRow) -> int | None:
    """The item of a step R runs on its own: its first failed (or unknown, declined, unanswered) one, else
    its first skipped one (an optional or conditional item the operator decides to run after all)."""
    for wanted in (RETRYABLE, ("skipped",)):
        found = next((i for i, item in enumerate(row.items) if item.status in wanted), None)
        if found is not None:
            return found
    return None


class StepsPane(StaticPane):
    TITLE = "Runbook"
    BINDINGS = [
        Binding("up", "select(-1)", "Previous step", show=False),
        Binding("down", "select(1)", "Next step", show=False),
        *bindings("steps"),
    ]

    @dataclass
    class Run(Message):
        """Enter on a step: the cockpit runs its items."""

        step: str

    @dataclass
    class Retry(Message):
        """R on a step with a failed item: the cockpit runs that item again."""

        step: str
        index: int

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.selected: int | None = None  # the operator's choice; None follows the tracker
        self.running: str | None = None  # the step the cockpit is running now (it sets this)
        self.details: Callable[[str], StepPreview | None] = lambda step: None  # notes, resolved commands
        self._rows: list[StepRow] = []
        self._shown: int = 0  # the step the detail shows

    # --- keys -------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A `watch` viewer shows the runbook; running it is the cockpit's.
        return not (action in ("run_step", "retry") and getattr(self.app, "read_only", False))

    def action_select(self, offset: int) -> None:
        if not self._rows:
            return
        self.selected = max(0, min(len(self._rows) - 1, self._shown + offset))
        self._shown = self.selected
        self._repaint()

    def action_run_step(self) -> None:
        if self._rows:
            self.post_message(self.Run(self._rows[self._shown].name))

    def action_retry(self) -> None:
        if not self._rows:
            return
        row = self._rows[self._shown]
        index = retry_index(row)
        if index is None:
            self.notify(
                f"Nothing to run again in step {row.index + 1}: no item failed or was skipped.", timeout=3
            )
            return
        self.post_message(self.Retry(row.name, index))

    def on_focus(self) -> None:
        self._repaint()  # the subtitle names the keys while the pane has focus

    def on_blur(self) -> None:
        self._repaint()

    def _repaint(self) -> None:
        mark = getattr(self.app, "mark_dirty", None)
        if mark is not None:
            mark({"steps"})

    # --- painting ---------------------------------------------------------------------------------

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        rows = self._rows = step_rows(playbook, state, view.now)
        names = [s.name for s in playbook.steps]
        current = names.index(state.step) if state.step in names else None
        tracker = current if current is not None else next_step(rows)
        shown = self._shown = self.selected if self.selected is not None else tracker
        row = rows[shown]
        height = max(4, self.content_size.height)
        items = row.items
        # What the shown step needs gets its room first; the step list takes what is left.
        now_rows = 1 + min(len(items), max(1, height // 2 - 1))
        gap = 0 if view.compact else 1
        list_rows = max(1, min(len(rows), height - now_rows - gap))
        parts: list[RenderableType] = self._step_list(rows, playbook, current, shown, list_rows, view)
        head = Text(f"{chr(10) * gap}{self._heading(shown, current)}: ", style="bold")
        head.append(f"{shown + 1}. {step_title(playbook.steps[shown].title)}")
        if self.running == row.name:
            head.append(f"  {view.activity.spinner} running", style=view.tone("warn", bold=True))
        head.no_wrap, head.overflow = True, "ellipsis"
        parts.append(head)
        room = now_rows - 1
        detail = self.details(row.name)
        spare = height - list_rows - now_rows - gap
        why = cannot_run(state)
        marks = [_item_status(item, why(item.kind, item.ref), view) for item in items]
        pad = max(10, *(len(status.plain) + 1 for status, _ in marks))  # statuses in one column
        for i, item in enumerate(items[:room] if len(items) <= room else items[: room - 1]):
            parts.append(self._item_line(item, view, pad, *marks[i]))
            if spare > 0 and detail is not None:
                extra = _item_detail(detail, i, view)[:spare]
                spare -= len(extra)
                parts += extra
        if len(items) > room:
            parts.append(Text(f"  … {len(items) - room + 1} more items", style=view.tone("stale")))
        if spare > 1 and detail is not None and detail.description:
            parts.append(Text(view.redact(detail.description.strip()), style=view.tone("stale")))
        blocked = sum(why(i.kind, i.ref) is not None and i.status not in SETTLED for i in items)
        self.border_subtitle = self._subtitle(row, current, len(names), view, blocked)
        self.show(Group(*parts))

    def _heading(self, shown: int, current: int | None) -> str:
        if shown == current:
            return "Now"
        return "Selected" if self.selected is not None else "Next"

    def _step_list(
        self,
        rows: list[StepRow],
        playbook: Playbook,
        current: int | None,
        shown: int,
        list_rows: int,
        view: View,
    ) -> list[RenderableType]:
        parts: list[RenderableType] = []
        window = _window(len(rows), shown, list_rows)
        if window.start > 0:
            above = {r.status for r in rows[: window.start]}
            mark = "✗" if "failed" in above else "✓" if above == {"passed"} else "·"
            which = "step 1" if window.start == 1 else f"steps 1-{window.start}"
            parts.append(Text(f"{mark} {which} above", style=view.tone("stale")))
        for i in window:
            title = f"{i + 1}. {step_title(playbook.steps[i].title)}"
            mark = STEP_GLYPH.get(rows[i].status, " ")
            if i == current:
                line = Text(f"▶ {title}", style=view.tone("warn", bold=True))
            elif current is None and i == shown and self.selected is None:
                line = Text(f"→ {title}", style="bold")
            elif mark == "✗":
                line = Text(f"✗ {title}", style=view.tone("fail", bold=True))
            else:
                line = Text(f"{mark} {title}", style=view.tone("stale") if mark != " " else "")
            if i == shown and self.selected is not None:
                line.stylize("reverse")  # the operator's selection: what Enter runs
            line.no_wrap, line.overflow = True, "ellipsis"
            parts.append(line)
        if window.stop < len(rows):
            parts.append(Text(f"  … {len(rows) - window.stop} more", style=view.tone("stale")))
        return parts

    @staticmethod
    def _item_line(item: ItemRow, view: View, pad: int, status: Text, after: Text | None) -> Text:
        status = status.copy()
        status.pad_right(max(0, pad - len(status.plain)))  # the statuses in one column
        line = Text("  ")
        line.append_text(status)
        line.append(f" {view.redact(item.label)}")
        if item.when != "always":
            line.append(f" ({item.when.replace('_', ' ')})", style=view.tone("stale"))
        if after is not None:
            line.append(" — ", style=after.style)
            line.append_text(after)
        line.no_wrap, line.overflow = True, "ellipsis"
        return line

    def _subtitle(self, row: StepRow, current: int | None, total: int, view: View, blocked: int) -> str:
        where = f"step {current + 1}/{total}" if current is not None else f"{total} steps · none entered"
        index = retry_index(row)
        again = (
            ""
            if index is None
            else " · R runs skipped"
            if row.items[index].status == "skipped"
            else " · R retries"
        )
        hint = "⏎ runs" + again
        if self.has_focus and not getattr(self.app, "read_only", False):
            where = f"{hint} · {where}"
        if blocked:  # first: the marks may be cut at the pane's edge, the readiness screen has them whole
            key = view.key("readiness")
            where = f"{blocked} cannot run{f' ({key})' if key else ''} · {where}"
        return where


def _item_status(item: ItemRow, blocked: str | None, view: View) -> tuple[Text, Text | None]:
    """An item's status and what follows its label. What ran says why it ended (the runner's words);
    what has not run says what the journaled readiness check says stops it (`✗ cannot run — binary gh
    missing (not on PATH)`), before anyone presses Enter."""
    reason = item.reason
    if blocked and item.status == "not_run":
        why = Text(view.redact(blocked.removeprefix("cannot run: ")), style=view.tone("fail"))
        return Text("✗ cannot run", style=view.tone("fail", bold=True)), why
    status = view.status(item.status)
    if blocked and (item.status in NOT_RUN or not (reason or item.status in SETTLED)):
        return status, blocked_mark(blocked, view)
    if reason:  # why it failed, or what it showed when it passed (a fact's value, the traffic split)
        return status, Text(view.redact(reason), style=view.tone("stale"))
    return status, None


def _item_detail(detail: StepPreview, index: int, view: View) -> list[Text]:
    """An item's note and resolved commands, one line each, dim (what the runbook says it does)."""
    item = next((i for i in detail.items if i.index == index), None)
    if item is None:
        return []
    lines = [f"{item.note.strip()}"] if item.note.strip() else []
    lines += [f"$ {c.text}" for c in item.commands]
    out = []
    for text in lines:
        # One line each: a `python3 -c` script's body would push the items after it off the pane.
        line = Text(f"             {view.redact(one_line(text))}", style=view.tone("stale"))
        line.no_wrap, line.overflow = True, "ellipsis"
        out.append(line)
    return out


def _window(total: int, focus: int, rows: int) -> range:
    """Which steps to list so the focused one is visible (a window around it when space is short)."""
    if total <= rows:
        return range(total)
    rows = max(1, rows - 1)  # one line for the "… more" / "above" marker
    start = max(0, min(focus - 1, total - rows))
    return range(start, min(total, start + rows))
