"""Runbook step tracker: where we are in the playbook and what the current step needs."""

from __future__ import annotations

import re

from rich.console import Group, RenderableType
from rich.text import Text

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook, StepItem
from rollback_tui.ui.panes.base import StaticPane, View


def item_status(item: StepItem, state: SessionState) -> str:
    """Best knowledge of one step item from the state: passed / failed / unobserved / running / not_run."""
    kind, ref = item.ref
    if kind == "gate":
        gate = state.gates.get(ref)
        return gate.status if gate else "not_run"
    if kind == "fact":
        facts = [f for f in state.facts.values() if f.fact == ref]
        if not facts:
            return "not_run"
        if not facts[-1].observed:  # could not look: unknown, not failed
            return "unobserved"
        return "failed" if facts[-1].error or facts[-1].agree is False else "passed"
    if kind == "probe":
        probe = state.probes.get(ref)
        if probe is None:
            return "not_run"
        return {"ok": "passed", "failed": "failed", "unknown": "unobserved"}[probe.status]
    if kind == "check" and ref == "fanout":
        last = state.fanout.last_result
        return "not_run" if last is None else ("passed" if last.passed else "failed")
    if kind == "check" and ref == "export":
        return "passed" if state.exports else "not_run"
    if kind == "action":
        rollback = state.traffic.rollback
        if rollback.action == ref:
            return _ROLLBACK_STEP.get(rollback.stage, "not_run")
    return "not_run"


_ROLLBACK_STEP = {
    "requested": "running",
    "applying": "running",
    "applied": "running",
    "verified": "passed",
    "failed": "failed",
}


LEADING_NUMBER = re.compile(r"^\s*(?:step\s*)?\d+[.):]?\s+", re.IGNORECASE)


def step_title(title: str) -> str:
    """'1. Capture baseline' → 'Capture baseline' (the pane numbers the steps itself)."""
    return LEADING_NUMBER.sub("", title, count=1) or title


def next_step(state: SessionState, playbook: Playbook) -> int:
    """No step entered yet: the first step whose automatic items are not all passed."""
    for i, step in enumerate(playbook.steps):
        auto = [item for item in step.do if item.ref[0] != "manual"]
        if not auto or any(item_status(item, state) != "passed" for item in auto):
            return i
    return len(playbook.steps) - 1


class StepsPane(StaticPane):
    TITLE = "Runbook"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        names = [s.name for s in playbook.steps]
        current = names.index(state.step) if state.step in names else None
        focus_i = current if current is not None else next_step(state, playbook)
        focus = playbook.steps[focus_i]
        # "Now" (what the current step needs) is what matters: it gets its room first.
        height = max(4, self.content_size.height)
        need = [item for item in focus.do]
        now_rows = 1 + min(len(need), max(1, height // 2 - 1))
        list_rows = max(1, height - now_rows - (0 if view.compact else 1))
        parts: list[RenderableType] = []
        shown = _window(len(playbook.steps), focus_i, list_rows)
        if shown.start > 0:
            parts.append(Text(f"✓ steps 1-{shown.start} above", style=view.tone("stale")))
        for i in shown:
            step = playbook.steps[i]
            title = f"{i + 1}. {step_title(step.title)}"
            if i == current:
                line = Text(f"▶ {title}", style=view.tone("warn", bold=True))
            elif current is not None and i < current:
                line = Text(f"✓ {title}", style=view.tone("stale"))
            elif current is None and i == focus_i:
                line = Text(f"→ {title}", style="bold")
            else:
                line = Text(f"  {title}")
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
        for item in need[:room] if len(need) <= room else need[: room - 1]:
            kind, ref = item.ref
            status = item_status(item, state) if kind != "manual" else "manual"
            line = Text("  ")
            line.append_text(view.status(status if status != "manual" else "not_run", pad=10))
            line.append(f" {kind}: {view.redact(ref)}")
            if item.when == "on_breach":
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
