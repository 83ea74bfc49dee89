"""The deployment's wire protocol as the playbook describes it (docs/protocol.md): the requests the checks
send, the streams they read, and which replica answered.

Templates are filled in one place: `{placeholders}` from the check's own values (only the names a template
may use; other braces stay as written), then `${VAR}` references from the operator's environment (the
values are secrets: the journal's redactor masks every referenced variable). An unset variable is a
CommandError naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect as ws_connect

from rollback_tui.exec.commands import CommandError, resolve_refs
from rollback_tui.playbook.model import PLACEHOLDER, FanoutProtocol, Playbook, ReplicaIdentity
from rollback_tui.probes import http_client
from rollback_tui.probes.health import dotted

UNKNOWN = "?"  # who served a response that does not say
Identify = Callable[[httpx.Response], str | None]


def render(template: str, **values: Any) -> str:
    """Fill the `{name}` placeholders that `values` has; anything else (`${VAR}`, other braces) stays."""

    def sub(match: Any) -> str:
        name = match.group(1)
        return str(values[name]) if name in values else match.group(0)

    return PLACEHOLDER.sub(sub, template)


def ws_base(url: str) -> str:
    return "ws" + url.rstrip("/")[4:] if url.startswith("http") else url.rstrip("/")


@dataclass(frozen=True)
class Request:
    """One request as it goes on the wire (headers resolved: never journal this object)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] | None = None
    replayable: bool = False  # it may reach the server twice: it carries an idempotency key


async def send(http: httpx.AsyncClient, request: Request) -> httpx.Response:
    """Send `request` through the one HTTP client (a replayable one may go twice: see http_client)."""
    return await http_client.request(
        http, request.method, request.url, json=request.body, headers=request.headers,
        replayable=request.replayable,
    )  # fmt: skip


def _headers(
    templates: Mapping[str, str], values: dict[str, Any], environ: Mapping[str, str] | None
) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k: resolve_refs(render(v, **values), env, f"header {k}")[0] for k, v in templates.items()}


def send_request(
    proto: FanoutProtocol,
    base: str,
    thread_id: str,
    text: str,
    key: str,
    environ: Mapping[str, str] | None = None,
) -> Request:
    """The send request: send_method send_url with send_body as JSON, send_headers and the idempotency key."""
    values = {"base": base.rstrip("/"), "thread_id": thread_id, "text": text, "key": key}
    headers = _headers(proto.send_headers, values, environ)
    headers[proto.idempotency_header] = key
    body = {k: render(v, **values) for k, v in proto.send_body.items()}
    return Request(proto.send_method, render(proto.send_url, **values), headers, body, replayable=True)


def stream_request(
    proto: FanoutProtocol,
    base: str,
    thread_id: str,
    *,
    after: int = 0,
    last_event_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Request:
    """The request that opens a stream, resuming after `after` (replay: url) or `last_event_id`."""
    values = {"base": base.rstrip("/"), "base_ws": ws_base(base), "thread_id": thread_id, "after": after}
    headers = _headers(proto.stream_headers, {"thread_id": thread_id}, environ)
    if proto.replay == "last_event_id" and last_event_id:
        headers["Last-Event-ID"] = last_event_id
    if proto.stream_kind == "sse":
        headers.setdefault("Accept", "text/event-stream")
    return Request("GET", render(proto.stream_url, **values), headers)


def check_references(proto: FanoutProtocol, environ: Mapping[str, str] | None = None) -> None:
    """Raise ValueError naming an unset `${VAR}` of the stream or send headers, before anything is sent."""
    try:
        send_request(proto, "http://x", "t", "", "k", environ)
        stream_request(proto, "http://x", "t", environ=environ)
    except CommandError as exc:
        raise ValueError(f"the realtime protocol cannot be used: {exc}") from exc


async def open_stream(
    request: Request, kind: str, timeout_s: float, on_open: Callable[[], None] = lambda: None
) -> AsyncIterator[tuple[dict[str, Any], str | None]]:
    """Open a websocket or SSE stream and yield (JSON frame, the last SSE `id:` seen) until it closes.

    Data that is not a JSON object (keep-alives such as `ping`) is skipped, not fatal."""
    if kind == "websocket":
        async with ws_connect(
            request.url, additional_headers=request.headers, open_timeout=timeout_s, max_size=2**20
        ) as ws:
            on_open()
            async for raw in ws:
                frame = _json_object(raw)
                if frame is not None:
                    yield frame, None
        return
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, read=None)) as client,
        client.stream("GET", request.url, headers=request.headers) as response,
    ):
        response.raise_for_status()
        on_open()
        data: list[str] = []
        last_id: str | None = None
        async for line in response.aiter_lines():
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if not line:  # a blank line dispatches the event
                frame = _json_object("\n".join(data)) if data else None
                data = []
                if frame is not None:
                    yield frame, last_id
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                last_id = value


def _json_object(raw: str | bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def header_identity(header: str, aliases: Mapping[str, str] | None = None) -> Identify:
    """Who served a response, by a header (its `served_as` value mapped back to a replica name)."""
    names = aliases or {}
    return lambda response: (
        None if (value := response.headers.get(header)) is None else names.get(value, value) or None
    )


def identifier(playbook: Playbook) -> Identify:
    """Which replica served a response: the balancer's identity header or body path, with `served_as`
    values mapped back to replica names; None when the response does not say (the balancer's own 502)."""
    lb = playbook.load_balancer
    identity = lb.identity if lb is not None else ReplicaIdentity()
    aliases = {r.served_as: r.name for r in playbook.replicas if r.served_as}
    if identity.json_path is None:
        return header_identity(identity.header or "X-Served-By", aliases)
    path = identity.json_path

    def from_body(response: httpx.Response) -> str | None:
        try:
            value = dotted(response.json(), path)
        except ValueError:
            return None
        return None if value is None else aliases.get(str(value), str(value))

    return from_body


def verification_request(playbook: Playbook, environ: Mapping[str, str] | None = None) -> Request:
    """What rollback verification sends through the balancer: `load_balancer.verify`, by default GET of
    the stable replicas' health path. Raises CommandError on an unset `${VAR}` in its headers."""
    lb = playbook.load_balancer
    assert lb is not None
    verify = lb.verify
    path = verify.path or next(r.health_path for r in playbook.replicas if r.role == "stable")
    headers = _headers(verify.headers, {}, environ)
    return Request(verify.method, lb.url.rstrip("/") + "/" + path.lstrip("/"), headers)
