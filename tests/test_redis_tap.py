"""The raw Redis tap against real redis-server processes: ingest, AUTH, and failures as exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time

import pytest
import redis.asyncio as aioredis

from conftest import require_redis_server
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.state import fold
from rollback_tui.lab.bus import redis_server_argv
from rollback_tui.lab.proc import free_port
from rollback_tui.probes.redis_tap import RedisTap, TapError


async def _wait_subscribed(tap: RedisTap) -> None:
    for _ in range(200):
        if tap.subscribed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("tap never confirmed PSUBSCRIBE")


async def test_tap_ingests_every_frame_in_batches_and_journals_them(redis_server, tmp_path):
    journal = Journal(tmp_path / "tap.jsonl")
    batches: list[ev.FanoutTapBatch] = []

    def emit(event: ev.Event) -> ev.Event:
        batches.append(journal.append(event))  # type: ignore[arg-type]
        return event

    tap = RedisTap(redis_server, "chat:rt:*", emit)
    task = asyncio.create_task(tap.run(limit=500))
    await _wait_subscribed(tap)
    client = aioredis.from_url(redis_server)
    await client.publish("other:rt:thread-b", json.dumps({"event_id": "nope", "seq": 0}))  # no match
    await client.publish("chat:rt:thread-a", "not json")  # skipped, not fatal
    async with client.pipeline(transaction=False) as pipe:
        for i in range(1, 501):
            frame = {"event_id": f"evt-{i}", "seq": i, "thread_id": "thread-a", "origin_replica": "stable-a"}
            pipe.publish("chat:rt:thread-a", json.dumps(frame))
        await pipe.execute()
    await asyncio.wait_for(task, 10)
    await client.aclose()
    journal.close()

    rows = [row for batch in batches for row in batch.rows]
    assert [row[5] for row in rows] == list(range(1, 501))  # seq, in order, none lost
    assert len(batches) < 500  # pipelined frames arrive many per read, journaled one line per read
    assert {row[1] for row in rows} == {"chat:rt:thread-a"} and {row[2] for row in rows} == {"stable-a"}
    assert tap.channels == {"chat:rt:thread-a": 500}  # per channel, not per frame: bounded
    replayed = read_journal(tmp_path / "tap.jsonl").events
    assert sum(len(e.rows) for e in replayed) == 500  # every frame is in the journal, typed
    state = fold(replayed)
    assert state.fanout.frames_total == 500
    last = state.fanout.frames[-1]
    assert (last.session, last.event_id, last.seq, last.replica) == ("tap", "evt-500", 500, "stable-a")


async def test_closed_port_raises_a_connection_error():
    tap = RedisTap(f"redis://127.0.0.1:{free_port()}/0", "*", lambda e: e)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(tap.run(), 5)


@pytest.fixture
def redis_with_password(tmp_path):
    binary = require_redis_server()
    port = free_port()
    proc = subprocess.Popen(
        [*redis_server_argv(binary, port, tmp_path), "--requirepass", "s3cret-pass"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while True:  # PING needs AUTH here, so wait for the port to accept connections instead
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            break
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    yield port
    proc.terminate()
    proc.wait(5)


async def test_auth_from_the_url(redis_with_password):
    port = redis_with_password
    tap = RedisTap(f"redis://:s3cret-pass@127.0.0.1:{port}/0", "chat:*", lambda e: e)
    task = asyncio.create_task(tap.run(limit=1))
    await _wait_subscribed(tap)
    client = aioredis.from_url(f"redis://:s3cret-pass@127.0.0.1:{port}/0")
    await client.publish("chat:x", json.dumps({"event_id": "e1", "seq": 1}))
    assert await asyncio.wait_for(task, 5) == 1
    await client.aclose()
    with pytest.raises(TapError, match="refused AUTH"):
        await asyncio.wait_for(RedisTap(f"redis://:wrong@127.0.0.1:{port}/0", "*", lambda e: e).run(), 5)
