"""The lab's Prometheus: the Debian `prometheus` binary with its own config and data dir (in a temp dir),
scraping the lab's replicas every second, listening on loopback only.

    async with LabPrometheus([Target("127.0.0.1:41234", {"role": "stable"})], work_dir=tmp) as prom:
        prom.url        # http://127.0.0.1:P

The data dir is removed on stop: the lab keeps nothing between runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from rollback_tui.lab.proc import Child, free_port

READY_TIMEOUT_S = 20.0
PORT_ATTEMPTS = 3
DEBIAN_BINARY = "/usr/bin/prometheus"


def prometheus_binary() -> str | None:
    """The prometheus binary (Debian package `prometheus`), or None when it is not installed."""
    return shutil.which("prometheus") or (DEBIAN_BINARY if Path(DEBIAN_BINARY).is_file() else None)


@dataclass(frozen=True)
class Target:
    address: str  # host:port serving /metrics
    labels: dict[str, str] = field(default_factory=dict)  # added to every series scraped from it


class LabPrometheus:
    def __init__(
        self,
        targets: list[Target],
        *,
        work_dir: Path,
        scrape_s: float = 1.0,
        port: int | None = None,
        web_config: dict[str, Any] | None = None,  # --web.config.file contents (basic auth users, TLS)
        auth: httpx.Auth | None = None,  # what the readiness check sends when web_config asks for it
        scheme: str = "http",  # https when web_config serves TLS
        ca_file: Path | None = None,  # what the readiness check trusts then
    ) -> None:
        self.targets = targets
        self.dir = Path(work_dir) / "prometheus"
        self.scrape_s = scrape_s
        self.port = port
        self.web_config = web_config
        self.auth = auth
        self.scheme = scheme
        self.ca_file = ca_file
        self.child: Child | None = None

    async def __aenter__(self) -> LabPrometheus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.child is not None and self.child.running

    def config(self) -> dict[str, Any]:
        interval = f"{max(1, round(self.scrape_s * 1000))}ms"
        return {
            "global": {
                "scrape_interval": interval,
                "evaluation_interval": interval,
                "scrape_timeout": interval,
            },
            "scrape_configs": [
                {
                    "job_name": "lab",
                    "static_configs": [{"targets": [t.address], "labels": t.labels} for t in self.targets],
                }
            ],
        }

    def _argv(self, binary: str, port: int) -> list[str]:
        argv = [
            binary,
            f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=2h",
            "--log.level=warn",
        ]
        if self.web_config is not None:
            argv.append(f"--web.config.file={self.dir / 'web.yml'}")
        return argv

    async def start(self) -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if self.web_config is not None:
            (self.dir / "web.yml").write_text(yaml.safe_dump(self.web_config, sort_keys=False))
        port = self.port or free_port()
        for attempt in range(PORT_ATTEMPTS):
            if attempt:
                port = free_port()
            self.port = port
            self.child = Child("prometheus", self._argv(binary, port), self.dir / "prometheus.log")
            await self.child.start()
            if await self._ready():
                return
            output = self.child.last_output()
            await self.child.stop()
            if "address already in use" not in output.lower():
                raise RuntimeError(f"prometheus did not become ready; last output:\n{output or '(none)'}")
        raise RuntimeError(f"prometheus: no free port after {PORT_ATTEMPTS} attempts")

    async def _ready(self) -> bool:
        assert self.child is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        verify = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
        async with httpx.AsyncClient(timeout=1.0, auth=self.auth, verify=verify) as client:
            while time.monotonic() < deadline:
                if not self.child.running:
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/-/ready")).status_code == 200:
                        return True
                await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        """Stop the server and remove its data; safe to call twice."""
        if self.child is not None:
            await self.child.stop()
        shutil.rmtree(self.dir / "data", ignore_errors=True)
