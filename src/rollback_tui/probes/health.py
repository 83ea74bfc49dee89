"""Replica health polling: every replica concurrently, each request with its own timeout.

A replica that is down, slow or answers junk becomes a HealthSample saying so; it never delays
or stops the others, because each replica has its own polling task. A replica this host cannot look at
(its name does not resolve from here, auth refused, a malformed URL) is `unknown` with the reason: not
observed, so neither ok nor failing.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import httpx

from rollback_tui.core.events import Event, HealthSample
from rollback_tui.playbook.model import HealthFields, Playbook, Replica
from rollback_tui.probes import http_client
from rollback_tui.probes.http_client import request

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
Status = Literal["ok", "degraded", "down", "junk", "timeout", "unknown"]  # HealthSample.status


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
    base: dict[str, Any] = {
        "replica": replica.name,
        "latency_ms": round(latency_ms, 2),
        "http_status": response.status_code,
    }
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
    status: Status
    error: str | None
    if response.status_code >= 500:
        status, error = "down", _text(dotted(doc, "error")) or f"HTTP {response.status_code}"
    elif response.status_code >= 400:
        status, error = "junk", f"HTTP {response.status_code}"
    else:
        status, error = classify(replica, doc)
    return from_document(replica.fields, doc, status, error, **base)


def _shown(value: Any) -> str:
    """A reported status as the document wrote it: `true`, `1`, `'SERVING'`, `(missing)`."""
    if value is None:
        return "(missing)"
    return repr(value) if isinstance(value, str) else json.dumps(value)


def classify(replica: Replica, doc: dict[str, Any], path: str | None = None) -> tuple[Status, str | None]:
    """(status, error) from the document's status field, through the replica's `status_values`."""
    reported = dotted(doc, path or replica.fields.status)
    word = replica.status_values.classify(reported)
    if word == "ok":
        return "ok", None
    if word == "degraded":
        return "degraded", _text(dotted(doc, "error"))
    if word == "failing":
        return "down", _text(dotted(doc, "error")) or f"reports status {_shown(reported)}"
    return "junk", f"unknown status {_shown(reported)}"


def from_document(
    f: HealthFields, doc: dict[str, Any], status: Status, error: str | None, **base: Any
) -> HealthSample:
    """A sample carrying what the document reports at the replica's field paths."""
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
        response = await request(client, "GET", health_url(replica), timeout=timeout_s)
    except httpx.TimeoutException:
        return HealthSample(
            replica=replica.name,
            status="timeout",
            latency_ms=round(timeout_s * 1000, 2),
            error=f"no answer within {timeout_s:g} s",
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        failed: Status = "unknown" if cannot_observe(exc) else "down"
        return HealthSample(replica=replica.name, status=failed, error=describe_http_error(exc))
    return interpret(replica, response, (time.perf_counter() - started) * 1000)


_NOT_RUN: dict[str, Status] = {"unknown": "unknown", "timeout": "timeout", "failed": "down"}


@dataclass
class CommandHealth:
    """What a replica's health command said: `doc` (its JSON object), else a bare status `value`; `outcome`
    is `ran`, `failed` (non-zero exit), `timeout` or `unknown` (it could not run: not found, unset ${VAR},
    SSH refused), with `error` saying why."""

    outcome: str
    latency_ms: float
    doc: dict[str, Any] | None = None
    value: Any = None
    error: str | None = None


async def run_health_command(replica: Replica, playbook: Playbook, timeout_s: float) -> CommandHealth:
    """Run `replica.health_command` (locally or over SSH), bounded by its own timeout_s when the playbook
    sets one, else by the health timeout."""
    from rollback_tui.exec.supervise import run_capture

    spec = replica.health_command
    assert spec is not None
    if "timeout_s" not in spec.model_fields_set:
        spec = spec.model_copy(update={"timeout_s": timeout_s})
    started = time.perf_counter()
    result = await run_capture(spec, playbook)
    latency = round((time.perf_counter() - started) * 1000, 2)
    if result.outcome == "error":
        return CommandHealth("unknown", latency, error=f"health command could not run: {result.error}")
    if result.outcome == "timed_out":
        return CommandHealth(
            "timeout", latency, error=f"health command gave no answer within {spec.timeout_s:g} s"
        )
    if result.exit_code != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        return CommandHealth(
            "failed", latency, error=f"health command exited {result.exit_code}: {tail[0]}"[:200]
        )
    text = result.stdout.strip()
    try:
        parsed = json.loads(text)
    except ValueError:  # not JSON: its last line is the status value (`SERVING`)
        parsed = text.splitlines()[-1].strip() if text else None
    if isinstance(parsed, dict):
        return CommandHealth("ran", latency, doc=parsed)
    return CommandHealth("ran", latency, value=parsed)


async def sample_command(replica: Replica, playbook: Playbook, timeout_s: float) -> HealthSample:
    said = await run_health_command(replica, playbook, timeout_s)
    name, latency = replica.name, said.latency_ms
    status: Status
    if said.outcome != "ran":
        status = _NOT_RUN[said.outcome]
        return HealthSample(replica=name, status=status, error=said.error, latency_ms=latency)
    if said.doc is not None:
        status, error = classify(replica, said.doc)
        return from_document(replica.fields, said.doc, status, error, replica=name, latency_ms=latency)
    status, error = classify(replica, {"status": said.value}, "status")
    return HealthSample(replica=name, status=status, error=error, latency_ms=latency)


async def sample(
    client: httpx.AsyncClient, replica: Replica, playbook: Playbook, timeout_s: float
) -> HealthSample:
    """One health sample: the replica's health command when it has one, else GET its health path."""
    if replica.health_command is not None:
        return await sample_command(replica, playbook, timeout_s)
    return await sample_replica(client, replica, timeout_s)


class HealthProbe:
    """Polls every replica of the playbook at `health_interval_s`, each on its own task."""

    def __init__(self, playbook: Playbook, emit: Callable[[Event], Event]) -> None:
        self.playbook = playbook
        self.emit = emit

    async def run(self) -> None:
        headers = {"User-Agent": "rollback-tui/health"}
        http = http_client.client(max_connections=len(self.playbook.replicas) * 2, headers=headers)
        async with http as client, asyncio.TaskGroup() as group:
            for replica in self.playbook.replicas:
                group.create_task(self._poll(client, replica), name=f"health:{replica.name}")

    async def _poll(self, client: httpx.AsyncClient, replica: Replica) -> None:
        interval = self.playbook.health_interval_s
        timeout = min(self.playbook.health_timeout_s, max(interval * 4, 0.5))
        while True:
            started = time.monotonic()
            self.emit(await sample(client, replica, self.playbook, timeout))
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def once(self) -> list[HealthSample]:
        """One sample of every replica, concurrently (for `check health` and the headless runner)."""
        async with http_client.client() as client:
            samples = await asyncio.gather(
                *(
                    sample(client, r, self.playbook, self.playbook.health_timeout_s)
                    for r in self.playbook.replicas
                )
            )
        for one in samples:
            self.emit(one)
        return list(samples)
