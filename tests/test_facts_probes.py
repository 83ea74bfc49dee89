"""Baseline facts and HTTP JSON probes against real HTTP servers and real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import evaluate
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.resume import resume_session
from rollback_tui.core.state import fold
from rollback_tui.playbook.model import HttpProbe, Playbook, Replica
from rollback_tui.probes.facts import capture_facts
from rollback_tui.probes.health import sample_replica
from rollback_tui.probes.http_json import poll_probes, probe_http, probe_once
from rollback_tui.report.markdown import render_markdown
from rollback_tui.session.engine import Engine
from support.http import JsonHandler, serving


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/api/ops/dead-letters":
            status, doc = server.dead_status, {"count": server.dead_count, "items": []}  # type: ignore[attr-defined]
        elif self.path == "/release":
            status, doc = 200, {"deploy": {"id": "dep-42", "commit": "c0ffee1"}}
        elif self.path == "/private":
            status, doc = 401, {"error": "unauthorized"}
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


class _ClosesIdleKeepAlive(JsonHandler):
    """A server that closes a keep-alive connection once it has sat idle (uvicorn and Node after 5 s,
    gunicorn after 2 s) — here exactly as the next request arrives on it, which a poll every few seconds
    hits under load: the request is read by nobody and the connection closes without an answer."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.answered = 0  # on this connection

    def do_GET(self) -> None:
        if self.answered:
            self.close_connection = True
            return
        self.answered += 1
        self.send_json({"status": "ok", "count": 0})


async def test_a_keep_alive_connection_closed_as_a_poll_arrives_is_not_a_failure_of_the_target() -> None:
    """Seen in a demo rehearsal: `Probe dead-letters FAILED: RemoteProtocolError: Server disconnected
    without sending a response.` while the replica was fine — the poll's pooled connection had been closed
    by uvicorn's keep-alive timer as the request went out. The target never saw the request; it is asked
    again on a new connection. (A health check is the same race: one false `down` trips a P0 rail.)"""
    with serving(_ClosesIdleKeepAlive) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        probe = HttpProbe(name="dead-letters", url=f"{base}/api/ops/dead-letters", json_path="count")
        replica = Replica(name="stable-a", url=base, role="stable")
        async with httpx.AsyncClient() as client:
            polls = [await probe_http(probe, client) for _ in range(3)]
        assert [(p.ok, p.value, p.error) for p in polls] == [(True, 0, None)] * 3
        async with httpx.AsyncClient() as client:
            samples = [await sample_replica(client, replica, 2.0) for _ in range(3)]
        assert [(s.status, s.error) for s in samples] == [("ok", None)] * 3


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


# --- unknown is neither ok nor failed --------------------------------------------------------------------

UNSET = "RTUI_SURELY_UNSET_OPS_TOKEN"
DLQ_RAIL = {
    "name": "dlq-growth",
    "title": "dead letters grow",
    "metric": "dead_letters_growth",
    "threshold": 0,
    "window_s": 60,
    "probe": "dead-letters",
}


def rails_playbook(srv: ThreadingHTTPServer, probe_url: str, **probe: object) -> Playbook:
    doc = playbook({"stable-a": url(srv)}).model_dump(by_alias=True, exclude_unset=True)
    doc["probes"] = [{"name": "dead-letters", "url": probe_url, "json_path": "count", **probe}]
    doc["guardrails"] = [DLQ_RAIL]
    return Playbook.model_validate(doc)


def section(report: str, title: str) -> str:
    return report.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


async def test_a_probe_with_an_unset_var_is_unknown_in_notices_and_the_report(
    tmp_path: Path, replicas: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    srv = replicas["stable-a"]
    dead = url(srv, "/api/ops/dead-letters")
    book = rails_playbook(srv, dead, headers={"Authorization": f"Bearer ${{{UNSET}}}"})
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    for _ in range(3):  # polled three times: unknown each time, announced once
        [result] = await engine.run_probes()
        assert result.status == "unknown" and not result.ok and not result.observed
        assert f"{UNSET} is not set" in (result.error or "")
    notices = [n for n in engine.state.notices if n.source == "probes"]
    assert [(n.level, n.message.split(":")[0]) for n in notices] == [
        ("warning", "probe dead-letters unknown (could not observe)")
    ]
    assert f"{UNSET} is not set" in notices[0].message
    monkeypatch.setenv(UNSET, "t0ken")
    [result] = await engine.run_probes()
    assert result.status == "ok" and result.value == 3
    recovered = [n for n in engine.state.notices if n.source == "probes"][-1]
    assert recovered.level == "info" and recovered.message.startswith("probe dead-letters no longer unknown")
    await engine.stop()

    events = read_journal(tmp_path / "s.jsonl").events
    report = render_markdown(book, fold(events), events)
    failures = section(report, "Data-collection failures")
    [row] = [line for line in failures.splitlines() if line.startswith("| probe dead-letters")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert f"{UNSET} is not set" in cells[1] and cells[4] == "3"  # why, and how many polls
    assert cells[2].startswith("20") and cells[5].startswith("20")  # since when, and until when
    assert "probe dead-letters unknown (could not observe)" in section(report, "Timeline")


async def test_an_unresolvable_probe_host_is_unknown_and_its_guardrail_does_not_breach(
    tmp_path: Path, replicas: dict
) -> None:
    book = rails_playbook(
        replicas["stable-a"], "http://dead-letters.rollback-tui.invalid/api/ops/dead-letters"
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    for _ in range(3):
        [result] = await engine.run_probes()
        assert result.status == "unknown" and "does not resolve" in (result.error or "")
    assert engine.state.traffic.breach_log == []  # unknown is never a breach
    rail = engine.state.rails["dlq-growth"]
    assert rail.status == "unknown" and rail.observed_ts is None
    assert rail.reason is not None and rail.reason.startswith(
        "probe dead-letters: host name does not resolve"
    )
    guardrail_notices = [n for n in engine.state.notices if n.source == "guardrails"]
    assert len(guardrail_notices) == 1 and "guardrail dlq-growth unknown" in guardrail_notices[0].message
    await engine.stop()

    # Resumed (the cockpit was killed): still unknown, and not announced a second time.
    journal, state, _ = resume_session(tmp_path / "s.jsonl")
    resumed = Engine(book, journal, operator="alice", state=state)
    notices = len(resumed.state.notices)
    [result] = await resumed.run_probes()
    assert result.status == "unknown" and len(resumed.state.notices) == notices
    assert resumed.state.counts["guardrail_status"] == 1
    await resumed.stop()


async def test_probe_failures_of_the_target_are_failed_but_auth_refused_is_unknown(replicas: dict) -> None:
    srv = replicas["stable-a"]
    refused = HttpProbe(name="dead-letters", url=refused_url("/api/ops/dead-letters"), json_path="count")
    private = HttpProbe(name="private", url=url(srv, "/private"))
    dead = HttpProbe(name="dead-letters", url=url(srv, "/api/ops/dead-letters"), json_path="count")
    async with httpx.AsyncClient() as client:
        down = await probe_http(refused, client)
        assert down.status == "failed" and down.observed and "connection refused" in (down.error or "")
        srv.dead_status = 503
        broken = await probe_http(dead, client)
        assert broken.status == "failed" and broken.error == "expected HTTP 200, got 503"
        denied = await probe_http(private, client)
        assert denied.status == "unknown" and denied.error == "HTTP 401: authentication refused"


async def test_facts_that_cannot_be_observed_are_unknown_not_disagreeing(
    tmp_path: Path, replicas: dict
) -> None:
    facts = [
        {"name": "missing", "source": "command", "command": {"argv": ["no-such-binary-rtui"]}},
        {"name": "sh-missing", "source": "command", "command": {"argv": ["sh", "-c", "no-such-binary-rtui"]}},
        {"name": "broken", "source": "command", "command": {"argv": ["sh", "-c", "exit 2"]}},
        {"name": "unset-env", "source": "env", "env_var": "RTUI_SURELY_UNSET"},
        {"name": "private", "source": "http", "url": url(replicas["stable-a"], "/private"), "field": "x"},
        PREFIX_FACT,
    ]
    urls = {"stable-a": url(replicas["stable-a"]), "stable-b": "http://stable-b.rollback-tui.invalid"}
    emit = Collector()
    got = {
        f.fact: f for f in await capture_facts(playbook(urls, facts), emit, environ={"PATH": "/usr/bin:/bin"})
    }
    assert not got["missing"].observed and got["missing"].error == "command not found: no-such-binary-rtui"
    assert not got["sh-missing"].observed and "exit 127" in (got["sh-missing"].error or "")
    assert got["broken"].observed  # it ran and failed: that is an observation
    assert not got["unset-env"].observed
    assert not got["private"].observed and got["private"].error == "HTTP 401: authentication refused"
    prefix = got["prefix"]
    assert not prefix.observed and prefix.agree is None  # one replica unseen: no claim either way
    assert "stable-b: host name does not resolve from here" in (prefix.error or "")
    assert emit.notices() == []  # no "replicas disagree"
    book = playbook(urls, facts).model_dump(by_alias=True, exclude_unset=True)
    book["checklist"] = [{"name": "agree", "text": "prefixes agree", "rule": "facts_agree", "fact": "prefix"}]
    state = fold([e for e in emit.events])
    [status] = evaluate(Playbook.model_validate(book), state).items
    assert not status.checked and status.evidence[0].startswith("fact prefix is unknown at baseline")


class _IdleTimeoutBeatsReuse(socketserver.BaseRequestHandler):
    """Answers the first request of a connection with keep-alive, then closes the connection when the
    next request arrives on it without answering — what uvicorn's (and Node's) 5 s idle timeout does to a
    probe that polls every 5 s and reuses its connection just as the server drops it. The close is a FIN
    (the client reads nothing) or, with `server.reset`, an RST (the client's read fails)."""

    def handle(self) -> None:
        reader = self.request.makefile("rb")
        for n in range(2):
            if not reader.readline():  # the request line; nothing: the client closed
                return
            while reader.readline() not in (b"\r\n", b"\n", b""):  # its headers
                pass
            if n:  # the connection closes with the request unanswered
                if getattr(self.server, "reset", False):  # no FIN first: close() with no linger is an RST
                    self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    reader.close()
                    self.request.close()
                return
            body = json.dumps({"status": "ok", "count": 0, "commit": "c0ffee1"}).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            self.request.sendall(head.encode() + body)


@pytest.fixture(params=["fin", "rst"])
def idle_closing_server(request: pytest.FixtureRequest) -> Iterator[str]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _IdleTimeoutBeatsReuse)
    srv.reset = request.param == "rst"  # type: ignore[attr-defined]
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


async def test_a_kept_alive_connection_the_server_closed_is_not_a_failing_target(
    idle_closing_server: str,
) -> None:
    """The demo's report opened with 'What broke: probe dead-letters failed: RemoteProtocolError: Server
    disconnected without sending a response' (or 'ReadError: ' when the close came as a reset) — the lab
    replica's idle timeout closing the connection the 5 s poll reused, twice in a minute, nothing wrong
    with the replica. A GET asked again on a fresh connection gets the answer; the replica health poll is
    the same GET."""
    probe = HttpProbe(
        name="dead-letters", url=f"{idle_closing_server}/api/ops/dead-letters", json_path="count"
    )
    replica = playbook({"api": idle_closing_server}).replicas[0]
    async with httpx.AsyncClient() as client:
        results = [await probe_http(probe, client) for _ in range(3)]
        samples = [await sample_replica(client, replica, 2.0) for _ in range(3)]
    assert [(r.ok, r.value, r.error) for r in results] == [(True, 0, None)] * 3
    assert [(s.status, s.error) for s in samples] == [("ok", None)] * 3
