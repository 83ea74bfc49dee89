"""Our HTTP clients, configured in one place: how long an idle kept-open connection is reused, and the
one new try a request gets when the server closed such a connection under it.

A server closes a keep-alive connection once it has sat idle for its timeout (gunicorn 2 s; uvicorn and
Node 5 s). httpx reuses one for 5 s by default — the same as uvicorn — so a request sent as the server's
timer fires goes out on a connection the server is closing: nobody reads it, and it fails with "Server
disconnected without sending a response" although the target is fine (a canary request "no replica
answered", a health sample "down", a probe failed). Reusing an idle connection for KEEPALIVE_EXPIRY_S only,
well below those timers, keeps requests off connections a server is about to close.

A server with a shorter timer can still race one: `request` then sends it once more, on a new connection,
when the failure shows that race — the connection was a kept-open one and the server closed it before
answering anything — and the request can be received twice without harm (GET, HEAD, or a send that carries
an idempotency key: the server answers the second with the same event). Any other request, or any failure
on a new connection, is the target's failure and is reported as such.
"""

from __future__ import annotations

from typing import Any

import httpx

KEEPALIVE_EXPIRY_S = 1.0  # under gunicorn's 2 s, uvicorn's and Node's 5 s keep-alive timeouts
SAFE_METHODS = frozenset({"GET", "HEAD"})
_STALE = "without sending a response"  # httpcore: the server closed the connection before any answer


def client(
    *, max_connections: int = 100, max_keepalive_connections: int = 20, **kw: Any
) -> httpx.AsyncClient:
    """An httpx client whose idle connections are dropped before a server's keep-alive timer closes them."""
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=min(max_keepalive_connections, max_connections),
        keepalive_expiry=KEEPALIVE_EXPIRY_S,
    )
    return httpx.AsyncClient(limits=limits, **kw)


class _Trace:
    """What httpcore did for one request: whether it opened a connection, whether an answer began."""

    def __init__(self) -> None:
        self.connected = False
        self.answered = False

    async def __call__(self, name: str, info: dict[str, Any]) -> None:
        if name.endswith("connect_tcp.started"):
            self.connected = True
        elif name.endswith("receive_response_headers.complete"):
            self.answered = True


def _closed_under(http: httpx.AsyncClient, exc: httpx.HTTPError, trace: _Trace) -> bool:
    """The server closed a kept-open connection before answering anything: its keep-alive timer's race
    (not our client closing its connections as its owner stops)."""
    if trace.connected or trace.answered or http.is_closed:
        return False
    if isinstance(exc, httpx.RemoteProtocolError):
        return _STALE in str(exc)
    return isinstance(exc, httpx.ReadError | httpx.WriteError)


async def request(
    http: httpx.AsyncClient, method: str, url: str, *, replayable: bool = False, **kw: Any
) -> httpx.Response:
    """`http.request`, sent once more when the server closed the kept-open connection under it before
    answering, if it may be received twice: GET, HEAD, or `replayable` (it carries an idempotency key)."""
    trace = _Trace()
    try:
        return await http.request(method, url, extensions={"trace": trace}, **kw)
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        if not (replayable or method.upper() in SAFE_METHODS) or not _closed_under(http, exc, trace):
            raise
    # The failed connection left the pool; idle ones older than KEEPALIVE_EXPIRY_S are dropped, so this
    # goes out on a new connection or on one that answered within that time.
    return await http.request(method, url, **kw)
