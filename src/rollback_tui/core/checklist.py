"""Evidence checklist and exit criteria, evaluated from the session state (pure, headless).

Each playbook checklist item / exit criterion has a `rule`. `evaluate` says, for every item, whether it is
checked, whether that tick is automatic (the rule holds) or manual (a ChecklistTicked by an operator), and
the evidence: human-readable references to the journaled events that prove it (or say what is missing).

* A manual ChecklistTicked (auto=False) overrides the rule, in both directions; its actor and note are shown.
* An automatic tick that later stopped holding is flagged `held_before_but_not_now` — known from the
  journaled auto ticks (see `auto_ticks`) and, where the state keeps history, from the events themselves.
* `auto_ticks` returns the ChecklistTicked(auto=True) events the engine should journal when a rule starts
  or stops holding, so auto ticks and un-ticks are part of the evidence trail too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import no_data
from rollback_tui.core.read.guardrails import standings
from rollback_tui.core.read.words import hms
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import ChecklistItem, ExitCriterion, Playbook, SelectorRemoval

AUTO_ACTOR = "rollback-tui"

Item = ChecklistItem | ExitCriterion


@dataclass
class ItemStatus:
    name: str
    text: str
    rule: str
    kind: str  # "item" (evidence checklist) or "exit" (exit criterion)
    checked: bool
    auto: bool  # True when `checked` comes from the rule, False when an operator's tick decides
    evidence: list[str] = field(default_factory=list)
    held_before_but_not_now: bool = False
    rule_holds: bool = False  # the rule's own verdict (also for manually overridden items)
    actor: str | None = None  # who ticked it by hand
    note: str = ""
    ticked_ts: float | None = None


@dataclass
class ExitVerdict:
    complete: bool
    missing: list[str] = field(default_factory=list)


@dataclass
class ChecklistReport:
    items: list[ItemStatus]
    exit_criteria: list[ItemStatus]
    verdict: ExitVerdict

    def get(self, name: str) -> ItemStatus | None:
        return next((s for s in self.items + self.exit_criteria if s.name == name), None)


# --- formatting ----------------------------------------------------------------------------------


def _run(run: str) -> str:
    return run[:8]


def _num(value: float) -> str:
    return f"{value:g}"


# --- rules ---------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    holds: bool
    evidence: list[str]
    held_earlier: bool = False  # the state's own history shows the rule held at some earlier point


def _gate_names(playbook: Playbook, item: Item) -> list[str]:
    if item.gate:
        return [item.gate]
    return [g.name for g in playbook.gates if g.required]


def _rollback_applied(state: SessionState) -> ev.RollbackApplied | None:
    """The routing change that makes evidence 'after rollback': only one that was applied and has not
    failed since (a failed command or a failed verification leaves the session before the rollback)."""
    applied = state.traffic.rollback_applied
    if not state.traffic.rollback.after_rollback or applied is None or not applied.ok:
        return None
    return applied


def _no_rollback_yet(state: SessionState) -> str:
    status = state.traffic.rollback
    if status.stage == "none":
        return "no rollback yet"
    when = hms(status.ended_ts or status.requested_ts)
    return f"rollback {status.action} {status.words} ({when})"


def _gate_rule(playbook: Playbook, state: SessionState, item: Item, after_rollback: bool) -> _Outcome:
    names = _gate_names(playbook, item)
    if not names:
        return _Outcome(False, ["no gate named and the playbook has no required gates"])
    applied = _rollback_applied(state) if after_rollback else None
    if after_rollback and applied is None:
        return _Outcome(False, [f"{_no_rollback_yet(state)}, so no gate run after rollback"])
    holds, held_earlier, evidence = True, False, []
    suffix = f" after rollback at {hms(applied.ts)}" if applied else ""
    for name in names:
        gate = state.gates.get(name)
        history = gate.history if gate else []
        if applied:
            # A run counts only if it started after the rollback was applied.
            history = [f for f in history if f.started_ts >= applied.ts]
        if not history:
            holds = False
            evidence.append(f"gate {name} has not run{suffix}")
            continue
        last = history[-1]
        # `error`: the gate never ran (missing binary, unset ${VAR}, SSH refused) — unknown, not failed.
        outcome = "could not run" if last.outcome == "error" else last.outcome.replace("_", " ")
        line = (
            f"gate {name} {outcome} at {hms(last.ts)} "
            f"(run {_run(last.run)}, exit {last.exit_code if last.exit_code is not None else '-'})"
        )
        why = f": {last.error}" if last.outcome == "error" and last.error else ""
        evidence.append(line + suffix + why)
        if last.outcome != "passed":
            holds = False
            held_earlier = held_earlier or any(f.outcome == "passed" for f in history[:-1])
    return _Outcome(holds, evidence, held_earlier)


def _rto_rule(playbook: Playbook, state: SessionState, item: Item) -> _Outcome:
    verified = state.traffic.rollback.verified
    if verified is None:
        if state.traffic.rollback.stage != "none":
            return _Outcome(False, [f"{_no_rollback_yet(state)}, not verified"])
        return _Outcome(False, ["no rollback executed"])
    if item.action and verified.action != item.action:
        return _Outcome(False, [f"rollback {item.action} not executed (last was {verified.action})"])
    bound = item.rto_s
    if bound is None:
        action = next((a for a in playbook.actions if a.name == verified.action), None)
        bound = action.rto_budget_s if isinstance(action, SelectorRemoval) else None
    share = f"{verified.stable_share * 100:.1f}% of {verified.requests} requests on stable"
    ttd = (
        f", time to detect within {_num(verified.time_to_detect_s)} s"
        if verified.time_to_detect_s is not None
        else ""
    )
    head = f"rollback {verified.action} verified {'ok' if verified.ok else 'NOT ok'} at {hms(verified.ts)}"
    if verified.rto_s is None:
        return _Outcome(False, [f"{head}: RTO not measured ({share})"])
    if bound is None:
        return _Outcome(False, [f"{head}: RTO {_num(verified.rto_s)} s but no RTO bound in the playbook"])
    within = verified.rto_s <= bound
    relation = "≤" if within else ">"
    line = f"{head}: RTO {_num(verified.rto_s)} s {relation} {_num(bound)} s ({share}{ttd})"
    return _Outcome(verified.ok and within, [line])


def _after_rollback(state: SessionState, result: ev.FanoutResult, applied: ev.RollbackApplied | None) -> bool:
    # By time, not by the label the check was started with: a rollback that failed after the check
    # was labelled does not make it evidence after the rollback. And by when the check began (its first
    # session; its result for journals without one), as for gates: one that opened its sessions and sent
    # its events before the routing change, and finished after it, proves nothing about after it.
    began = state.fanout.started.get(result.run, result.ts)
    return applied is not None and began >= applied.ts


def _describe_fanout(result: ev.FanoutResult) -> str:
    latency = f", cross-replica {result.cross_latency_ms:g} ms" if result.cross_latency_ms is not None else ""
    ids = ", ".join(result.sent[:4]) + (" …" if len(result.sent) > 4 else "")
    verdict = "passed" if result.passed else "FAILED"
    text = (
        f"fanout run {_run(result.run)} ({result.phase}) {verdict} at {hms(result.ts)}: events {ids or '-'}"
    )
    return text + latency


def _fanout_after_rule(state: SessionState) -> _Outcome:
    applied = _rollback_applied(state)
    after = [r for r in state.fanout.results if _after_rollback(state, r, applied)]
    if not after:
        if applied is None:
            return _Outcome(False, [f"{_no_rollback_yet(state)}, so no fanout check after rollback"])
        return _Outcome(False, ["no fanout check after rollback"])
    last = after[-1]
    evidence = [_describe_fanout(last)]
    if not last.passed:
        evidence += [f"reason: {r}" for r in last.reasons[:3]]
    return _Outcome(last.passed, evidence, any(r.passed for r in after[:-1]))


def _ordering_rule(state: SessionState) -> _Outcome:
    results = state.fanout.results
    if not results:
        return _Outcome(False, ["no fanout check run"])
    bad = [r for r in results if r.ordering_ok is not True or r.replay_ok is not True]
    if not bad:
        runs = ", ".join(_run(r.run) for r in results[-5:])
        return _Outcome(
            True, [f"{len(results)} fanout run(s): stream order and catch-up replay verified ({runs})"]
        )
    evidence = []
    for r in bad[:5]:
        what = [n for n, ok in (("ordering", r.ordering_ok), ("replay", r.replay_ok)) if ok is not True]
        state_word = {None: "not checked", False: "failed"}
        detail = ", ".join(
            f"{n} {state_word[r.ordering_ok if n == 'ordering' else r.replay_ok]}" for n in what
        )
        evidence.append(f"fanout run {_run(r.run)} at {hms(r.ts)}: {detail}")
    return _Outcome(False, evidence, held_earlier=results[0] not in bad)


def _facts_rule(playbook: Playbook, state: SessionState, item: Item) -> _Outcome:
    names = [item.fact] if item.fact else [f.name for f in playbook.facts if f.must_agree]
    if not names:
        return _Outcome(False, ["no fact named and the playbook has no must_agree facts"])
    expected = {f.name: f.expect for f in playbook.facts}
    holds, evidence = True, []
    for name in names:
        captures = sorted((c for c in state.facts.values() if c.fact == name), key=lambda c: c.ts)
        if not captures:
            holds = False
            evidence.append(f"fact {name} not captured")
            continue
        last = captures[-1]
        values = {k: v for k, v in last.values.items()}
        distinct = {v for v in values.values()}
        agree = last.agree if last.agree is not None else (len(distinct) == 1 and None not in distinct)
        shown = ", ".join(f"{k}={v}" for k, v in values.items()) or "no values"
        ok = bool(agree) and last.error is None
        want = expected.get(name)
        if ok and want is not None and distinct != {want}:
            ok = False
            shown += f" (expected {want})"
        verdict = "agrees" if ok else ("is unknown" if not last.observed else "does NOT agree")
        line = f"fact {name} {verdict} at {last.phase} {hms(last.ts)}: {shown}"
        evidence.append(line + (f" — {last.error}" if last.error else ""))
        holds = holds and ok
    return _Outcome(holds, evidence)


def guardrail_gaps(playbook: Playbook, state: SessionState) -> list[str]:
    """The guardrails that cannot vouch for anything: unknown now (with why), or never had data."""
    judged = {e.guardrail for e in state.traffic.breach_log}  # a breach or recovery was judged on data
    gaps = []
    for rail in playbook.guardrails:
        seen = state.rails.get(rail.name)
        if seen is not None and seen.status == "unknown":
            gaps.append(f"guardrail {rail.name} unknown since {hms(seen.since)}: {seen.reason}")
        elif (seen is None or seen.observed_ts is None) and rail.name not in judged:
            gaps.append(f"guardrail {rail.name} has had no data yet: {no_data(rail)}")
    return gaps


def _guardrails_rule(playbook: Playbook, state: SessionState) -> _Outcome:
    """No breach, and every guardrail has had data to judge by and can still observe (never unknown)."""
    active = standings(state)  # breached, or breached then unknown: neither is "no breach"
    if active:
        return _Outcome(
            False, [f"guardrail {a.breach.guardrail} ({a.breach.severity}) {a.text}" for a in active]
        )
    blind = guardrail_gaps(playbook, state)
    if blind:
        return _Outcome(False, blind)
    judged = f" ({len(playbook.guardrails)} guardrail(s) had data)" if playbook.guardrails else ""
    breaches = [e for e in state.traffic.breach_log if isinstance(e, ev.GuardrailBreach)]
    if not breaches:
        return _Outcome(True, [f"no guardrail breached{judged}"])
    recovered = [e for e in state.traffic.breach_log if isinstance(e, ev.GuardrailRecovered)]
    last = recovered[-1] if recovered else None
    tail = f", last recovery {last.guardrail} at {hms(last.ts)}" if last else ""
    return _Outcome(True, [f"no active breach ({len(breaches)} breach(es) recovered{tail}){judged}"])


def _exported_rule(state: SessionState) -> _Outcome:
    if not state.exports:
        return _Outcome(False, ["no export written yet"])
    last = state.exports[-1]
    where = last.directory.rstrip("/").rsplit("/", 1)[-1] or last.directory
    return _Outcome(
        True, [f"exported {len(last.files)} file(s) to {where} at {hms(last.ts)} by {last.actor}"]
    )


def _evaluate_rule(
    playbook: Playbook, state: SessionState, item: Item, checklist: list[ItemStatus]
) -> _Outcome:
    rule = item.rule
    if rule in ("gate_passed", "gate_passed_after_rollback"):
        return _gate_rule(playbook, state, item, after_rollback=rule == "gate_passed_after_rollback")
    if rule == "rollback_within_rto":
        return _rto_rule(playbook, state, item)
    if rule == "fanout_passed_after_rollback":
        return _fanout_after_rule(state)
    if rule == "fanout_ordering_ok":
        return _ordering_rule(state)
    if rule == "facts_agree":
        return _facts_rule(playbook, state, item)
    if rule == "guardrails_clear":
        return _guardrails_rule(playbook, state)
    if rule == "report_exported":
        return _exported_rule(state)
    if rule == "all_checklist":
        others = [s for s in checklist if s.name != item.name]
        missing = [s.name for s in others if not s.checked]
        if not others:
            return _Outcome(True, ["the playbook has no other checklist items"])
        if missing:
            return _Outcome(
                False, [f"{len(others) - len(missing)}/{len(others)} checked; open: {', '.join(missing)}"]
            )
        return _Outcome(True, [f"all {len(others)} checklist items checked"])
    return _Outcome(False, [])  # manual


def _status(
    playbook: Playbook, state: SessionState, item: Item, kind: str, checklist: list[ItemStatus]
) -> ItemStatus:
    entry = state.checklist.get(item.name)
    manual = entry if entry is not None and not entry.auto else None
    status = ItemStatus(name=item.name, text=item.text, rule=item.rule, kind=kind, checked=False, auto=False)
    if item.rule != "manual":
        outcome = _evaluate_rule(playbook, state, item, checklist)
        status.rule_holds = outcome.holds
        status.evidence = list(outcome.evidence)
        status.checked, status.auto = outcome.holds, True
        journaled_auto = entry is not None and entry.auto
        status.held_before_but_not_now = not outcome.holds and (journaled_auto or outcome.held_earlier)
        if status.held_before_but_not_now:
            status.evidence.append("was ticked automatically earlier; no longer holds")
    if manual is not None:
        status.checked, status.auto = manual.checked, False
        status.actor, status.note, status.ticked_ts = manual.actor, manual.note, manual.ts
        verb = "ticked" if manual.checked else "unticked"
        line = f"{verb} by hand by {manual.actor} at {hms(manual.ts)}" + (
            f": {manual.note}" if manual.note else ""
        )
        status.evidence.insert(0, line)
    elif item.rule == "manual":
        status.evidence = ["manual item: awaiting the operator's tick"]
    return status


def evaluate(playbook: Playbook, state: SessionState) -> ChecklistReport:
    items: list[ItemStatus] = []
    for item in playbook.checklist:
        items.append(_status(playbook, state, item, "item", items))
    # all_checklist items inside the checklist itself compare against the others (second pass).
    items = [
        _status(playbook, state, item, "item", items) if item.rule == "all_checklist" else status
        for item, status in zip(playbook.checklist, items, strict=True)
    ]
    criteria = [_status(playbook, state, c, "exit", items) for c in playbook.exit_criteria]
    return ChecklistReport(items, criteria, _verdict(items, criteria))


def _verdict(items: list[ItemStatus], criteria: list[ItemStatus]) -> ExitVerdict:
    # Without exit criteria, the implicit criterion is "every checklist item is checked"; with neither,
    # nothing can say the exit criteria hold (an empty list is not a passed rehearsal).
    judged = criteria or items
    if not judged:
        return ExitVerdict(False, ["the playbook defines no checklist and no exit criteria to judge by"])
    missing = []
    for status in judged:
        if not status.checked:
            reason = next((e for e in status.evidence if not e.startswith("was ticked")), "not checked")
            missing.append(f"{status.text} — {reason}")
    return ExitVerdict(complete=not missing, missing=missing)


def verdict(playbook: Playbook, state: SessionState) -> ExitVerdict:
    return evaluate(playbook, state).verdict


def auto_ticks(
    playbook: Playbook, state: SessionState, previous: ChecklistReport | None = None
) -> list[ev.ChecklistTicked]:
    """ChecklistTicked(auto=True) events for rule-based items whose rule changed since last time.

    "Last time" is `previous` (the report from the previous call) when given, else what the journal
    already holds (the last auto tick per item in `state.checklist`) — so it is right after a resume too.
    Items an operator ticked or unticked by hand are left alone: the manual decision stands.
    """
    report = evaluate(playbook, state)
    out: list[ev.ChecklistTicked] = []
    for status in report.items + report.exit_criteria:
        if status.rule == "manual":
            continue
        entry = state.checklist.get(status.name)
        if entry is not None and not entry.auto:
            continue
        if previous is not None:
            before = previous.get(status.name)
            was = before.rule_holds if before is not None else None
        else:
            was = entry.checked if entry is not None else None
        now = status.rule_holds
        if was == now or (was is None and not now):
            continue
        note = status.evidence[0] if status.evidence else ""
        out.append(ev.ChecklistTicked(item=status.name, checked=now, actor=AUTO_ACTOR, note=note, auto=True))
    return out
