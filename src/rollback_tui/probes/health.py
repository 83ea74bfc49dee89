"""Replica health polling: every replica concurrently, each request with its own timeout.

A replica that is down, slow or answers junk becomes a HealthSample saying so; it never delays
or stops the others, because each replica has its own polling task. A replica this host cannot look at
(its name does not resolve from here, auth refused, a malformed URL) is `unknown` with the reason: not
observed, so neither ok nor failing.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from rollback_tui.core.events import Event, HealthSample
from rollback_tui.playbook.model import Playbook, Replica

E = TypeVar("E", bound=BaseException)


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


AUTH_REFUSED = frozenset({401, 403})


def _behind(exc: BaseException, kind: type[E]) -> E | None:
    """The exception of `kind` behind a connect error (its cause chain), if there is one."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _unresolved(exc: BaseException) -> socket.gaierror | None:
    """The name-resolution failure behind a connect error, if that is what it was."""
    return _behind(exc, socket.gaierror)


def cannot_observe(exc: Exception) -> bool:
    """True when the request never reached a target that could answer: the host name does not resolve
    from here or the URL is malformed. Refused, reset and timed out are the target failing."""
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol | ValueError):
        return True
    return isinstance(exc, httpx.ConnectError | OSError) and _unresolved(exc) is not None


def describe_http_error(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        unresolved = _unresolved(exc)
        if unresolved is not None:
            return f"host name does not resolve from here ({unresolved.strerror or unresolved})"[:200]
        tls = _behind(exc, ssl.SSLError)  # it connected; the TLS handshake (e.g. verification) failed
        if tls is not None:
            return f"TLS handshake failed ({tls})"[:200]
        cause = exc.__cause__ or exc.__context__ or exc
        return f"connection refused or unreachable ({cause})"[:200]
    return f"{type(exc).__name__}: {exc or 'request failed'}"[:200]


def auth_refused(status: int) -> str | None:
    return f"HTTP {status}: authentication refused" if status in AUTH_REFUSED else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def health_url(replica: Replica) -> str:
    return replica.url.rstrip("/") + "/" + replica.health_path.lstrip("/")


def interpret(replica: Replica, response: httpx.Response, latency_ms: float) -> HealthSample:
    """Turn one HTTP response into a sample; anything unexpected is `junk` with the reason."""
    base = {"replica": replica.name, "latency_ms": round(latency_ms, 2), "http_status": response.status_code}
    refused = auth_refused(response.status_code)
    if refused:
        return HealthSample(status="unknown", error=refused, **base)
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
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        status = "unknown" if cannot_observe(exc) else "down"
        return HealthSample(replica=replica.name, status=status, error=describe_http_error(exc))
    return interpret(replica, response, (time.perf_counter() - started) * 1000)


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
