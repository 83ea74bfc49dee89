"""Cross-replica fanout verification against real replica processes and a real redis-server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import build_lab_playbook
from rollback_tui.core import events as ev
from rollback_tui.probes.fanout import FanoutVerifier, Received, ordering_problems


def _lab_with(**lab_b) -> object:
    pb = build_lab_playbook()
    doc = pb.model_dump()
    doc["replicas"][1]["lab"].update(lab_b)
    return type(pb).model_validate(doc)


async def _verify(lab, **kw) -> tuple[ev.FanoutResult, list[ev.Event]]:
    events: list[ev.Event] = []
    verifier = FanoutVerifier(lab.playbook, lambda e: events.append(e) or e, **kw)
    return await verifier.run(), events


async def test_healthy_lab_passes_with_event_ids_timestamps_and_replay(lab):
    result, events = await _verify(lab)
    assert result.passed, result.reasons
    assert result.ordering_ok and result.replay_ok
    assert result.prefixes_seen == ["chat:rt:"]
    assert result.cross_latency_ms is not None and result.cross_latency_ms < 2000
    # two probes + 3 replayed; both sessions saw the two probes, B got the replay batch after reconnecting
    assert len(result.sent) == 2 + 3
    assert result.received["A"] == result.sent
    assert result.received["B"] == result.sent
    frames = [e for e in events if isinstance(e, ev.FanoutFrame)]
    assert {f.session for f in frames} == {"A", "B"}
    tapped = [row[4] for e in events if isinstance(e, ev.FanoutTapBatch) for row in e.rows]
    assert sorted(tapped) == sorted(result.sent)  # the Redis tap saw every published event
    replayed = [f.event_id for f in frames if f.session == "B" and f.replay]
    assert replayed == result.sent[2:]
    assert all(f.received_at >= (f.sent_at or 0) for f in frames)
    # the synthetic thread is cleaned up
    assert any(isinstance(e, ev.Notice) and "cleaned up" in e.message for e in events)
    import redis.asyncio as aioredis

    r = aioredis.from_url(lab.playbook.realtime.redis_url)
    assert [k async for k in r.scan_iter(match=f"*{result.thread_id}*")] == []
    await r.aclose()


@pytest.mark.parametrize("lab_playbook", [_lab_with(transport="memory")], indirect=True)
async def test_replica_on_memory_transport_fails_and_says_why(lab):
    result, _ = await _verify(lab)
    assert not result.passed
    assert any(
        "stable-b never received" in r
        and "stable-b reports transport=memory" in r
        and "CHAT_REALTIME_TRANSPORT" in r
        for r in result.reasons
    ), result.reasons


@pytest.mark.parametrize("lab_playbook", [_lab_with(channel_prefix="chat:rt2:")], indirect=True)
async def test_replica_on_another_prefix_fails_and_names_both_prefixes(lab):
    result, _ = await _verify(lab)
    assert not result.passed
    assert result.prefixes_seen == ["chat:rt2:", "chat:rt:"]
    assert any("channel prefixes differ" in r for r in result.reasons), result.reasons
    assert any("different channel prefixes" in r for r in result.reasons)


async def test_stored_event_removed_before_replay_is_a_gap(lab):
    async def remove_middle(thread_id: str, missed: list[str]) -> None:
        async with httpx.AsyncClient() as client:
            # seqs: 1, 2 were the probes; 3, 4, 5 the missed batch — delete 4 from the stored stream
            response = await client.delete(f"{lab.endpoints['stable-a']}/_lab/threads/{thread_id}/events/4")
            assert response.status_code < 300

    result, _ = await _verify(lab, before_replay=remove_middle)
    assert not result.passed and result.replay_ok is False
    assert any("catch-up replay on stable-b" in r and "missed" in r for r in result.reasons), result.reasons
    assert any("gap between seq 3 and 5" in r for r in result.reasons), result.reasons


async def test_duplicated_frame_is_caught(lab):
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{lab.endpoints['stable-b']}/_lab/duplicate-next")
        assert response.status_code < 300
    result, _ = await _verify(lab)
    assert not result.passed and result.ordering_ok is False
    assert any("session B on stable-b received" in r and "twice" in r for r in result.reasons), result.reasons


async def test_replica_killed_mid_check_is_reported_not_raised(lab):
    async def kill_b(thread_id: str, missed: list[str]) -> None:
        await lab.kill_replica("stable-b")

    result, events = await _verify(lab, before_replay=kill_b)
    assert not result.passed
    assert any("stable-b" in r for r in result.reasons), result.reasons
    dropped = [e for e in events if isinstance(e, ev.FanoutSessionState) and e.state == "dropped"]
    assert dropped and all(e.replica == "stable-b" for e in dropped)


async def test_sse_stream_kind(lab):
    doc = lab.playbook.model_dump()
    doc["realtime"]["fanout"]["stream_kind"] = "sse"
    doc["realtime"]["fanout"]["stream_url"] = "{base}/v1/threads/{thread_id}/sse?after={after}"
    playbook = type(lab.playbook).model_validate(doc)
    events: list[ev.Event] = []
    result = await FanoutVerifier(playbook, lambda e: events.append(e) or e).run()
    assert result.passed, result.reasons
    assert result.received["B"] == result.sent


async def test_unreachable_replica_is_a_reason_not_an_exception(lab):
    await lab.kill_replica("stable-a")
    result, _ = await asyncio.wait_for(_verify(lab), 30)
    assert not result.passed
    assert any("could not open stream session A on stable-a" in r for r in result.reasons), result.reasons


def test_ordering_problems_detects_reorder_gap_and_duplicate():
    def rx(*pairs):
        return [Received(e, s, 0.0) for e, s in pairs]

    assert ordering_problems("A", "x", rx(("e1", 1), ("e2", 2), ("e3", 3))) == []
    assert "reordered" in ordering_problems("A", "x", rx(("e1", 1), ("e3", 3), ("e2", 2)))[1]
    assert "gap between seq 1 and 3" in ordering_problems("A", "x", rx(("e1", 1), ("e3", 3)))[0]
    assert "twice" in ordering_problems("A", "x", rx(("e1", 1), ("e1", 1)))[0]
