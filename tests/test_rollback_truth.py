"""The rollback is a state machine, and the evidence never claims a rollback that did not happen.

Each test here is built from a reproducer of the session-core issue: a failed traffic-control command
counted as "rolled back", a failure that faded with its toast, a verified rollback whose headline still
said DEGRADED, a resumed session with a rollback "in progress" forever, a trigger_severity never read.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, require_redis_server
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.resume import resume_session
from rollback_tui.core.verdict import verdict
from rollback_tui.session.engine import Engine, NotAvailable, triggers
from support.events import T0, breach, session_started
from test_checklist import failed_rollback, playbook, recorded, rollback
from test_cli import run
from test_traffic_rollback import GUARDED


def health(offset: float, replica: str, status: str = "ok") -> tuple[float, ev.Event]:
    return (offset, ev.HealthSample(replica=replica, status=status, latency_ms=3.0))


def candidate_breach(offset: float) -> tuple[float, ev.Event]:
    return (offset, breach(T0 + offset))


def removal(offset: float) -> list[tuple[float, ev.Event]]:
    """A rollback taking blue-next out, applied and verified (the engine records `replicas`)."""
    events = rollback(offset)
    requested = events[0][1]
    assert isinstance(requested, ev.RollbackRequested)
    requested.replicas = ["blue-next"]
    return events


def test_after_a_verified_rollback_the_headline_says_mitigated_not_degraded(tmp_path: Path) -> None:
    events = [health(1, "stable-a"), health(1, "blue-next", "degraded"), candidate_breach(5)]
    before = verdict(recorded(tmp_path, events), T0 + 6, 60)
    assert before.level == "fail" and "P0 candidate-5xx" in before.reasons
    state = recorded(tmp_path, events + removal(8) + [health(30, "blue-next", "degraded")])
    after = verdict(state, T0 + 31, 60)
    assert (after.level, after.word, after.tone) == ("mitigated", "MITIGATED", "ok")
    assert "blue-next out of traffic" in after.summary
    assert "blue-next degraded, out of traffic" in after.reasons
    # A stable replica failing after the rollback is not hidden by it.
    worse = recorded(tmp_path, events + removal(8) + [health(30, "stable-a", "down")])
    assert verdict(worse, T0 + 31, 60).level == "fail"


def test_a_failed_rollback_stays_in_the_headline_until_it_changes(tmp_path: Path) -> None:
    state = recorded(tmp_path, [health(1, "stable-a"), candidate_breach(5), *failed_rollback(8)])
    later = verdict(state, T0 + 600, 6000)  # long after any toast
    assert later.level == "fail"
    assert "rollback failed: kubectl: exit 1: forbidden" in later.reasons


def test_resume_journals_a_rollback_left_mid_way_as_failed(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    journal = Journal(path)
    journal.append(session_started())
    journal.append(ev.RollbackRequested(action="remove-next", actor="alice", confirmed_text="blue-next"))
    journal.append(ev.RollbackApplying(action="remove-next", driver="lab"))
    journal.close()  # the cockpit was killed while the driver ran
    resumed, state, _ = resume_session(path, operator="bob")
    resumed.close()
    assert state.traffic.rollback.stage == "failed"
    assert "interrupted while applying" in (state.traffic.rollback.failure or "")
    kinds = [e.kind for e in read_journal(path).events]
    assert kinds[-2:] == ["session_resumed", "rollback_failed"]


def test_trigger_severity_is_the_policy() -> None:
    assert triggers("P0", "P0") and not triggers("P0", "P1")
    assert triggers("P1", "P0") and triggers("P1", "P1")
    assert not triggers(None, "P0")


async def test_auto_rollback_honours_trigger_severity(tmp_path: Path) -> None:
    pb = playbook([])
    doc = pb.model_dump(mode="json", exclude_none=True)
    doc["actions"][0]["trigger_severity"] = None
    doc["load_balancer"] = {
        "url": "http://127.0.0.1:1",
        "selector": {"app": "api"},
        "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:1"},
    }
    never = type(pb).model_validate(doc)
    engine = Engine(never, Journal(tmp_path / "s.jsonl"), operator="t")
    engine.auto_rollback = True
    engine.start_session()
    engine.emit(candidate_breach(1)[1])
    assert not engine.running("rollback") and engine.state.traffic.rollback.stage == "none"
    doc["actions"][0]["trigger_severity"] = "P1"
    engine.playbook = type(pb).model_validate(doc)
    p1 = candidate_breach(2)[1]
    p1.severity, p1.guardrail = "P1", "p95"
    engine.emit(p1)
    assert engine.running("rollback")
    for _ in range(100):  # the balancer at port 1 refuses at once
        if not engine.running("rollback"):
            break
        await asyncio.sleep(0.05)
    await engine.stop()
    status = engine.state.traffic.rollback
    assert status.stage == "failed" and status.actor == "auto-rollback"


@pytest.mark.parametrize("lab_playbook", [GUARDED], indirect=True)
async def test_a_failed_rollback_is_failed_until_a_retry_verifies(lab, tmp_path: Path) -> None:
    engine = Engine(lab.playbook, Journal(tmp_path / "session.jsonl"), operator="tester")
    await lab.children["balancer"].kill()
    with pytest.raises(NotAvailable, match="Rollback failed"):
        await engine.rollback("remove-blue-next", "blue-next")
    status = engine.state.traffic.rollback
    assert status.stage == "failed" and not status.after_rollback
    notices = [n.message for n in engine.state.notices if n.level == "error"]
    assert any("rollback remove-blue-next failed" in n for n in notices)
    await lab.restart_balancer()
    verified = await engine.rollback("remove-blue-next", "blue-next")
    assert verified.ok and status.stage == "verified" and status.attempts == 2 and status.after_rollback
    await engine.stop()


@pytest.mark.integration
def test_headless_rehearsal_with_a_failing_traffic_control_command_is_not_rolled_back(tmp_path: Path) -> None:
    """The reproducer: the rollback command fails (RBAC forbids the patch). The old rehearsal labelled
    the later fanout check after_rollback and ticked 'realtime delivered across replicas after rollback'."""
    require_redis_server()
    doc = yaml.safe_load((REPO / "playbooks" / "demo.yaml").read_text())
    routing = {"selector": {"app": "api"}, "backends": ["stable-a", "stable-b", "blue-next"]}
    doc["load_balancer"]["traffic_control"] = {
        "driver": "command",
        "read": {"argv": [sys.executable, "-c", f"print({json.dumps(json.dumps(routing))})"]},
        "remove": {"argv": [sys.executable, "-c", "import sys; sys.exit('forbidden: cannot patch api')"]},
    }
    pb = tmp_path / "demo-forbidden.yaml"
    pb.write_text(yaml.safe_dump(doc, sort_keys=False))
    journal = tmp_path / "session.jsonl"
    result = run(
        "rehearse",
        str(pb),
        "--headless",
        "--journal",
        str(journal),
        "--tick",
        "no-pr15-blockers=no blockers",
        "--watch",
        "15",
        tmp=tmp_path,
        timeout=240,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-3000:]
    assert "Traceback" not in log
    assert "forbidden: cannot patch api" in result.stdout
    assert "rollback verified" not in result.stdout
    events = read_journal(journal).events
    assert any(e.kind == "rollback_applied" and not e.ok for e in events)
    assert not any(e.kind == "fanout_result" and e.phase == "after_rollback" for e in events)
    after_items = {c["name"] for c in doc["checklist"] if c.get("rule", "").endswith("_after_rollback")}
    assert after_items, "the demo playbook has after-rollback checklist items"
    ticked = {e.item for e in events if e.kind == "checklist_ticked" and e.checked}
    assert not ticked & after_items
