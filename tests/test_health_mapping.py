"""Health documents of other shapes: boolean and numeric status values, custom value lists, and health
read from a command instead of an HTTP endpoint (real servers, real subprocesses)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollback_tui.playbook.load import PlaybookError, load_playbook_text
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes.facts import capture_facts
from rollback_tui.probes.health import HealthProbe
from support.http import JsonHandler


class _DocHandler(JsonHandler):
    """Answers GET /status with the JSON document its server was given."""

    def do_GET(self) -> None:
        body = json.dumps(self.server.doc).encode()  # type: ignore[attr-defined]
        self.send_json(body, 200)


@pytest.fixture
def serve_docs():
    servers: list[ThreadingHTTPServer] = []

    def serve(doc: dict[str, Any]) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _DocHandler)
        srv.doc = doc  # type: ignore[attr-defined]
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


GRPC_LIKE = {"healthy": [True, "SERVING", 1], "degraded": ["DEGRADED"], "failing": [False, "NOT_SERVING", 0]}


def _playbook(replicas: list[dict[str, Any]]) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "t",
            "title": "t",
            "replicas": replicas,
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
            "health_timeout_s": 2.0,
        }
    )


def _replica(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": url,
        "role": "stable",
        "health_path": "/status",
        "fields": {"status": "serving", "commit": "build.rev", "transport": "bus.mode"},
        "status_values": GRPC_LIKE,
        **extra,
    }


async def test_boolean_numeric_and_custom_status_values(serve_docs):
    docs = {
        "bool-true": {"serving": True, "build": {"rev": "c0ffee1"}, "bus": {"mode": "shared"}},
        "bool-false": {"serving": False},
        "serving": {"serving": "serving"},  # strings compare case-insensitively
        "one": {"serving": 1},
        "zero": {"serving": 0},
        "degraded": {"serving": "DEGRADED"},
        "odd": {"serving": "MAYBE"},
        "missing": {},
    }
    pb = _playbook([_replica(name, serve_docs(doc)) for name, doc in docs.items()])
    samples = {s.replica: s for s in await HealthProbe(pb, lambda e: e).once()}
    statuses = {name: s.status for name, s in samples.items()}
    assert statuses == {
        "bool-true": "ok",
        "bool-false": "down",
        "serving": "ok",
        "one": "ok",
        "zero": "down",
        "degraded": "degraded",
        "odd": "junk",
        "missing": "junk",
    }
    assert samples["bool-true"].commit == "c0ffee1" and samples["bool-true"].transport == "shared"
    assert samples["bool-false"].error == "reports status false"
    assert samples["odd"].error == "unknown status 'MAYBE'"
    assert samples["missing"].error == "unknown status (missing)"


async def test_true_is_not_one_and_the_default_lists_still_apply(serve_docs):
    only_true = {"healthy": [True], "degraded": [], "failing": [False]}
    pb = _playbook(
        [
            _replica("one", serve_docs({"serving": 1}), status_values=only_true),
            {"name": "plain", "url": serve_docs({"status": "ok"}), "role": "stable"},
            {"name": "plain-true", "url": serve_docs({"status": True}), "role": "stable"},
        ]
    )
    samples = {s.replica: s for s in await HealthProbe(pb, lambda e: e).once()}
    assert samples["one"].status == "junk" and samples["one"].error == "unknown status 1"
    assert samples["plain"].status == "ok"
    # Before status_values, a boolean could not be expressed: `true` is not in the default lists.
    assert samples["plain-true"].status == "junk" and samples["plain-true"].error == "unknown status true"


def test_a_value_in_two_lists_is_a_located_error():
    text = (
        "name: t\ntitle: t\nsteps: [{name: s, title: s, do: [{manual: x}]}]\n"
        "replicas:\n"
        "  - name: a\n    url: http://127.0.0.1:1\n    role: stable\n"
        "    status_values:\n      healthy: [true, SERVING]\n      failing: [serving]\n"
    )
    with pytest.raises(PlaybookError) as err:
        load_playbook_text(text, "pb.yaml")
    assert "pb.yaml:8:5:" in str(err.value)
    assert "replicas[0].status_values: 'serving' is listed under both healthy and failing" in str(err.value)


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return str(path)


async def test_health_from_a_command(tmp_path):
    doc = {"serving": True, "build": {"rev": "abc1234"}, "bus": {"mode": "shared"}}
    json_cmd = _script(tmp_path, "health-json", f"print({json.dumps(json.dumps(doc))})")
    bare_cmd = _script(tmp_path, "health-bare", "print('probing…'); print('SERVING')")
    not_serving = _script(tmp_path, "health-no", "import sys; print('NOT_SERVING'); sys.exit(1)")
    pb = _playbook(
        [
            _replica("json", "http://127.0.0.1:9", health_command={"argv": [json_cmd]}),
            _replica("bare", "http://127.0.0.1:9", health_command={"argv": [bare_cmd]}),
            _replica("exit-1", "http://127.0.0.1:9", health_command={"argv": [not_serving]}),
            _replica("missing", "http://127.0.0.1:9", health_command={"argv": [str(tmp_path / "nope")]}),
        ]
    )
    samples = {s.replica: s for s in await HealthProbe(pb, lambda e: e).once()}
    assert (samples["json"].status, samples["json"].commit, samples["json"].transport) == (
        "ok",
        "abc1234",
        "shared",
    )
    assert samples["bare"].status == "ok"
    assert samples["exit-1"].status == "down"
    assert samples["exit-1"].error == "health command exited 1: NOT_SERVING"
    # A binary that is not there could not observe anything: unknown, not failing.
    assert samples["missing"].status == "unknown" and "command not found" in samples["missing"].error

    facts = Playbook.model_validate(
        {
            **pb.model_dump(),
            "replicas": [r.model_dump() for r in pb.replicas[:1]],
            "facts": [{"name": "rev", "title": "rev", "source": "health", "field": "build.rev"}],
        }
    )
    [fact] = await capture_facts(facts, lambda e: e)
    assert fact.values == {"json": "abc1234"} and fact.error is None
