"""The lab supervisor: Redis, one process per replica with a `lab:` section, the balancer, and a real
Prometheus scraping the replicas when the playbook has a `prometheus:` server with `lab: true` and the
`prometheus` binary is installed. Without the binary the guardrails and facts that query it are taken out
of the lab's playbook and `prometheus_note` says so (the front ends show it).

    async with Lab(playbook) as lab:
        lab.playbook        # a copy whose URLs point at the real (usually free, random) ports
        lab.endpoints       # {"stable-a": "http://127.0.0.1:41234", …, "balancer", "balancer-admin", "redis"}

Children run from argv (no shell) in their own process group, with PR_SET_PDEATHSIG so they die with
this process even if it is SIGKILLed; their output goes to log files in `log_dir`, never the terminal.

Replicas without labels get {"app": "api", "track": <role>} (see balancer.py for the scheme); replicas
missing from load_balancer.weights get weight 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from rollback_tui.lab.bus import RedisBus
from rollback_tui.lab.proc import Child, free_port, port_is_free
from rollback_tui.lab.prometheus import LabPrometheus, Target, prometheus_binary
from rollback_tui.playbook.model import Playbook, Replica

READY_TIMEOUT_S = 15.0
PORT_ATTEMPTS = 3
DEFAULT_PREFIX = "chat:rt:"
_HOSTPORT = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<host>\[[^\]]+\]|[^/:@\s\"']+):(?P<port>\d+)"
)
_LOOPBACK = {"localhost", "127.0.0.1", "[::1]", "0.0.0.0"}


class LabError(RuntimeError):
    """The lab could not start (the message names the process and shows its last output)."""


def default_labels(replica: Replica) -> dict[str, str]:
    return dict(replica.labels) or {"app": "api", "track": replica.role}


def _host_key(host: str, port: int) -> tuple[str, int]:
    return ("127.0.0.1" if host.lower() in _LOOPBACK else host.lower(), port)


def _split_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    try:
        return parts.hostname or "127.0.0.1", parts.port
    except ValueError:
        return parts.hostname or "127.0.0.1", None


def rewrite_urls(value: Any, moves: dict[tuple[str, int], int]) -> Any:
    """Replace `scheme://host:port` wherever host:port was moved to another loopback port."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            key = _host_key(match["host"], int(match["port"]))
            if key not in moves:
                return match.group(0)
            return f"{match['scheme']}127.0.0.1:{moves[key]}"

        return _HOSTPORT.sub(sub, value)
    if isinstance(value, dict):
        return {k: rewrite_urls(v, moves) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite_urls(v, moves) for v in value]
    return value


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme or "http", f"127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


class Lab:
    def __init__(
        self,
        playbook: Playbook,
        *,
        redis: Literal["auto", "server", "embedded"] = "auto",
        prefer_playbook_ports: bool = False,
        log_dir: Path | None = None,
        prometheus: Literal["auto", "off"] = "auto",
    ) -> None:
        self.source = playbook
        self.playbook = playbook
        self.redis_mode = redis
        self.prefer_playbook_ports = prefer_playbook_ports
        self._own_log_dir = log_dir is None  # then a temp dir, made by start(), removed after a clean run
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
        self.keep_logs = False  # set when something failed: the temp log dir then stays
        self.endpoints: dict[str, str] = {}
        self.redis_kind = ""
        self.bus: RedisBus | None = None
        self.children: dict[str, Child] = {}
        self.ports: dict[str, int] = {}
        self._replicas = [r for r in playbook.replicas if r.lab is not None]
        self._started = False
        self.prometheus_mode = prometheus
        self.prometheus: LabPrometheus | None = None
        self.prometheus_note = ""  # what the front ends say about the lab's Prometheus (empty: none asked)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        if not self._replicas:
            raise LabError(f"playbook {self.source.name} has no replica with a `lab:` section to run")
        self._started = True
        if self._own_log_dir:
            self.log_dir = Path(tempfile.mkdtemp(prefix="rollback-lab-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            await self._start_redis()
            await asyncio.gather(*(self._start_replica(r) for r in self._replicas))
            if self.source.load_balancer is not None:
                await self._start_balancer()
            await self._start_prometheus()
            self.playbook = self._resolve()
        except BaseException:
            self.keep_logs = True  # for a post-mortem
            await self.stop()
            raise

    async def stop(self) -> None:
        """Terminate every child (SIGTERM, SIGKILL after 3 s). Safe to call twice."""
        children = list(self.children.values())
        await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
        if self.prometheus is not None:
            await self.prometheus.stop()
        if self.bus is not None:
            await self.bus.stop()
        self._started = False
        if self._own_log_dir and not self.keep_logs and self.log_dir.name.startswith("rollback-lab-"):
            shutil.rmtree(self.log_dir, ignore_errors=True)

    # -- redis -------------------------------------------------------------------------------------
    def _wanted_port(self, url: str | None) -> int | None:
        if not (self.prefer_playbook_ports and url):
            return None
        _, port = _split_port(url)
        return port if port and port_is_free(port) else None

    async def _start_redis(self) -> None:
        realtime = self.source.realtime
        self.bus = RedisBus(
            self.redis_mode,
            log_dir=self.log_dir,
            port=self._wanted_port(realtime.redis_url if realtime else None),
        )
        try:
            await self.bus.start()
        except RuntimeError as exc:
            raise LabError(f"lab redis failed to start: {exc}") from exc
        self.redis_kind = self.bus.kind
        self.endpoints["redis"] = self.redis_url

    @property
    def redis_url(self) -> str:
        assert self.bus is not None
        db = "/0"
        if self.source.realtime:
            path = urlsplit(self.source.realtime.redis_url).path
            db = path if re.fullmatch(r"/\d+", path or "") else "/0"
        return f"redis://127.0.0.1:{self.bus.port}{db}"

    # -- replicas ------------------------------------------------------------------------------------
    def _replica_argv(self, replica: Replica, port: int) -> list[str]:
        lab = replica.lab
        assert lab is not None
        realtime = self.source.realtime
        prefix = lab.channel_prefix or (realtime.channel_prefix if realtime else DEFAULT_PREFIX)
        faults = lab.faults
        return [
            sys.executable, "-m", "rollback_tui.lab.replica",
            "--name", replica.name,
            "--port", str(port),
            "--redis-url", self.redis_url,
            "--channel-prefix", prefix,
            "--transport", lab.transport,
            "--image", lab.image,
            "--commit", lab.commit,
            "--error-rate", str(faults.error_rate),
            "--latency-ms", str(faults.latency_ms),
            "--ws-drop-rate", str(faults.ws_drop_rate),
            "--dead-letters", str(faults.dead_letters),
        ]  # fmt: skip

    async def _start_replica(self, replica: Replica, port: int | None = None) -> None:
        first = port or self._wanted_port(replica.url) or free_port()
        await self._spawn(
            replica.name,
            first,
            lambda p: self._replica_argv(replica, p),
            lambda p: f"http://127.0.0.1:{p}/healthz",
        )
        self.endpoints[replica.name] = f"http://127.0.0.1:{self.ports[replica.name]}"

    async def _spawn(
        self,
        name: str,
        port: int,
        argv_for: Callable[[int], list[str]],
        ready_url_for: Callable[[int], str],
        fixed_port: bool = False,
    ) -> None:
        """Start a child on `port` (another free port if that one is taken) and wait until it answers."""
        for attempt in range(PORT_ATTEMPTS):
            if attempt:
                port = free_port()
            child = Child(name, argv_for(port), self.log_dir / f"{name}.log")
            self.children[name] = child
            self.ports[name] = port
            await child.start()
            if await self._wait_ready(child, ready_url_for(port)):
                return
            output = child.last_output()
            await child.stop()
            if "address already in use" not in output.lower() or fixed_port:
                raise LabError(f"lab process {name} did not become ready; last output:\n{output or '(none)'}")
        raise LabError(f"lab process {name}: no free port after {PORT_ATTEMPTS} attempts")

    async def _wait_ready(self, child: Child, url: str) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not child.running:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(url)
                    if response.status_code < 500 or response.headers.get("x-served-by"):
                        return True
                await asyncio.sleep(0.05)
        return False

    # -- balancer ----------------------------------------------------------------------------------------
    async def _start_balancer(self) -> None:
        lb = self.source.load_balancer
        assert lb is not None
        backends = [
            {
                "name": r.name,
                "url": self.endpoints[r.name],
                "labels": default_labels(r),
                "weight": lb.weights.get(r.name, 1),
            }
            for r in self._replicas
        ]
        admin_port = self._wanted_port(lb.traffic_control.admin_url) or free_port()
        port = self._wanted_port(lb.url) or free_port()

        def argv_for(p: int) -> list[str]:
            nonlocal admin_port
            if p != port:  # a retry after EADDRINUSE: move the admin port too
                admin_port = free_port()
            return [
                sys.executable, "-m", "rollback_tui.lab.balancer",
                "--port", str(p),
                "--admin-port", str(admin_port),
                "--backends", json.dumps(backends),
                "--selector", json.dumps(lb.selector),
            ]  # fmt: skip

        await self._spawn("balancer", port, argv_for, lambda p: f"http://127.0.0.1:{admin_port}/admin/state")
        self.ports["balancer-admin"] = admin_port
        self.endpoints["balancer"] = f"http://127.0.0.1:{self.ports['balancer']}"
        self.endpoints["balancer-admin"] = f"http://127.0.0.1:{admin_port}"

    # -- prometheus -----------------------------------------------------------------------------------------
    @property
    def prometheus_up(self) -> bool:
        """The lab's Prometheus runs (its guardrails are in the lab's playbook)."""
        return self.prometheus is not None and self.prometheus.running

    async def _start_prometheus(self) -> None:
        servers = [p for p in self.source.prometheus if p.lab]
        if not servers:
            return
        if self.prometheus_mode == "off":
            self.prometheus_note = "the lab's Prometheus is switched off"
            return
        if prometheus_binary() is None:
            self.prometheus_note = "Prometheus is not installed (apt-get install prometheus)"
            return
        targets = [
            Target(self.endpoints[r.name].split("://", 1)[1], {"role": r.role}) for r in self._replicas
        ]
        port = next((p for p in (self._wanted_port(s.url) for s in servers) if p), None)
        self.prometheus = LabPrometheus(targets, work_dir=self.log_dir, port=port)
        try:
            await self.prometheus.start()
        except RuntimeError as exc:
            raise LabError(f"lab prometheus failed to start: {exc}") from exc
        self.endpoints["prometheus"] = self.prometheus.url
        self.prometheus_note = (
            f"Prometheus {self.prometheus.url} scrapes {len(targets)} replicas every "
            f"{self.prometheus.scrape_s:g} s"
        )

    def _without_lab_prometheus(self, data: dict[str, Any]) -> list[str]:
        """Take the guardrails and facts that query the lab's (absent) Prometheus out of the playbook."""
        lab_servers = {p["name"] for p in data.get("prometheus", []) if p.get("lab")}
        only = next(iter(lab_servers)) if len(data.get("prometheus", [])) == 1 else None

        def on_lab(server: str | None) -> bool:
            return (server or only) in lab_servers

        removed = [
            g["name"] for g in data["guardrails"] if g["metric"] == "query" and on_lab(g.get("server"))
        ]
        removed += [
            f["name"] for f in data["facts"] if f["source"] == "prometheus" and on_lab(f.get("server"))
        ]
        data["guardrails"] = [g for g in data["guardrails"] if g["name"] not in removed]
        data["facts"] = [f for f in data["facts"] if f["name"] not in removed]
        data["prometheus"] = [p for p in data.get("prometheus", []) if not p.get("lab")]
        for step in data["steps"]:
            step["do"] = [
                d for d in step["do"] if d.get("guardrail") not in removed and d.get("fact") not in removed
            ]
            for item in step["do"]:
                item["breach_of"] = [b for b in item.get("breach_of", []) if b not in removed]
        for pre in data.get("preconditions", []):
            if pre.get("fact") in removed:
                pre["fact"] = None
        return removed

    # -- the resolved playbook -----------------------------------------------------------------------------
    def _resolve(self) -> Playbook:
        """The playbook as the lab runs it: every lab URL (and any URL elsewhere naming the same host and
        port) moved to the port the lab actually got."""
        data = rewrite_urls(self.source.model_dump(mode="python"), self._port_moves())
        for replica in data["replicas"]:
            if replica["name"] in self.endpoints and replica.get("lab") is not None:
                replica["url"] = _with_port(replica["url"], self.ports[replica["name"]])
                replica["labels"] = default_labels(self.source.replica(replica["name"]))
        if data.get("load_balancer"):
            data["load_balancer"]["url"] = _with_port(data["load_balancer"]["url"], self.ports["balancer"])
            tc = data["load_balancer"]["traffic_control"]
            if tc.get("driver") == "lab":
                tc["admin_url"] = self.endpoints["balancer-admin"]
        if data.get("realtime"):
            data["realtime"]["redis_url"] = self.redis_url
        self._resolve_prometheus(data)
        return Playbook.model_validate(data)

    def _port_moves(self) -> dict[tuple[str, int], int]:
        moves: dict[tuple[str, int], int] = {}

        def move(url: str | None, new_port: int) -> None:
            if url:
                host, port = _split_port(url)
                if port:
                    moves[_host_key(host, port)] = new_port

        for r in self._replicas:
            move(r.url, self.ports[r.name])
        lb = self.source.load_balancer
        if lb is not None:
            move(lb.url, self.ports["balancer"])
            move(lb.traffic_control.admin_url, self.ports["balancer-admin"])
        if self.source.realtime:
            move(self.source.realtime.redis_url, self.bus.port if self.bus else 0)
        if self.prometheus is not None:
            for server in self.source.prometheus:
                if server.lab:
                    move(server.url, self.prometheus.port or 0)
        return moves

    def _resolve_prometheus(self, data: dict[str, Any]) -> None:
        if self.prometheus is not None:
            for server in data["prometheus"]:
                if server["lab"]:
                    server["url"] = self.prometheus.url
        elif self.prometheus_note:
            removed = self._without_lab_prometheus(data)
            if removed:
                self.prometheus_note += (
                    f": {', '.join(removed)} left out, guardrails run on synthetic traffic"
                )

    # -- operations for tests and the demo ------------------------------------------------------------------
    def _replica(self, name: str) -> Replica:
        for replica in self._replicas:
            if replica.name == name:
                return replica
        raise LabError(f"no lab replica named {name!r}; lab replicas: {[r.name for r in self._replicas]}")

    async def kill_replica(self, name: str) -> None:
        """SIGKILL a replica (it dies mid-run, as in a crash)."""
        self._replica(name)
        await self.children[name].kill()

    async def restart_replica(self, name: str) -> None:
        """Start a replica again on the same port, with the playbook's original settings and faults."""
        replica = self._replica(name)
        await self.children[name].stop()
        port = self.ports[name]
        await self._spawn(
            name,
            port,
            lambda p: self._replica_argv(replica, p),
            lambda p: f"http://127.0.0.1:{p}/healthz",
            fixed_port=True,
        )

    async def restart_balancer(self) -> None:
        """Restart the balancer on the same ports, as a redeploy of the load balancer would (its selector
        and weights go back to the playbook's: a restart forgets runtime changes)."""
        child = self.children["balancer"]
        argv = list(child.argv)
        port, admin = self.ports["balancer"], self.ports["balancer-admin"]
        await child.stop()
        await self._spawn(
            "balancer",
            port,
            lambda _p: argv,
            lambda _p: f"http://127.0.0.1:{admin}/admin/state",
            fixed_port=True,
        )

    async def set_faults(self, name: str, **faults: Any) -> dict[str, Any]:
        """Change a running replica's faults (partial update); returns its full fault settings."""
        self._replica(name)
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(f"{self.endpoints[name]}/_lab/faults", json=faults)
        if response.status_code != 200:
            raise LabError(f"set_faults({name}) failed: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def processes(self) -> dict[str, Child]:
        """Every child process by name: the replicas, the balancer, redis and the lab's Prometheus."""
        processes = dict(self.children)
        if self.bus is not None and self.bus.child is not None:
            processes["redis"] = self.bus.child
        if self.prometheus is not None and self.prometheus.child is not None:
            processes["prometheus"] = self.prometheus.child
        return processes

    def pids(self) -> dict[str, int]:
        """Process ids of the running children (redis included), for checks and diagnostics."""
        return {name: c.pid for name, c in self.processes().items() if c.running and c.pid}


def endpoint_table(lab: Lab) -> str:
    rows = [("process", "endpoint", "")]
    for replica in lab._replicas:
        assert replica.lab is not None
        detail = f"{replica.role}, {replica.lab.transport}, {replica.lab.commit}"
        rows.append((replica.name, lab.endpoints[replica.name], detail))
    if "balancer" in lab.endpoints:
        lb = lab.source.load_balancer
        selector = ",".join(f"{k}={v}" for k, v in (lb.selector if lb else {}).items())
        rows.append(("balancer", lab.endpoints["balancer"], f"selector {selector}"))
        rows.append(("balancer-admin", lab.endpoints["balancer-admin"] + "/admin/state", ""))
    rows.append(("redis", lab.endpoints["redis"], lab.redis_kind))
    if "prometheus" in lab.endpoints:
        rows.append(("prometheus", lab.endpoints["prometheus"], "scrapes the replicas' /metrics"))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


async def run_lab_forever(
    playbook: Playbook,
    out: Callable[[str], Any] = print,
    *,
    redis: Literal["auto", "server", "embedded"] = "auto",
    prefer_playbook_ports: bool = True,
) -> None:
    """Start the lab, print its endpoints, and run until cancelled (Ctrl-C); then stop everything."""
    lab = Lab(playbook, redis=redis, prefer_playbook_ports=prefer_playbook_ports)
    loop, terminated = asyncio.get_running_loop(), asyncio.Event()
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # main thread only
        loop.add_signal_handler(signal.SIGTERM, terminated.set)  # SIGTERM: stop cleanly and return
    try:
        await lab.start()
        out(f"Lab for {playbook.name} is up (logs in {lab.log_dir}):\n")
        out(endpoint_table(lab))
        if lab.prometheus_note and lab.prometheus is None:
            out(f"\n! {lab.prometheus_note}")
        out("\nCtrl-C stops the lab.")
        reported: set[str] = set()
        while not terminated.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(terminated.wait(), 1.0)
            for name, child in lab.processes().items():
                if not child.running and name not in reported:
                    reported.add(name)
                    lab.keep_logs = True
                    out(f"! {name} exited; last output:\n{child.last_output(5)}")
    finally:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.remove_signal_handler(signal.SIGTERM)
        await lab.stop()
