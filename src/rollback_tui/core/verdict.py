"""The overall verdict the whole call reads at a glance: one level, one headline, the reasons.

Pure functions over SessionState (no Textual): the cockpit's verdict bar shows the reasons' short texts;
the headless verdict ("why") and the report list the same reasons with their details.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rollback_tui.core import events as ev
from rollback_tui.core.read.guardrails import standings
from rollback_tui.core.read.words import pct
from rollback_tui.core.rollback import RollbackStatus
from rollback_tui.core.state import ReplicaState, SessionState
from rollback_tui.playbook.model import Playbook

LEVEL_GLYPH = {"ok": "✓", "mitigated": "⟲", "warn": "!", "fail": "✗", "stale": "?"}
LEVEL_WORD = {
    "ok": "HEALTHY",
    "mitigated": "MITIGATED",
    "warn": "DEGRADED",
    "fail": "FAILING",
    "stale": "NO DATA",
}
LEVEL_TONE = {"ok": "ok", "mitigated": "ok", "warn": "warn", "fail": "fail", "stale": "stale"}
_RANK = {"ok": 0, "mitigated": 0, "stale": 1, "warn": 2, "fail": 3}


@dataclass(frozen=True)
class Reason:
    rank: int  # 0: said for the record (mitigated, out of traffic); above: what is wrong
    text: str  # short, for the headline: "gate api-tests failed"
    detail: str = ""  # the rest, for the headless verdict and the report: "exit 101"

    @property
    def line(self) -> str:
        return f"{self.text} — {self.detail}" if self.detail else self.text


@dataclass
class Verdict:
    level: str = "stale"  # ok | mitigated | warn | fail | stale
    ranked: list[Reason] = field(default_factory=list)
    summary: str = ""  # the words after the headline when nothing is wrong

    @property
    def tone(self) -> str:
        return LEVEL_TONE[self.level]

    def _worst_first(self) -> list[Reason]:
        return sorted(self.ranked, key=lambda r: -r.rank)

    @property
    def reasons(self) -> list[str]:
        """Worst first, so a truncated verdict line still names the failures."""
        return [r.text for r in self._worst_first()]

    @property
    def problems(self) -> list[str]:
        """What is wrong, worst first, each with its detail (the headless "why", the report's list)."""
        return [r.line for r in self._worst_first() if r.rank > 0]

    @property
    def headline(self) -> str:
        """`✗ FAILING` / `⟲ MITIGATED — rolled back: …`."""
        summary = f" — {self.summary}" if self.summary and not self.problems else ""
        return f"{self.glyph} {self.word}{summary}"

    @property
    def glyph(self) -> str:
        return LEVEL_GLYPH[self.level]

    @property
    def word(self) -> str:
        return LEVEL_WORD[self.level]

    def raise_to(self, level: str, reason: str, detail: str = "") -> None:
        if _RANK[level] > _RANK[self.level]:
            self.level = level
        self.ranked.append(Reason(_RANK[level], reason, detail))

    def note(self, reason: str) -> None:
        """For the record only: does not change the level."""
        self.ranked.append(Reason(0, reason))


def stale_after_s(playbook: Playbook) -> float:
    """How old a replica's last health sample may be before its status is no longer trusted."""
    return max(5.0, 3 * playbook.health_interval_s + playbook.health_timeout_s)


def replica_status(replica: ReplicaState, now: float, stale_after_s: float) -> str:
    """The replica's status, `stale` when its last sample is too old to trust, `unobserved` when it was
    sampled but could not be looked at from here (unknown is neither ok nor failing)."""
    if replica.last_ts is not None and now - replica.last_ts > stale_after_s:
        return "stale"
    if replica.status == "unknown" and replica.samples:
        return "unobserved"
    return replica.status


def prefix_mismatch_text(state: SessionState) -> str | None:
    """'stable-a chat:rt: ≠ blue-next chat:rt2:' — one replica per distinct prefix."""
    if not state.prefix_mismatch:
        return None
    by_prefix: dict[str, list[str]] = {}
    for name, prefix in state.prefixes.items():
        by_prefix.setdefault(prefix, []).append(name)
    # Majority prefix first, so the odd one out reads last.
    groups = sorted(by_prefix.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return " ≠ ".join(f"{'/'.join(names)} {prefix}" for prefix, names in groups)


def verdict(state: SessionState, now: float, stale_after_s: float) -> Verdict:
    """The headline. After a verified rollback, the replicas it took out of traffic and the candidate
    breaches it answered no longer make the service degraded: the headline says it is mitigated."""
    agree = " · prefixes and transport agree" if state.realtime_reported else ""
    v = Verdict(level="ok", summary=f"every replica healthy{agree}")
    if not state.replicas or all(r.samples == 0 for r in state.replicas.values()):
        return Verdict(level="stale", ranked=[Reason(_RANK["stale"], "no health samples yet")])
    rollback = state.traffic.rollback
    removed = set(rollback.replicas) if rollback.after_rollback else set()
    _replicas(v, state, now, stale_after_s, removed)
    mismatch = prefix_mismatch_text(state)
    if mismatch:
        v.raise_to("fail", "channel prefix mismatch", mismatch)
    for name in state.transport_mismatch:
        if name not in removed:
            v.raise_to("fail", f"{name} on transport {state.replicas[name].transport}")
    _breaches(v, state)
    _gates(v, state)
    last = state.fanout.last_result
    if last is not None and not last.passed:
        v.raise_to("fail", "fanout check failed", "; ".join(dict.fromkeys(last.reasons)))
    _rollback(v, state)
    return v


def _replicas(v: Verdict, state: SessionState, now: float, stale_after_s: float, removed: set[str]) -> None:
    for r in state.replicas.values():
        status = replica_status(r, now, stale_after_s)
        if r.name in removed:
            if status != "ok":
                v.note(f"{r.name} {status}, out of traffic")
        elif status in ("down", "timeout", "junk"):
            v.raise_to("fail", f"{r.name} {status}", r.error or "")
        elif status == "degraded":
            v.raise_to("warn", f"{r.name} degraded")
        elif status == "unobserved":
            v.raise_to("stale", f"{r.name} unknown: {r.error or 'not observed'}")
        elif status in ("stale", "unknown"):
            v.raise_to("stale", f"{r.name} {'no recent sample' if status == 'stale' else 'not sampled'}")


def _gates(v: Verdict, state: SessionState) -> None:
    for gate in state.gates.values():
        if gate.status in ("failed", "timed_out"):
            code = f"exit {gate.exit_code}" if gate.exit_code is not None else ""
            v.raise_to("fail", f"gate {gate.name} {gate.status.replace('_', ' ')}", code)
        elif gate.status == "error":  # it never ran: unknown, not a failure
            v.raise_to("stale", f"gate {gate.name} could not run")
        elif gate.status == "interrupted":  # the cockpit died while it ran: its outcome is unknown
            v.raise_to("stale", f"gate {gate.name} interrupted")


def answered_by_rollback(breach: ev.GuardrailBreach, rollback: RollbackStatus) -> bool:
    """A candidate's breach from before a verified rollback took the candidates out of traffic: it stays
    on the books (nothing reaches them to recover it) but the rollback answered it."""
    return (
        rollback.stage == "verified"
        and breach.scope == "candidate"
        and rollback.applied_ts is not None
        and breach.ts <= rollback.applied_ts
    )


def _breaches(v: Verdict, state: SessionState) -> None:
    rollback = state.traffic.rollback
    for standing in standings(state):
        breach = standing.breach
        if answered_by_rollback(breach, rollback):
            v.note(f"{standing.name} mitigated by the rollback")
        elif standing.held:
            level = "fail" if breach.severity == "P0" else "warn"
            v.raise_to(level, standing.name, standing.text)
        else:  # unknown is neither a breach nor a recovery: what it is now, nobody has seen
            v.raise_to("stale", f"{standing.name} unknown since its breach", standing.text)


def _rollback(v: Verdict, state: SessionState) -> None:
    rollback = state.traffic.rollback
    if rollback.stage == "failed":
        v.raise_to("fail", f"rollback failed: {rollback.failure}")
    elif rollback.in_progress:
        v.raise_to("warn", f"rollback {rollback.words}")
    elif rollback.stage == "cancelled" and state.traffic.breaches:
        v.note(f"rollback declined by {rollback.actor}")
    elif rollback.stage == "verified" and v.level == "ok":
        v.level = "mitigated"
        out = ", ".join(rollback.replicas) or rollback.action
        verified = rollback.verified
        share = f" · {pct(verified.stable_share)} stable of {verified.requests} req" if verified else ""
        v.summary = f"rolled back: {out} out of traffic{share}"
