"""Health probe against real HTTP servers: healthy, junk, slow, refused — one never stops the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rollback_tui.core import events as ev
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes.health import HealthProbe, dotted


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "slow":
            time.sleep(1.5)
        if mode == "junk":
            body, ctype = b"<html>502 Bad Gateway</html>", "text/html"
        elif mode == "error":
            body, ctype = json.dumps({"status": "error", "error": "db down"}).encode(), "application/json"
        else:
            doc = {
                "status": "ok",
                "replica": mode,
                "image": "sha256:abc",
                "commit": "c0ffee1",
                "realtime": {"transport": "redis", "channel_prefix": "chat:rt:"},
            }
            body, ctype = json.dumps(doc).encode(), "application/json"
        self.send_response(500 if mode == "error" else 200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # the probe gives up on the slow replica: that is the point
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def servers():
    started = {}
    for mode in ("good", "junk", "slow", "error"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.mode = mode  # type: ignore[attr-defined]
        srv.daemon_threads = True
        srv.block_on_close = False
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started[mode] = srv
    yield {mode: f"http://127.0.0.1:{srv.server_address[1]}" for mode, srv in started.items()}
    for srv in started.values():
        srv.shutdown()
        srv.server_close()


def _refused_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _playbook(urls: dict[str, str]) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "t",
            "title": "t",
            "replicas": [{"name": n, "url": u, "role": "stable"} for n, u in urls.items()],
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
            "health_interval_s": 0.2,
            "health_timeout_s": 0.5,
        }
    )


async def test_once_classifies_each_replica(servers):
    urls = {**servers, "refused": _refused_url()}
    samples = {s.replica: s for s in await HealthProbe(_playbook(urls), lambda e: e).once()}
    assert samples["good"].status == "ok"
    assert (samples["good"].commit, samples["good"].channel_prefix) == ("c0ffee1", "chat:rt:")
    assert samples["junk"].status == "junk" and "not JSON" in samples["junk"].error
    assert samples["slow"].status == "timeout"
    assert samples["error"].status == "down" and samples["error"].error == "db down"
    assert samples["refused"].status == "down" and "refused" in samples["refused"].error


async def test_slow_replica_does_not_delay_the_others(servers):
    got: list[ev.HealthSample] = []
    probe = HealthProbe(
        _playbook({"good": servers["good"], "slow": servers["slow"]}), lambda e: got.append(e) or e
    )
    task = asyncio.create_task(probe.run())
    await asyncio.sleep(1.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    good = [s for s in got if s.replica == "good"]
    slow = [s for s in got if s.replica == "slow"]
    # 0.2 s interval for ~1.3 s: the good replica keeps its cadence while the slow one times out.
    assert len(good) >= 5
    assert 1 <= len(slow) <= 3 and all(s.status == "timeout" for s in slow)


def test_dotted_paths():
    doc = {"a": {"b": [{"c": 1}]}}
    assert dotted(doc, "a.b.0.c") == 1
    assert dotted(doc, "a.x") is None
    assert dotted(doc, "a.b.5") is None


async def test_lab_replicas_polled_live_and_a_killed_one_shows_down(lab):
    got: list[ev.HealthSample] = []
    playbook = lab.playbook.model_copy(update={"health_interval_s": 0.25})
    probe = HealthProbe(playbook, lambda e: got.append(e) or e)
    task = asyncio.create_task(probe.run())
    try:
        await asyncio.sleep(0.8)
        first = {s.replica: s for s in got}
        statuses = {r: s.status for r, s in first.items()}
        assert statuses == {"stable-a": "ok", "stable-b": "ok", "blue-next": "ok"}
        assert first["blue-next"].commit == "def5678" and first["stable-a"].channel_prefix == "chat:rt:"
        await lab.kill_replica("stable-b")
        got.clear()
        await asyncio.sleep(1.5)
        latest = {s.replica: s for s in got}
        assert latest["stable-b"].status == "down" and "refused" in (latest["stable-b"].error or "")
        assert latest["stable-a"].status == latest["blue-next"].status == "ok"
        assert sum(1 for s in got if s.replica == "stable-a") >= 4  # the others kept their cadence
        await lab.restart_replica("stable-b")
        got.clear()
        await asyncio.sleep(1.2)
        assert any(s.replica == "stable-b" and s.status == "ok" for s in got)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
