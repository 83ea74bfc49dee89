"""A deployment nobody shaped for rollback-tui: the chat API in tests/altchat.py (SSE, other field names, a
boolean health status, another identity header, another channel scheme, Last-Event-ID replay, auth on every
realtime request) behind a real HAProxy and a real nginx (Debian packages, started here on loopback ports).

Driven only through the installed console script, as an operator would: `check health|fanout|traffic`, then a
whole headless rehearsal with a fault injected on the canary, rolled back through `rollback-tui lb …`. Each
replica counts for itself the requests that reached it through the balancer (the balancers add `X-Via-LB`),
so "the candidate receives nothing after the rollback" is checked without trusting the identity header,
and once more with a fresh connection per request after the rehearsal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import require_binary, require_redis_server, stop_processes
from rollback_tui.lab.proc import free_port

ALTCHAT = Path(__file__).with_name("altchat.py")
CLI = str(Path(sys.executable).with_name("rollback-tui"))
TOKEN = "alt-token-7c1e9f2a5b"  # sent as `Bearer ${ALT_TOKEN}`: it must never show up in the evidence
NAMES = {"stable-a": "r1", "stable-b": "r1", "canary": "r2"}  # replica → build rev
WEIGHTS = {"stable-a": 45, "stable-b": 45, "canary": 10}


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    pytest.fail(f"{what} did not answer at {url} within {timeout_s:g} s")


@pytest.fixture
def replicas(redis_server: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The three altchat replicas (two stable, one canary), each on its own loopback port."""
    require_redis_server()
    env = {**os.environ, "ALT_TOKEN": TOKEN}
    procs, urls = [], {}
    try:
        for name, rev in NAMES.items():
            port = free_port()
            argv = [sys.executable, str(ALTCHAT), "--name", name, "--port", str(port)]
            argv += ["--redis-url", redis_server, "--token-env", "ALT_TOKEN", "--rev", rev]
            log = (tmp_path / f"{name}.log").open("wb")
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
            urls[name] = f"http://127.0.0.1:{port}"
        for (name, url), proc in zip(urls.items(), procs, strict=True):
            _wait_http(f"{url}/status", proc, f"replica {name}")
        yield urls
    finally:
        stop_processes(procs)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@dataclass
class Balancer:
    kind: str
    url: str
    remove: list[str]
    read: list[str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _haproxy(replicas: dict[str, str], tmp_path: Path) -> Balancer:
    binary = require_binary("haproxy")
    port, sock = free_port(), tmp_path / "haproxy.sock"
    servers = "\n".join(
        f"  server {name} 127.0.0.1:{_port(url)} weight {WEIGHTS[name]}" for name, url in replicas.items()
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"global\n  stats socket {sock} level admin\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n"
        f"frontend fe\n  bind 127.0.0.1:{port}\n  http-request set-header X-Via-LB haproxy\n"
        f"  default_backend api\nbackend api\n  balance roundrobin\n{servers}\n"
    )
    proc = subprocess.Popen(
        [binary, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/status", proc, "haproxy")
    ctl = ["rollback-tui", "lb", "haproxy"]
    return Balancer(
        "haproxy",
        url,
        remove=[*ctl, "drain", str(sock), "api", "{replicas}"],
        read=[*ctl, "state", str(sock), "api"],
        procs=[proc],
    )


NGINX_CONF = """{user}
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
worker_shutdown_timeout 3s;
events {{ worker_connections 512; }}
http {{
  access_log off;
{temps}  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  upstream api {{
    include {upstreams}/active.conf;
    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Via-LB nginx;
      proxy_buffering off;
      proxy_read_timeout 60s;
    }}
  }}
}}
"""


def _nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    return found or require_binary("nginx")


def _nginx(replicas: dict[str, str], tmp_path: Path) -> Balancer:
    binary = _nginx_binary()
    prefix = tmp_path / "nginx"
    upstreams = prefix / "upstreams"
    for sub in ("logs", "upstreams", "tmp"):
        (prefix / sub).mkdir(parents=True)

    def server_lines(names: list[str]) -> str:
        return "".join(f"server 127.0.0.1:{_port(replicas[n])} weight={WEIGHTS[n]};  # {n}\n" for n in names)

    (upstreams / "all.conf").write_text(server_lines(list(replicas)))
    (upstreams / "stable.conf").write_text(server_lines(["stable-a", "stable-b"]))
    (upstreams / "active.conf").write_text((upstreams / "all.conf").read_text())
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user="user root;" if os.geteuid() == 0 else "",
            prefix=prefix,
            temps="".join(
                f"  {k}_temp_path {prefix}/tmp/{k};\n" for k in ("client_body", "proxy", "fastcgi")
            ),
            upstreams=upstreams,
            port=port,
        )
    )
    proc = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    _wait_http(f"{url}/status", proc, "nginx")
    use = ["rollback-tui", "lb", "nginx", "use", "stable", str(upstreams), "--nginx", binary]
    use += ["--conf", str(conf), "--prefix", str(prefix), "--pid", str(prefix / "nginx.pid")]
    return Balancer(
        "nginx", url, remove=use, read=["rollback-tui", "lb", "nginx", "state", str(upstreams)], procs=[proc]
    )


@pytest.fixture(params=["haproxy", "nginx"])
def balancer(request: pytest.FixtureRequest, replicas: dict[str, str], tmp_path: Path) -> Iterator[Balancer]:
    lb = _haproxy(replicas, tmp_path) if request.param == "haproxy" else _nginx(replicas, tmp_path)
    try:
        yield lb
    finally:
        for proc in lb.procs:
            proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown (a graceful one waits for streams)
        stop_processes(lb.procs)


def playbook_doc(replicas: dict[str, str], redis_url: str, lb: Balancer | None) -> dict[str, Any]:
    """The playbook an operator would write for this API (docs/cookbook.md has it annotated)."""
    health = {
        "health_path": "/status",
        "fields": {
            "status": "serving",
            "image": "build.digest",
            "commit": "build.rev",
            "channel_prefix": "pubsub.namespace",
            "transport": "pubsub.mode",
        },
        "status_values": {"healthy": [True], "degraded": [], "failing": [False]},
    }
    doc: dict[str, Any] = {
        "version": 1,
        "name": "alt-deployment",
        "title": f"Another chat API behind {lb.kind if lb else 'nothing'}",
        "environment": "test",
        "health_interval_s": 0.5,
        "replicas": [
            {
                "name": name,
                "url": url,
                "role": "candidate" if name == "canary" else "stable",
                "served_as": f"node-{name}",
                **health,
            }
            for name, url in replicas.items()
        ],
        "realtime": {
            "redis_url": redis_url,
            "channel_prefix": "acme",
            "transport_expected": "redis-pubsub",
            "transport_env": "PUBSUB_MODE",
            "prefix_env": "PUBSUB_NAMESPACE",
            "tap": {"channel": "{prefix}.conv.{thread_id}.posts", "origin_replica_path": "node"},
            "fanout": {
                "stream_kind": "sse",
                "stream_url": "{base}/api/conversations/{thread_id}/events",
                "replay": "last_event_id",
                "stream_headers": {"Authorization": "Bearer ${ALT_TOKEN}"},
                "send_url": "{base}/api/conversations/{thread_id}/posts",
                "send_body": {"body": "{text}"},
                "send_headers": {"Authorization": "Bearer ${ALT_TOKEN}"},
                "idempotency_header": "X-Request-Id",
                "send_event_id_path": "data.id",
                "event_id_path": "id",
                "seq_path": "position",
                "thread_id_path": "conversation",
                "receive_timeout_s": 3,
            },
        },
        "facts": [
            {
                "name": "stable-rev",
                "title": "Stable build",
                "source": "health",
                "field": "build.rev",
                "replicas": "stable",
                "must_agree": True,
            }
        ],
        "guardrails": [
            {
                "name": "canary-5xx",
                "title": "5xx on the canary",
                "metric": "http_5xx_rate",
                "threshold": 0.05,
                "window_s": 5,
                "scope": "candidate",
                "severity": "P0",
            },
            {
                "name": "stream-drops",
                "title": "Streams dropped through the balancer",
                "metric": "ws_disconnects",
                "threshold": 100,
                "window_s": 10,
                "severity": "P1",
            },
        ],
        "actions": [
            {
                "kind": "selector_removal",
                "name": "remove-canary",
                "title": "Take the canary out of the balancer",
                "replica_set": "canary",
                "remove_replicas": ["canary"],
                "verify_requests": 40,
                "rto_budget_s": 30,
            }
        ],
        "steps": [
            {"name": "baseline", "title": "Baseline", "do": [{"fact": "stable-rev"}, {"check": "fanout"}]},
            {"name": "canary", "title": "Canary", "do": [{"check": "traffic"}, {"check": "guardrail_watch"}]},
            {
                "name": "rollback",
                "title": "Rollback",
                "do": [{"action": "remove-canary", "when": "on_breach"}],
            },
            {
                "name": "verify",
                "title": "Verify",
                "do": [{"check": "traffic"}, {"check": "fanout"}, {"check": "cleanup"}],
            },
        ],
        "exit_criteria": [
            {
                "name": "rolled-back",
                "text": "Canary out, verified in the RTO",
                "rule": "rollback_within_rto",
                "rto_s": 60,
            },
            {
                "name": "fanout-after",
                "text": "Fanout verified after the rollback",
                "rule": "fanout_passed_after_rollback",
            },
        ],
    }
    if lb is None:  # the direct checks only (health, fanout)
        doc.update(actions=[], steps=doc["steps"][:1], exit_criteria=doc["exit_criteria"][1:])
    else:
        doc["load_balancer"] = {
            "url": lb.url,
            "selector": {},
            "identity": {"header": "X-Backend-Node"},
            "synthetic_traffic": {"candidate_share_min": 0.05, "candidate_share_max": 0.2, "rps": 40},
            "traffic_control": {
                "driver": "command",
                "remove": {"argv": lb.remove},
                "read": {"argv": lb.read},
            },
        }
    return doc


def _write(doc: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def rollback_tui(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ALT_TOKEN": TOKEN, "PATH": "/usr/local/bin:/usr/bin:/bin"}  # no venv on PATH
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout_s, env=env)


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout)


def _counts(replicas: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: httpx.get(f"{url}/_admin/count", timeout=5).json() for name, url in replicas.items()}


def _fault(url: str, **changes: Any) -> None:
    httpx.post(f"{url}/_admin/fault", json=changes, timeout=5).raise_for_status()


def test_checks_and_a_whole_rehearsal_behind_a_real_balancer(
    balancer: Balancer, replicas: dict[str, str], redis_server: str, tmp_path: Path
) -> None:
    pb = _write(playbook_doc(replicas, redis_server, balancer), tmp_path / "alt.yaml")
    valid = rollback_tui("validate", str(pb))
    assert valid.returncode == 0 and "warning" not in valid.stderr, valid.stderr

    health = rollback_tui("check", "health", str(pb), "--json")
    assert health.returncode == 0, health.stdout + health.stderr
    samples = {s["replica"]: s for s in _json(health)["replicas"]}
    assert {s["status"] for s in samples.values()} == {"ok"}  # `"serving": true`
    assert samples["canary"]["commit"] == "r2" and samples["stable-a"]["transport"] == "redis-pubsub"

    fanout = rollback_tui("check", "fanout", str(pb), "--json")
    result = _json(fanout)
    assert fanout.returncode == 0, result["reasons"]
    assert result["replay_ok"] is True and result["prefixes_seen"] == ["acme"]  # Last-Event-ID replay, tap
    # Two live sends, then three B missed and got back by Last-Event-ID: five events on each session.
    assert len(result["received"]["A"]) == len(result["received"]["B"]) == 2 + 3, result["received"]

    traffic = rollback_tui("check", "traffic", str(pb), "--json", "--seconds", "3")
    split = _json(traffic)
    assert traffic.returncode == 0, split
    assert set(split["share"]) == {"stable-a", "stable-b", "canary"}, split  # X-Backend-Node, served_as
    assert 0.02 < split["share"]["canary"] < 0.3, split

    _fault(replicas["canary"], error_rate=1.0)  # the injected fault: every post on the canary fails
    journal = tmp_path / "rehearsal.jsonl"
    run = rollback_tui(
        "rehearse",
        str(pb),
        "--headless",
        "--no-lab",
        "--journal",
        str(journal),
        "--watch",
        "30",
        timeout_s=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "✓ exit criteria hold" in run.stdout
    moved = "weights canary 10 → 0" if balancer.kind == "haproxy" else "weights canary 10 → -"
    backends = "backends stable-a, stable-b, canary → stable-a, stable-b"
    assert f"Rollback remove-canary applied via command: {backends}; {moved}" in run.stdout

    events = [json.loads(line) for line in journal.read_text().splitlines()]
    breach = next(e for e in events if e["kind"] == "guardrail_breach")
    assert breach["guardrail"] == "canary-5xx"
    verified = next(e for e in events if e["kind"] == "rollback_verified")
    assert verified["ok"] and verified["stable_share"] == 1.0
    # The canary's own count: nothing reached it through the balancer after the verification...
    counts = _counts(replicas)
    assert counts["canary"]["lb_requests"] > 0 and counts["canary"]["last_lb_at"] < verified["ts"]
    # ...and every traffic window after it was served by stable replicas only.
    after = [e for e in events if e["kind"] == "traffic_window" and e["ts"] - e["window_s"] > verified["ts"]]
    assert after and all(set(w["per_replica"]) <= {"stable-a", "stable-b"} for w in after), after
    assert TOKEN not in journal.read_text() and TOKEN not in run.stdout + run.stderr

    # Once more with fresh connections: N requests through the balancer, N counted by the stable replicas.
    n = 60
    for _ in range(n):
        with httpx.Client(timeout=5) as client:  # a new connection for each request
            response = client.get(f"{balancer.url}/status")
        assert response.headers["x-backend-node"] in ("node-stable-a", "node-stable-b")
    later = _counts(replicas)
    assert later["canary"]["lb_requests"] == counts["canary"]["lb_requests"]
    moved_to_stable = sum(
        later[r]["lb_requests"] - counts[r]["lb_requests"] for r in ("stable-a", "stable-b")
    )
    assert moved_to_stable == n


def test_a_replica_on_another_namespace_is_named_by_the_tap_and_the_diagnosis(
    replicas: dict[str, str], redis_server: str, tmp_path: Path
) -> None:
    """The channel template puts the namespace where the tap finds it; the health paths say whose it is."""
    pb = _write(playbook_doc(replicas, redis_server, None), tmp_path / "alt.yaml")
    _fault(replicas["stable-b"], namespace="other")
    fanout = rollback_tui("check", "fanout", str(pb), "--json")
    result = _json(fanout)
    assert fanout.returncode == 1
    assert result["prefixes_seen"] == ["acme", "other"]
    reasons = "\n".join(result["reasons"])
    assert "channel prefixes differ (stable-a='acme', stable-b='other'); check PUBSUB_NAMESPACE" in reasons
    assert "replicas publish under different channel prefixes: acme, other" in reasons

    _fault(replicas["stable-b"], namespace="acme", mode="in-process")
    fanout = rollback_tui("check", "fanout", str(pb), "--json")
    reasons = "\n".join(_json(fanout)["reasons"])
    assert fanout.returncode == 1
    assert "stable-b reports transport=in-process; set PUBSUB_MODE=redis-pubsub" in reasons
