"""The lab replica against real Redis and real uvicorn processes (DESIGN §3)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import stop_processes
from rollback_tui.lab.proc import die_with_parent_hook, free_port

PREFIX = "test:rt:"
DEFAULT_FAULTS = {
    "error_rate": 0.0,
    "latency_ms": 0,
    "ws_drop_rate": 0.0,
    "dead_letters": 0,
    "health_errors": False,
}


def spawn_replica(name: str, redis_url: str, log_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    argv = [
        sys.executable, "-m", "rollback_tui.lab.replica",
        "--name", name, "--port", str(port), "--redis-url", redis_url,
        "--channel-prefix", PREFIX, "--image", "sha256:feedface", "--commit", "abc1234", *extra,
    ]  # fmt: skip
    log = (log_dir / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent_hook())
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def replicas(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """one, two: transport redis; mem: transport memory; dead: Redis URL nobody listens on."""
    log_dir = tmp_path_factory.mktemp("replica-logs")
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    started = {
        "one": spawn_replica("one", redis_server, log_dir),
        "two": spawn_replica("two", redis_server, log_dir),
        "mem": spawn_replica("mem", redis_server, log_dir, "--transport", "memory"),
        "dead": spawn_replica("dead", dead_redis, log_dir),
    }
    try:
        deadline = time.monotonic() + 15
        for name, (proc, url) in started.items():
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"replica {name} did not start:\n{(log_dir / f'{name}.log').read_text()}")
                    time.sleep(0.05)
        yield {name: url for name, (_, url) in started.items()}
    finally:
        stop_processes([proc for proc, _ in started.values()])


@pytest.fixture
async def http(replicas: dict[str, str]) -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client
        for url in replicas.values():  # every test starts from a replica without faults
            await client.post(f"{url}/_lab/faults", json=DEFAULT_FAULTS)


def thread() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def ws_url(base: str, thread_id: str, after: int = 0) -> str:
    return f"ws{base[4:]}/v1/threads/{thread_id}/stream?after={after}"


async def send(http: httpx.AsyncClient, base: str, thread_id: str, text: str, key: str | None = None) -> dict:
    response = await http.post(
        f"{base}/v1/threads/{thread_id}/messages",
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
        json={"text": text},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def recv_frame(ws: ClientConnection, timeout: float = 3.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def assert_silent(ws: ClientConnection, seconds: float = 0.6) -> None:
    with pytest.raises(TimeoutError):
        frame = await asyncio.wait_for(ws.recv(), seconds)
        pytest.fail(f"expected no frame, got {frame}")


async def test_healthz_shape_and_served_by(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    response = await http.get(f"{replicas['one']}/healthz")
    assert response.status_code == 200
    assert response.headers["x-served-by"] == "one"
    doc = response.json()
    assert doc["status"] == "ok"
    assert doc["replica"] == "one"
    assert doc["image"] == "sha256:feedface"
    assert doc["commit"] == "abc1234"
    assert doc["realtime"] == {"transport": "redis", "channel_prefix": PREFIX}

    mem = (await http.get(f"{replicas['mem']}/healthz")).json()
    assert mem["status"] == "ok"  # a memory transport is a silent misconfiguration, as in production
    assert mem["realtime"]["transport"] == "memory"

    await http.post(f"{replicas['one']}/_lab/faults", json={"latency_ms": 5})
    assert (await http.get(f"{replicas['one']}/healthz")).json()["status"] == "degraded"


async def test_every_response_is_served_by(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    base = replicas["two"]
    not_found = await http.get(f"{base}/no/such/path")
    missing_key = await http.post(f"{base}/v1/threads/{thread()}/messages", json={"text": "x"})
    bad_thread = await http.post(f"{base}/v1/threads/bad%20id/messages", headers={"Idempotency-Key": "k"})
    assert (not_found.status_code, missing_key.status_code, bad_thread.status_code) == (404, 400, 400)
    assert "Idempotency-Key" in missing_key.json()["error"]
    for response in (not_found, missing_key, bad_thread):
        assert response.headers["x-served-by"] == "two"


async def test_idempotency(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    thread_id, key = thread(), uuid.uuid4().hex
    url = f"{replicas['one']}/v1/threads/{thread_id}/messages"
    first = await http.post(url, headers={"Idempotency-Key": key}, json={"text": "hello"})
    # the same key and body again, through the other replica: the same event, nothing new stored
    again = await http.post(
        f"{replicas['two']}/v1/threads/{thread_id}/messages",
        headers={"Idempotency-Key": key},
        json={"text": "hello"},
    )
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert set(first.json()) == {"event_id", "seq", "thread_id"}
    assert first.json()["event_id"].startswith("evt-")

    before = (await http.get(f"{replicas['one']}/_lab/stats")).json()["idempotency_collisions"]
    clash = await http.post(url, headers={"Idempotency-Key": key}, json={"text": "something else"})
    assert clash.status_code == 409
    assert (await http.get(f"{replicas['one']}/_lab/stats")).json()["idempotency_collisions"] == before + 1
    assert (await http.get(f"{replicas['one']}/healthz")).json()["idempotency_collisions"] == before + 1

    async with connect(ws_url(replicas["one"], thread_id)) as ws:
        assert (await recv_frame(ws))["event_id"] == first.json()["event_id"]
        await assert_silent(ws, 0.3)  # exactly one stored event


async def test_concurrent_sends_get_distinct_sequence_numbers(
    http: httpx.AsyncClient, replicas: dict[str, str]
) -> None:
    thread_id = thread()
    acks = await asyncio.gather(
        *(send(http, replicas["one" if i % 2 else "two"], thread_id, f"m{i}") for i in range(20))
    )
    assert sorted(a["seq"] for a in acks) == list(range(1, 21))


async def test_replay_then_live_across_two_replicas(
    http: httpx.AsyncClient, replicas: dict[str, str]
) -> None:
    thread_id = thread()
    stored = [await send(http, replicas["one"], thread_id, f"before {i}") for i in range(3)]
    async with (
        connect(ws_url(replicas["one"], thread_id)) as a,
        connect(ws_url(replicas["two"], thread_id, after=1)) as b,
    ):
        assert a.response.headers["x-served-by"] == "one"
        assert [(await recv_frame(a))["seq"] for _ in range(3)] == [1, 2, 3]
        assert [(await recv_frame(b))["seq"] for _ in range(2)] == [2, 3]
        live = await send(http, replicas["two"], thread_id, "live")
        got_a, got_b = await recv_frame(a), await recv_frame(b)
    assert got_a == got_b
    assert got_a["event_id"] == live["event_id"]
    assert got_a["seq"] == stored[-1]["seq"] + 1
    assert got_a["type"] == "message"
    assert got_a["origin_replica"] == "two"
    assert got_a["thread_id"] == thread_id
    assert got_a["text"] == "live"
    assert got_a["sent_at"].endswith("Z")


async def test_nothing_lost_or_doubled_between_replay_and_live(
    http: httpx.AsyncClient, replicas: dict[str, str]
) -> None:
    """Connect while another replica is sending: replay + live must be exactly 1..N."""
    thread_id, total = thread(), 40

    async def sender() -> None:
        for i in range(total):
            await send(http, replicas["two"], thread_id, f"m{i}")

    sending = asyncio.create_task(sender())
    await asyncio.sleep(0.05)  # some events are stored before we connect, the rest arrive live
    async with connect(ws_url(replicas["one"], thread_id)) as ws:
        seqs = [(await recv_frame(ws))["seq"] for _ in range(total)]
        await sending
        await assert_silent(ws, 0.3)
    assert seqs == list(range(1, total + 1))


async def test_bad_stream_requests_are_refused(replicas: dict[str, str]) -> None:
    base = replicas["one"]
    for url in (ws_url(base, "bad!id"), f"ws{base[4:]}/v1/threads/t-1/stream?after=nope"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        assert refused.value.response.status_code == 400


async def test_memory_transport_reaches_only_its_own_clients(
    http: httpx.AsyncClient, replicas: dict[str, str]
) -> None:
    thread_id = thread()
    async with (
        connect(ws_url(replicas["mem"], thread_id)) as on_mem,
        connect(ws_url(replicas["one"], thread_id)) as on_redis,
    ):
        from_mem = await send(http, replicas["mem"], thread_id, "from mem")
        assert (await recv_frame(on_mem))["event_id"] == from_mem["event_id"]
        await assert_silent(on_redis)
        from_redis = await send(http, replicas["one"], thread_id, "from one")
        assert (await recv_frame(on_redis))["seq"] == from_redis["seq"]
        await assert_silent(on_mem)
    # it still stores events in Redis, so a replay from any replica sees both
    async with connect(ws_url(replicas["two"], thread_id)) as late:
        assert [(await recv_frame(late))["event_id"] for _ in range(2)] == [
            from_mem["event_id"],
            from_redis["event_id"],
        ]


async def test_sse_stream(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    thread_id = thread()
    first = await send(http, replicas["one"], thread_id, "stored")
    frames: list[dict] = []
    async with http.stream("GET", f"{replicas['two']}/v1/threads/{thread_id}/sse?after=0") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-served-by"] == "two"
        lines = response.aiter_lines()

        async def next_frame() -> dict:
            while True:
                line = await asyncio.wait_for(anext(lines), 3)
                if line.startswith("data: "):
                    return json.loads(line[6:])

        frames.append(await next_frame())
        live = await send(http, replicas["one"], thread_id, "live")
        frames.append(await next_frame())
    assert [f["event_id"] for f in frames] == [first["event_id"], live["event_id"]]


async def test_ws_drop_fault_closes_with_1011(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    thread_id = thread()
    await send(http, replicas["one"], thread_id, "one")
    await send(http, replicas["one"], thread_id, "two")
    await http.post(f"{replicas['one']}/_lab/faults", json={"ws_drop_rate": 1.0})
    async with connect(ws_url(replicas["one"], thread_id)) as ws:
        assert (await recv_frame(ws))["seq"] == 1
        with pytest.raises(ConnectionClosed):
            await recv_frame(ws)
        assert ws.close_code == 1011


async def test_duplicate_next_and_deleted_event(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    thread_id = thread()
    async with connect(ws_url(replicas["two"], thread_id)) as ws:
        assert (await http.post(f"{replicas['two']}/_lab/duplicate-next")).status_code == 200
        sent = await send(http, replicas["one"], thread_id, "twice")
        assert [(await recv_frame(ws))["event_id"] for _ in range(2)] == [sent["event_id"]] * 2
        await assert_silent(ws, 0.3)
    for i in range(2):
        await send(http, replicas["one"], thread_id, f"more {i}")
    deleted = await http.delete(f"{replicas['one']}/_lab/threads/{thread_id}/events/2")
    assert deleted.status_code == 200
    assert (await http.delete(f"{replicas['one']}/_lab/threads/{thread_id}/events/2")).status_code == 404
    async with connect(ws_url(replicas["one"], thread_id)) as ws:
        assert [(await recv_frame(ws))["seq"] for _ in range(2)] == [1, 3]  # the gap a probe must report


async def test_error_rate_and_dead_letters(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    base = replicas["one"]
    faults = await http.post(f"{base}/_lab/faults", json={"error_rate": 1.0, "dead_letters": 7})
    assert faults.json()["error_rate"] == 1.0
    failed = await http.post(f"{base}/v1/threads/{thread()}/messages", headers={"Idempotency-Key": "x"})
    assert failed.status_code == 503
    assert failed.headers["x-served-by"] == "one"
    assert "injected" in failed.json()["error"]
    assert (await http.get(f"{base}/healthz")).status_code == 200  # health_errors is off
    letters = (await http.get(f"{base}/api/ops/dead-letters")).json()
    assert letters["count"] == 7
    assert len(letters["items"]) == 7

    await http.post(f"{base}/_lab/faults", json={"health_errors": True})
    assert (await http.get(f"{base}/healthz")).status_code == 503

    bad = await http.post(f"{base}/_lab/faults", json={"error_rate": 2})
    assert bad.status_code == 400
    unknown = await http.post(f"{base}/_lab/faults", json={"explode": True})
    assert unknown.status_code == 400
    assert "explode" in unknown.json()["error"]


async def test_runtime_transport_switch(http: httpx.AsyncClient, replicas: dict[str, str]) -> None:
    thread_id = thread()
    await http.post(f"{replicas['two']}/_lab/faults", json={"transport": "memory"})
    assert (await http.get(f"{replicas['two']}/healthz")).json()["realtime"]["transport"] == "memory"
    async with connect(ws_url(replicas["one"], thread_id)) as ws:
        await send(http, replicas["two"], thread_id, "lost")
        await assert_silent(ws)
    await http.post(f"{replicas['two']}/_lab/faults", json={"transport": "redis"})


async def test_redis_unreachable_is_503_never_a_crash(
    http: httpx.AsyncClient, replicas: dict[str, str]
) -> None:
    base = replicas["dead"]
    health = await http.get(f"{base}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert "redis unreachable" in health.json()["error"]
    sent = await http.post(
        f"{base}/v1/threads/{thread()}/messages", headers={"Idempotency-Key": "k"}, json={}
    )
    assert sent.status_code == 503
    assert sent.headers["x-served-by"] == "dead"
    assert "redis" in sent.json()["error"]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(base, thread())):
            pass
    assert refused.value.response.status_code == 503
    assert refused.value.response.headers["x-served-by"] == "dead"
    assert b"redis unavailable" in refused.value.response.body
    assert (await http.get(f"{base}/healthz")).status_code == 200  # still alive


async def _metrics(http: httpx.AsyncClient, base: str) -> dict[tuple[str, frozenset], float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = await http.get(f"{base}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_metrics_count_requests_by_status_latency_collisions_and_dead_letters(
    http: httpx.AsyncClient, replicas: dict[str, str]
) -> None:
    base = replicas["two"]
    before = await _metrics(http, base)
    ok_key = frozenset({"replica": "two", "route": "api", "code": "201"}.items())
    bad_key = frozenset({"replica": "two", "route": "api", "code": "503"}.items())
    await send(http, base, thread(), "counted")
    await http.post(f"{base}/_lab/faults", json={"error_rate": 1.0, "latency_ms": 120, "dead_letters": 4})
    failed = await http.post(f"{base}/v1/threads/{thread()}/messages", headers={"Idempotency-Key": "m"})
    assert failed.status_code == 503
    await http.post(f"{base}/_lab/faults", json={"error_rate": 0.0, "latency_ms": 0})
    key, thread_id = uuid.uuid4().hex, thread()
    await send(http, base, thread_id, "first", key)
    collision = await http.post(
        f"{base}/v1/threads/{thread_id}/messages", headers={"Idempotency-Key": key}, json={"text": "other"}
    )
    assert collision.status_code == 409
    after = await _metrics(http, base)

    def delta(name: str, labels: frozenset = frozenset({("replica", "two")})) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert delta("lab_http_requests_total", ok_key) == 2
    assert delta("lab_http_requests_total", bad_key) == 1  # the injected 503, as the client saw it
    assert delta("lab_idempotency_collisions_total") == 1
    assert after[("lab_dead_letters", frozenset({("replica", "two")}))] == 4
    api = frozenset({"replica": "two", "route": "api"}.items())
    assert delta("lab_http_request_duration_seconds_count", api) == 4
    slow = frozenset({"replica": "two", "route": "api", "le": "0.1"}.items())
    assert (
        delta("lab_http_request_duration_seconds_count", api)
        - delta("lab_http_request_duration_seconds_bucket", slow)
        == 1
    )  # the one with +120 ms took longer than 0.1 s
    build = frozenset({"replica": "two", "image": "sha256:feedface", "commit": "abc1234"}.items())
    assert after[("lab_build_info", build)] == 1
    assert ("lab_stream_disconnects_total", frozenset({("replica", "two")})) in after
