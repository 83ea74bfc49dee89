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
from rollback_tui.lab.bus import redis_server_argv
from rollback_tui.lab.proc import free_port
from rollback_tui.probes.redis_tap import RedisTap, TapError


async def _wait_subscribed(tap: RedisTap) -> None:
    for _ in range(200):
        if tap.subscribed:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("tap never confirmed PSUBSCRIBE")


async def test_tap_ingests_every_frame_with_channel_and_seq(redis_server):
    got: list[ev.FanoutFrame] = []
    tap = RedisTap(redis_server, "chat:rt:*", lambda e: got.append(e) or e)
    task = asyncio.create_task(tap.run(limit=500))
    await _wait_subscribed(tap)
    client = aioredis.from_url(redis_server)
    for i in range(1, 501):
        channel = "chat:rt:thread-a" if i % 2 else "other:rt:thread-b"  # the second never matches
        frame = {"event_id": f"evt-{i}", "seq": i, "thread_id": "thread-a", "origin_replica": "stable-a"}
        await client.publish(channel if i % 2 else "chat:rt:thread-a", json.dumps(frame))
    await client.publish("chat:rt:thread-a", "not json")  # skipped, not fatal
    await asyncio.wait_for(task, 10)
    await client.aclose()
    assert [f.seq for f in got] == list(range(1, 501))
    assert {f.replica for f in got} == {"stable-a"} and all(f.session == "tap" for f in got)
    assert tap.channels["evt-1"] == "chat:rt:thread-a"
    assert (
        got[0].model_dump() == ev.FanoutFrame(**got[0].model_dump()).model_dump()
    )  # typed like the real thing


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
