"""Checklist rules and exit criteria, evaluated on recorded journals (written with the real Journal)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import auto_ticks, evaluate, verdict
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.state import SessionState, fold
from rollback_tui.playbook.model import Playbook
from rollback_tui.report.bundle import build_bundle
from rollback_tui.report.markdown import render_markdown
from rollback_tui.session.engine import Engine
from support.events import T0, session_started


def playbook(checklist: list[dict], exit_criteria: list[dict] | None = None, **extra: object) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "pb",
            "title": "Checklist test",
            "replicas": [
                {"name": "stable-a", "url": "http://127.0.0.1:1", "role": "stable"},
                {"name": "blue-next", "url": "http://127.0.0.1:2", "role": "candidate"},
            ],
            "gates": [{"name": "g", "title": "G", "argv": ["true"]}],
            "facts": [
                {"name": "prefix", "title": "Prefix", "source": "health", "field": "p", "must_agree": True},
                {"name": "version", "title": "Version", "source": "manual", "expect": "3.0.0"},
            ],
            "actions": [
                {
                    "kind": "selector_removal",
                    "name": "remove-next",
                    "title": "Remove",
                    "replica_set": "blue-next",
                    "remove_replicas": ["blue-next"],
                    "rto_budget_s": 20,
                }
            ],
            "steps": [{"name": "s", "title": "S", "do": [{"manual": "x"}]}],
            "checklist": checklist,
            "exit_criteria": exit_criteria or [],
            **extra,
        }
    )


def recorded(tmp_path: Path, events: list[tuple[float, ev.Event]]) -> SessionState:
    """Journal the events (at T0 + offset), read the file back and fold it — a recorded session."""
    path = tmp_path / f"j{len(list(tmp_path.iterdir()))}.jsonl"
    journal = Journal(path)
    journal.append(session_started())
    for offset, event in events:
        event.ts = T0 + offset
        journal.append(event)
    journal.close()
    result = read_journal(path)
    assert not result.warnings
    return fold(result.events)


def gate_run(offset: float, outcome: str = "passed", run: str = "r1", duration: float = 2.0):
    return [
        (offset, ev.GateStarted(gate="g", run=run, argv=["true"], where="local")),
        (
            offset + duration,
            ev.GateFinished(
                gate="g",
                run=run,
                outcome=outcome,
                exit_code=0 if outcome == "passed" else 1,
                duration_s=duration,
            ),
        ),
    ]


def rollback(offset: float, rto: float = 12.5, ok: bool = True):
    return [
        (offset, ev.RollbackRequested(action="remove-next", actor="alice", confirmed_text="blue-next")),
        (offset + 1, ev.RollbackApplied(action="remove-next", driver="lab")),
        (
            offset + rto,
            ev.RollbackVerified(
                action="remove-next", ok=ok, stable_share=1.0, requests=200, time_to_detect_s=2.0, rto_s=rto
            ),
        ),
    ]


def fanout(offset: float, phase: str = "adhoc", passed: bool = True, run: str = "f1", **kw: object):
    result = ev.FanoutResult(run=run, thread_id="t", passed=passed, phase=phase, sent=["e1", "e2"], **kw)
    return [(offset, result)]


def item(rule: str, **kw: object) -> dict:
    return {"name": kw.pop("name", "it"), "text": kw.pop("text", f"{rule} holds"), "rule": rule, **kw}


# --- individual rules --------------------------------------------------------------------------------


def test_manual_item_needs_an_operator_tick_and_shows_who(tmp_path: Path) -> None:
    pb = playbook([item("manual")])
    status = evaluate(pb, recorded(tmp_path, [])).items[0]
    assert not status.checked
    ticked = recorded(
        tmp_path, [(5, ev.ChecklistTicked(item="it", checked=True, actor="bob", note="checked logs"))]
    )
    status = evaluate(pb, ticked).items[0]
    assert status.checked and not status.auto
    assert status.actor == "bob" and status.note == "checked logs"
    assert status.evidence[0] == "ticked by hand by bob at 12:00:05Z: checked logs"


def test_an_auto_tick_event_does_not_tick_a_manual_item(tmp_path: Path) -> None:
    pb = playbook([item("manual")])
    state = recorded(
        tmp_path, [(5, ev.ChecklistTicked(item="it", checked=True, actor="rollback-tui", auto=True))]
    )
    assert not evaluate(pb, state).items[0].checked


def test_gate_passed_follows_the_latest_run(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed", gate="g")])
    passed = recorded(tmp_path, gate_run(1))
    status = evaluate(pb, passed).items[0]
    assert status.checked and status.auto
    assert status.evidence == ["gate g passed at 12:00:03Z (run r1, exit 0)"]
    failed_later = recorded(tmp_path, gate_run(1) + gate_run(10, "failed", run="r2"))
    status = evaluate(pb, failed_later).items[0]
    assert not status.checked
    assert status.held_before_but_not_now
    assert "gate g failed at 12:00:12Z (run r2, exit 1)" in status.evidence


def test_gate_passed_after_rollback_needs_a_run_started_after_the_rollback(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed_after_rollback", gate="g")])
    before_only = recorded(tmp_path, gate_run(1) + rollback(20))
    status = evaluate(pb, before_only).items[0]
    assert not status.checked
    assert status.evidence == ["gate g has not run after rollback at 12:00:21Z"]
    # Started before the rollback was applied (at +21), finished after: does not count.
    straddling = recorded(tmp_path, rollback(20) + gate_run(19, duration=5))
    assert not evaluate(pb, straddling).items[0].checked
    after = recorded(tmp_path, gate_run(1) + rollback(20) + gate_run(40, run="r2"))
    status = evaluate(pb, after).items[0]
    assert status.checked
    assert status.evidence == ["gate g passed at 12:00:42Z (run r2, exit 0) after rollback at 12:00:21Z"]


def test_gate_passed_after_rollback_without_any_rollback(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed_after_rollback", gate="g")])
    status = evaluate(pb, recorded(tmp_path, gate_run(1))).items[0]
    assert not status.checked and "no rollback yet" in status.evidence[0]


def test_rollback_within_rto_uses_the_item_bound_then_the_action_budget(tmp_path: Path) -> None:
    state = recorded(tmp_path, rollback(10, rto=12.5))
    assert evaluate(playbook([item("rollback_within_rto", rto_s=30)]), state).items[0].checked
    tight = evaluate(playbook([item("rollback_within_rto", rto_s=10)]), state).items[0]
    assert not tight.checked and "RTO 12.5 s > 10 s" in tight.evidence[0]
    # No bound on the item: the action's rto_budget_s (20 s) applies.
    assert evaluate(playbook([item("rollback_within_rto")]), state).items[0].checked
    slow = recorded(tmp_path, rollback(10, rto=25))
    assert not evaluate(playbook([item("rollback_within_rto")]), slow).items[0].checked
    not_ok = recorded(tmp_path, rollback(10, rto=5, ok=False))
    assert not evaluate(playbook([item("rollback_within_rto", rto_s=30)]), not_ok).items[0].checked
    none = evaluate(playbook([item("rollback_within_rto")]), recorded(tmp_path, [])).items[0]
    assert not none.checked and none.evidence == ["no rollback executed"]


def test_fanout_passed_after_rollback(tmp_path: Path) -> None:
    pb = playbook([item("fanout_passed_after_rollback")])
    assert not evaluate(pb, recorded(tmp_path, fanout(5, "before_rollback"))).items[0].checked
    # The label alone proves nothing: with no rollback applied, no check is "after rollback".
    by_label = evaluate(pb, recorded(tmp_path, fanout(5, "after_rollback"))).items[0]
    assert not by_label.checked and by_label.evidence == [
        "no rollback yet, so no fanout check after rollback"
    ]
    by_time = recorded(tmp_path, rollback(10) + fanout(30, "adhoc"))
    status = evaluate(pb, by_time).items[0]
    assert status.checked and status.evidence[0].startswith("fanout run f1 (adhoc) passed at 12:00:30Z")
    # The latest post-rollback check failed: the earlier pass no longer holds.
    regressed = recorded(
        tmp_path,
        rollback(10) + fanout(30) + fanout(40, passed=False, run="f2", reasons=["B never received e2"]),
    )
    status = evaluate(pb, regressed).items[0]
    assert not status.checked and status.held_before_but_not_now
    assert "reason: B never received e2" in status.evidence


def test_a_fanout_check_that_began_before_the_rollback_is_not_evidence_after_it(tmp_path: Path) -> None:
    """The auto-rollback runs on its own task: a fanout check started while blue-next was still in traffic
    (its sessions opened, its events sent and received) finished after the routing change was applied. It
    ticked "realtime events still delivered after rollback" on events delivered before it — the gate rule
    already counts only runs that started after the rollback."""
    pb = playbook([item("fanout_passed_after_rollback")])
    sessions = [
        (9, ev.FanoutSessionState(run="f1", session=s, replica=r, state="connecting"))
        for s, r in (("A", "stable-a"), ("B", "blue-next"))
    ]
    frames = [
        (9.5, ev.FanoutFrame(run="f1", session="B", replica="blue-next", thread_id="t", event_id="e1",
                             received_at=T0 + 9.5))
    ]  # fmt: skip
    straddling = recorded(tmp_path, sessions + frames + rollback(10) + fanout(30, "adhoc"))
    status = evaluate(pb, straddling).items[0]
    assert not status.checked, status.evidence
    assert status.evidence == ["no fanout check after rollback"]
    # A check whose sessions opened after the routing change counts.
    after = [(e[0] + 20, e[1].model_copy(update={"run": "f2"})) for e in sessions]
    later = recorded(tmp_path, sessions + rollback(10) + fanout(15) + after + fanout(31, run="f2"))
    status = evaluate(pb, later).items[0]
    assert status.checked and status.evidence[0].startswith("fanout run f2 (adhoc) passed at 12:00:31Z")


def failed_rollback(offset: float, error: str = "kubectl: exit 1: forbidden"):
    return [
        (offset, ev.RollbackRequested(action="remove-next", actor="alice", confirmed_text="blue-next")),
        (offset + 0.5, ev.RollbackApplying(action="remove-next", driver="command")),
        (offset + 1, ev.RollbackApplied(action="remove-next", driver="command", ok=False, error=error)),
    ]


def test_a_failed_rollback_never_makes_evidence_after_rollback(tmp_path: Path) -> None:
    """The traffic-control command failed: a fanout check labelled after_rollback (the old code labelled
    by `rollback_applied is not None`) and a gate run after it tick nothing, and the RTO item fails."""
    pb = playbook(
        [
            item("fanout_passed_after_rollback", name="fanout"),
            item("gate_passed_after_rollback", name="gate", gate="g"),
            item("rollback_within_rto", name="rto", rto_s=30),
        ]
    )
    gate = [(20, ev.GateFinished(gate="g", run="r1", outcome="passed", exit_code=0, duration_s=1.0))]
    state = recorded(tmp_path, failed_rollback(10) + fanout(15, "after_rollback") + gate)
    assert state.traffic.rollback.stage == "failed"
    assert not state.traffic.rollback.after_rollback
    report = evaluate(pb, state)
    for status in report.items:
        assert not status.checked, status
    failed = "rollback remove-next failed — kubectl: exit 1: forbidden (12:00:11Z)"
    assert report.get("fanout").evidence == [f"{failed}, so no fanout check after rollback"]
    assert report.get("gate").evidence == [f"{failed}, so no gate run after rollback"]
    assert report.get("rto").evidence == [f"{failed}, not verified"]


def test_a_rollback_that_failed_verification_is_not_after_rollback(tmp_path: Path) -> None:
    pb = playbook([item("fanout_passed_after_rollback")])
    state = recorded(tmp_path, rollback(10, ok=False) + fanout(30, "after_rollback"))
    assert state.traffic.rollback.stage == "failed"
    assert not evaluate(pb, state).items[0].checked
    # A retry that is applied and verified makes the later check count.
    retried = recorded(tmp_path, rollback(10, ok=False) + rollback(40) + fanout(60))
    assert retried.traffic.rollback.stage == "verified" and retried.traffic.rollback.attempts == 2
    assert evaluate(pb, retried).items[0].checked


def test_fanout_ordering_ok_needs_every_run_verified(tmp_path: Path) -> None:
    pb = playbook([item("fanout_ordering_ok")])
    assert not evaluate(pb, recorded(tmp_path, [])).items[0].checked
    good = fanout(5, ordering_ok=True, replay_ok=True) + fanout(9, run="f2", ordering_ok=True, replay_ok=True)
    assert evaluate(pb, recorded(tmp_path, good)).items[0].checked
    unchecked_replay = good + fanout(12, run="f3", ordering_ok=True, replay_ok=None)
    status = evaluate(pb, recorded(tmp_path, unchecked_replay)).items[0]
    assert not status.checked and status.held_before_but_not_now  # it held after f1 and f2
    assert status.evidence[0] == "fanout run f3 at 12:00:12Z: replay not checked"


def test_facts_agree_and_expected_value(tmp_path: Path) -> None:
    agree = [
        (2, ev.FactCaptured(fact="prefix", values={"a": "chat:", "b": "chat:"}, source="health", agree=True))
    ]
    differ = [
        (3, ev.FactCaptured(fact="prefix", values={"a": "chat:", "b": "x:"}, source="health", agree=False))
    ]
    pb = playbook([item("facts_agree", fact="prefix")])
    assert evaluate(pb, recorded(tmp_path, agree)).items[0].checked
    status = evaluate(pb, recorded(tmp_path, agree + differ)).items[0]
    assert not status.checked and "does NOT agree" in status.evidence[0]
    version = playbook([item("facts_agree", fact="version")])
    wrong = [(2, ev.FactCaptured(fact="version", values={"-": "2.9.0"}, source="manual"))]
    assert not evaluate(version, recorded(tmp_path, wrong)).items[0].checked
    right = [(2, ev.FactCaptured(fact="version", values={"-": "3.0.0"}, source="manual"))]
    assert evaluate(version, recorded(tmp_path, right)).items[0].checked


def test_guardrails_clear_and_report_exported(tmp_path: Path) -> None:
    breach = ev.GuardrailBreach(
        guardrail="5xx", severity="P0", metric="http_5xx_rate", value=0.2, threshold=0.02, window_s=10
    )
    pb = playbook([item("guardrails_clear", name="clear"), item("report_exported", name="exported")])
    active = evaluate(pb, recorded(tmp_path, [(5, breach)]))
    assert not active.items[0].checked and "5xx (P0) breached since 12:00:05Z" in active.items[0].evidence[0]
    recovered = evaluate(
        pb, recorded(tmp_path, [(5, breach), (9, ev.GuardrailRecovered(guardrail="5xx", value=0))])
    )
    assert recovered.items[0].checked
    assert not recovered.items[1].checked
    exported = recorded(
        tmp_path, [(20, ev.ExportWritten(directory="/tmp/x/ev1", files=["report.md"], actor="al"))]
    )
    assert evaluate(pb, exported).items[1].evidence == ["exported 1 file(s) to ev1 at 12:00:20Z by al"]


def test_no_guardrail_breached_needs_every_guardrail_to_have_had_data(tmp_path: Path) -> None:
    rails = [
        {"name": "5xx", "title": "5xx", "metric": "http_5xx_rate", "threshold": 0.02, "window_s": 10},
        {
            "name": "dlq",
            "title": "d",
            "metric": "dead_letters_growth",
            "threshold": 50,
            "window_s": 300,
            "probe": "dead-letters",
        },
    ]
    pb = playbook(
        [item("guardrails_clear", name="clear", text="no guardrail breached")],
        guardrails=rails,
        probes=[{"name": "dead-letters", "url": "http://127.0.0.1:9/dl", "json_path": "count"}],
    )
    engine = Engine(pb, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()

    def clear() -> tuple[bool, list[str]]:
        status = engine.checklist().get("clear")
        assert status is not None
        entry = engine.state.checklist.get("clear")  # what the journal says (auto ticks)
        assert status.checked == bool(entry and entry.checked)
        return status.checked, status.evidence

    assert clear() == (
        False,
        [
            "guardrail 5xx has had no data yet: fewer than 10 requests within its 10 s window",
            "guardrail dlq has had no data yet: fewer than 2 counts from probe dead-letters within its "
            "300 s window",
        ],
    )
    engine.emit(ev.TrafficWindow(window_s=1, requests=40, per_replica={"stable-a": 40}))
    checked, evidence = clear()
    assert (
        not checked and evidence == [evidence[0]] and evidence[0].startswith("guardrail dlq has had no data")
    )
    engine.emit(ev.ProbeResult(probe="dead-letters", ok=True, value=3))
    assert not clear()[0]
    engine.emit(ev.ProbeResult(probe="dead-letters", ok=True, value=3))
    assert clear() == (True, ["no guardrail breached (2 guardrail(s) had data)"])
    unset = ev.ProbeResult(
        probe="dead-letters", ok=False, observed=False, error="environment variable T is not set"
    )
    engine.emit(unset)
    checked, evidence = clear()
    assert not checked and evidence[0].startswith("guardrail dlq unknown since ")
    assert evidence[0].endswith(": probe dead-letters: environment variable T is not set")
    engine.journal.close()
    replayed = evaluate(pb, fold(read_journal(tmp_path / "s.jsonl").events)).get("clear")
    assert replayed is not None and not replayed.checked and replayed.held_before_but_not_now


# --- overrides, verdict, auto ticks ------------------------------------------------------------------


def test_a_manual_untick_overrides_a_rule_that_holds(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed", gate="g")])
    events = [*gate_run(1), (9, ev.ChecklistTicked(item="it", checked=False, actor="bob", note="flaky run"))]
    status = evaluate(pb, recorded(tmp_path, events)).items[0]
    assert status.rule_holds and not status.checked and not status.auto
    assert status.evidence[0] == "unticked by hand by bob at 12:00:09Z: flaky run"


def test_the_bundle_and_the_report_say_whether_the_rule_of_a_hand_ticked_item_holds(tmp_path: Path) -> None:
    """The JSON bundle said `checked` and `auto: false` for an item an operator ticked by hand, and nothing
    about its rule: whether the journal supports the tick (a failed gate ticked anyway) could not be read
    from it. Both the bundle and the report say it now, from the read model."""
    pb = playbook([item("gate_passed", gate="g", name="gates-ok"), item("manual", name="notes")])
    tick = ev.ChecklistTicked(item="gates-ok", checked=True, actor="bob", note="ran it in staging")
    untick = ev.ChecklistTicked(item="gates-ok", checked=False, actor="bob", note="flaky run")
    cases = [
        ([*gate_run(1, outcome="failed"), (9, tick)], True, False, "rule does not hold"),
        ([*gate_run(1), (9, untick)], False, True, "rule holds"),
    ]
    for events, checked, holds, words in cases:
        state = recorded(tmp_path, events)
        journal = read_journal(max(tmp_path.iterdir(), key=lambda f: f.stat().st_mtime_ns)).events
        bundled = {s["name"]: s for s in build_bundle(pb, state, journal)["summary"]["checklist"]}
        assert bundled["gates-ok"]["checked"] is checked and bundled["gates-ok"]["auto"] is False
        assert bundled["gates-ok"]["rule_holds"] is holds
        assert bundled["gates-ok"]["how"] == f"overridden by hand, {words}"
        assert bundled["notes"]["rule_holds"] is None and bundled["notes"]["how"] == "manual"
        report = render_markdown(pb, state, journal)
        line = f"] **gate_passed holds** (gates-ok, overridden by hand, {words}: gate_passed)"
        assert ("[x" if checked else "[ ") + line in report


def test_exit_verdict_lists_what_is_missing(tmp_path: Path) -> None:
    pb = playbook(
        [item("gate_passed", gate="g", name="gates"), item("manual", name="notes")],
        [
            {"name": "all", "text": "All evidence checked", "rule": "all_checklist"},
            {"name": "rto", "text": "RTO within window", "rule": "rollback_within_rto", "rto_s": 30},
        ],
    )
    state = recorded(tmp_path, gate_run(1))
    result = verdict(pb, state)
    assert not result.complete
    assert result.missing == [
        "All evidence checked — 1/2 checked; open: notes",
        "RTO within window — no rollback executed",
    ]
    done = recorded(
        tmp_path,
        gate_run(1) + rollback(10) + [(30, ev.ChecklistTicked(item="notes", checked=True, actor="al"))],
    )
    assert verdict(pb, done).complete


def test_without_exit_criteria_every_checklist_item_is_required(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed", gate="g")])
    assert not verdict(pb, recorded(tmp_path, [])).complete
    assert verdict(pb, recorded(tmp_path, gate_run(1))).complete


def test_auto_ticks_journal_changes_and_flag_a_tick_that_stopped_holding(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed", gate="g"), item("manual", name="notes")])
    path = tmp_path / "auto.jsonl"
    journal = Journal(path)
    state = SessionState()

    def emit(event: ev.Event, offset: float) -> None:
        event.ts = T0 + offset
        state.apply(journal.append(event))

    assert auto_ticks(pb, state) == []  # nothing holds, nothing was ticked: nothing to say
    for offset, event in gate_run(1):
        emit(event, offset)
    ticks = auto_ticks(pb, state)
    assert [(t.item, t.checked, t.auto, t.actor) for t in ticks] == [("it", True, True, "rollback-tui")]
    assert ticks[0].note.startswith("gate g passed")
    for tick in ticks:
        emit(tick, 4)
    assert auto_ticks(pb, state) == []  # journaled: no change
    for offset, event in gate_run(10, "failed", run="r2"):
        emit(event, offset)
    unticks = auto_ticks(pb, state)
    assert [(t.item, t.checked, t.auto) for t in unticks] == [("it", False, True)]
    for tick in unticks:
        emit(tick, 13)
    journal.close()

    # Folded back from the journal (as after a resume or at export time) the history is still there.
    replayed = fold(read_journal(path).events)
    status = evaluate(pb, replayed).items[0]
    assert not status.checked and status.held_before_but_not_now
    assert auto_ticks(pb, replayed) == []


def test_auto_ticks_leave_manual_decisions_alone_and_accept_a_previous_report(tmp_path: Path) -> None:
    pb = playbook([item("gate_passed", gate="g")])
    overridden = recorded(
        tmp_path, [*gate_run(1), (5, ev.ChecklistTicked(item="it", checked=False, actor="bob"))]
    )
    assert auto_ticks(pb, overridden) == []
    before = evaluate(pb, recorded(tmp_path, []))
    after = recorded(tmp_path, gate_run(1))
    assert [t.checked for t in auto_ticks(pb, after, before)] == [True]
    assert auto_ticks(pb, after, evaluate(pb, after)) == []


@pytest.mark.parametrize("rule", ["gate_passed", "gate_passed_after_rollback", "facts_agree"])
def test_rules_without_a_named_target_use_the_playbook_defaults(tmp_path: Path, rule: str) -> None:
    pb = playbook([item(rule)])
    status = evaluate(pb, recorded(tmp_path, [])).items[0]
    assert not status.checked and status.evidence  # says what is missing, never empty


def test_no_checklist_and_no_exit_criteria_is_not_a_passed_rehearsal(tmp_path: Path) -> None:
    """Reproducer: a playbook with neither printed '✓ exit criteria hold' although a gate had failed."""
    gate = [(5, ev.GateFinished(gate="g", run="r1", outcome="failed", exit_code=1, duration_s=1.0))]
    result = evaluate(playbook([]), recorded(tmp_path, gate)).verdict
    assert not result.complete
    assert result.missing == ["the playbook defines no checklist and no exit criteria to judge by"]
