"""Baseline facts and HTTP JSON probes against real HTTP servers and real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.playbook.model import HttpProbe, Playbook
from rollback_tui.probes.facts import capture_facts
from rollback_tui.probes.http_json import poll_probes, probe_http, probe_once


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/api/ops/dead-letters":
            status, doc = server.dead_status, {"count": server.dead_count, "items": []}  # type: ignore[attr-defined]
        elif self.path == "/release":
            status, doc = 200, {"deploy": {"id": "dep-42", "commit": "c0ffee1"}}
        else:
            status, doc = 200, server.health  # type: ignore[attr-defined]
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def health_doc(name: str, prefix: str = "chat:rt:", image: str = "sha256:aaa") -> dict:
    return {
        "status": "ok",
        "replica": name,
        "image": image,
        "commit": "c0ffee1",
        "realtime": {"transport": "redis", "channel_prefix": prefix},
    }


@pytest.fixture
def replicas() -> Iterator[dict[str, ThreadingHTTPServer]]:
    servers: dict[str, ThreadingHTTPServer] = {}
    for name in ("stable-a", "stable-b", "blue-next"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.health = health_doc(name)  # type: ignore[attr-defined]
        srv.dead_count, srv.dead_status = 3, 200  # type: ignore[attr-defined]
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        servers[name] = srv
    yield servers
    for srv in servers.values():
        srv.shutdown()
        srv.server_close()


def url(srv: ThreadingHTTPServer, path: str = "") -> str:
    return f"http://127.0.0.1:{srv.server_address[1]}{path}"


def refused_url(path: str = "") -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


def playbook(replica_urls: dict[str, str], facts: list[dict] = (), probes: list[dict] = ()) -> Playbook:  # type: ignore[assignment]
    return Playbook.model_validate(
        {
            "name": "t",
            "title": "t",
            "replicas": [
                {"name": n, "url": u, "role": "candidate" if n == "blue-next" else "stable"}
                for n, u in replica_urls.items()
            ],
            "facts": [{"title": f["name"], **f} for f in facts],
            "probes": list(probes),
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
            "health_timeout_s": 1.0,
        }
    )


class Collector:
    def __init__(self, tmp_path: Path | None = None) -> None:
        self.events: list[ev.Event] = []
        self.journal = Journal(tmp_path / "journal.jsonl") if tmp_path else None

    def __call__(self, event: ev.Event) -> ev.Event:
        if self.journal:
            event = self.journal.append(event)
        self.events.append(event)
        return event

    def notices(self) -> list[ev.Notice]:
        return [e for e in self.events if isinstance(e, ev.Notice)]


PREFIX_FACT = {"name": "prefix", "source": "health", "field": "realtime.channel_prefix", "must_agree": True}


async def test_health_fact_agrees_across_replicas_and_is_journaled(tmp_path: Path, replicas: dict) -> None:
    book = playbook({n: url(s) for n, s in replicas.items()}, [PREFIX_FACT])
    emit = Collector(tmp_path)
    [fact] = await capture_facts(book, emit)
    assert fact.values == {"stable-a": "chat:rt:", "stable-b": "chat:rt:", "blue-next": "chat:rt:"}
    assert fact.agree is True and fact.error is None and fact.phase == "baseline"
    assert fact.source == "health:realtime.channel_prefix"
    assert emit.notices() == []
    assert emit.journal is not None
    emit.journal.close()
    [journaled] = [e for e in read_journal(tmp_path / "journal.jsonl").events if e.kind == "fact_captured"]
    assert journaled.source == "health:realtime.channel_prefix"  # type: ignore[attr-defined]


async def test_must_agree_mismatch_is_flagged_with_a_notice(replicas: dict) -> None:
    replicas["blue-next"].health = health_doc("blue-next", prefix="chat:rt2:")
    book = playbook({n: url(s) for n, s in replicas.items()}, [PREFIX_FACT])
    emit = Collector()
    [fact] = await capture_facts(book, emit, phase="after_rollback")
    assert fact.agree is False and fact.phase == "after_rollback"
    assert fact.values["blue-next"] == "chat:rt2:" and fact.values["stable-a"] == "chat:rt:"
    [notice] = emit.notices()
    assert notice.level == "warning" and "disagree" in notice.message and "chat:rt2:" in notice.message


async def test_health_fact_with_a_down_replica_and_role_filter(replicas: dict) -> None:
    urls = {
        "stable-a": url(replicas["stable-a"]),
        "stable-b": refused_url(),
        "blue-next": url(replicas["blue-next"]),
    }
    image = {"name": "image", "source": "health", "field": "image", "replicas": "stable", "must_agree": True}
    [fact] = await capture_facts(playbook(urls, [image]), Collector())
    assert set(fact.values) == {"stable-a", "stable-b"}  # the candidate is not a stable replica
    assert fact.values["stable-a"] == "sha256:aaa" and fact.values["stable-b"] is None
    assert fact.agree is False
    assert fact.error is not None and fact.error.startswith("stable-b: connection refused")


async def test_given_health_docs_are_used_without_fetching() -> None:
    urls = {"stable-a": refused_url(), "stable-b": refused_url()}
    docs = {"stable-a": health_doc("stable-a"), "stable-b": health_doc("stable-b", prefix="other:")}
    [fact] = await capture_facts(playbook(urls, [PREFIX_FACT]), Collector(), health_docs=docs)
    assert fact.values == {"stable-a": "chat:rt:", "stable-b": "other:"} and fact.agree is False
    assert fact.error is None


async def test_command_facts_take_the_regex_group(tmp_path: Path) -> None:
    script = "print('applied 12 migrations'); print('migration checksum: 9f3ab27c'); print('done')"
    facts = [
        {
            "name": "migration-checksum",
            "source": "command",
            "command": {"argv": [sys.executable, "-c", script]},
            "regex": r"checksum: ([0-9a-f]+)",
        },
        {
            "name": "whole",
            "source": "command",
            "command": {"argv": ["echo", "v1.2.3"]},
            "regex": r"v[\d.]+",
        },
        {"name": "plain", "source": "command", "command": {"argv": ["echo", "  lkg c0ffee1  "]}},
        {
            "name": "nomatch",
            "source": "command",
            "command": {"argv": ["echo", "nothing"]},
            "regex": "sha=(\\w+)",
        },
        {"name": "broken", "source": "command", "command": {"argv": ["sh", "-c", "echo oops >&2; exit 2"]}},
        {"name": "missing", "source": "command", "command": {"argv": ["no-such-binary-rtui"]}},
    ]
    got = {f.fact: f for f in await capture_facts(playbook({"a": refused_url()}, facts), Collector(tmp_path))}
    assert got["migration-checksum"].values == {"-": "9f3ab27c"} and got["migration-checksum"].error is None
    assert got["migration-checksum"].source.startswith("command:")
    assert got["whole"].values == {"-": "v1.2.3"}
    assert got["plain"].values == {"-": "lkg c0ffee1"}
    assert got["nomatch"].values == {"-": None} and "did not match" in (got["nomatch"].error or "")
    assert got["broken"].values == {"-": None} and got["broken"].error == "command failed (exit 2) oops"
    assert got["missing"].error == "command not found: no-such-binary-rtui"


async def test_env_http_and_manual_facts(replicas: dict) -> None:
    facts = [
        {"name": "prefix-env", "source": "env", "env_var": "CHAT_REALTIME_CHANNEL_PREFIX"},
        {"name": "unset-env", "source": "env", "env_var": "RTUI_SURELY_UNSET"},
        {
            "name": "deploy",
            "source": "http",
            "url": url(replicas["stable-a"], "/release"),
            "field": "deploy.id",
        },
        {
            "name": "nofield",
            "source": "http",
            "url": url(replicas["stable-a"], "/release"),
            "field": "deploy.x",
        },
        {"name": "db-tag", "source": "manual"},
    ]
    environ = {"CHAT_REALTIME_CHANNEL_PREFIX": "chat:rt:"}
    book = playbook({"stable-a": url(replicas["stable-a"])}, facts)
    got = {f.fact: f for f in await capture_facts(book, Collector(), environ=environ)}
    assert (
        got["prefix-env"].values == {"-": "chat:rt:"}
        and got["prefix-env"].source == "env:CHAT_REALTIME_CHANNEL_PREFIX"
    )
    assert got["unset-env"].error == "environment variable RTUI_SURELY_UNSET is not set"
    assert got["deploy"].values == {"-": "dep-42"} and got["deploy"].error is None
    assert got["nofield"].values == {"-": None} and got["nofield"].error == "no field 'deploy.x'"
    assert got["db-tag"].values == {"-": None} and got["db-tag"].source == "manual:pending"
    with pytest.raises(ValueError, match="unknown fact"):
        await capture_facts(book, Collector(), names=["ghost"])


async def test_probe_against_unreachable_port_is_a_result_not_an_exception() -> None:
    probe = HttpProbe(name="dead-letters", url=refused_url("/api/ops/dead-letters"), json_path="count")
    async with httpx.AsyncClient() as client:
        result = await probe_http(probe, client)
    assert result.ok is False and result.value is None
    assert result.error is not None and "connection refused" in result.error


async def test_probe_reads_json_field_and_flags_status_and_timeouts(replicas: dict) -> None:
    srv = replicas["stable-a"]
    dead = HttpProbe(name="dead-letters", url=url(srv, "/api/ops/dead-letters"), json_path="count")
    slow = HttpProbe(name="slow", url=url(srv, "/slow"), timeout_s=0.3)
    async with httpx.AsyncClient() as client:
        ok = await probe_http(dead, client)
        assert ok.ok is True and ok.value == 3 and ok.http_status == 200 and ok.latency_ms is not None
        srv.dead_status = 503
        bad = await probe_http(dead, client)
        assert bad.ok is False and bad.error == "expected HTTP 200, got 503"
        timed = await probe_http(slow, client)
        assert timed.ok is False and timed.error == "no answer within 0.3 s"
        unset = HttpProbe(name="auth", url=url(srv, "/"), headers={"Authorization": "${RTUI_UNSET_TOKEN}"})
        missing = await probe_http(unset, client, environ={})
        assert missing.ok is False and "RTUI_UNSET_TOKEN is not set" in (missing.error or "")


async def test_poll_probes_until_stopped(replicas: dict) -> None:
    srv = replicas["stable-a"]
    probes = [
        {
            "name": "dead-letters",
            "url": url(srv, "/api/ops/dead-letters"),
            "json_path": "count",
            "interval_s": 0.1,
        },
        {"name": "down", "url": refused_url("/healthz"), "interval_s": 0.1, "timeout_s": 0.5},
        {"name": "oneshot", "url": url(srv, "/healthz"), "json_path": "status"},
    ]
    book = playbook({"stable-a": url(srv)}, probes=probes)
    emit = Collector()
    stop = asyncio.Event()
    task = asyncio.create_task(poll_probes(book, emit, stop))
    await asyncio.sleep(0.55)
    srv.dead_count = 7
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 2)
    results = [e for e in emit.events if isinstance(e, ev.ProbeResult)]
    dead = [r for r in results if r.probe == "dead-letters"]
    assert 4 <= len(dead) <= 12
    assert dead[0].value == 3 and dead[-1].value == 7
    assert all(not r.ok for r in results if r.probe == "down")
    assert not any(r.probe == "oneshot" for r in results)  # no interval: not polled

    [once] = await probe_once(book, emit, ["oneshot"])
    assert once.ok and once.value == "ok"
