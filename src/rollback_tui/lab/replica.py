"""A lab chat-API replica (DESIGN §3): health, idempotent sends, websocket/SSE streams with replay,
Redis (or, misconfigured, in-memory) fanout, dead letters, and lab-only fault injection.

Run: `python -m rollback_tui.lab.replica --name stable-a --port 18081 --redis-url redis://127.0.0.1:16379/0
--channel-prefix chat:rt: --transport redis --image sha256:… --commit abc1234 [--error-rate 0.1 …]`

Redis keys (all under the replica's channel prefix P):
  P{thread}            pub/sub channel carrying live frames (transport=redis only)
  Pstream:{thread}     Redis Stream of stored frames, read for replay (field `frame`, JSON)
  Pseq:{thread}        INCR counter giving each thread's sequence numbers
  Pidem:{key}          idempotency record {"hash", "event"} with a TTL (SET NX reserves it)

Lab-only endpoints (not part of the chat API): GET/POST /_lab/faults, GET /_lab/stats,
POST /_lab/duplicate-next, DELETE /_lab/threads/{thread}/events/{seq}, DELETE /_lab/threads/{thread}.

GET /metrics serves Prometheus metrics (prometheus_client), every series labelled with the replica:
`lab_http_requests_total{route, code}` and `lab_http_request_duration_seconds{route}` (route: api for
/v1/…, health, ops; injected latency and 503s included, as a client sees them),
`lab_stream_disconnects_total`, `lab_idempotency_collisions_total`, `lab_dead_letters` and
`lab_build_info{image, commit}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import prometheus_client as prom
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from rollback_tui.lab.faults import FaultError, Faults, dead_letter_items

THREAD_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
IDEMPOTENCY_TTL_S = 3600
LOCAL_QUEUE_SIZE = 1000
REPLAY_LIMIT = 10_000
StreamEntries = list[tuple[str, dict[str, str]]]  # XRANGE with decode_responses=True
CLIENT_GONE = (WebSocketDisconnect, OSError, RuntimeError)  # how a websocket session ends from the client


class BadRequest(ValueError):
    """Client error → 400 with the message."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def check_thread_id(thread_id: str) -> str:
    if not THREAD_ID.match(thread_id):
        raise BadRequest("thread_id must be 1-128 characters of A-Z a-z 0-9 _ . -")
    return thread_id


def parse_after(raw: str | None) -> int:
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"after must be an integer sequence number, got {raw!r}") from None
    if value < 0:
        raise BadRequest("after must be >= 0")
    return value


def frame_seq(data: str) -> int:
    return int(json.loads(data)["seq"])


@dataclass
class Stats:
    requests: int = 0
    injected_errors: int = 0
    idempotency_collisions: int = 0
    events_created: int = 0
    ws_sessions_open: int = 0
    ws_drops_injected: int = 0


# Finer than the client default where the lab lives (1-50 ms), so a quantile compared across replicas is
# not a bucket boundary.
LATENCY_BUCKETS = (
    0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
    0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The replica's Prometheus metrics, in a registry of its own."""

    def __init__(self, replica: str, image: str, commit: str, faults: Faults) -> None:
        self.registry = prom.CollectorRegistry()
        r, labels = self.registry, ["replica"]
        self.requests = prom.Counter(
            "lab_http_requests", "HTTP requests answered", [*labels, "route", "code"], registry=r
        )
        self.latency = prom.Histogram(
            "lab_http_request_duration_seconds",
            "Time to answer an HTTP request",
            [*labels, "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.disconnects = prom.Counter(
            "lab_stream_disconnects", "Stream sessions closed by the server", labels, registry=r
        )
        self.collisions = prom.Counter(
            "lab_idempotency_collisions", "Idempotency keys reused with another body", labels, registry=r
        )
        dead = prom.Gauge("lab_dead_letters", "Dead letters queued", labels, registry=r)
        dead.labels(replica).set_function(lambda: faults.dead_letters)
        build = prom.Gauge("lab_build_info", "The running build", [*labels, "image", "commit"], registry=r)
        build.labels(replica, image, commit).set(1)
        self.replica = replica
        # Exported from the start at 0, so rate() and increase() see the first one (a series born at 1 has
        # no earlier sample to count it from).
        for counter in (self.disconnects, self.collisions):
            counter.labels(replica)
        for code in ("200", "201", "409", "503"):
            self.requests.labels(replica, "api", code)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(self.replica, route, str(status)).inc()
        self.latency.labels(self.replica, route).observe(seconds)


def route_of(path: str) -> str:
    if path.startswith("/v1/"):
        return "api"
    if path.startswith("/api/ops/"):
        return "ops"
    return "health" if path == "/healthz" else "other"


@dataclass
class ReplicaState:
    name: str
    image: str
    commit: str
    redis_url: str
    faults: Faults
    stats: Stats = field(default_factory=Stats)
    metrics: Metrics = field(init=False)
    duplicate_next: bool = False
    redis: aioredis.Redis | None = None
    # transport=memory: this replica's own stream sessions, by thread
    local: dict[str, set[asyncio.Queue[str]]] = field(default_factory=lambda: defaultdict(set))

    # -- keys --------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.metrics = Metrics(self.name, self.image, self.commit, self.faults)

    @property
    def prefix(self) -> str:
        return self.faults.channel_prefix

    def channel(self, thread_id: str) -> str:
        return f"{self.prefix}{thread_id}"

    def stream_key(self, thread_id: str) -> str:
        return f"{self.prefix}stream:{thread_id}"

    def seq_key(self, thread_id: str) -> str:
        return f"{self.prefix}seq:{thread_id}"

    def idem_key(self, key: str) -> str:
        return f"{self.prefix}idem:{key}"

    @property
    def r(self) -> aioredis.Redis:
        assert self.redis is not None, "redis client not started"
        return self.redis

    # -- fanout ------------------------------------------------------------------------------------
    async def publish(self, thread_id: str, data: str) -> None:
        if self.faults.transport == "redis":
            await self.r.publish(self.channel(thread_id), data)
            return
        for queue in list(self.local.get(thread_id, ())):
            with contextlib.suppress(asyncio.QueueFull):  # a stuck client loses frames, not the replica
                queue.put_nowait(data)

    async def replay(self, thread_id: str, after: int) -> list[tuple[int, str]]:
        key = self.stream_key(thread_id)
        entries: StreamEntries = await self.r.xrange(key, "-", "+", count=REPLAY_LIMIT)  # type: ignore[assignment]
        frames = [(int(fields["seq"]), fields["frame"]) for _, fields in entries]
        return sorted(f for f in frames if f[0] > after)

    async def open_session(self, thread_id: str, after: int) -> StreamSession:
        session = StreamSession(self, thread_id, after)
        await session.open()
        return session


class StreamSession:
    """One client's stream: subscribe first, then read the replay, then live frames de-duplicated
    against the replay so nothing published in between is lost or delivered twice."""

    def __init__(self, replica: ReplicaState, thread_id: str, after: int) -> None:
        self.replica = replica
        self.thread_id = thread_id
        self.after = after
        self.transport = replica.faults.transport
        self.pubsub: Any = None
        self.queue: asyncio.Queue[str] | None = None
        self.backlog: list[tuple[int, str]] = []

    async def open(self) -> None:
        replica = self.replica
        if self.transport == "redis":
            self.pubsub = replica.r.pubsub()
            try:
                await self.pubsub.subscribe(replica.channel(self.thread_id))
                confirm = await self.pubsub.get_message(timeout=2.0)
                if not confirm or confirm.get("type") != "subscribe":
                    raise RedisError(f"no subscribe confirmation from redis (got {confirm!r})")
            except BaseException:
                await self.close()
                raise
        else:
            self.queue = asyncio.Queue(LOCAL_QUEUE_SIZE)
            replica.local[self.thread_id].add(self.queue)
        try:
            self.backlog = await replica.replay(self.thread_id, self.after)
        except BaseException:
            await self.close()
            raise

    async def _next_live(self) -> str:
        if self.queue is not None:
            return await self.queue.get()
        while True:
            message = await self.pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message and message.get("type") == "message":
                return message["data"]

    async def frames(self) -> AsyncGenerator[str, None]:
        replayed = set()
        for seq, data in self.backlog:
            replayed.add(seq)
            yield data
        while True:
            data = await self._next_live()
            seq = frame_seq(data)
            if seq in replayed or seq <= self.after:
                continue
            yield data
            if self.replica.duplicate_next:
                self.replica.duplicate_next = False
                yield data

    async def close(self) -> None:
        if self.queue is not None:
            self.replica.local[self.thread_id].discard(self.queue)
            if not self.replica.local[self.thread_id]:
                del self.replica.local[self.thread_id]
            self.queue = None
        if self.pubsub is not None:
            pubsub, self.pubsub = self.pubsub, None
            with contextlib.suppress(Exception):
                await pubsub.aclose()


# --- handlers ---------------------------------------------------------------------------------------


def state(request: Request | WebSocket) -> ReplicaState:
    return request.app.state.replica


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def healthz(request: Request) -> Response:
    replica = state(request)
    faults = replica.faults
    doc: dict[str, Any] = {
        "status": "ok",
        "replica": replica.name,
        "image": replica.image,
        "commit": replica.commit,
        "realtime": {"transport": faults.transport, "channel_prefix": faults.channel_prefix},
        "idempotency_collisions": replica.stats.idempotency_collisions,
    }
    if faults.degrading:
        doc["status"] = "degraded"
        active = {"error_rate": faults.error_rate, "latency_ms": faults.latency_ms}
        doc["faults"] = {k: v for k, v in {**active, "ws_drop_rate": faults.ws_drop_rate}.items() if v}
    try:
        await asyncio.wait_for(replica.r.ping(), 1.0)
    except (RedisError, OSError, TimeoutError) as exc:
        doc["status"] = "degraded"
        doc["error"] = f"redis unreachable at {replica.redis_url}: {exc or type(exc).__name__}"
    return JSONResponse(doc)


def body_digest(thread_id: str, doc: Any) -> str:
    canonical = json.dumps([thread_id, doc], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def post_message(request: Request) -> Response:
    replica = state(request)
    thread_id = check_thread_id(request.path_params["thread_id"])
    key = request.headers.get("idempotency-key", "").strip()
    if not key:
        raise BadRequest("missing Idempotency-Key header")
    if len(key) > 200:
        raise BadRequest("Idempotency-Key is longer than 200 characters")
    raw = await request.body()
    try:
        doc = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise BadRequest("body must be JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("text", ""), str):
        raise BadRequest('body must be a JSON object like {"text": "…"}')
    digest = body_digest(thread_id, doc)
    idem = replica.idem_key(key)
    pending = json.dumps({"hash": digest})
    r = replica.r
    for _ in range(60):
        if await r.set(idem, pending, nx=True, ex=IDEMPOTENCY_TTL_S):
            ack = await create_event(replica, thread_id, doc.get("text", ""), idem, digest)
            return JSONResponse(ack, status_code=201)
        stored_raw = await r.get(idem)
        if stored_raw is None:  # expired between SET NX and GET: try to reserve again
            continue
        stored = json.loads(stored_raw)
        if stored.get("hash") != digest:
            replica.stats.idempotency_collisions += 1
            replica.metrics.collisions.labels(replica.name).inc()
            return error(409, "idempotency key reused with a different request body", idempotency_key=key)
        if "event" in stored:
            return JSONResponse(stored["event"], status_code=200)
        await asyncio.sleep(0.05)  # the first request with this key is still being processed
    return error(409, "a request with this idempotency key is still in progress", idempotency_key=key)


async def create_event(replica: ReplicaState, thread_id: str, text: str, idem: str, digest: str) -> dict:
    r = replica.r
    try:
        seq = await r.incr(replica.seq_key(thread_id))
        frame = {
            "type": "message",
            "event_id": f"evt-{uuid.uuid4().hex[:12]}",
            "seq": seq,
            "thread_id": thread_id,
            "origin_replica": replica.name,
            "sent_at": now_iso(),
            "text": text,
        }
        data = json.dumps(frame, separators=(",", ":"))
        await r.xadd(replica.stream_key(thread_id), {"seq": seq, "frame": data})
    except BaseException:
        with contextlib.suppress(Exception):
            await r.delete(idem)  # release the reservation: nothing was stored
        raise
    ack = {"event_id": frame["event_id"], "seq": seq, "thread_id": thread_id}
    await r.set(idem, json.dumps({"hash": digest, "event": ack}), ex=IDEMPOTENCY_TTL_S)
    replica.stats.events_created += 1
    await replica.publish(thread_id, data)
    return ack


async def deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse a websocket handshake with an HTTP error (JSON body), or close 1011 if unsupported."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error(status, message, replica=state(websocket).name))
    else:
        await websocket.close(code=1008 if status < 500 else 1011, reason=message[:120])


async def ws_stream(websocket: WebSocket) -> None:
    replica = state(websocket)
    try:
        thread_id = check_thread_id(websocket.path_params["thread_id"])
        after = parse_after(websocket.query_params.get("after"))
    except BadRequest as exc:
        await deny(websocket, 400, str(exc))
        return
    try:
        session = await replica.open_session(thread_id, after)
    except RedisError as exc:
        await deny(websocket, 503, f"redis unavailable at {replica.redis_url}: {exc}")
        return
    await websocket.accept()
    replica.stats.ws_sessions_open += 1

    async def pump() -> None:
        async with contextlib.aclosing(session.frames()) as frames:
            async for data in frames:
                await websocket.send_text(data)
                if replica.faults.roll_drop():
                    replica.stats.ws_drops_injected += 1
                    replica.metrics.disconnects.labels(replica.name).inc()
                    await websocket.close(code=1011, reason="injected websocket drop")
                    return

    async def watch_client() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    tasks = [asyncio.create_task(pump()), asyncio.create_task(watch_client())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if isinstance(failure, RedisError):
                replica.metrics.disconnects.labels(replica.name).inc()
                with contextlib.suppress(Exception):
                    await websocket.close(code=1011, reason=f"realtime backend lost: {failure}"[:120])
            elif failure is not None and not isinstance(failure, CLIENT_GONE):
                raise failure
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        replica.stats.ws_sessions_open -= 1


async def sse_stream(request: Request) -> Response:
    replica = state(request)
    thread_id = check_thread_id(request.path_params["thread_id"])
    after = parse_after(request.query_params.get("after"))
    session = await replica.open_session(thread_id, after)  # RedisError → 503 before any byte is sent

    async def body() -> AsyncIterator[str]:
        try:
            yield ": stream open\n\n"
            async with contextlib.aclosing(session.frames()) as frames:
                async for data in frames:
                    yield f"id: {frame_seq(data)}\nevent: message\ndata: {data}\n\n"
                    if replica.faults.roll_drop():
                        replica.stats.ws_drops_injected += 1
                        replica.metrics.disconnects.labels(replica.name).inc()
                        return
        except RedisError as exc:
            yield f"event: error\ndata: {json.dumps({'error': f'realtime backend lost: {exc}'})}\n\n"
        finally:
            await session.close()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def metrics(request: Request) -> Response:
    registry = state(request).metrics.registry
    return Response(prom.generate_latest(registry), media_type=prom.CONTENT_TYPE_LATEST)


async def dead_letters(request: Request) -> Response:
    replica = state(request)
    count = replica.faults.dead_letters
    return JSONResponse({"count": count, "items": dead_letter_items(count, replica.name)})


# --- lab-only -----------------------------------------------------------------------------------------


async def get_faults(request: Request) -> Response:
    return JSONResponse(state(request).faults.as_dict())


async def post_faults(request: Request) -> Response:
    replica = state(request)
    try:
        changes = await request.json()
    except ValueError:
        raise BadRequest("body must be a JSON object of fault settings") from None
    try:
        replica.faults.update(changes)
    except FaultError as exc:
        raise BadRequest(str(exc)) from None
    return JSONResponse(replica.faults.as_dict())


async def get_stats(request: Request) -> Response:
    replica = state(request)
    return JSONResponse(
        {"replica": replica.name, **replica.stats.__dict__, "duplicate_next": replica.duplicate_next}
    )


async def duplicate_next(request: Request) -> Response:
    state(request).duplicate_next = True
    return JSONResponse({"duplicate_next": True})


async def delete_event(request: Request) -> Response:
    replica = state(request)
    thread_id = check_thread_id(request.path_params["thread_id"])
    seq = request.path_params["seq"]
    key = replica.stream_key(thread_id)
    entries: StreamEntries = await replica.r.xrange(key, "-", "+", count=REPLAY_LIMIT)  # type: ignore[assignment]
    for entry_id, fields in entries:
        if int(fields["seq"]) == seq:
            await replica.r.xdel(key, entry_id)
            return JSONResponse({"deleted": {"thread_id": thread_id, "seq": seq, "entry_id": entry_id}})
    return error(404, f"no stored event with seq {seq} in thread {thread_id}")


async def delete_thread(request: Request) -> Response:
    replica = state(request)
    thread_id = check_thread_id(request.path_params["thread_id"])
    removed = await replica.r.delete(replica.stream_key(thread_id), replica.seq_key(thread_id))
    return JSONResponse({"thread_id": thread_id, "keys_removed": removed})


# --- app ------------------------------------------------------------------------------------------------


class LabMiddleware:
    """Outermost layer: X-Served-By on every response (errors and websocket handshakes too),
    injected latency and injected 503s."""

    def __init__(self, app: ASGIApp, replica: ReplicaState) -> None:
        self.app = app
        self.replica = replica
        self.header = (b"x-served-by", replica.name.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] in (
                "http.response.start",
                "websocket.accept",
                "websocket.http.response.start",
            ):
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        path: str = scope["path"]
        if scope["type"] != "http" or path.startswith("/_lab") or path == "/metrics":
            await self.app(scope, receive, send_with_header)
            return
        started, status = time.perf_counter(), 500  # a handler that dies before answering counts as 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send_with_header(message)

        try:
            await self._faulted(scope, receive, send_counted, path)
        finally:
            self.replica.metrics.observe(route_of(path), status, time.perf_counter() - started)

    async def _faulted(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        faults = self.replica.faults
        self.replica.stats.requests += 1
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        in_scope = path.startswith("/v1/") or (path == "/healthz" and faults.health_errors)
        if in_scope and faults.roll_error():
            self.replica.stats.injected_errors += 1
            response = error(
                503, f"injected fault (error_rate={faults.error_rate})", replica=self.replica.name
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def on_bad_request(request: Request, exc: Exception) -> Response:
    return error(400, str(exc))


async def on_redis_error(request: Request, exc: Exception) -> Response:
    replica = state(request)
    return error(503, f"redis unavailable at {replica.redis_url}: {exc}", replica=replica.name)


def new_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=3.0,
        retry=Retry(NoBackoff(), 1),
        protocol=2,
    )


def create_app(replica: ReplicaState) -> ASGIApp:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        replica.redis = new_redis(replica.redis_url)  # lazy: starts even if Redis is down
        try:
            yield
        finally:
            await replica.redis.aclose()

    thread = "/v1/threads/{thread_id}"
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route(f"{thread}/messages", post_message, methods=["POST"]),
            WebSocketRoute(f"{thread}/stream", ws_stream),
            Route(f"{thread}/sse", sse_stream),
            Route("/api/ops/dead-letters", dead_letters),
            Route("/metrics", metrics),
            Route("/_lab/faults", get_faults, methods=["GET"]),
            Route("/_lab/faults", post_faults, methods=["POST"]),
            Route("/_lab/stats", get_stats),
            Route("/_lab/duplicate-next", duplicate_next, methods=["POST"]),
            Route("/_lab/threads/{thread_id}/events/{seq:int}", delete_event, methods=["DELETE"]),
            Route("/_lab/threads/{thread_id}", delete_thread, methods=["DELETE"]),
        ],
        exception_handlers={BadRequest: on_bad_request, RedisError: on_redis_error},
        lifespan=lifespan,
    )
    app.state.replica = replica
    return LabMiddleware(app, replica)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A rollback-tui lab chat-API replica.")
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--channel-prefix", default="chat:rt:")
    p.add_argument("--transport", choices=["redis", "memory"], default="redis")
    p.add_argument("--image", default="sha256:0000000000000000")
    p.add_argument("--commit", default="0000000")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--latency-ms", type=int, default=0)
    p.add_argument("--ws-drop-rate", type=float, default=0.0)
    p.add_argument("--dead-letters", type=int, default=0)
    p.add_argument("--health-errors", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    faults = Faults()
    try:
        faults.update(
            {
                "transport": args.transport,
                "channel_prefix": args.channel_prefix,
                "error_rate": args.error_rate,
                "latency_ms": args.latency_ms,
                "ws_drop_rate": args.ws_drop_rate,
                "dead_letters": args.dead_letters,
                "health_errors": args.health_errors,
            }
        )
    except FaultError as exc:
        raise SystemExit(f"replica {args.name}: {exc}") from None
    replica = ReplicaState(args.name, args.image, args.commit, args.redis_url, faults)
    uvicorn.run(
        create_app(replica),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
