"""The raw Redis tap against real redis-server processes: ingest, AUTH, and failures as exceptions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from conftest import require_binary, require_redis_server, stop_processes
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


async def test_a_dropped_connection_raises_and_a_cancelled_tap_closes_its_connection(redis_server):
    client = aioredis.from_url(redis_server)
    tap = RedisTap(redis_server, "drop:*", lambda e: e)
    task = asyncio.create_task(tap.run())
    await _wait_subscribed(tap)
    await client.publish("drop:x", json.dumps({"event_id": "e1", "seq": 1}))
    for _ in range(100):
        if tap.received:
            break
        await asyncio.sleep(0.02)
    assert await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
    with pytest.raises(TapError, match="closed the tap connection"):
        await asyncio.wait_for(task, 5)
    assert tap.received == 1

    tap = RedisTap(redis_server, "drop:*", lambda e: e)
    task = asyncio.create_task(tap.run())
    await _wait_subscribed(tap)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):  # the server sees the connection go
        if (await client.pubsub_numpat()) == 0:
            break
        await asyncio.sleep(0.02)
    assert await client.pubsub_numpat() == 0
    await client.aclose()


def _listening(port: int, proc: subprocess.Popen, timeout: float = 5) -> bool:
    """True once 127.0.0.1:port accepts connections, False if `proc` exited first; fails on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"nothing listened on port {port} within {timeout:g} s"
        time.sleep(0.02)


@pytest.fixture
def redis_with_password(tmp_path):
    binary = require_redis_server()
    port = free_port()
    proc = subprocess.Popen(
        [*redis_server_argv(binary, port, tmp_path), "--requirepass", "s3cret-pass"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert _listening(port, proc), "redis-server exited before it listened"  # PING would need AUTH
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


# --- the fast path: msgspec decodes the usual frame, anything else takes the general path -------------

PAYLOADS = [
    b'{"event_id":"e1","seq":1,"thread_id":"t","origin_replica":"stable-a","text":"hi"}',
    b'{"event_id":"e2","seq":2}',  # no thread, no replica: the channel stands in for the replica
    b'{"event_id":7,"seq":3,"thread_id":"t"}',  # a numeric id becomes its string
    b'{"event_id":"e4","seq":4.0}',  # a float seq is no seq
    b'{"event_id":"e5","seq":true}',
    b'{"event_id":"e6","seq":"6"}',
    b'{"event_id":"e7","seq":null,"thread_id":null,"origin_replica":""}',
    b'{"seq":8}',  # no id at all: "None", as before
    b'{"event_id":"e9","event_id":"e9b","seq":123456789012345678901234567890}',  # last key wins; big int
    b'{"event\\u005fid":"e10","seq":10,"thread_id":"t\\u00e9","nested":{"event_id":"no"}}',  # escapes
    b'{"event_id":"e11","seq":11,"x":NaN}',  # not JSON for msgspec, accepted by the general parser
    b'{"event_id":{"id":"e12"},"seq":12}',
    b'{"event_id":"e13","thread_id":5,"origin_replica":["x"]}',
    b"not json",
    b"[1, 2]",
    b'"just a string"',
    b'{"event_id":"e14"} trailing',
    b'  {"event_id":"e15","seq":-0}  ',
]


def _pmessage(channel: bytes, data: bytes) -> bytes:
    parts = [b"pmessage", b"chat:*", channel, data]
    return b"*4\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _drained_rows(tap: RedisTap, payloads: list[bytes]) -> list[ev.TapRow]:
    import hiredis

    from rollback_tui.probes.redis_tap import _NOT_ENOUGH

    batches: list[ev.FanoutTapBatch] = []
    tap.emit = lambda e: batches.append(e) or e  # type: ignore[method-assign, func-returns-value]
    parser = hiredis.Reader(notEnoughData=_NOT_ENOUGH)
    parser.feed(b"".join(_pmessage(b"chat:rt:t", p) for p in payloads))
    tap._drain(parser, None)
    return [row for batch in batches for row in batch.rows]


def test_fast_and_general_decoders_give_the_same_rows():
    tap = RedisTap("redis://127.0.0.1:1/0", "chat:*", lambda e: e, sent_at={"e2": 5.0})
    rows = _drained_rows(tap, PAYLOADS)
    now = rows[0][0]
    general = [tap._slow_row("chat:rt:t", p, now) for p in PAYLOADS]
    assert rows == [row for row in general if row is not None]
    assert [r[4] for r in rows][:4] == ["e1", "e2", "7", "e4"] and rows[1][6] == 5.0
    assert len(rows) == len(PAYLOADS) - 4  # not JSON, an array, a string, trailing text: skipped
    assert tap.channels == {"chat:rt:t": len(rows)} and tap.received == len(rows)


def test_dotted_paths_take_the_general_decoder():
    tap = RedisTap(
        "redis://127.0.0.1:1/0", "chat:*", lambda e: e, event_id_path="meta.id", seq_path="meta.seq"
    )
    rows = _drained_rows(tap, [b'{"meta":{"id":"m1","seq":4},"thread_id":"t"}', b'{"event_id":"x"}'])
    assert [(r[4], r[5]) for r in rows] == [("m1", 4), ("None", None)]


async def test_a_secret_in_a_tapped_payload_is_masked_in_the_journal(redis_server, tmp_path):
    from rollback_tui.core.redact import MASK, Redactor

    journal = Journal(tmp_path / "tap.jsonl", Redactor(["s3cr3t-redis-passw0rd"]))
    tap = RedisTap(redis_server, "chat:rt:*", journal.append)
    task = asyncio.create_task(tap.run(limit=400))
    await _wait_subscribed(tap)
    client = aioredis.from_url(redis_server)
    async with client.pipeline(transaction=False) as pipe:
        for i in range(400):  # one big read: the secret sits in a long line, among clean rows
            frame = {"event_id": f"evt-{i}", "seq": i, "thread_id": "t", "origin_replica": "stable-a"}
            if i == 200:
                frame["event_id"] = "evt-s3cr3t-redis-passw0rd"
            if i == 300:
                frame["thread_id"] = "t?token=abcdef"
            pipe.publish("chat:rt:t", json.dumps(frame))
        await pipe.execute()
    await asyncio.wait_for(task, 10)
    await client.aclose()
    journal.close()
    raw = (tmp_path / "tap.jsonl").read_text()
    assert "s3cr3t-redis-passw0rd" not in raw and "abcdef" not in raw
    rows = [row for e in read_journal(tmp_path / "tap.jsonl").events for row in e.rows]
    assert len(rows) == 400 and rows[200][4] == f"evt-{MASK}" and rows[300][3] == f"t?token={MASK}"
    assert rows[199][4] == "evt-199"


# --- the fold keeps tapped rows as rows until the log is read ------------------------------------------


def test_frame_log_holds_what_a_bounded_deque_would():
    from collections import deque

    from rollback_tui.core.state import FrameLog, TapFrame

    log, reference = FrameLog(maxlen=50), deque(maxlen=50)
    assert not log and len(log) == 0
    n = 0
    for step, size in enumerate([3, 0, 70, 1, 20, 49, 2, 120, 5]):
        rows = [(float(n + i), "ch", "r", "t", f"e{n + i}", n + i, None) for i in range(size)]
        n += size
        log.add_rows(f"run{step}", rows)
        reference.extend(TapFrame(f"run{step}", *row) for row in rows)
        assert len(log) == len(reference) and bool(log) == bool(reference)
        if step % 2:  # read now and then, as the pane does
            assert list(log) == list(reference) and log[-1] == reference[-1]
        if step % 3 == 2:  # a FanoutFrame between batches keeps its place
            frame = ev.FanoutFrame(run="x", session="A", replica="a", thread_id="t", event_id=f"f{step}",
                                   received_at=1.0)  # fmt: skip
            log.append(frame)
            reference.append(frame)
    assert list(log) == list(reference) and list(reversed(log)) == list(reversed(reference))


# --- TLS: a real redis-server on --tls-port, its certificate signed by a throwaway CA -------------------


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def redis_over_tls(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(TLS port, CA file): the server's certificate names 127.0.0.1, signed by a CA made for this test."""
    binary = require_redis_server()
    require_binary("openssl")
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
             "-subj", "/CN=rollback-tui test CA")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "1", "-extfile", tmp_path / "san.ext")  # fmt: skip
    port = free_port()
    tls = ["--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    tls += ["--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
    argv = [*redis_server_argv(binary, 0, tmp_path), *tls]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if not _listening(port, proc):
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.skip(f"this redis-server has no TLS: {output[-300:]}")
        yield port, ca
    finally:
        stop_processes([proc])


async def test_tls_tap_verifies_the_server_and_ingests(redis_over_tls):
    port, ca = redis_over_tls
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    tap = RedisTap(url, "chat:rt:*", lambda e: e)
    task = asyncio.create_task(tap.run(limit=300))
    await _wait_subscribed(tap)
    client = aioredis.from_url(url)
    async with client.pipeline(transaction=False) as pipe:
        for i in range(1, 301):
            frame = {"event_id": f"e{i}", "seq": i, "origin_replica": "stable-a"}
            pipe.publish("chat:rt:t", json.dumps(frame))
        await pipe.execute()
    assert await asyncio.wait_for(task, 10) == 300  # the TLS transport reads straight into hiredis too
    assert tap.channels == {"chat:rt:t": 300}
    await client.aclose()
    # Without the CA the certificate is not trusted: the tap refuses to connect.
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.wait_for(RedisTap(f"rediss://127.0.0.1:{port}/0", "*", lambda e: e).run(), 5)


async def test_unix_socket_tap(tmp_path: Path):
    binary = require_redis_server()
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [*redis_server_argv(binary, 0, tmp_path), "--unixsocket", str(sock), "--unixsocketperm", "700"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server never made its socket"
            await asyncio.sleep(0.02)
        url = f"unix://{sock}?db=0"
        tap = RedisTap(url, "chat:rt:*", lambda e: e)
        task = asyncio.create_task(tap.run(limit=50))
        await _wait_subscribed(tap)
        client = aioredis.from_url(url)
        for i in range(1, 51):
            await client.publish("chat:rt:u", json.dumps({"event_id": f"e{i}", "seq": i}))
        assert await asyncio.wait_for(task, 10) == 50
        await client.aclose()
    finally:
        stop_processes([proc])


async def test_a_frame_larger_than_one_read_arrives_whole(redis_server):
    from rollback_tui.probes.redis_tap import READ_CHUNK

    batches: list[ev.FanoutTapBatch] = []
    tap = RedisTap(redis_server, "chat:rt:*", lambda e: batches.append(e) or e)  # type: ignore[func-returns-value]
    task = asyncio.create_task(tap.run(limit=3))
    await _wait_subscribed(tap)
    client = aioredis.from_url(redis_server)
    text = "x" * (3 * READ_CHUNK)  # spans several socket reads
    for i in (1, 2, 3):
        await client.publish("chat:rt:big", json.dumps({"event_id": f"big-{i}", "seq": i, "text": text}))
    assert await asyncio.wait_for(task, 10) == 3
    await client.aclose()
    assert [row[4] for batch in batches for row in batch.rows] == ["big-1", "big-2", "big-3"]


RENAMED = {b'"event_id"': b'"id"', b'"seq"': b'"position"', b'"thread_id"': b'"conversation"'}


def _renamed(payload: bytes) -> bytes:
    for old, new in {**RENAMED, b'"origin_replica"': b'"from"'}.items():
        payload = payload.replace(old, new)
    return payload


def test_other_field_names_keep_the_fast_decoder_and_agree_with_the_general_one():
    from rollback_tui.probes.redis_tap import _NeverMatches

    names = {"event_id_path": "id", "seq_path": "position", "thread_id_path": "conversation"}
    tap = RedisTap("redis://127.0.0.1:1/0", "*", lambda e: e, replica_path="from", **names)
    assert not isinstance(tap._decode.__self__, _NeverMatches)  # the fast path serves these names
    payloads = [_renamed(p) for p in PAYLOADS]
    rows = _drained_rows(tap, payloads)
    general = [tap._slow_row("chat:rt:t", p, rows[0][0]) for p in payloads]
    assert rows == [row for row in general if row is not None]
    first = rows[0]
    assert (first[2], first[3], first[4], first[5]) == ("stable-a", "t", "e1", 1)
    plain = [p for p in PAYLOADS if b"\\u005f" not in p]  # an escaped key name is another name
    default = RedisTap("redis://127.0.0.1:1/0", "*", lambda e: e)
    renamed = RedisTap("redis://127.0.0.1:1/0", "*", lambda e: e, replica_path="from", **names)
    same = [r[2:] for r in _drained_rows(renamed, [_renamed(p) for p in plain])]
    assert [r[2:] for r in _drained_rows(default, plain)] == same


def test_dotted_origin_and_thread_paths_take_the_general_decoder():
    tap = RedisTap(
        "redis://127.0.0.1:1/0",
        "*",
        lambda e: e,
        event_id_path="id",
        thread_id_path="meta.conversation",
        replica_path="meta.node",
    )
    payload = b'{"id":"m1","seq":2,"meta":{"conversation":"c9","node":"api-2"}}'
    [row] = _drained_rows(tap, [payload])
    assert (row[2], row[3], row[4], row[5]) == ("api-2", "c9", "m1", 2)


def test_channel_templates_give_the_pattern_and_the_prefix():
    from rollback_tui.probes.redis_tap import channel_pattern, channel_prefix_reader

    assert channel_pattern("{prefix}{thread_id}", "rehearsal-1") == "*rehearsal-1"
    assert channel_pattern("{prefix}.conv.{thread_id}.events", "t1") == "*.conv.t1.events"
    assert channel_pattern("rt/[{thread_id}]*", "t?1") == r"rt/\[t\?1\]\*"  # glob characters are literal
    prefix = channel_prefix_reader("{prefix}.conv.{thread_id}.events", "t1")
    assert prefix("acme.conv.t1.events") == "acme" and prefix("acme.conv.t2.events") is None
    assert channel_prefix_reader("rt/{thread_id}", "t1")("rt/t1") is None  # no prefix in the template
