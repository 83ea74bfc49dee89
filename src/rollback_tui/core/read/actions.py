"""What each playbook action last did, from the journal: `✓ ran 12:03:10Z by alice`, `✗ failed 12:04:02Z
by alice — exit 1`, `… running since 12:05:00Z (alice)`.

Folded from the session state, not from what one cockpit remembers, so the `a` list of a `watch` viewer
or of a resumed session says the same as the cockpit that ran it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback_tui.core.read.words import hms
from rollback_tui.core.rollback import IN_PROGRESS, STAGE_WORDS, RollbackStatus
from rollback_tui.core.state import ActionPart, SessionState

# A command action's outcome → (glyph, words). `error` could not run: unknown, never "failed".
_OUTCOME = {
    "passed": ("✓", "ran"),
    "failed": ("✗", "failed"),
    "timed_out": ("✗", "timed out"),
    "cancelled": ("⊘", "cancelled"),
    "error": ("?", "could not run"),
    "interrupted": ("?", "interrupted"),
}
_STAGE_GLYPH = {"verified": "✓", "failed": "✗", "cancelled": "⊘"}


@dataclass(frozen=True)
class LastRun:
    """An action's latest run as journaled: `status` (an ActionFinished outcome, `running`, or a
    rollback stage) for the front end's tone, `text` for its words."""

    status: str
    text: str


def _by(actor: str | None) -> str:
    return f" by {actor}" if actor else ""


def _command(whole: ActionPart) -> LastRun:
    if whole.status == "running":
        return LastRun("running", f"… running since {hms(whole.started_ts)}{_by(whole.actor)}")
    glyph, words = _OUTCOME.get(whole.status, ("?", whole.status.replace("_", " ")))
    why = f" — {whole.error}" if whole.error and whole.status != "passed" else ""
    # An interrupted run was closed at the resume, not when it stopped: its error says when it was last seen.
    when = "" if whole.status == "interrupted" else f" {hms(whole.finished_ts)}"
    return LastRun(whole.status, f"{glyph} {words}{when}{_by(whole.actor)}{why}")


def _rollback(status: RollbackStatus) -> LastRun:
    words = STAGE_WORDS[status.stage]
    if status.stage in IN_PROGRESS:
        return LastRun("running", f"… {words} since {hms(status.requested_ts)}{_by(status.actor)}")
    why = f" — {status.failure}" if status.failure else ""
    glyph = _STAGE_GLYPH.get(status.stage, "?")
    return LastRun(status.stage, f"{glyph} {words} {hms(status.ended_ts)}{_by(status.actor)}{why}")


def last_run(state: SessionState, name: str) -> LastRun | None:
    """The action's latest run (a command action's, or the rollback's when it is this action), None
    when the journal holds none."""
    rollback = state.traffic.rollback
    if rollback.action == name and rollback.stage != "none":
        return _rollback(rollback)
    run = state.actions.get(name)
    whole = run.whole if run is not None else None
    return None if whole is None else _command(whole)
