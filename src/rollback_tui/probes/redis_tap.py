"""A raw Redis pub/sub tap: PSUBSCRIBE a pattern and turn every fanout frame into a FanoutFrame event.

Used by the fanout verifier (to see which channel prefix each replica publishes under) and by the
benchmark of how fast the engine ingests fanout. `channels` records event id → channel.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

from rollback_tui.core import events as ev
from rollback_tui.probes.health import dotted

Emit = Callable[[ev.Event], ev.Event]


def redis_client(url: str, timeout_s: float = 2.0):  # -> redis.asyncio.Redis
    import os

    import redis.asyncio as aioredis

    return aioredis.from_url(os.path.expandvars(url), socket_connect_timeout=timeout_s)


class RedisTap:
    def __init__(
        self,
        redis_url: str,
        pattern: str,
        emit: Emit,
        *,
        run: str = "tap",
        event_id_path: str = "event_id",
        seq_path: str = "seq",
        sent_at: dict[str, float] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.pattern = pattern
        self.emit = emit
        self.run_id = run
        self.event_id_path = event_id_path
        self.seq_path = seq_path
        self.sent_at = sent_at if sent_at is not None else {}
        self.channels: dict[str, str] = {}
        self.received = 0
        self.subscribed = False

    async def run(self, limit: int | None = None) -> int:
        """Ingest until cancelled (or `limit` frames). Raises on connection errors; the caller reports."""
        client = redis_client(self.redis_url)
        try:
            pubsub = client.pubsub()
            await pubsub.psubscribe(self.pattern)
            self.subscribed = True
            while limit is None or self.received < limit:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message["type"] == "pmessage":
                    self._ingest(message["channel"], message["data"])
            return self.received
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _ingest(self, channel: bytes | str, data: bytes | str) -> None:
        channel = channel.decode() if isinstance(channel, bytes) else channel
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict):
            return
        event_id = str(dotted(frame, self.event_id_path))
        self.channels[event_id] = channel
        raw_seq = dotted(frame, self.seq_path)
        now = time.time()
        sent = self.sent_at.get(event_id)
        self.received += 1
        self.emit(
            ev.FanoutFrame(
                run=self.run_id,
                session="tap",
                replica=str(frame.get("origin_replica") or channel),
                thread_id=str(frame.get("thread_id") or ""),
                event_id=event_id,
                seq=raw_seq if isinstance(raw_seq, int) else None,
                sent_at=sent,
                received_at=now,
                latency_ms=round((now - sent) * 1000, 2) if sent else None,
            )
        )
