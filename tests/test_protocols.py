"""What a playbook can say about an API of another shape: transport names, identity, verification requests,
stream headers and replay, tap formats — each checked where it is used."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

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


# --- validation: every template, header and guardrail is checked where it is written ----------------

BASE_YAML = """\
name: t
title: t
steps: [{name: s, title: s, do: [{manual: x}]}]
replicas:
  - {name: a, url: "http://127.0.0.1:1", role: stable, health_path: /status}
  - {name: b, url: "http://127.0.0.1:2", role: stable, health_path: /status}
  - {name: next, url: "http://127.0.0.1:3", role: candidate, health_path: /status}
"""


def _errors(extra: str) -> str:
    from rollback_tui.playbook.load import PlaybookError, load_playbook_text

    try:
        load_playbook_text(BASE_YAML + extra, "pb.yaml")
    except PlaybookError as err:
        return str(err)
    return ""


REALTIME = 'realtime:\n  redis_url: "redis://127.0.0.1:6379/0"\n  channel_prefix: "p:"\n  fanout:\n'


@pytest.mark.parametrize(
    ("fanout", "expected"),
    [
        (
            '    stream_url: "{base}/c/{thred}/events?after={after}"\n',
            "pb.yaml:12:17: realtime.fanout.stream_url: stream_url uses unknown placeholder "
            "{thred} (known: {base}, {base_ws}, {thread_id}, {after})",
        ),
        (
            '    send_body: {text: "{text}", by: "{operator}"}\n',
            "pb.yaml:12:5: realtime.fanout.send_body: send_body.by uses unknown placeholder {operator}",
        ),
        (
            '    stream_kind: sse\n    stream_url: "{base}/c/{thread_id}/events"\n',
            "realtime.fanout: replay: url needs {after} in stream_url",
        ),
        (
            "    replay_param: since\n",
            "realtime.fanout: replay_param was removed (it never did anything): put {after} in "
            "stream_url, or set replay: last_event_id",
        ),
        (
            '    stream_headers: {Authorization: "Bearer abc123"}\n',
            "realtime.fanout.stream_headers: header 'Authorization' looks like a secret",
        ),
    ],
)
def test_fanout_templates_are_checked_where_they_are_written(fanout: str, expected: str) -> None:
    assert expected in _errors(REALTIME + fanout)


def test_a_tap_channel_needs_the_thread():
    errors = _errors(REALTIME + '    stream_kind: websocket\n  tap: {channel: "{prefix}all"}\n')
    assert "realtime.tap.channel: channel needs {thread_id}" in errors


def test_a_stream_drop_guardrail_without_streams_is_refused():
    lb = (
        "load_balancer:\n  url: http://127.0.0.1:9\n  selector: {}\n"
        "  traffic_control: {driver: lab, admin_url: http://127.0.0.1:8}\n"
    )
    rail = "guardrails:\n  - {name: drops, title: drops, metric: ws_disconnects, threshold: 0}\n"
    errors = _errors(lb + rail)
    assert "pb.yaml:13:41: guardrails[0].metric: ws_disconnects cannot be measured" in errors, errors
    assert (
        _errors(lb + rail + REALTIME + "    stream_kind: sse\n    stream_url: '{base}/s?after={after}'\n")
        == ""
    )


def test_verification_needs_one_path_and_a_body_for_a_json_identity():
    lb = (
        "load_balancer:\n  url: http://127.0.0.1:9\n  selector: {}\n"
        "  traffic_control: {driver: lab, admin_url: http://127.0.0.1:8}\n"
    )
    mixed = BASE_YAML.replace("role: candidate, health_path: /status", "role: candidate, health_path: /hz")
    assert _errors(lb) == ""
    from rollback_tui.playbook.load import PlaybookError, load_playbook_text

    other = BASE_YAML.replace(
        "role: stable, health_path: /status}\n  - {name: b", "role: stable}\n  - {name: b"
    )
    with pytest.raises(PlaybookError, match=r"load_balancer.verify.path: the stable replicas have different"):
        load_playbook_text(other + lb, "pb.yaml")
    load_playbook_text(mixed + lb, "pb.yaml")  # the candidate's path does not matter
    head = lb + "  identity: {json_path: node}\n  verify: {method: HEAD}\n"
    assert "load_balancer.verify.method: HEAD has no body" in _errors(head)


# --- identity and verification through a real server ------------------------------------------------


class _Node(BaseHTTPRequestHandler):
    """Says who it is in `X-Node` and in the body, only on /status (a 404 says nothing)."""

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("X-Check")))  # type: ignore[attr-defined]
        node = self.server.node  # type: ignore[attr-defined]
        known = self.path == "/status"
        body = json.dumps({"serving": True, "node": node} if known else {"error": "no route"}).encode()
        self.send_response(200 if known else 404)
        if known:
            self.send_header("X-Node", node)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def node_server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    srv.node, srv.seen, srv.daemon_threads = "node-7f3a", [], True  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _lb_playbook(url: str, **lb: Any) -> Playbook:
    doc = _doc(
        load_balancer={
            "url": url,
            "selector": {},
            "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:1"},
            **lb,
        }
    )
    for replica in doc["replicas"]:
        replica["health_path"] = "/status"
    doc["replicas"][0]["served_as"] = "node-7f3a"
    return Playbook.model_validate(doc)


@pytest.mark.parametrize("identity", [{"header": "X-Node"}, {"json_path": "node"}])
async def test_verification_asks_the_health_path_and_counts_by_the_configured_identity(
    node_server, identity, monkeypatch
):
    from rollback_tui.probes.protocol import identifier, verification_request
    from rollback_tui.probes.traffic import verify_stable

    monkeypatch.setenv("CHECK_TOKEN", "s3cret-check-token")
    url = f"http://127.0.0.1:{node_server.server_address[1]}"
    pb = _lb_playbook(url, identity=identity, verify={"headers": {"X-Check": "${CHECK_TOKEN}"}})
    request = verification_request(pb)
    assert (request.method, request.url) == ("GET", f"{url}/status")  # the replicas' health path
    ok, share, total, served = await verify_stable(
        url, {"a", "b"}, need=5, timeout_s=5, concurrency=1, request=request, identify=identifier(pb)
    )
    assert ok and share == 1.0 and served == {"a": total}  # node-7f3a is replica a (served_as)
    assert set(node_server.seen) == {("/status", "s3cret-check-token")}


async def test_the_old_fixed_verification_would_not_have_seen_the_replica(node_server):
    """The defaults (GET /healthz, X-Served-By) against this API: nobody is identified, nothing verified."""
    from rollback_tui.probes.traffic import verify_stable

    url = f"http://127.0.0.1:{node_server.server_address[1]}"
    ok, _share, _total, served = await verify_stable(url, {"a"}, need=3, timeout_s=0.5, concurrency=1)
    assert not ok and served and all(r.startswith("no replica identified (HTTP 404)") for r in served), served


def test_an_unset_header_variable_stops_the_checks_before_anything_is_sent(monkeypatch):
    from rollback_tui.probes.fanout import FanoutVerifier
    from rollback_tui.probes.traffic import TrafficGenerator

    monkeypatch.delenv("STREAM_TOKEN", raising=False)
    doc = _doc(
        realtime={
            "redis_url": "redis://127.0.0.1:1/0",
            "channel_prefix": "p:",
            "fanout": {"stream_headers": {"Authorization": "Bearer ${STREAM_TOKEN}"}},
        },
        load_balancer={
            "url": "http://127.0.0.1:9",
            "selector": {},
            "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:1"},
        },
    )
    pb = Playbook.model_validate(doc)
    with pytest.raises(ValueError, match="environment variable STREAM_TOKEN is not set"):
        FanoutVerifier(pb, lambda e: e)
    with pytest.raises(ValueError, match="environment variable STREAM_TOKEN is not set"):
        TrafficGenerator(pb, lambda e: e)


def test_requests_fill_placeholders_then_variables_and_leave_other_braces(monkeypatch):
    from rollback_tui.probes.protocol import send_request, stream_request

    monkeypatch.setenv("API_TOKEN", "tok-{key}")  # a value is never filled again
    proto = Playbook.model_validate(
        _doc(
            realtime={
                "redis_url": "redis://r",
                "channel_prefix": "p:",
                "fanout": {
                    "stream_kind": "sse",
                    "stream_url": "{base}/c/{thread_id}/events",
                    "replay": "last_event_id",
                    "stream_headers": {"Authorization": "Bearer ${API_TOKEN}", "X-Conv": "{thread_id}"},
                    "send_url": "{base}/c/{thread_id}/posts",
                    "send_body": {"body": "{text}", "meta": '{"raw": true}'},
                    "send_headers": {"Authorization": "Bearer ${API_TOKEN}"},
                    "idempotency_header": "X-Request-Id",
                },
            }
        )
    ).realtime.fanout  # type: ignore[union-attr]
    sent = send_request(proto, "http://api/", "t1", "hello", "k1")
    assert (sent.method, sent.url) == ("POST", "http://api/c/t1/posts")
    assert sent.body == {"body": "hello", "meta": '{"raw": true}'}
    assert sent.headers == {"Authorization": "Bearer tok-{key}", "X-Request-Id": "k1"}
    first = stream_request(proto, "http://api", "t1")
    assert first.headers == {
        "Authorization": "Bearer tok-{key}",
        "X-Conv": "t1",
        "Accept": "text/event-stream",
    }
    again = stream_request(proto, "http://api", "t1", after=4, last_event_id="41")
    assert again.url == "http://api/c/t1/events" and again.headers["Last-Event-ID"] == "41"


def test_header_variables_are_secrets_the_redactor_knows():
    from rollback_tui.playbook.load import referenced_env_vars

    pb = _lb_playbook("http://127.0.0.1:9", verify={"headers": {"X-Check": "${CHECK_TOKEN}"}})
    doc = pb.model_dump()
    doc["realtime"] = {
        "redis_url": "redis://r",
        "channel_prefix": "p:",
        "fanout": {
            "stream_headers": {"Authorization": "Bearer ${STREAM_TOKEN}"},
            "send_headers": {"Authorization": "Bearer ${SEND_TOKEN}"},
        },
    }
    found = referenced_env_vars(Playbook.model_validate(doc))
    assert {"CHECK_TOKEN", "STREAM_TOKEN", "SEND_TOKEN"} <= found


@pytest.mark.parametrize("kind", ["websocket", "sse"])
async def test_streams_that_never_connect_are_not_disconnects(kind: str) -> None:
    """With the balancer down the requests say 'balancer unreachable'; the stream sessions do not also
    blame the realtime path, whichever kind they are."""
    from rollback_tui.lab.proc import free_port
    from rollback_tui.probes.traffic import TrafficGenerator

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    stream_url = "{base_ws}/s?after={after}" if kind == "websocket" else "{base}/s?after={after}"
    pb = Playbook.model_validate(
        _doc(
            realtime={
                "redis_url": "redis://127.0.0.1:1/0",
                "channel_prefix": "p:",
                "fanout": {"stream_kind": kind, "stream_url": stream_url},
            },
            load_balancer={
                "url": url,
                "selector": {},
                "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:1"},
            },
        )
    )
    windows: list[ev.TrafficWindow] = []
    gen = TrafficGenerator(pb, lambda e: windows.append(e) or e, rate_rps=50, max_requests=50, window_s=0.2)
    await gen.run()
    assert sum(w.unattributed.get("balancer unreachable", 0) for w in windows) == 50
    assert sum(w.ws_disconnects for w in windows) == 0
