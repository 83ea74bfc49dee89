"""The lab balancer in front of real replicas. One lab serves the whole module; every test starts from
the playbook's selector and weights, with every replica up and without faults."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import build_lab_playbook, require_redis_server
from rollback_tui.lab.balancer import Backend, Balancer, parse_selector
from rollback_tui.lab.supervisor import Lab

pytestmark = pytest.mark.asyncio(loop_scope="module")
NO_FAULTS = {"error_rate": 0.0, "latency_ms": 0, "ws_drop_rate": 0.0}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    require_redis_server()
    async with Lab(build_lab_playbook(), redis="server", log_dir=tmp_path_factory.mktemp("lb-lab")) as lab:
        yield lab


@pytest_asyncio.fixture(loop_scope="module")
async def lab(module_lab: Lab) -> AsyncIterator[Lab]:
    yield module_lab
    lb = module_lab.playbook.load_balancer
    assert lb is not None
    async with httpx.AsyncClient(timeout=5) as client:
        admin = module_lab.endpoints["balancer-admin"]
        await client.put(f"{admin}/admin/selector", json={"selector": lb.selector})
        await client.put(f"{admin}/admin/weights", json={"weights": lb.weights})
        await client.delete(f"{admin}/admin/counts")
    for name, child in module_lab.children.items():
        if name != "balancer" and not child.running:
            await module_lab.restart_replica(name)
        elif name != "balancer":
            await module_lab.set_faults(name, **NO_FAULTS)


def ws(base: str, thread_id: str, after: int = 0) -> str:
    return f"ws{base[4:]}/v1/threads/{thread_id}/stream?after={after}"


async def served_by(client: httpx.AsyncClient, url: str, n: int) -> Counter[str]:
    limit = asyncio.Semaphore(25)

    async def one() -> str:
        async with limit:
            response = await client.get(url)
            assert response.status_code == 200
            return response.headers["x-served-by"]

    return Counter(await asyncio.gather(*(one() for _ in range(n))))


async def test_selector_matching_is_all_pairs() -> None:
    backends = [
        Backend("stable-a", "http://a", {"app": "api", "track": "stable"}),
        Backend("blue-next", "http://b", {"app": "api", "track": "candidate"}),
        Backend("other", "http://c", {"app": "web", "track": "stable"}),
    ]
    balancer = Balancer(backends, parse_selector("app=api"))
    assert [b.name for b in balancer.matching()] == ["stable-a", "blue-next"]
    balancer.set_selector({"app": "api", "track": "stable"})
    assert [b.name for b in balancer.matching()] == ["stable-a"]
    balancer.set_weights({"stable-a": 0})
    assert balancer.choose() is None


async def test_weighted_split_and_selector_change(lab: Lab) -> None:
    admin = lab.endpoints["balancer-admin"]
    async with httpx.AsyncClient(timeout=5) as client:
        state = (await client.get(f"{admin}/admin/state")).json()
        assert state["selector"] == {"app": "api"}
        assert state["weights"] == {"stable-a": 45, "stable-b": 45, "blue-next": 10}
        assert sorted(state["backends"]) == sorted(state["all"]) == ["blue-next", "stable-a", "stable-b"]

        n = 1200  # ±5 points is 3.5 sigma for the 45 % backends
        counts = await served_by(client, f"{lab.endpoints['balancer']}/api/ops/dead-letters", n)
        shares = {name: 100 * counts[name] / n for name in ("stable-a", "stable-b", "blue-next")}
        assert abs(shares["stable-a"] - 45) <= 5, shares
        assert abs(shares["stable-b"] - 45) <= 5, shares
        assert abs(shares["blue-next"] - 10) <= 5, shares
        assert (await client.get(f"{admin}/admin/state")).json()["counts"] == dict(counts)

        changed = await client.put(
            f"{admin}/admin/selector", json={"selector": {"app": "api", "track": "stable"}}
        )
        assert changed.status_code == 200
        assert sorted(changed.json()["backends"]) == ["stable-a", "stable-b"]
        after = await served_by(client, f"{lab.endpoints['balancer']}/healthz", 60)
        assert set(after) == {"stable-a", "stable-b"}

        weights = await client.put(f"{admin}/admin/weights", json={"weights": {"stable-b": 0}})
        assert weights.json()["weights"]["stable-b"] == 0
        assert set(await served_by(client, f"{lab.endpoints['balancer']}/healthz", 30)) == {"stable-a"}


async def test_admin_rejects_bad_input(lab: Lab) -> None:
    admin = lab.endpoints["balancer-admin"]
    async with httpx.AsyncClient(timeout=5) as client:
        for path, body in [
            ("/admin/selector", {"selector": ["app", "api"]}),
            ("/admin/selector", {"wrong": {}}),
            ("/admin/weights", {"weights": {"nobody": 3}}),
            ("/admin/weights", {"weights": {"stable-a": -1}}),
        ]:
            response = await client.put(admin + path, json=body)
            assert response.status_code == 400, (path, body)
            assert response.json()["error"]
        assert (await client.get(f"{admin}/admin/state")).json()["selector"] == {"app": "api"}
        # the admin API lives only on the admin port
        assert (await client.get(f"{lab.endpoints['balancer']}/admin/state")).status_code == 404


async def test_no_match_and_dead_backend_are_502(lab: Lab) -> None:
    admin, front = lab.endpoints["balancer-admin"], lab.endpoints["balancer"]
    async with httpx.AsyncClient(timeout=5) as client:
        await client.put(f"{admin}/admin/selector", json={"selector": {"app": "nothing"}})
        none = await client.get(f"{front}/healthz")
        assert none.status_code == 502
        assert "no backend matches" in none.json()["error"]
        with pytest.raises(InvalidStatus) as denied:
            async with connect(ws(front, "t-none")):
                pass
        assert denied.value.response.status_code == 502

        await client.put(f"{admin}/admin/selector", json={"selector": {"track": "candidate"}})
        await lab.kill_replica("blue-next")
        down = await client.get(f"{front}/healthz")
        assert down.status_code == 502
        assert down.headers["x-lab-backend"] == "blue-next"
        assert "blue-next" in down.json()["error"]


async def test_post_through_balancer_passes_body_and_headers(lab: Lab) -> None:
    front = lab.endpoints["balancer"]
    thread_id, key = f"t-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with httpx.AsyncClient(timeout=5) as client:
        first = await client.post(
            f"{front}/v1/threads/{thread_id}/messages", headers={"Idempotency-Key": key}, json={"text": "hi"}
        )
        again = await client.post(
            f"{front}/v1/threads/{thread_id}/messages", headers={"Idempotency-Key": key}, json={"text": "hi"}
        )
        missing = await client.post(f"{front}/v1/threads/{thread_id}/messages", json={"text": "hi"})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json() == again.json()
    assert missing.status_code == 400
    assert first.headers["x-served-by"] == first.headers["x-lab-backend"]
    assert len(first.headers.get_list("date")) == 1


async def test_websocket_through_balancer(lab: Lab) -> None:
    front = lab.endpoints["balancer"]
    thread_id = f"t-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=5) as client:
        async with connect(ws(front, thread_id)) as stream:
            origin = stream.response.headers["x-served-by"]
            assert origin in {"stable-a", "stable-b", "blue-next"}
            sent = await client.post(
                f"{lab.endpoints['stable-a']}/v1/threads/{thread_id}/messages",
                headers={"Idempotency-Key": uuid.uuid4().hex},
                json={"text": "via lb"},
            )
            frame = json.loads(await asyncio.wait_for(stream.recv(), 3))
            assert frame["event_id"] == sent.json()["event_id"]
            await stream.send("client frames are relayed too")  # the replica ignores them

        # a close from the backend reaches the client with its code
        await lab.set_faults(origin, ws_drop_rate=1.0)
        await client.put(f"{lab.endpoints['balancer-admin']}/admin/weights", json={"weights": _only(origin)})
        async with connect(ws(front, thread_id)) as stream:
            json.loads(await asyncio.wait_for(stream.recv(), 3))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(stream.recv(), 3)
            assert stream.close_code == 1011

        # a client close reaches the backend: its session count goes back to zero
        await lab.set_faults(origin, ws_drop_rate=0.0)
        async with connect(ws(front, thread_id)):
            stats = await client.get(f"{lab.endpoints[origin]}/_lab/stats")
            assert stats.json()["ws_sessions_open"] == 1
        for _ in range(40):
            stats = await client.get(f"{lab.endpoints[origin]}/_lab/stats")
            if stats.json()["ws_sessions_open"] == 0:
                break
            await asyncio.sleep(0.05)
        assert stats.json()["ws_sessions_open"] == 0


def _only(name: str) -> dict[str, int]:
    return {n: (1 if n == name else 0) for n in ("stable-a", "stable-b", "blue-next")}


async def test_sse_streams_through_balancer(lab: Lab) -> None:
    thread_id = f"t-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(timeout=5) as client:
        url = f"{lab.endpoints['balancer']}/v1/threads/{thread_id}/sse?after=0"
        async with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["x-served-by"] == response.headers["x-lab-backend"]
            lines = response.aiter_lines()
            assert await asyncio.wait_for(anext(lines), 3) == ": stream open"
            sent = await client.post(
                f"{lab.endpoints['stable-b']}/v1/threads/{thread_id}/messages",
                headers={"Idempotency-Key": uuid.uuid4().hex},
                json={"text": "streamed"},
            )
            while not (line := await asyncio.wait_for(anext(lines), 3)).startswith("data: "):
                pass
    assert json.loads(line[6:])["event_id"] == sent.json()["event_id"]


async def test_the_balancer_sends_small_answers_without_waiting_for_an_ack() -> None:
    """Its sockets are TCP (proto IPPROTO_TCP), so asyncio turns Nagle off on every connection it accepts:
    with proto 0 the body written after the headers waited for the client's delayed ACK, ~40 ms a request
    (the rollback verification's 200 requests took 1.2 s at 8 in flight)."""
    import socket

    from rollback_tui.lab.balancer import listen

    sock = listen("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = writer.get_extra_info("socket")
        accepted.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(connected, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(accepted, 5) == 1
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_an_answer_through_the_balancer_arrives_whole(lab: Lab) -> None:
    """Headers and body of a small answer through the balancer come together, not ~40 ms apart."""
    import socket
    import statistics
    import time

    host, port = lab.endpoints["balancer"].removeprefix("http://").split(":")

    def gaps() -> list[float]:
        out = []
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            for _ in range(7):
                conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: lab\r\n\r\n")
                got, first = b"", None
                while b"}" not in got.partition(b"\r\n\r\n")[2]:  # until the JSON body has come
                    got += conn.recv(65536)
                    first = first or time.perf_counter()
                out.append(time.perf_counter() - first)
        return out

    assert statistics.median(await asyncio.to_thread(gaps)) < 0.02
