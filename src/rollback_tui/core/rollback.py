"""The rollback as a state machine, folded from its journaled events.

    (none) ─► requested ─► applying ─► applied ─► verified
                  │            │           │
                  └────────────┴───────────┴─► failed (reason)      (none | failed) ─► cancelled

A failed or cancelled rollback may be requested again (a retry starts a new attempt). Only *applied* and
*verified* make the session "after rollback": a traffic-control command that failed, or a change that
did not hold under verification, never labels later evidence as after the rollback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rollback_tui.core import events as ev
from rollback_tui.core.read.words import pct

Stage = Literal["none", "requested", "applying", "applied", "verified", "failed", "cancelled"]
IN_PROGRESS: frozenset[str] = frozenset({"requested", "applying", "applied"})

STAGE_WORDS: dict[str, str] = {
    "none": "not requested",
    "requested": "requested",
    "applying": "applying",
    "applied": "applied, verifying",
    "verified": "verified",
    "failed": "failed",
    "cancelled": "cancelled",
}


@dataclass
class RollbackStatus:
    stage: Stage = "none"
    action: str | None = None
    actor: str | None = None
    reason: str = ""  # why it was requested (the breach, or the operator's decision)
    replicas: list[str] = field(default_factory=list)  # taken out of traffic
    failure: str | None = None  # why it failed / was cancelled, in words
    attempts: int = 0
    requested_ts: float | None = None
    applied_ts: float | None = None  # when the routing change was read back (this attempt)
    ended_ts: float | None = None  # verified, failed or cancelled
    driver: str | None = None
    verified: ev.RollbackVerified | None = None  # the verification of this attempt, when it passed

    @property
    def after_rollback(self) -> bool:
        """True only once the routing change was made and read back, and nothing has failed since."""
        return self.stage in ("applied", "verified")

    @property
    def in_progress(self) -> bool:
        return self.stage in IN_PROGRESS

    @property
    def words(self) -> str:
        """'failed — blue-next still selected after the change', 'verified', …"""
        text = STAGE_WORDS[self.stage]
        if self.stage in ("failed", "cancelled") and self.failure:
            text += f" — {self.failure}"
        return text

    def apply(self, event: ev.Event) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event)


def _requested(s: RollbackStatus, e: ev.RollbackRequested) -> None:
    s.stage, s.action, s.actor, s.reason = "requested", e.action, e.actor, e.reason
    s.replicas = list(e.replicas)
    s.failure, s.applied_ts, s.ended_ts, s.driver, s.verified = None, None, None, None, None
    s.requested_ts = e.ts
    s.attempts += 1


def _applying(s: RollbackStatus, e: ev.RollbackApplying) -> None:
    s.stage, s.driver = "applying", e.driver


def _applied(s: RollbackStatus, e: ev.RollbackApplied) -> None:
    s.driver = e.driver
    if e.ok:
        s.stage, s.applied_ts = "applied", e.ts
    else:
        _fail(s, e.ts, e.error or "the traffic-control change failed")
    if not s.replicas:  # journals written before `replicas` was recorded: what the change removed
        before = e.before.get("backends") or []
        after = e.after.get("backends") or []
        s.replicas = [b for b in before if b not in after]


def _verified(s: RollbackStatus, e: ev.RollbackVerified) -> None:
    if e.ok:
        s.stage, s.ended_ts, s.verified = "verified", e.ts, e
    else:
        share = f"{pct(e.stable_share)} of {e.requests} requests on stable"
        _fail(s, e.ts, e.error or f"verification did not reach 100 % stable ({share})")


def _failed(s: RollbackStatus, e: ev.RollbackFailed) -> None:
    _fail(s, e.ts, e.reason)


def _cancelled(s: RollbackStatus, e: ev.RollbackCancelled) -> None:
    if s.after_rollback or s.in_progress:  # a declined second prompt does not undo a change already made
        return
    s.stage, s.action, s.actor, s.failure, s.ended_ts = "cancelled", e.action, e.actor, e.reason, e.ts


def _fail(s: RollbackStatus, ts: float, reason: str) -> None:
    s.stage, s.failure, s.ended_ts = "failed", reason, ts


_HANDLERS: dict[str, Callable[[RollbackStatus, Any], None]] = {
    "rollback_requested": _requested,
    "rollback_applying": _applying,
    "rollback_applied": _applied,
    "rollback_verified": _verified,
    "rollback_failed": _failed,
    "rollback_cancelled": _cancelled,
}
ROLLBACK_KINDS = frozenset(_HANDLERS)


def unfinished(status: RollbackStatus, last_seen: float | None) -> ev.RollbackFailed | None:
    """For `resume`: a rollback the killed session left mid-way is journaled as failed, with where it
    stopped — the routing may or may not have changed, and nobody verified it."""
    if not status.in_progress or status.action is None:
        return None
    when = f" (last seen {time.strftime('%H:%M:%SZ', time.gmtime(last_seen))})" if last_seen else ""
    return ev.RollbackFailed(
        action=status.action,
        stage=status.stage,
        reason=f"interrupted while {STAGE_WORDS[status.stage]}: the session stopped before it finished{when};"
        " read the routing and roll back again to verify",
    )
