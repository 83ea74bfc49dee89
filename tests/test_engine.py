"""Unit tests of the engine's contract: journal → fold → subscribers, in that order, whatever a
subscriber does; operator intents are journaled before they act."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.session.engine import Engine, NotAvailable
from test_checklist import playbook


def engine_on(tmp_path: Path, **extra: object) -> Engine:
    engine = Engine(playbook([], **extra), Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    return engine


def test_a_subscriber_sees_an_event_only_once_it_is_journaled_and_folded(tmp_path: Path) -> None:
    engine = engine_on(tmp_path)
    seen: list[tuple[str, int, int]] = []

    def subscriber(event: ev.Event) -> None:
        engine.journal.flush()
        on_disk = [e.n for e in read_journal(engine.journal.path).events]
        seen.append((event.kind, on_disk[-1], engine.state.counts[event.kind]))

    engine.subscribe(subscriber)
    notice = engine.notice("test", "hello")
    assert seen == [("notice", notice.n, 1)]


def test_a_failing_subscriber_cannot_stop_the_feed(tmp_path: Path) -> None:
    engine = engine_on(tmp_path)
    after: list[str] = []

    def broken(event: ev.Event) -> None:
        raise RuntimeError("a pane blew up")

    engine.subscribe(broken)
    engine.subscribe(lambda e: after.append(e.kind))
    engine.notice("a", "one")
    engine.notice("b", "two")
    assert after == ["notice", "notice"]
    assert engine.state.counts["notice"] == 2


async def test_traffic_intent_is_journaled_before_the_first_request(tmp_path: Path) -> None:
    lb = {
        "url": "http://127.0.0.1:1",
        "selector": {"app": "api"},
        "synthetic_traffic": {"rps": 7},
        "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:1"},
    }
    engine = engine_on(tmp_path, load_balancer=lb)
    kinds: list[str] = []
    engine.subscribe(lambda e: kinds.append(e.kind if e.kind != "operator_action" else e.action))
    assert engine.start_traffic() == 7  # the playbook's rate, not a default of the front end
    assert kinds[0] == "start_traffic" and engine.running("traffic")
    await asyncio.sleep(0.3)
    assert engine.stop_traffic(actor="bob") and not engine.stop_traffic()
    actions = [e for e in read_journal(engine.journal.path).events if isinstance(e, ev.OperatorAction)]
    assert [(a.action, a.actor, a.detail) for a in actions] == [
        ("start_traffic", "alice", {"rate_rps": 7.0}),
        ("stop_traffic", "bob", {}),
    ]
    await engine.stop()


async def test_a_fault_is_journaled_before_it_is_applied_and_a_failure_is_said(tmp_path: Path) -> None:
    engine = engine_on(tmp_path)
    order: list[str] = []
    engine.subscribe(lambda e: order.append(getattr(e, "action", e.kind)))

    async def apply() -> None:
        order.append("applied")

    await engine.inject_fault("blue-next", {"error_rate": 0.5}, apply)
    assert order == ["inject_fault", "applied"]

    async def refused() -> None:
        raise ConnectionRefusedError("lab replica not listening")

    with pytest.raises(NotAvailable, match="not applied"):
        await engine.inject_fault("blue-next", {"error_rate": 0.5}, refused)
    assert engine.state.notices[-1].level == "error"
    with pytest.raises(NotAvailable, match="No replica named 'blue-nxt'"):
        await engine.inject_fault("blue-nxt", {}, apply)
