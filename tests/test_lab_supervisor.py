"""The lab supervisor: start/stop without leftovers, URL rewriting, kill/restart, embedded Redis."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from conftest import build_lab_playbook, live_processes, pid_alive, require_prometheus, require_redis_server
from rollback_tui.lab.bus import EMBEDDED_KIND, RedisBus, ping
from rollback_tui.lab.proc import free_port
from rollback_tui.lab.supervisor import Lab, LabError, rewrite_urls, run_lab_forever
from rollback_tui.playbook.model import Playbook


async def wait_dead(pids: list[int], timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if pid_alive(pid)]
        if not alive:
            return []
        await asyncio.sleep(0.05)
    return alive


async def fanout_once(lab: Lab, receiver: str, sender: str, timeout: float = 3.0) -> None:
    thread_id = f"t-{uuid.uuid4().hex[:8]}"
    base = lab.endpoints[receiver]
    async with connect(f"ws{base[4:]}/v1/threads/{thread_id}/stream?after=0") as stream:
        async with httpx.AsyncClient(timeout=5) as client:
            sent = await client.post(
                f"{lab.endpoints[sender]}/v1/threads/{thread_id}/messages",
                headers={"Idempotency-Key": uuid.uuid4().hex},
                json={"text": "x"},
            )
        frame = json.loads(await asyncio.wait_for(stream.recv(), timeout))
    assert frame["event_id"] == sent.json()["event_id"]


def test_rewrite_urls_moves_only_known_ports() -> None:
    moves = {("127.0.0.1", 18081): 40001}
    doc = {
        "a": "http://127.0.0.1:18081/api/ops/dead-letters",
        "b": ["ws://localhost:18081/x", "http://127.0.0.1:18082/healthz", "plain 127.0.0.1:18081"],
    }
    assert rewrite_urls(doc, moves) == {
        "a": "http://127.0.0.1:40001/api/ops/dead-letters",
        "b": ["ws://127.0.0.1:40001/x", "http://127.0.0.1:18082/healthz", "plain 127.0.0.1:18081"],
    }


async def test_start_resolves_playbook_and_stop_leaves_nothing(tmp_path: Path) -> None:
    require_redis_server()
    source = build_lab_playbook()
    lab = Lab(source, redis="server", log_dir=tmp_path)
    await lab.start()
    try:
        pids = lab.pids()
        assert set(pids) == {"stable-a", "stable-b", "blue-next", "balancer", "redis"}
        assert lab.redis_kind.startswith("redis-server ")
        resolved = lab.playbook
        assert resolved is not source
        assert source.replica("stable-a").url == "http://127.0.0.1:18081"  # the original is untouched
        for name in ("stable-a", "stable-b", "blue-next"):
            assert resolved.replica(name).url == lab.endpoints[name]
        assert resolved.probes[0].url == lab.endpoints["stable-a"] + "/api/ops/dead-letters"
        assert resolved.load_balancer is not None and resolved.realtime is not None
        assert resolved.load_balancer.url == lab.endpoints["balancer"]
        assert resolved.load_balancer.traffic_control.admin_url == lab.endpoints["balancer-admin"]
        assert resolved.realtime.redis_url == lab.endpoints["redis"]
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in resolved.replicas:
                health = (await client.get(f"{replica.url}/healthz")).json()
                assert health["status"] == "ok"
                assert health["replica"] == replica.name
                assert health["commit"] == source.replica(replica.name).lab.commit
        assert (tmp_path / "stable-a.log").exists()
    finally:
        await lab.stop()
    assert await wait_dead(list(pids.values())) == []
    await lab.stop()  # idempotent


async def test_kill_restart_and_faults(lab: Lab) -> None:
    victim = lab.pids()["blue-next"]
    await lab.kill_replica("blue-next")
    assert not pid_alive(victim)
    async with httpx.AsyncClient(timeout=2) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{lab.endpoints['blue-next']}/healthz")
        assert (await client.get(f"{lab.endpoints['stable-a']}/healthz")).status_code == 200

        await lab.restart_replica("blue-next")
        assert lab.pids()["blue-next"] != victim
        assert (await client.get(f"{lab.endpoints['blue-next']}/healthz")).json()["status"] == "ok"

        faults = await lab.set_faults("stable-b", error_rate=0.5, dead_letters=3)
        assert faults["error_rate"] == 0.5 and faults["dead_letters"] == 3
        assert (await client.get(f"{lab.endpoints['stable-b']}/healthz")).json()["status"] == "degraded"
        with pytest.raises(LabError):
            await lab.set_faults("stable-b", error_rate=3)
        with pytest.raises(LabError):
            await lab.kill_replica("nobody")
    await fanout_once(lab, "blue-next", "stable-a")


async def test_prefer_playbook_ports_uses_free_ones_and_moves_taken_ones(tmp_path: Path) -> None:
    require_redis_server()
    doc = build_lab_playbook().model_dump()
    wanted = {r["name"]: free_port() for r in doc["replicas"]}
    for replica in doc["replicas"]:
        replica["url"] = f"http://127.0.0.1:{wanted[replica['name']]}"
    doc["load_balancer"] = None
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", wanted["stable-a"]))
        squatter.listen()
        lab = Lab(Playbook.model_validate(doc), redis="server", prefer_playbook_ports=True, log_dir=tmp_path)
        async with lab:
            assert lab.endpoints["stable-b"] == f"http://127.0.0.1:{wanted['stable-b']}"
            assert lab.endpoints["stable-a"] != f"http://127.0.0.1:{wanted['stable-a']}"
            assert lab.playbook.replica("stable-a").url == lab.endpoints["stable-a"]
            assert "balancer" not in lab.endpoints
            await fanout_once(lab, "stable-a", "blue-next")


async def test_memory_transport_replica_from_the_playbook(tmp_path: Path) -> None:
    require_redis_server()
    base = build_lab_playbook().model_dump()
    base["replicas"][1]["lab"]["transport"] = "memory"
    async with Lab(Playbook.model_validate(base), redis="server", log_dir=tmp_path) as lab:
        async with httpx.AsyncClient(timeout=5) as client:
            health = (await client.get(f"{lab.endpoints['stable-b']}/healthz")).json()
        assert health["realtime"]["transport"] == "memory"
        with pytest.raises(TimeoutError):
            await fanout_once(lab, "stable-a", "stable-b", timeout=0.8)


async def test_embedded_redis_fallback(tmp_path: Path) -> None:
    lab = Lab(build_lab_playbook(), redis="embedded", log_dir=tmp_path)
    await lab.start()
    try:
        assert "fakeredis" in lab.redis_kind
        await fanout_once(lab, "stable-a", "stable-b")
        pids = list(lab.pids().values())
    finally:
        await lab.stop()
    assert await wait_dead(pids) == []


async def test_auto_falls_back_to_embedded_without_redis_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    with pytest.raises(LabError, match="redis-server is not on PATH"):
        await Lab(build_lab_playbook(), redis="server", log_dir=tmp_path).start()
    bus = RedisBus("auto", log_dir=tmp_path)
    await bus.start()
    try:
        assert bus.kind == EMBEDDED_KIND
        assert await ping(bus.port)
    finally:
        await bus.stop()
    assert not await ping(bus.port)


async def test_failing_replica_is_named_with_its_output(tmp_path: Path) -> None:
    require_redis_server()
    doc = build_lab_playbook().model_dump()
    doc["replicas"][2]["lab"]["channel_prefix"] = "x" * 300  # the replica refuses to start
    lab = Lab(Playbook.model_validate(doc), redis="server", log_dir=tmp_path)
    with pytest.raises(LabError) as failed:
        await lab.start()
    message = str(failed.value)
    assert "blue-next" in message
    assert "channel_prefix" in message
    assert all(not child.running for child in lab.children.values())
    assert lab.bus is not None and lab.bus.child is not None and not lab.bus.child.running


async def test_run_lab_forever_prints_and_stops_on_cancel() -> None:
    require_redis_server()
    lines: list[str] = []
    task = asyncio.create_task(
        run_lab_forever(build_lab_playbook(), lines.append, prefer_playbook_ports=False)
    )
    deadline = time.monotonic() + 15
    while not any("Ctrl-C" in line for line in lines):
        assert not task.done(), task.exception() if task.done() else None
        assert time.monotonic() < deadline, lines
        await asyncio.sleep(0.05)
    table = "\n".join(lines)
    for name in ("stable-a", "stable-b", "blue-next", "balancer", "redis-server"):
        assert name in table
    first_url = next(word for word in table.split() if word.startswith("http://127.0.0.1:"))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with httpx.AsyncClient(timeout=1) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(first_url + "/healthz")


async def test_run_lab_forever_reports_a_dead_redis_server() -> None:
    require_redis_server()
    lines: list[str] = []
    task = asyncio.create_task(
        run_lab_forever(build_lab_playbook(), lines.append, redis="server", prefer_playbook_ports=False)
    )
    try:
        deadline = time.monotonic() + 15
        while not any("Ctrl-C" in line for line in lines):
            assert not task.done() and time.monotonic() < deadline, lines
            await asyncio.sleep(0.05)
        port = re.search(r"redis://127\.0\.0\.1:(\d+)", "\n".join(lines))
        assert port, lines
        (pid,) = live_processes(lambda cmd: "redis-server" in cmd and f":{port[1]} " in f"{cmd} ")
        os.kill(pid, signal.SIGKILL)
        while not any(line.startswith("! redis exited") for line in lines):
            assert not task.done() and time.monotonic() < deadline + 5, lines
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_children_die_when_the_parent_is_sigkilled(tmp_path: Path) -> None:
    require_redis_server()
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        sys.path.insert(0, sys.argv[1])
        from conftest import build_lab_playbook
        from rollback_tui.lab.supervisor import Lab

        async def main():
            lab = Lab(build_lab_playbook(), redis="server", log_dir=sys.argv[2])
            await lab.start()
            print(json.dumps(lab.pids()), flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stderr is not None
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), 20)
        if not line:
            pytest.fail(f"the lab parent failed: {parent.stderr.read()[-2000:]}")
        pids = list(json.loads(line).values())
        assert len(pids) == 5 and all(pid_alive(pid) for pid in pids)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    assert await wait_dead(pids) == [], "orphaned lab processes"


async def test_demo_playbook_starts(demo_playbook: Playbook, tmp_path: Path) -> None:
    require_redis_server()
    started = time.monotonic()
    async with Lab(demo_playbook, redis="server", log_dir=tmp_path) as lab:
        assert time.monotonic() - started < 10
        async with httpx.AsyncClient(timeout=5) as client:
            for replica in lab.playbook.replicas:
                if replica.lab is None:
                    continue
                health = await client.get(f"{replica.url}{replica.health_path}")
                assert health.json()["replica"] == replica.name
            if lab.playbook.load_balancer:
                state = await client.get(f"{lab.endpoints['balancer-admin']}/admin/state")
                assert state.json()["selector"] == demo_playbook.load_balancer.selector


async def test_demo_lab_runs_a_real_prometheus_scraping_every_replica(
    demo_playbook: Playbook, tmp_path: Path
) -> None:
    require_redis_server()
    require_prometheus()
    async with Lab(demo_playbook, redis="server", log_dir=tmp_path) as lab:
        assert lab.prometheus is not None and lab.prometheus.url.startswith("http://127.0.0.1:")
        assert [p.url for p in lab.playbook.prometheus] == [lab.prometheus.url]  # the playbook points at it
        assert lab.prometheus_note.endswith("scrapes 3 replicas every 1 s")
        assert {g.name for g in lab.playbook.guardrails} == {g.name for g in demo_playbook.guardrails}
        config = (tmp_path / "prometheus" / "prometheus.yml").read_text()
        assert "scrape_interval: 1000ms" in config
        pid = lab.pids()["prometheus"]
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = time.monotonic() + 15
            while True:
                answer = await client.get(
                    f"{lab.prometheus.url}/api/v1/query", params={"query": "lab_build_info"}
                )
                series = {r["metric"]["replica"]: r["metric"] for r in answer.json()["data"]["result"]}
                if len(series) == 3 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        assert {name: labels["role"] for name, labels in series.items()} == {
            "stable-a": "stable",
            "stable-b": "stable",
            "blue-next": "candidate",
        }
        assert series["blue-next"]["commit"] == "9e8d3a1"
    assert await wait_dead([pid]) == []
    assert not (tmp_path / "prometheus" / "data").exists()  # nothing kept between runs


async def test_without_its_prometheus_the_lab_leaves_those_guardrails_out_and_says_so(
    demo_playbook: Playbook, tmp_path: Path
) -> None:
    require_redis_server()
    async with Lab(demo_playbook, redis="server", log_dir=tmp_path, prometheus="off") as lab:
        assert lab.prometheus is None and "prometheus" not in lab.pids()
        queried = [g.name for g in demo_playbook.guardrails if g.metric == "query"]
        assert queried and not set(queried) & {g.name for g in lab.playbook.guardrails}
        assert lab.playbook.prometheus == []
        assert {g.metric for g in lab.playbook.guardrails} >= {"http_5xx_rate", "p95_latency_ms"}
        assert lab.prometheus_note == (
            f"the lab's Prometheus is switched off: {', '.join(queried)} left out, "
            "guardrails run on synthetic traffic"
        )
