"""Synthetic traffic through the load balancer, counted per replica by the balancer's identity header
(`load_balancer.identity`, default `X-Served-By`) or body path.

Rate-limited and bounded in count and time. With a realtime section each request is the protocol's send
(replay-safe: a fresh idempotency key each), without one it is the verification request. Each window
becomes a TrafficWindow event: requests and 5xx per replica, p50/p95 latency, idempotency collisions
(409), transport errors, and stream disconnects (`ws_disconnects`, websocket or SSE) seen by a few
long-lived stream sessions held open through the balancer.

A request no replica answered — the balancer answered without the identity (its own 502 for a dead
backend) or nothing answered at all — is counted under its reason in words, never under a replica.

Each window also records the order its answers came back in (`TrafficWindow.sequence`), and `close_on`
(the guardrails' sequential test) sees every answer as it arrives: when it says the evidence has just
become conclusive the window closes on that answer, so the decision is journaled at once — one window,
not one event per response.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from rollback_tui.core import events as ev
from rollback_tui.exec.commands import CommandError
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes import http_client
from rollback_tui.probes.fanout import cleanup_thread
from rollback_tui.probes.protocol import (
    UNKNOWN,
    Identify,
    Request,
    check_references,
    header_identity,
    identifier,
    open_stream,
    send,
    send_request,
    stream_request,
    verification_request,
)

Emit = Callable[[ev.Event], ev.Event]
CloseOn = Callable[[str | None, int], bool]  # (replica or None when none answered, HTTP status or 0)
NO_IDENTITY = "no replica identified"
STREAMED_RPS = 50.0  # at most this many synthetic sends a second go to the thread the streams follow
UNREACHABLE = "balancer unreachable"


def unidentified(status: int) -> str:
    """The reason for an answer without a replica identity (e.g. the balancer's own 502)."""
    return f"{NO_IDENTITY} (HTTP {status})"


def unanswered(exc: httpx.HTTPError) -> str:
    """Why a request through the balancer got no answer, in words."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return UNREACHABLE
    if isinstance(exc, httpx.TimeoutException):
        return "no answer: timed out"
    return f"no answer: {type(exc).__name__}"


def _nothing_listens(exc: BaseException) -> bool:
    """A stream that could not even connect (refused, unroutable): not a disconnect. (An SSE stream's
    client says so with httpx.ConnectError, a websocket's with the OSError itself.)"""
    if isinstance(exc, httpx.ConnectError):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, TimeoutError)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Window:
    started: float = field(default_factory=time.monotonic)
    per_replica: Counter[str] = field(default_factory=Counter)
    errors_5xx: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unattributed: Counter[str] = field(default_factory=Counter)
    by_replica: dict[str, list[float]] = field(default_factory=dict)  # latencies of each replica
    order: list[tuple[str | None, bool]] = field(default_factory=list)  # (replica, 5xx) per answer
    collisions: int = 0
    transport_errors: int = 0
    ws_disconnects: int = 0

    @property
    def requests(self) -> int:
        return sum(self.per_replica.values()) + sum(self.unattributed.values())

    def to_event(self) -> ev.TrafficWindow:
        return ev.TrafficWindow(
            window_s=round(time.monotonic() - self.started, 3),
            requests=self.requests,
            per_replica=dict(self.per_replica),
            errors_5xx=dict(self.errors_5xx),
            p50_ms=_round(percentile(self.latencies, 0.50)),
            p95_ms=_round(percentile(self.latencies, 0.95)),
            p95_by_replica={r: round(percentile(v, 0.95) or 0.0, 2) for r, v in self.by_replica.items() if v},
            ws_disconnects=self.ws_disconnects,
            idempotency_collisions=self.collisions,
            transport_errors=self.transport_errors,
            unattributed=dict(self.unattributed),
            sequence=ev.response_sequence(self.order),
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class TrafficGenerator:
    """POSTs replay-safe synthetic messages through the balancer at `rate_rps`, `concurrency` at a time."""

    def __init__(
        self,
        playbook: Playbook,
        emit: Emit,
        *,
        rate_rps: float = 50.0,
        window_s: float = 1.0,
        concurrency: int | None = None,
        ws_sessions: int = 4,
        max_requests: int = 100_000,
        max_duration_s: float = 600.0,
        request_timeout_s: float = 2.0,
        close_on: CloseOn | None = None,
    ) -> None:
        if playbook.load_balancer is None:
            raise ValueError("the playbook has no load_balancer: there is nowhere to send traffic")
        self.playbook = playbook
        self.emit = emit
        self.base = playbook.load_balancer.url.rstrip("/")
        self.rate_rps = rate_rps
        self.window_s = window_s
        # In flight at once: by default enough for the rate at 250 ms per answer (a slow candidate must
        # not hold the rate down, which would starve the guardrails of evidence).
        self.concurrency = concurrency or max(8, math.ceil(rate_rps * 0.25))
        self.close_on = close_on
        self.ws_sessions = ws_sessions if playbook.realtime else 0
        self.max_requests = max_requests
        self.max_duration_s = max_duration_s
        self.timeout = request_timeout_s
        self.thread_id = f"synthetic-{uuid.uuid4().hex[:10]}"
        # The stream sessions follow `thread_id`, which gets at most STREAMED_RPS of the sends (the rest go
        # to a second thread): each stream sees deliveries, without a high rate multiplying into
        # ws_sessions x rate frames through the balancer (cleanup_thread removes both threads).
        self.stream_every = max(1, math.ceil(rate_rps / STREAMED_RPS))
        self.bulk_thread = f"{self.thread_id}-bulk"
        self._sends = 0
        self.identify = identifier(playbook)
        if playbook.realtime is not None:
            check_references(playbook.realtime.fanout)  # an unset ${VAR} stops it here, not per request
            self.probe: Request | None = None
        else:
            try:
                self.probe = verification_request(playbook)
            except CommandError as exc:
                raise ValueError(f"the verification request cannot be sent: {exc}") from exc
        self.sent = 0
        self._window = Window()
        self._observers: list[Callable[[str, int], None]] = []

    def observe(self, callback: Callable[[str, int], None]) -> None:
        """Called with (replica, status) for every response — the rollback verifier watches these."""
        self._observers.append(callback)

    async def run(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        async with http_client.client(timeout=self.timeout, max_connections=self.concurrency * 2) as client:
            tasks = [asyncio.create_task(self._stream_session(i, deadline)) for i in range(self.ws_sessions)]
            tasks.append(asyncio.create_task(self._window_loop()))
            try:
                await self._load(client, deadline)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                self._close_window()
                if self.playbook.realtime is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(cleanup_thread(self.playbook.realtime.redis_url, self.thread_id))

    async def _load(self, client: httpx.AsyncClient, deadline: float) -> None:
        interval = 1.0 / self.rate_rps
        gate = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while self.sent < self.max_requests and time.monotonic() < deadline:
            await gate.acquire()
            task = asyncio.create_task(self._one(client))
            task.add_done_callback(lambda _t: gate.release())
            pending.add(task)
            task.add_done_callback(pending.discard)
            self.sent += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, client: httpx.AsyncClient) -> httpx.Response:
        """One synthetic request: the protocol's send, or the verification request without realtime."""
        if self.probe is not None:
            request = self.probe
        else:
            assert self.playbook.realtime is not None
            self._sends += 1
            thread = self.thread_id if self._sends % self.stream_every == 0 else self.bulk_thread
            key = f"{thread}-{uuid.uuid4().hex[:12]}"
            request = send_request(self.playbook.realtime.fanout, self.base, thread, "synthetic", key)
        return await send(client, request)

    async def _one(self, client: httpx.AsyncClient) -> None:
        started = time.perf_counter()
        try:
            response = await self._send(client)
        except httpx.HTTPError as exc:
            self._window.transport_errors += 1
            self._window.unattributed[unanswered(exc)] += 1
            self._answered(None, 0)
            return
        latency = (time.perf_counter() - started) * 1000
        replica = self.identify(response)
        w = self._window
        w.latencies.append(latency)
        if not replica:
            w.unattributed[unidentified(response.status_code)] += 1
        else:
            w.per_replica[replica] += 1
            w.by_replica.setdefault(replica, []).append(latency)
            if response.status_code >= 500:
                w.errors_5xx[replica] += 1
        if response.status_code == 409:
            w.collisions += 1
        for callback in self._observers:
            callback(replica or UNKNOWN, response.status_code)
        self._answered(replica or None, response.status_code)

    def _answered(self, replica: str | None, status: int) -> None:
        """Record the answer's place in the window; close the window on it when it decides a guardrail."""
        self._window.order.append((replica, status >= 500))
        if self.close_on is not None and self.close_on(replica, status):
            self._close_window()

    async def _stream_session(self, index: int, deadline: float) -> None:
        """A long-lived stream (websocket or SSE) through the balancer; an unexpected close, or a stream
        the balancer would not open, counts as a disconnect."""
        assert self.playbook.realtime is not None
        proto = self.playbook.realtime.fanout
        request = stream_request(proto, self.base, self.thread_id)
        while time.monotonic() < deadline:
            opened = False

            def on_open() -> None:
                nonlocal opened
                opened = True

            try:
                async for _ in open_stream(request, proto.stream_kind, self.timeout, on_open):
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not opened and _nothing_listens(exc):
                    # The balancer is down: the HTTP requests report it as unreachable; counting a
                    # disconnect every 0.1 s would blame the realtime path instead.
                    await asyncio.sleep(0.1)
                    continue
            self._window.ws_disconnects += 1
            await asyncio.sleep(0.1)

    async def _window_loop(self) -> None:
        while True:
            await asyncio.sleep(self.window_s)
            self._close_window()

    def _close_window(self) -> None:
        window, self._window = self._window, Window()
        if window.requests or window.ws_disconnects:
            self.emit(window.to_event())


async def verify_stable(
    base_url: str,
    kept: set[str],
    *,
    need: int,
    timeout_s: float,
    path: str = "/healthz",
    concurrency: int = 8,
    request: Request | None = None,
    identify: Identify | None = None,
) -> tuple[bool, float, int, dict[str, int]]:
    """Verify that requests through the balancer reach only the `kept` replicas.

    Call it once the routing change has been read back: every request is issued after that. It sends a
    batch of `need` requests, at most `concurrency` in flight; the batch verifies when every one of them
    was answered by a kept replica. An answer from any other replica, one without a replica identity, or
    no answer at all spoils the batch: its unsent requests are dropped, those in flight are awaited (and
    counted), and a fresh batch of `need` starts — until `timeout_s`.

    `request` (default: GET `base_url` + `path`) is sent, `identify` (default: the X-Served-By header)
    says who answered. Returns (verified, kept share of all answers, requests answered or failed, answers
    per replica or per reason nobody was identified).
    """
    request = request or Request("GET", base_url.rstrip("/") + path, {})
    identify = identify or header_identity("X-Served-By")
    deadline = time.monotonic() + timeout_s
    served: Counter[str] = Counter()
    verified = False
    http = http_client.client(
        timeout=min(2.0, timeout_s), max_connections=concurrency, max_keepalive_connections=concurrency
    )
    async with http as client:
        while not verified and time.monotonic() < deadline:
            batch = _Batch(client, request, identify, kept, need, deadline, served)
            verified = await batch.run(concurrency)
            if not verified:
                await asyncio.sleep(0.05)  # not a hot loop against a balancer that is down
    total = sum(served.values())
    share = sum(n for r, n in served.items() if r in kept) / total if total else 0.0
    return verified, share, total, dict(served)


@dataclass
class _Batch:
    """One verification batch: `need` requests, verified when every one was answered by a kept replica."""

    client: httpx.AsyncClient
    request: Request
    identify: Identify
    kept: set[str]
    need: int
    deadline: float
    served: Counter[str]
    issued: int = 0
    good: int = 0
    spoiled: bool = False

    async def run(self, concurrency: int) -> bool:
        await asyncio.gather(*(self._worker() for _ in range(min(concurrency, self.need))))
        return not self.spoiled and self.good == self.need

    async def _worker(self) -> None:
        request = self.request
        while self.issued < self.need and not self.spoiled and time.monotonic() < self.deadline:
            self.issued += 1
            try:
                response = await send(self.client, request)
            except httpx.HTTPError as exc:
                self.served[unanswered(exc)] += 1
                self.spoiled = True
                return
            replica = self.identify(response) or unidentified(response.status_code)
            self.served[replica] += 1
            if replica in self.kept:
                self.good += 1
            else:
                self.spoiled = True
