"""The status of each runbook step and item, from what the journal recorded.

A session run by the runbook runner (session/runbook.py; `SessionStarted.runbook_items`) judges an item by
its own StepItemFinished: what ran as part of that step and what it showed, never the tracker having
entered the step, and never the same gate or fact run elsewhere (a fact captured in step 1 does not make
step 2's re-check pass).

A journal written before the runner existed judges an item by the evidence for its ref: a gate's
outcome, a fact's agreement, a probe's result, a fanout check, the rollback's stage. Items whose outcome
is never journaled as such (a manual task, cleanup, a command action whose outcome is only a notice) are
`manual` / `no_record`, never "not run": the evidence must not claim what did not happen, nor that
something did not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rollback_tui.core.checklist import hms
from rollback_tui.core.read.guardrails import readings
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook, SelectorRemoval, Step, StepItem

_PROBE = {"ok": "passed", "failed": "failed", "unknown": "unobserved"}
_GUARDRAIL = {"breach": "failed", "unknown": "unobserved", "ok": "ok"}  # over, waiting: not judged yet
_ROLLBACK_STAGE = {
    "requested": "running",
    "applying": "running",
    "applied": "running",
    "verified": "passed",
    "failed": "failed",
    "cancelled": "cancelled",
}
FAILED = frozenset({"failed", "timed_out"})
DONE = frozenset({"passed", "ok"})
# Could not look (a gate that could not run, a probe or fact that could not observe): neither done nor failed.
UNKNOWN = frozenset({"unobserved", "error", "interrupted"})
# The words the steps pane shows too (ui/panes/base.py STATUS; tests/test_read_model.py keeps them equal).
_WORDS = {
    "timed_out": "timed out",
    "error": "can't run",
    "unobserved": "unknown",
    "not_run": "not run",
    "no_record": "no record",
    "needs_input": "needs input",
}
# An item's outcome as the runner journaled it → the status words above (unknown reads "unknown").
_RUN_STATUS = {"unknown": "unobserved"}
# Not done, and not held against a step when the item is conditional (on breach, on failure, optional).
_NOT_DONE = frozenset({"not_run", "skipped"})


LEADING_NUMBER = re.compile(r"^\s*(?:step\s*)?\d+[.):]?\s+", re.IGNORECASE)


def step_title(title: str) -> str:
    """'1. Capture baseline' → 'Capture baseline': every front end numbers the steps by their position,
    and the shipped playbooks number their titles too."""
    return LEADING_NUMBER.sub("", title, count=1) or title


def status_word(status: str) -> str:
    """`timed_out` → `timed out`, `unobserved` → `unknown`, `not_run` → `not run`…"""
    return _WORDS.get(status, status)


def item_status(
    item: StepItem, state: SessionState, playbook: Playbook, guardrails: Mapping[str, str] | None = None
) -> str:
    """passed | ok | failed | timed_out | error | cancelled | interrupted | unobserved | running | queued |
    not_run | manual | no_record. `guardrails`: each guardrail's reading status now (read/guardrails.py)."""
    kind, ref = item.ref
    if kind == "manual":
        return "manual"
    if kind == "gate":
        gate = state.gates.get(ref)
        return gate.status if gate else "not_run"
    if kind == "fact":
        facts = [f for f in state.facts.values() if f.fact == ref]
        if not facts:
            return "not_run"
        last = max(facts, key=lambda f: f.ts)
        if last.source == "manual:pending":  # waits for the operator to record it
            return "manual"
        if not last.observed:  # could not look: unknown, not failed
            return "unobserved"
        expect = next((f.expect for f in playbook.facts if f.name == ref), None)
        off = expect is not None and set(last.values.values()) != {expect}  # not the value required
        return "failed" if last.error or last.agree is False or off else "passed"
    if kind == "probe":
        result = state.probes.get(ref)
        return "not_run" if result is None else _PROBE[result.status]
    if kind == "check":
        return _check_status(ref, state)
    if kind == "action" and isinstance(_action(playbook, ref), SelectorRemoval):
        rollback = state.traffic.rollback
        return _ROLLBACK_STAGE.get(rollback.stage, "not_run") if rollback.action == ref else "not_run"
    if kind == "guardrail":  # "confirm it is clear now": what its reading says now
        return _GUARDRAIL.get((guardrails or {}).get(ref, ""), "no_record")
    return "no_record"  # other actions: their outcome is only in a notice


def _action(playbook: Playbook, name: str) -> object:
    return next((a for a in playbook.actions if a.name == name), None)


def _check_status(check: str, state: SessionState) -> str:
    if check == "fanout":
        last = state.fanout.last_result
        return "not_run" if last is None else ("passed" if last.passed else "failed")
    if check == "export":
        return "passed" if state.exports else "not_run"
    if check == "traffic":  # the canary: traffic flowed (what it showed is the split and the guardrails)
        return "ok" if any(w.requests for w in state.traffic.windows) else "not_run"
    return "no_record"  # guardrail_watch, cleanup


def run_status(state: SessionState, step: str, index: int) -> tuple[str, str, bool]:
    """(status, reason, due) of a step's item from the runner's events: `not_run` when it never started."""
    run = state.step_items.get((step, index))
    if run is None:
        return "not_run", "", False
    return _RUN_STATUS.get(run.status, run.status), run.reason, run.due


def ran_outside(item: StepItem, state: SessionState) -> tuple[str, str] | None:
    """(`passed`, when and who) for an action item its step skipped whose action then ran and passed on
    its own (the `a` key): it ran, and the item must not say "skipped" for ever."""
    kind, ref = item.ref
    run = state.actions.get(ref) if kind == "action" else None
    whole = run.whole if run is not None else None
    if whole is None or whole.status != "passed" or whole.finished_ts is None:
        return None
    return "passed", f"ran outside the step at {hms(whole.finished_ts)} by {whole.actor}"


@dataclass(frozen=True)
class ItemRow:
    kind: str
    ref: str
    status: str
    when: str = "always"
    reason: str = ""  # why, in words, as the runner journaled it (empty for journals before it)
    due: bool = False  # a conditional item whose condition held: judged like one that always runs

    @property
    def label(self) -> str:
        """`gate: release-gates` (what the steps pane shows after the status)."""
        return f"{self.kind}: {self.ref}"

    @property
    def text(self) -> str:
        """`gate: release-gates passed`, `action: x skipped (why)`; a manual task is only named."""
        if self.status == "manual":
            return self.label
        why = f" ({self.reason})" if self.reason and self.status not in DONE else ""
        return f"{self.label} {status_word(self.status)}{why}"


@dataclass(frozen=True)
class StepRow:
    index: int  # 0-based position in the runbook
    name: str
    title: str  # without the playbook's own leading number (step_title)
    items: tuple[ItemRow, ...]
    status: str  # passed | failed | running | unobserved | partial | not_run | manual | no_record
    current: bool = False  # the step the tracker is on

    @property
    def text(self) -> str:
        """`1. baseline: failed — gate: release-gates passed · gate: api-tests failed · manual: …`."""
        items = " · ".join(i.text for i in self.items)
        return f"{self.index + 1}. {self.name}: {status_word(self.status)}" + (f" — {items}" if items else "")

    def as_dict(self) -> dict[str, object]:
        items = [
            {"item": i.label, "when": i.when, "status": i.status, "reason": i.reason} for i in self.items
        ]
        return {"step": self.name, "status": self.status, "current": self.current, "items": items}


def step_status(items: tuple[ItemRow, ...]) -> str:
    """A step failed if an item failed; passed when every judged item passed; waiting for input when a
    manual item was not answered; unknown when an item could not be observed; partial in between.
    Conditional items (on breach, on failure, optional) that did not run are not held against it — unless
    their condition held (`due`): a change a breach called for and nobody made is not a step done."""
    judged = [
        i.status
        for i in items
        if i.status not in ("manual", "no_record")
        and not (i.when != "always" and not i.due and i.status in _NOT_DONE)
    ]
    if any(s in FAILED for s in judged):
        return "failed"
    if any(s in ("running", "queued") for s in judged):
        return "running"
    if not judged:
        statuses = {i.status for i in items}
        for status in ("manual", "no_record", "skipped"):
            if status in statuses:
                return status
        return "not_run"
    done = sum(s in DONE for s in judged)
    if done == len(judged):
        return "passed"
    if "needs_input" in judged:
        return "needs_input"
    if any(s in UNKNOWN for s in judged):
        return "unobserved"
    if done:
        return "partial"
    return "skipped" if set(judged) == {"skipped"} else "not_run"


def step_row(
    index: int, step: Step, state: SessionState, playbook: Playbook, guardrails: Mapping[str, str]
) -> StepRow:
    by_runner = state.started is not None and state.started.runbook_items
    rows = []
    for j, item in enumerate(step.do):
        due = False
        if by_runner:
            status, reason, due = run_status(state, step.name, j)
            if status == "skipped":
                status, reason = ran_outside(item, state) or (status, reason)
        else:
            status, reason = item_status(item, state, playbook, guardrails), ""
        rows.append(ItemRow(*item.ref, status, item.when, reason, due))
    items = tuple(rows)
    title = step_title(step.title)  # numbered by `index`, not twice
    return StepRow(index, step.name, title, items, step_status(items), state.step == step.name)


def step_rows(playbook: Playbook, state: SessionState, now: float) -> list[StepRow]:
    """Every step at `now` (a guardrail item is judged by the guardrail's reading at that moment)."""
    asked = any(item.guardrail for step in playbook.steps for item in step.do)
    guardrails = {r.rail.name: r.status for r in readings(playbook, state, now)} if asked else {}
    return [step_row(i, step, state, playbook, guardrails) for i, step in enumerate(playbook.steps)]


def next_step(rows: list[StepRow]) -> int:
    """No step entered yet: the first step that has not passed."""
    for row in rows:
        if row.status != "passed":
            return row.index
    return len(rows) - 1
