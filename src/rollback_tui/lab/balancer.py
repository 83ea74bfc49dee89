"""The lab load balancer: one port proxying HTTP and websockets to the backends whose labels match
its selector (weighted random), plus an admin port to read and change the selector and weights.

Label scheme (what the demo playbook uses, and the supervisor's default for replicas without labels):
    stable replicas     {"app": "api", "track": "stable"}
    candidate replicas  {"app": "api", "track": "candidate"}
    selector {"app": "api"}                    → every replica, blue-next included
    selector {"app": "api", "track": "stable"} → blue-next removed: the lab's `kubectl patch service`
A backend matches when every key=value of the selector is among its labels; weight 0 takes it out of
rotation without changing the selector.

Responses pass the backend's `X-Served-By` through; the balancer adds `X-Lab-Backend: <name>` (also on
its own 502s) so an error can be attributed to the backend it was routed to.

Admin (on --admin-port only): GET /admin/state, PUT /admin/selector {"selector": {...}},
PUT /admin/weights {"weights": {...}} (partial update), DELETE /admin/counts.

Run: `python -m rollback_tui.lab.balancer --port 18080 --admin-port 18090 --selector app=api
--backends '[{"name": "stable-a", "url": "http://127.0.0.1:18081", "labels": {"app": "api"}, "weight": 45}]'`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from rollback_tui.probes.http_client import KEEPALIVE_EXPIRY_S

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
RESPONSE_SKIP = HOP_BY_HOP | {"date", "server"}  # our own server adds these
UNSENDABLE_CLOSE = {1005: 1000, 1006: 1011, 1015: 1011}  # codes that may be received but never sent
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class AdminError(ValueError):
    """A bad admin request → 400."""


@dataclass
class Backend:
    name: str
    url: str
    labels: dict[str, str] = field(default_factory=dict)
    weight: int = 1

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.rstrip("/")[4:] if self.url.startswith("http") else self.url.rstrip("/")


def parse_backends(raw: str | list[dict[str, Any]]) -> list[Backend]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise ValueError("backends must be a non-empty JSON list of {name, url, labels, weight}")
    backends = []
    for item in items:
        if not isinstance(item, dict) or not {"name", "url"} <= set(item):
            raise ValueError(f"backend needs at least name and url: {item!r}")
        backend = Backend(
            str(item["name"]), str(item["url"]), dict(item.get("labels") or {}), item.get("weight", 1)
        )
        check_weight(backend.name, backend.weight)
        backends.append(backend)
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate backend names in {names}")
    return backends


def parse_selector(raw: str) -> dict[str, str]:
    """`app=api,track=stable` → {"app": "api", "track": "stable"}; JSON objects are accepted too."""
    raw = raw.strip()
    if raw.startswith("{"):
        return check_selector(json.loads(raw))
    pairs = [p for p in raw.split(",") if p.strip()]
    if any("=" not in p for p in pairs):
        raise ValueError(f"selector must look like key=value[,key=value], got {raw!r}")
    return check_selector({k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)})


def check_selector(selector: Any) -> dict[str, str]:
    if not isinstance(selector, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
    ):
        raise AdminError(
            'selector must be an object of string labels, e.g. {"app": "api", "track": "stable"}'
        )
    return dict(selector)


def check_weight(name: str, weight: Any) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 1_000_000:
        raise AdminError(f"weight of {name} must be an integer between 0 and 1000000, got {weight!r}")
    return weight


class Balancer:
    def __init__(self, backends: list[Backend], selector: dict[str, str]) -> None:
        self.backends = {b.name: b for b in backends}
        self.selector = check_selector(selector)
        self.counts: Counter[str] = Counter()

    def matches(self, backend: Backend) -> bool:
        return all(backend.labels.get(k) == v for k, v in self.selector.items())

    def matching(self) -> list[Backend]:
        return [b for b in self.backends.values() if self.matches(b)]

    def choose(self) -> Backend | None:
        candidates = [b for b in self.matching() if b.weight > 0]
        if not candidates:
            return None
        return random.choices(candidates, weights=[b.weight for b in candidates])[0]

    def set_selector(self, selector: Any) -> None:
        self.selector = check_selector(selector)
        log(f"selector → {self.selector}; routing to {[b.name for b in self.matching()]}")

    def set_weights(self, weights: Any) -> None:
        if not isinstance(weights, dict):
            raise AdminError('weights must be an object like {"blue-next": 10}')
        unknown = sorted(set(weights) - set(self.backends))
        if unknown:
            raise AdminError(f"unknown backend(s) {unknown}; known: {sorted(self.backends)}")
        checked = {name: check_weight(name, w) for name, w in weights.items()}
        for name, weight in checked.items():
            self.backends[name].weight = weight
        log(f"weights → {self.weights()}")

    def weights(self) -> dict[str, int]:
        return {b.name: b.weight for b in self.backends.values()}

    def state(self) -> dict[str, Any]:
        return {
            "selector": self.selector,
            "weights": self.weights(),
            "backends": [b.name for b in self.matching()],
            "all": list(self.backends),
            "details": [{**asdict(b), "matches": self.matches(b)} for b in self.backends.values()],
            "counts": dict(self.counts),
        }

    def no_backend_message(self) -> str:
        return f"no backend matches selector {self.selector} with a weight above 0"


def log(message: str) -> None:
    print(f"balancer: {message}", file=sys.stderr, flush=True)


# --- proxy ------------------------------------------------------------------------------------------


def forward_headers(raw: list[tuple[bytes, bytes]], client: str | None) -> list[tuple[bytes, bytes]]:
    skip = HOP_BY_HOP | {"host", "content-length"}
    headers = [(k, v) for k, v in raw if k.decode("latin-1").lower() not in skip]
    if client:
        headers.append((b"x-forwarded-for", client.encode()))
    return headers


def balancer_of(conn: Request | WebSocket) -> Balancer:
    return conn.app.state.balancer


async def proxy_http(request: Request) -> Response:
    balancer = balancer_of(request)
    backend = balancer.choose()
    if backend is None:
        return JSONResponse({"error": balancer.no_backend_message()}, status_code=502)
    tag = (b"x-lab-backend", backend.name.encode())
    url = backend.url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    client: httpx.AsyncClient = request.app.state.http
    upstream_request = client.build_request(
        request.method,
        url,
        headers=forward_headers(request.headers.raw, request.client.host if request.client else None),
        content=await request.body(),
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as exc:
        detail = f"backend {backend.name} ({backend.url}) unreachable: {type(exc).__name__}: {exc}"
        refusal = JSONResponse({"error": detail, "backend": backend.name}, status_code=502)
        refusal.raw_headers.append(tag)
        return refusal
    balancer.counts[backend.name] += 1

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        finally:  # also when the client goes away mid-stream (SSE), so the backend stream is released
            await upstream.aclose()

    response: Response = StreamingResponse(body(), status_code=upstream.status_code)
    response.raw_headers = [
        (k, v) for k, v in upstream.headers.raw if k.decode("latin-1").lower() not in RESPONSE_SKIP
    ] + [tag]
    return response


async def deny(websocket: WebSocket, status: int, doc: dict[str, Any], backend: str | None = None) -> None:
    response = JSONResponse(doc, status_code=status)
    if backend:
        response.raw_headers.append((b"x-lab-backend", backend.encode()))
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1011, reason=doc.get("error", "")[:120])


async def proxy_ws(websocket: WebSocket) -> None:
    balancer = balancer_of(websocket)
    backend = balancer.choose()
    if backend is None:
        await deny(websocket, 502, {"error": balancer.no_backend_message()})
        return
    url = backend.ws_url + websocket.url.path
    if websocket.url.query:
        url += "?" + websocket.url.query
    client = websocket.client.host if websocket.client else None
    try:
        upstream = await connect(
            url,
            subprotocols=websocket.scope.get("subprotocols") or None,
            additional_headers=[("X-Forwarded-For", client)] if client else None,
            open_timeout=3,
            max_size=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        detail = f"backend {backend.name} refused the websocket: HTTP {status}"
        await deny(websocket, status, {"error": detail, "backend": backend.name}, backend.name)
        return
    except (OSError, TimeoutError, WebSocketException) as exc:
        detail = f"backend {backend.name} ({backend.url}) unreachable: {type(exc).__name__}: {exc}"
        await deny(websocket, 502, {"error": detail, "backend": backend.name}, backend.name)
        return
    balancer.counts[backend.name] += 1
    headers = [(b"x-lab-backend", backend.name.encode())]
    served_by = upstream.response.headers.get("x-served-by") if upstream.response else None
    if served_by:
        headers.append((b"x-served-by", served_by.encode()))
    await websocket.accept(subprotocol=upstream.subprotocol, headers=headers)
    await relay(websocket, upstream)


async def relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    """Pump frames both ways until one side closes, then close the other with the same code."""

    async def client_to_backend() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = message.get("code") or 1000
                await upstream.close(UNSENDABLE_CLOSE.get(code, code), message.get("reason") or "")
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def backend_to_client() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        code = upstream.close_code or 1000
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await websocket.close(UNSENDABLE_CLOSE.get(code, code), upstream.close_reason or "")

    tasks = [asyncio.create_task(client_to_backend()), asyncio.create_task(backend_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()


# --- admin ------------------------------------------------------------------------------------------


async def admin_state(request: Request) -> Response:
    return JSONResponse(balancer_of(request).state())


async def read_json_field(request: Request, key: str) -> Any:
    try:
        doc = await request.json()
    except ValueError:
        raise AdminError("body must be JSON") from None
    if not isinstance(doc, dict) or key not in doc:
        raise AdminError(f'body must be an object with a "{key}" field')
    return doc[key]


async def admin_selector(request: Request) -> Response:
    balancer = balancer_of(request)
    balancer.set_selector(await read_json_field(request, "selector"))
    return JSONResponse(balancer.state())


async def admin_weights(request: Request) -> Response:
    balancer = balancer_of(request)
    balancer.set_weights(await read_json_field(request, "weights"))
    return JSONResponse(balancer.state())


async def admin_reset_counts(request: Request) -> Response:
    balancer = balancer_of(request)
    balancer.counts.clear()
    return JSONResponse(balancer.state())


async def on_admin_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=400)


def create_apps(balancer: Balancer) -> tuple[Starlette, Starlette]:
    """The proxy app and the admin app (served on separate ports)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = httpx.Timeout(connect=2.0, read=None, write=10.0, pool=5.0)
        # Idle backend connections are dropped before the replicas' keep-alive timer (uvicorn: 5 s) can
        # close one under a forwarded request, which would answer a healthy backend's request with a 502.
        limits = httpx.Limits(
            max_connections=500, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_EXPIRY_S
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as client:
            app.state.http = client
            yield

    proxy = Starlette(
        routes=[
            Route("/{path:path}", proxy_http, methods=ALL_METHODS),
            WebSocketRoute("/{path:path}", proxy_ws),
        ],
        lifespan=lifespan,
    )
    admin = Starlette(
        routes=[
            Route("/admin/state", admin_state, methods=["GET"]),
            Route("/admin/selector", admin_selector, methods=["PUT"]),
            Route("/admin/weights", admin_weights, methods=["PUT"]),
            Route("/admin/counts", admin_reset_counts, methods=["DELETE"]),
        ],
        exception_handlers={AdminError: on_admin_error},
    )
    proxy.state.balancer = admin.state.balancer = balancer
    return proxy, admin


class PortDispatch:
    """One ASGI app for two listening sockets: requests to `admin_port` go to the admin app."""

    def __init__(self, proxy: ASGIApp, admin: ASGIApp, admin_port: int) -> None:
        self.proxy, self.admin, self.admin_port = proxy, admin, admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] != "lifespan" and server[1] == self.admin_port:
            await self.admin(scope, receive, send)
        else:
            await self.proxy(scope, receive, send)


def listen(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0: asyncio turns Nagle off only on accepted sockets that say they are TCP. Without
    # it an answer's body, written after its headers, waited ~40 ms for the client's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"balancer: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description="The rollback-tui lab load balancer.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin-port", type=int, required=True)
    p.add_argument("--backends", required=True, help="JSON list of {name, url, labels, weight}")
    p.add_argument("--selector", default="app=api", help="key=value[,key=value] or a JSON object")
    args = p.parse_args(argv)
    try:
        balancer = Balancer(parse_backends(args.backends), parse_selector(args.selector))
    except ValueError as exc:
        raise SystemExit(f"balancer: {exc}") from None
    proxy, admin = create_apps(balancer)
    sockets = [listen(args.host, args.port), listen(args.host, args.admin_port)]
    config = uvicorn.Config(
        PortDispatch(proxy, admin, sockets[1].getsockname()[1]),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    log(f"routing {balancer.selector} → {[b.name for b in balancer.matching()]}")
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
