"""Runbook step tracker: where we are in the playbook and what the current step needs.

Each step's and item's status comes from the read model (core/read/steps.py), as in the report.
"""

from __future__ import annotations

import re

from rich.console import Group, RenderableType
from rich.text import Text

from rollback_tui.core.read.steps import next_step, step_rows
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View

# The mark of a step that is not the current one: its status, never its position ("✓" only if it passed).
STEP_GLYPH = {"passed": "✓", "failed": "✗", "partial": "◐", "running": "…", "unobserved": "?"}

LEADING_NUMBER = re.compile(r"^\s*(?:step\s*)?\d+[.):]?\s+", re.IGNORECASE)


def step_title(title: str) -> str:
    """'1. Capture baseline' → 'Capture baseline' (the pane numbers the steps itself)."""
    return LEADING_NUMBER.sub("", title, count=1) or title


class StepsPane(StaticPane):
    TITLE = "Runbook"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        names = [s.name for s in playbook.steps]
        rows = step_rows(playbook, state, view.now)
        current = names.index(state.step) if state.step in names else None
        focus_i = current if current is not None else next_step(rows)
        focus = playbook.steps[focus_i]
        # "Now" (what the current step needs) is what matters: it gets its room first.
        height = max(4, self.content_size.height)
        need = rows[focus_i].items
        now_rows = 1 + min(len(need), max(1, height // 2 - 1))
        list_rows = max(1, height - now_rows - (0 if view.compact else 1))
        parts: list[RenderableType] = []
        shown = _window(len(playbook.steps), focus_i, list_rows)
        if shown.start > 0:
            above = {r.status for r in rows[: shown.start]}
            mark = "✗" if "failed" in above else "✓" if above == {"passed"} else "·"
            parts.append(Text(f"{mark} steps 1-{shown.start} above", style=view.tone("stale")))
        for i in shown:
            step = playbook.steps[i]
            title = f"{i + 1}. {step_title(step.title)}"
            mark = STEP_GLYPH.get(rows[i].status, " ")
            if i == current:
                line = Text(f"▶ {title}", style=view.tone("warn", bold=True))
            elif current is None and i == focus_i:
                line = Text(f"→ {title}", style="bold")
            elif mark == "✗":
                line = Text(f"✗ {title}", style=view.tone("fail", bold=True))
            else:
                line = Text(f"{mark} {title}", style=view.tone("stale") if mark != " " else "")
            line.no_wrap, line.overflow = True, "ellipsis"
            parts.append(line)
        if shown.stop < len(playbook.steps):
            parts.append(Text(f"  … {len(playbook.steps) - shown.stop} more", style=view.tone("stale")))
        heading = "Now" if current is not None else "Next"
        head = Text(
            f"{'' if view.compact else chr(10)}{heading}: {focus_i + 1}. {step_title(focus.title)}",
            style="bold",
        )
        head.no_wrap, head.overflow = True, "ellipsis"
        parts.append(head)
        room = now_rows - 1
        for row in need[:room] if len(need) <= room else need[: room - 1]:
            line = Text("  ")
            line.append_text(view.status(row.status, pad=10))
            line.append(f" {view.redact(row.label)}")
            if row.when == "on_breach":
                line.append(" (on breach)", style=view.tone("stale"))
            line.no_wrap, line.overflow = True, "ellipsis"
            parts.append(line)
        if len(need) > room:
            parts.append(Text(f"  … {len(need) - room + 1} more items", style=view.tone("stale")))
        self.border_subtitle = (
            f"step {current + 1}/{len(names)}"
            if current is not None
            else f"{len(names)} steps · none entered"
        )
        self.show(Group(*parts))


def _window(total: int, focus: int, rows: int) -> range:
    """Which steps to list so the focused one is visible (a window around it when space is short)."""
    if total <= rows:
        return range(total)
    rows = max(1, rows - 1)  # one line for the "… more" / "above" marker
    start = max(0, min(focus - 1, total - rows))
    return range(start, min(total, start + rows))
