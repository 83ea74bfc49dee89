"""Runbook step tracker: where we are in the playbook and what the current step needs."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook, StepItem
from rollback_tui.ui.panes.base import StaticPane, View


def item_status(item: StepItem, state: SessionState) -> str:
    """Best knowledge of one step item from the state: ok / failed / running / not_run."""
    kind, ref = item.ref
    if kind == "gate":
        gate = state.gates.get(ref)
        return gate.status if gate else "not_run"
    if kind == "fact":
        facts = [f for f in state.facts.values() if f.fact == ref]
        if not facts:
            return "not_run"
        return "failed" if facts[-1].error or facts[-1].agree is False else "passed"
    if kind == "check" and ref == "fanout":
        last = state.fanout.last_result
        return "not_run" if last is None else ("passed" if last.passed else "failed")
    if kind == "check" and ref == "export":
        return "passed" if state.exports else "not_run"
    if kind == "action":
        t = state.traffic
        if t.rollback_verified and t.rollback_verified.action == ref:
            return "passed" if t.rollback_verified.ok else "failed"
        if t.rollback_applied and t.rollback_applied.action == ref:
            return "running"
    return "not_run"


class StepsPane(StaticPane):
    TITLE = "Runbook"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        names = [s.name for s in playbook.steps]
        current = names.index(state.step) if state.step in names else None
        parts: list[RenderableType] = []
        for i, step in enumerate(playbook.steps):
            if i == current:
                line = Text(f"▶ {i + 1}. {step.title}", style=view.tone("warn", bold=True))
            elif current is not None and i < current:
                line = Text(f"✓ {i + 1}. {step.title}", style=view.tone("stale"))
            else:
                line = Text(f"  {i + 1}. {step.title}")
            line.no_wrap, line.overflow = True, "ellipsis"
            parts.append(line)
        focus = playbook.steps[current] if current is not None else playbook.steps[0]
        heading = "Now" if current is not None else "Not started — first step"
        parts.append(Text(f"\n{heading}: {focus.title}", style="bold"))
        for item in focus.do:
            kind, ref = item.ref
            status = item_status(item, state) if kind != "manual" else "not_run"
            line = Text("  ")
            line.append_text(view.status(status, pad=11))
            line.append(f" {kind}: {view.redact(ref)}")
            if item.when == "on_breach":
                line.append(" (on breach)", style=view.tone("stale"))
            line.no_wrap, line.overflow = True, "ellipsis"
            parts.append(line)
        self.border_subtitle = (
            f"step {current + 1}/{len(names)}" if current is not None else f"{len(names)} steps"
        )
        self.show(Group(*parts))
