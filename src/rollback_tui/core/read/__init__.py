"""The read model: what the screen, the headless log and the report show, computed once from the state.

The front ends (ui/, cli, report/) only format what these pure functions return, so they agree number
for number — the same counts, the same window for a rate, labelled with it:

* `timeline` — the one-line description of an event (headless log and report timeline)
* `guardrails` — each guardrail's value, the window it is over, and its status
* `traffic` — requests, split and 5xx over a labelled window
* `steps` — the status of each runbook step and item
* `actions` — what each playbook action last did (the `a` list)
* `checklist` — the checklist counts (evidence items and exit criteria, one definition)
* `summary` — all of it at the end of a session (report, bundle, headless verdict)
* `words` — the number formats they share

This package imports nothing here at import time: `core.state` and the rest import from it freely.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollback_tui.core.state import SessionState


def session_now(state: SessionState) -> float:
    """The session's own clock: its end, else its last event (a report or a replay never reads the wall
    clock, so it reads the same tomorrow; a live cockpit passes time.time() instead)."""
    if state.ended is not None:
        return state.ended.ts
    return state.last_ts or 0.0
