"""A chat-API replica of another shape than the lab's, for tests that drive rollback-tui against a deployment
nobody shaped for it. Everything differs from the lab (DESIGN §3):

- health `GET /status` → {"serving": true|false, "node": …, "build": {"digest", "rev"},
  "pubsub": {"mode": "redis-pubsub"|…, "namespace": …}} — a JSON boolean status;
- identity: every response carries `X-Backend-Node: node-<name>` (not the replica name);
- auth: posting and streaming need `Authorization: Bearer <token>` (the token from an env var);
- send `POST /api/conversations/{conv}/posts` {"body": …} with `X-Request-Id` as the idempotency key →
  201 {"data": {"id": "p-…", "position": n}};
- stream: SSE `GET /api/conversations/{conv}/events`, frames `id: <position>` + data
  {"id", "position", "conversation", "node", "sent"}; replay by the `Last-Event-ID` header; a `: keep-alive`
  comment every second;
- Redis: publishes to `<namespace>.conv.<conv>.posts`, keeps `<namespace>.log.<conv>` (a stream) for
  replay, `<namespace>.pos.<conv>` for positions, `<namespace>.idem.<key>` for idempotency.

Test-only endpoints: `POST /_admin/fault` {"error_rate": x, "mode": …, "namespace": …} and
`GET /_admin/count` → requests counted by the replica itself: `lb_requests` (those carrying the
`X-Via-LB` header the test balancers add) and `last_lb_at` (when the latest arrived, epoch seconds).

Run: python tests/altchat.py --name stable-a --port P --redis-url redis://… --token-env ALT_TOKEN
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Node:
    def __init__(self, name: str, redis_url: str, token: str, namespace: str, rev: str) -> None:
        self.name, self.redis_url, self.token, self.rev = name, redis_url, token, rev
        self.namespace = namespace
        self.mode = "redis-pubsub"
        self.error_rate = 0.0
        self.lb_requests = 0
        self.last_lb_at: float | None = None
        self.redis: aioredis.Redis | None = None

    @property
    def r(self) -> aioredis.Redis:
        assert self.redis is not None
        return self.redis

    def key(self, kind: str, conv: str) -> str:
        return f"{self.namespace}.{kind}.{conv}"

    def channel(self, conv: str) -> str:
        return f"{self.namespace}.conv.{conv}.posts"


def node(request: Request) -> Node:
    return request.app.state.node


def authorized(request: Request) -> bool:
    return request.headers.get("authorization") == f"Bearer {node(request).token}"


async def status(request: Request) -> Response:
    n = node(request)
    return JSONResponse(
        {
            "serving": True,
            "node": f"node-{n.name}",
            "build": {"digest": f"sha256:{n.rev * 4}", "rev": n.rev},
            "pubsub": {"mode": n.mode, "namespace": n.namespace},
        }
    )


async def post(request: Request) -> Response:
    n = node(request)
    if not authorized(request):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    if n.error_rate and random.random() < n.error_rate:
        return JSONResponse({"error": "injected"}, status_code=503)
    conv = request.path_params["conv"]
    key = request.headers.get("x-request-id", "")
    doc = await request.json()
    idem = n.key("idem", key)
    stored = await n.r.get(idem)
    if stored is not None:
        return JSONResponse(json.loads(stored), status_code=200)
    position = await n.r.incr(n.key("pos", conv))
    frame = {
        "id": f"p-{uuid.uuid4().hex[:10]}",
        "position": position,
        "conversation": conv,
        "node": n.name,
        "sent": time.time(),
        "body": doc.get("body", ""),
    }
    data = json.dumps(frame)
    await n.r.xadd(n.key("log", conv), {"position": position, "frame": data})
    ack = {"data": {"id": frame["id"], "position": position}}
    await n.r.set(idem, json.dumps(ack), ex=600)
    if n.mode == "redis-pubsub":
        await n.r.publish(n.channel(conv), data)
    return JSONResponse(ack, status_code=201)


async def events(request: Request) -> Response:
    n = node(request)
    if not authorized(request):
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    conv = request.path_params["conv"]
    raw = request.headers.get("last-event-id", "0")
    after = int(raw) if raw.isdigit() else 0
    pubsub = n.r.pubsub()
    await pubsub.subscribe(n.channel(conv))  # subscribe first, then read the log: nothing falls between
    backlog = [(int(f["position"]), f["frame"]) for _, f in await n.r.xrange(n.key("log", conv), "-", "+")]

    async def body() -> AsyncIterator[str]:
        seen = set()
        try:
            yield ": open\n\n"
            for position, data in sorted(backlog):
                if position > after:
                    seen.add(position)
                    yield f"id: {position}\nevent: post\ndata: {data}\n\n"
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    yield ": keep-alive\n\n"
                    continue
                data = message["data"]
                position = json.loads(data)["position"]
                if position > after and position not in seen:
                    seen.add(position)
                    yield f"id: {position}\nevent: post\ndata: {data}\n\n"
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def fault(request: Request) -> Response:
    n = node(request)
    changes = await request.json()
    n.error_rate = float(changes.get("error_rate", n.error_rate))
    n.mode = changes.get("mode", n.mode)
    n.namespace = changes.get("namespace", n.namespace)
    return JSONResponse({"error_rate": n.error_rate, "mode": n.mode, "namespace": n.namespace})


async def count(request: Request) -> Response:
    n = node(request)
    return JSONResponse({"lb_requests": n.lb_requests, "last_lb_at": n.last_lb_at})


class Identity:
    """Outermost: `X-Backend-Node` on every response; requests that came through a balancer counted."""

    def __init__(self, app: ASGIApp, n: Node) -> None:
        self.app, self.node = app, n
        self.header = (b"x-backend-node", f"node-{n.name}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope["path"].startswith("/_admin") and any(k == b"x-via-lb" for k, _ in scope["headers"]):
            self.node.lb_requests += 1
            self.node.last_lb_at = time.time()

        async def with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, with_header)


def create_app(n: Node) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        n.redis = aioredis.Redis.from_url(n.redis_url, decode_responses=True)
        try:
            yield
        finally:
            await n.redis.aclose()

    app = Starlette(
        routes=[
            Route("/status", status),
            Route("/api/conversations/{conv}/posts", post, methods=["POST"]),
            Route("/api/conversations/{conv}/events", events),
            Route("/_admin/fault", fault, methods=["POST"]),
            Route("/_admin/count", count),
        ],
        lifespan=lifespan,
    )
    app.state.node = n
    return Identity(app, n)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--token-env", required=True)
    p.add_argument("--namespace", default="acme")
    p.add_argument("--rev", default="r1")
    args = p.parse_args(argv)
    n = Node(args.name, args.redis_url, os.environ[args.token_env], args.namespace, args.rev)
    config = uvicorn.Config(
        create_app(n), host="127.0.0.1", port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
