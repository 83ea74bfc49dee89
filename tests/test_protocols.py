"""What a playbook can say about an API of another shape: transport names, identity, verification requests,
stream headers and replay, tap formats — each checked where it is used."""

from __future__ import annotations

from typing import Any

from rollback_tui.core import events as ev
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "t",
        "title": "t",
        "replicas": [
            {"name": "a", "url": "http://127.0.0.1:1", "role": "stable", "labels": {"track": "stable"}},
            {"name": "b", "url": "http://127.0.0.1:2", "role": "stable", "labels": {"track": "stable"}},
            {"name": "next", "url": "http://127.0.0.1:3", "role": "candidate", "labels": {"track": "next"}},
        ],
        "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
    }
    doc.update(changes)
    return doc


def _started(transport_expected: str | None) -> ev.SessionStarted:
    return ev.SessionStarted(
        playbook="p",
        playbook_name="p",
        playbook_title="t",
        environment="e",
        operator="o",
        host="h",
        version="0",
        transport_expected=transport_expected,
    )


def test_transport_is_a_free_string_compared_with_the_expected_one():
    pb = Playbook.model_validate(
        _doc(realtime={"redis_url": "redis://r", "channel_prefix": "p", "transport_expected": "shared-bus"})
    )
    assert pb.realtime is not None and pb.realtime.transport_expected == "shared-bus"
    state = SessionState()
    state.apply(_started("shared-bus"))
    for name, transport in (("a", "shared-bus"), ("b", "redis"), ("next", None)):
        state.apply(ev.HealthSample(replica=name, status="ok", transport=transport))
    assert state.transport_mismatch == ["b"]
    old = SessionState()  # a journal from before the field: redis was the only right answer
    old.apply(_started(None))
    old.apply(ev.HealthSample(replica="a", status="ok", transport="shared-bus"))
    assert old.transport_mismatch == ["a"]
