"""Cross-replica fanout verification (DESIGN §4) — the check the rehearsal exists for.

Two stream sessions, A on replica X and B on replica Y (direct replica URLs), on the same fresh thread.
A message sent through X must reach both sessions within the timeout, and one sent through Y too. Each
session's sequence must be strictly increasing with no gap or duplicate. Replay: drop B, send k, reconnect
B from its last seq (`{after}` in the stream URL, or a `Last-Event-ID` header), expect exactly the k
missed events, in order. An optional Redis tap (PSUBSCRIBE the playbook's channel template with `*` for the
prefix, e.g. `*<thread>`) shows the raw fanout and which channel prefix each replica publishes under.
The protocol (stream kind, URL templates, headers, JSON paths, replay) comes from the playbook.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import websockets

from rollback_tui.core import events as ev
from rollback_tui.playbook.model import FanoutProtocol, Playbook, Replica
from rollback_tui.probes import http_client
from rollback_tui.probes.health import dotted, sample
from rollback_tui.probes.protocol import check_references, open_stream, send, send_request, stream_request
from rollback_tui.probes.redis_tap import RedisTap, channel_pattern, channel_prefix_reader, redis_client

Emit = Callable[[ev.Event], ev.Event]

SessionStateWord = Literal["connecting", "open", "dropped", "reconnecting", "closed"]


@dataclass
class Received:
    event_id: str
    seq: int | None
    received_at: float
    replay: bool = False


@dataclass
class StreamSession:
    """One stream session on one replica; reconnects with backoff and resumes with `after`."""

    label: Literal["A", "B"]
    replica: Replica
    thread_id: str
    proto: FanoutProtocol
    emit: Emit
    run_id: str
    sent_at: dict[str, float]
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)
    errors: list[str] = field(default_factory=list)
    replay_until: int | None = None  # seqs ≤ this on a reconnect are replayed events
    last_event_id: str | None = None  # the last SSE `id:` received (replay: last_event_id resumes from it)
    _task: asyncio.Task[None] | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last_seq(self) -> int:
        seqs = [r.seq for r in self.received if r.seq is not None]
        return max(seqs, default=0)

    def ids(self) -> list[str]:
        return [r.event_id for r in self.received]

    def start(self, after: int = 0, reconnect_until: float | None = None) -> None:
        self._connected.clear()
        self._task = asyncio.create_task(self._run(after, reconnect_until), name=f"fanout:{self.label}")

    async def wait_connected(self, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)
        return self._connected.is_set()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._state("closed")

    async def wait_for(self, event_ids: list[str], timeout: float) -> bool:
        async def seen() -> None:
            async with self.arrived:
                await self.arrived.wait_for(lambda: set(event_ids) <= set(self.ids()))

        try:
            await asyncio.wait_for(seen(), timeout)
            return True
        except TimeoutError:
            return False

    def _state(self, state: SessionStateWord, detail: str | None = None) -> None:
        self.emit(
            ev.FanoutSessionState(
                run=self.run_id, session=self.label, replica=self.replica.name, state=state, detail=detail
            )
        )

    async def _run(self, after: int, reconnect_until: float | None) -> None:
        delay = 0.05
        first = True
        while True:
            self._state("connecting" if first else "reconnecting", f"after={after}")
            try:
                async for frame in self._frames(after):
                    delay = 0.05
                    await self._on_frame(frame)
                    after = max(after, self.last_seq)
                raise ConnectionError("stream closed by server")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                detail = _describe(exc)
                self._connected.clear()
                self._state("dropped", detail)
                if reconnect_until is not None and time.monotonic() > reconnect_until:
                    self.errors.append(f"session {self.label} on {self.replica.name} dropped: {detail}")
                    return
            first = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _frames(self, after: int) -> AsyncIterator[dict[str, Any]]:
        resume = self.last_event_id or (str(after) if after else None)
        request = stream_request(
            self.proto, self.replica.url, self.thread_id, after=after, last_event_id=resume
        )

        def opened() -> None:
            self._connected.set()
            self._state("open", f"after={after}")

        async for frame, sse_id in open_stream(
            request, self.proto.stream_kind, self.proto.receive_timeout_s, opened
        ):
            if sse_id is not None:
                self.last_event_id = sse_id
            yield frame

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        event_id = dotted(frame, self.proto.event_id_path)
        if event_id is None:
            return  # keep-alives, presence frames…
        thread = dotted(frame, self.proto.thread_id_path)
        if thread is not None and str(thread) != self.thread_id:
            return
        raw_seq = dotted(frame, self.proto.seq_path)
        seq = int(raw_seq) if isinstance(raw_seq, int | str) and str(raw_seq).isdigit() else None
        now = time.time()
        sent = self.sent_at.get(str(event_id)) or _as_float(frame.get("sent_at"))
        replay = self.replay_until is not None and seq is not None and seq <= self.replay_until
        self.emit(
            ev.FanoutFrame(
                run=self.run_id,
                session=self.label,
                replica=self.replica.name,
                thread_id=self.thread_id,
                event_id=str(event_id),
                seq=seq,
                sent_at=sent,
                received_at=now,
                latency_ms=round((now - sent) * 1000, 2) if sent else None,
                replay=replay,
            )
        )
        async with self.arrived:
            self.received.append(Received(str(event_id), seq, now, replay))
            self.arrived.notify_all()


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        return f"websocket closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
    if isinstance(exc, OSError | httpx.ConnectError):
        return f"connection failed ({exc})"[:160]
    return f"{type(exc).__name__}: {exc}"[:160]


def ordering_problems(label: str, replica: str, received: list[Received]) -> list[str]:
    """Strictly increasing sequence, no duplicates, no gaps."""
    problems: list[str] = []
    seen: set[str] = set()
    prev: Received | None = None
    for r in received:
        if r.event_id in seen:
            problems.append(f"session {label} on {replica} received {r.event_id} twice (seq {r.seq})")
        seen.add(r.event_id)
        if prev is not None and prev.seq is not None and r.seq is not None:
            if r.seq <= prev.seq and r.event_id != prev.event_id:
                problems.append(f"session {label} on {replica}: seq went {prev.seq} → {r.seq} (reordered)")
            elif r.seq > prev.seq + 1:
                problems.append(
                    f"session {label} on {replica}: gap between seq {prev.seq} and {r.seq} "
                    f"({r.seq - prev.seq - 1} missing)"
                )
        prev = r
    return problems


class FanoutVerifier:
    def __init__(
        self,
        playbook: Playbook,
        emit: Emit,
        *,
        replicas: tuple[str, str] | None = None,
        phase: str = "adhoc",
        tap: bool | None = None,
        before_replay: Callable[[str, list[str]], Awaitable[None]] | None = None,
    ) -> None:
        if playbook.realtime is None:
            raise ValueError("the playbook has no realtime section: nothing to verify")
        self.playbook = playbook
        self.realtime = playbook.realtime
        self.proto = playbook.realtime.fanout
        self.emit = emit
        self.phase = phase
        self.tap_enabled = self.realtime.redis_tap if tap is None else tap
        self.before_replay = before_replay  # chaos hook: (thread id, missed event ids), before B reconnects
        self.pair = self._pick(replicas)
        self.run_id = uuid.uuid4().hex[:8]
        self.thread_id = f"{self.proto.thread_prefix}{uuid.uuid4().hex[:12]}"
        self.sent_at: dict[str, float] = {}
        self.reasons: list[str] = []
        check_references(self.proto)  # an unset ${VAR} in a header: say so before opening anything
        tap_format = self.realtime.tap
        self._prefix_of = channel_prefix_reader(tap_format.channel, self.thread_id)
        self.tap = RedisTap(
            self.realtime.redis_url,
            channel_pattern(tap_format.channel, self.thread_id),
            emit,
            run=self.run_id,
            event_id_path=tap_format.event_id_path or self.proto.event_id_path,
            seq_path=tap_format.seq_path or self.proto.seq_path,
            thread_id_path=tap_format.thread_id_path or self.proto.thread_id_path,
            replica_path=tap_format.origin_replica_path,
            sent_at=self.sent_at,
        )

    def _pick(self, names: tuple[str, str] | None) -> tuple[Replica, Replica]:
        if names:
            known = {r.name: r for r in self.playbook.replicas}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"no replica named {unknown[0]!r} (known: {', '.join(known)})")
            a, b = known[names[0]], known[names[1]]
        else:
            stable = [r for r in self.playbook.replicas if r.role == "stable"]
            pool = stable if len(stable) >= 2 else self.playbook.replicas
            if len(pool) < 2:
                raise ValueError("fanout verification needs two replicas")
            a, b = pool[0], pool[1]
        if a.name == b.name:
            raise ValueError("fanout verification needs two different replicas")
        return a, b

    async def run(self) -> ev.FanoutResult:
        a_rep, b_rep = self.pair
        timeout = self.proto.receive_timeout_s
        common: dict[str, Any] = {
            "thread_id": self.thread_id,
            "proto": self.proto,
            "emit": self.emit,
            "run_id": self.run_id,
        }
        a = StreamSession("A", a_rep, sent_at=self.sent_at, **common)
        b = StreamSession("B", b_rep, sent_at=self.sent_at, **common)
        config = await self._realtime_config()
        tap_task = asyncio.create_task(self._tap()) if self.tap_enabled else None
        sent: list[str] = []
        cross_ms: list[float] = []
        replay_ok: bool | None = None
        async with http_client.client(timeout=timeout) as client:
            try:
                deadline = time.monotonic() + timeout * 3
                a.start(reconnect_until=deadline)
                b.start(reconnect_until=deadline)
                for s in (a, b):
                    if not await s.wait_connected(timeout * 2):
                        self.reasons.append(
                            f"could not open stream session {s.label} on {s.replica.name}"
                            + (f": {s.errors[-1]}" if s.errors else "")
                        )
                if not self.reasons:
                    for _ in range(40):  # let the tap's PSUBSCRIBE land so it sees the first send
                        if tap_task is None or self.tap.subscribed or tap_task.done():
                            break
                        await asyncio.sleep(0.025)
                    await asyncio.sleep(0.05)  # let both subscriptions settle
                    for via, listeners in ((a_rep, (a, b)), (b_rep, (a, b))):
                        event_id = await self._send(client, via, f"fanout probe via {via.name}")
                        if event_id is None:
                            continue
                        sent.append(event_id)
                        await self._await_all(event_id, via, listeners, config, timeout, cross_ms)
                if not self.reasons:
                    replay_ok = await self._replay(client, a, b, a_rep, sent, timeout)
            finally:
                await a.stop()
                await b.stop()
                if tap_task:
                    tap_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await tap_task
                await self._cleanup()

        ordering = ordering_problems("A", a_rep.name, a.received) + ordering_problems(
            "B", b_rep.name, b.received
        )
        self.reasons.extend(ordering)
        self.reasons.extend(e for e in a.errors + b.errors if e not in self.reasons)
        prefixes = sorted({p for ch in self.tap.channels if (p := self._prefix_of(ch)) is not None})
        if self.tap_enabled and len(prefixes) > 1:
            self.reasons.append(f"replicas publish under different channel prefixes: {', '.join(prefixes)}")
        elif self.tap_enabled and prefixes and prefixes[0] != self.realtime.channel_prefix:
            expected = self.realtime.channel_prefix
            self.reasons.append(f"replicas publish under {prefixes[0]!r}, the playbook expects {expected!r}")
        result = ev.FanoutResult(
            run=self.run_id,
            thread_id=self.thread_id,
            passed=not self.reasons,
            phase=self.phase,  # type: ignore[arg-type]
            reasons=self.reasons,
            sent=sent,
            received={"A": a.ids(), "B": b.ids()},
            cross_latency_ms=round(max(cross_ms), 2) if cross_ms else None,
            replay_ok=replay_ok,
            ordering_ok=not ordering,
            prefixes_seen=prefixes,
        )
        self.emit(result)
        return result

    async def _await_all(
        self,
        event_id: str,
        via: Replica,
        listeners: tuple[StreamSession, ...],
        config: dict[str, tuple[str | None, str | None]],
        timeout: float,
        cross_ms: list[float],
    ) -> None:
        oks = await asyncio.gather(*(s.wait_for([event_id], timeout) for s in listeners))
        for session, ok in zip(listeners, oks, strict=True):
            if not ok:
                self.reasons.append(self._never_received(session, event_id, via, config, timeout))
            elif session.replica.name != via.name:
                got = next(r for r in session.received if r.event_id == event_id)
                cross_ms.append((got.received_at - self.sent_at[event_id]) * 1000)

    def _never_received(
        self,
        session: StreamSession,
        event_id: str,
        via: Replica,
        config: dict[str, tuple[str | None, str | None]],
        timeout: float,
    ) -> str:
        env, expected = self.realtime.transport_env, self.realtime.transport_expected
        text = f"{session.replica.name} never received {event_id} (sent via {via.name}) within {timeout:g} s"
        pair = (via.name, session.replica.name)
        transports = {n: config.get(n, (None, None))[0] for n in pair}
        odd = {n: t for n, t in transports.items() if t is not None and t != expected}
        if odd:
            shown = ", ".join(f"{n} reports transport={t}" for n, t in odd.items())
            return text + f" — {shown}; set {env}={expected}"
        prefixes = {n: config.get(n, (None, None))[1] for n in pair}
        if None not in prefixes.values() and len(set(prefixes.values())) > 1:
            shown = ", ".join(f"{n}={p!r}" for n, p in prefixes.items())
            return text + f" — channel prefixes differ ({shown}); check {self.realtime.prefix_env}"
        if session.errors:
            return text + f" — {session.errors[-1]}"
        both = f"{via.name} and {session.replica.name}"
        return text + f" — is {env}={expected} on {both}, with the same channel prefix?"

    async def _send(self, client: httpx.AsyncClient, via: Replica, text: str) -> str | None:
        key = f"{self.thread_id}-{uuid.uuid4().hex[:12]}"  # carries the thread id so cleanup finds it
        request = send_request(self.proto, via.url, self.thread_id, text, key)
        started = time.time()
        try:
            response = await send(client, request)
        except httpx.HTTPError as exc:
            self.reasons.append(f"send via {via.name} failed: {type(exc).__name__}: {exc}"[:200])
            return None
        if response.status_code >= 300:
            self.reasons.append(
                f"send via {via.name} answered HTTP {response.status_code}: {response.text[:120]}"
            )
            return None
        try:
            event_id = dotted(response.json(), self.proto.send_id_path)
        except ValueError:
            event_id = None
        if event_id is None:
            self.reasons.append(f"send via {via.name}: no {self.proto.send_id_path!r} in the response")
            return None
        self.sent_at[str(event_id)] = started
        return str(event_id)

    async def _replay(
        self,
        client: httpx.AsyncClient,
        a: StreamSession,
        b: StreamSession,
        via: Replica,
        sent: list[str],
        timeout: float,
    ) -> bool:
        """Drop B, send k through A, reconnect B with after=<B's last seq>: exactly the k, in order."""
        await b.stop()
        after = b.last_seq
        missed: list[str] = []
        for i in range(self.proto.replay_count):
            event_id = await self._send(client, via, f"replay probe {i + 1}")
            if event_id is None:
                return False
            missed.append(event_id)
        sent.extend(missed)
        if not await a.wait_for(missed, timeout):
            self.reasons.append(f"session A on {via.name} did not receive the replay batch live")
        if self.before_replay is not None:
            await self.before_replay(self.thread_id, missed)
        before = len(b.received)
        b.replay_until = a.last_seq
        b.start(after=after, reconnect_until=time.monotonic() + timeout * 2)
        got_all = await b.wait_for(missed, timeout * 2)
        await asyncio.sleep(0.05)  # anything extra (duplicates, stale frames) shows up now
        replayed = [r.event_id for r in b.received[before:]]
        if replayed == missed:
            return True
        lost = [e for e in missed if e not in replayed]
        extra = [e for e in replayed if e not in missed]
        what = []
        if lost:
            what.append(f"missed {', '.join(lost)}")
        if extra:
            what.append(f"got unexpected {', '.join(extra)}")
        if not lost and not extra:
            what.append(f"out of order: {', '.join(replayed)}")
        if not got_all and not lost:
            what.append("timed out")
        self.reasons.append(f"catch-up replay on {b.replica.name} after seq {after}: {'; '.join(what)}")
        return False

    async def _realtime_config(self) -> dict[str, tuple[str | None, str | None]]:
        """(transport, channel prefix) each replica of the pair reports in its health document."""
        timeout = self.proto.receive_timeout_s
        async with http_client.client() as client:
            samples = await asyncio.gather(*(sample(client, r, self.playbook, timeout) for r in self.pair))
        return {s.replica: (s.transport, s.channel_prefix) for s in samples}

    async def _tap(self) -> None:
        """PSUBSCRIBE *<thread>: raw fanout, whatever prefix each replica publishes under."""
        try:
            await self.tap.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.emit(
                ev.Notice(
                    source="fanout", level="warning", message=f"Redis tap unavailable: {_describe(exc)}"
                )
            )

    async def _cleanup(self) -> None:
        try:
            removed = await cleanup_thread(self.realtime.redis_url, self.thread_id)
            self.emit(
                ev.Notice(source="fanout", message=f"cleaned up {removed} Redis keys of {self.thread_id}")
            )
        except Exception as exc:
            message = f"could not clean up thread {self.thread_id}: {_describe(exc)}"
            self.emit(ev.Notice(source="fanout", level="warning", message=message))


async def cleanup_thread(redis_url: str, thread_id: str) -> int:
    """Delete a synthetic thread's keys (stream, sequence, idempotency records). Returns how many."""
    client = redis_client(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{thread_id}*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
