"""Replica health polling: every replica concurrently, each request with its own timeout.

A replica that is down, slow or answers junk becomes a HealthSample saying so; it never delays
or stops the others, because each replica has its own polling task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from rollback_tui.core.events import Event, HealthSample
from rollback_tui.playbook.model import Playbook, Replica


def dotted(doc: Any, path: str) -> Any:
    """Follow a dotted path (`realtime.channel_prefix`, `items.0.id`) through JSON; None if absent."""
    node = doc
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def health_url(replica: Replica) -> str:
    return replica.url.rstrip("/") + "/" + replica.health_path.lstrip("/")


def interpret(replica: Replica, response: httpx.Response, latency_ms: float) -> HealthSample:
    """Turn one HTTP response into a sample; anything unexpected is `junk` with the reason."""
    base = {"replica": replica.name, "latency_ms": round(latency_ms, 2), "http_status": response.status_code}
    try:
        doc = response.json()
    except ValueError:
        snippet = response.text[:80].replace("\n", " ")
        return HealthSample(status="junk", error=f"not JSON: {snippet!r}", **base)
    if not isinstance(doc, dict):
        return HealthSample(status="junk", error=f"expected a JSON object, got {type(doc).__name__}", **base)
    f = replica.fields
    reported = str(dotted(doc, f.status) or "").lower()
    if response.status_code >= 500:
        status, error = "down", _text(dotted(doc, "error")) or f"HTTP {response.status_code}"
    elif response.status_code >= 400:
        status, error = "junk", f"HTTP {response.status_code}"
    elif reported in ("ok", "healthy", "up", "pass"):
        status, error = "ok", None
    elif reported in ("degraded", "warn"):
        status, error = "degraded", _text(dotted(doc, "error"))
    else:
        status, error = "junk", f"unknown status {reported or '(missing)'!r}"
    return HealthSample(
        status=status,
        error=error,
        image=_text(dotted(doc, f.image)),
        commit=_text(dotted(doc, f.commit)),
        channel_prefix=_text(dotted(doc, f.channel_prefix)),
        transport=_text(dotted(doc, f.transport)),
        **base,
    )


async def sample_replica(client: httpx.AsyncClient, replica: Replica, timeout_s: float) -> HealthSample:
    started = time.perf_counter()
    try:
        response = await client.get(health_url(replica), timeout=timeout_s)
    except httpx.TimeoutException:
        return HealthSample(
            replica=replica.name,
            status="timeout",
            latency_ms=round(timeout_s * 1000, 2),
            error=f"no answer within {timeout_s:g} s",
        )
    except httpx.HTTPError as exc:
        return HealthSample(replica=replica.name, status="down", error=_describe(exc))
    return interpret(replica, response, (time.perf_counter() - started) * 1000)


def _describe(exc: httpx.HTTPError) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"connection refused or unreachable ({cause or text})"[:200]
    return f"{type(exc).__name__}: {text}"[:200]


class HealthProbe:
    """Polls every replica of the playbook at `health_interval_s`, each on its own task."""

    def __init__(self, playbook: Playbook, emit: Callable[[Event], Event]) -> None:
        self.playbook = playbook
        self.emit = emit

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=len(self.playbook.replicas) * 2)
        headers = {"User-Agent": "rollback-tui/health"}
        async with httpx.AsyncClient(limits=limits, headers=headers) as client, asyncio.TaskGroup() as group:
            for replica in self.playbook.replicas:
                group.create_task(self._poll(client, replica), name=f"health:{replica.name}")

    async def _poll(self, client: httpx.AsyncClient, replica: Replica) -> None:
        interval = self.playbook.health_interval_s
        timeout = min(self.playbook.health_timeout_s, max(interval * 4, 0.5))
        while True:
            started = time.monotonic()
            self.emit(await sample_replica(client, replica, timeout))
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def once(self) -> list[HealthSample]:
        """One sample of every replica, concurrently (for `check health` and the headless runner)."""
        async with httpx.AsyncClient() as client:
            samples = await asyncio.gather(
                *(sample_replica(client, r, self.playbook.health_timeout_s) for r in self.playbook.replicas)
            )
        for sample in samples:
            self.emit(sample)
        return list(samples)
