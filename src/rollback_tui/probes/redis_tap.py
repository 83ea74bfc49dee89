"""A raw Redis pub/sub tap: PSUBSCRIBE a pattern and turn every fanout frame into a FanoutFrame event.

Used by the fanout verifier (to see which channel prefix each replica publishes under) and by the
benchmark of how fast the engine ingests fanout. `channels` counts frames per channel (bounded: a tap
on a busy prefix sees one channel per thread, so the map is reset past MAX_CHANNELS).

The tap speaks RESP on its own connection (redis://, rediss:// and unix:// URLs, AUTH from the URL):
it reads the socket in large chunks, lets hiredis split them into messages and ingests every complete
message of a chunk in one synchronous pass — a few µs per frame instead of one awaited
`get_message()` round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

import hiredis
from pydantic_core import from_json

from rollback_tui.core import events as ev
from rollback_tui.probes.health import dotted

Emit = Callable[[ev.Event], ev.Event]
MAX_CHANNELS = 4096
READ_CHUNK = 1 << 16  # bytes per socket read: ~250 frames, a few ms of ingest between event-loop turns


def redis_client(url: str, timeout_s: float = 2.0):  # -> redis.asyncio.Redis
    import redis.asyncio as aioredis

    return aioredis.from_url(os.path.expandvars(url), socket_connect_timeout=timeout_s)


class TapError(ConnectionError):
    """Redis refused the tap (bad password, unexpected reply) or closed its connection."""


def _command(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def open_pubsub(url: str, timeout_s: float = 2.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and authenticate as the URL says (the URL forms redis-py accepts for TCP, TLS and unix)."""
    from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

    opts: dict[str, Any] = parse_url(os.path.expandvars(url))
    kind = opts.get("connection_class")
    if kind is UnixDomainSocketConnection:
        opening = asyncio.open_unix_connection(opts["path"])
    else:
        tls = None
        if kind is SSLConnection:
            tls = ssl.create_default_context()
            if str(opts.get("ssl_cert_reqs", "")).lower() in ("none", "optional"):
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        opening = asyncio.open_connection(opts.get("host", "localhost"), opts.get("port", 6379), ssl=tls)
    try:
        reader, writer = await asyncio.wait_for(opening, timeout_s)
    except TimeoutError:
        raise TapError(f"redis did not accept a connection within {timeout_s:g} s") from None
    password = opts.get("password")
    if password:
        username = opts.get("username")
        writer.write(_command("AUTH", username, password) if username else _command("AUTH", password))
        parser = hiredis.Reader()
        reply: Any = False
        while reply is False:
            chunk = await asyncio.wait_for(reader.read(4096), timeout_s)
            if not chunk:
                break
            parser.feed(chunk)
            reply = parser.gets()
        if reply != b"OK":
            writer.close()
            raise TapError(f"redis refused AUTH: {reply if isinstance(reply, Exception) else 'no reply'}")
    return reader, writer


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
        self.channels: dict[str, int] = {}  # channel → frames seen on it
        self._flat = "." not in event_id_path and "." not in seq_path
        self._names: dict[bytes, str] = {}
        self.received = 0
        self.subscribed = False

    async def run(self, limit: int | None = None) -> int:
        """Ingest until cancelled (or `limit` frames). Raises on connection errors; the caller reports."""
        reader, writer = await open_pubsub(self.redis_url)
        parser = hiredis.Reader()
        try:
            writer.write(_command("PSUBSCRIBE", self.pattern))
            while limit is None or self.received < limit:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    raise TapError("redis closed the tap connection")
                parser.feed(chunk)
                if self._drain(parser, limit):
                    break
            return self.received
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _drain(self, parser: hiredis.Reader, limit: int | None) -> bool:
        """Ingest every complete message in the parser as one batch; True once `limit` frames arrived."""
        rows: list[ev.TapRow] = []
        done = False
        now = time.time()  # every frame of one socket read arrived at the same moment
        row = self._row
        while (message := parser.gets()) is not False:
            if type(message) is list and len(message) == 4 and message[0] == b"pmessage":
                parsed = row(message[2], message[3], now)
                if parsed is not None:
                    rows.append(parsed)
                    if limit is not None and self.received + len(rows) >= limit:
                        done = True
                        break
            elif isinstance(message, list) and message and message[0] == b"psubscribe":
                self.subscribed = True
            elif isinstance(message, Exception):
                raise TapError(f"redis refused PSUBSCRIBE {self.pattern}: {message}")
        if rows:
            self.received += len(rows)
            # The rows are typed right here, so pydantic's validation would only re-check them.
            self.emit(ev.trusted(ev.FanoutTapBatch, ts=now, run=self.run_id, rows=rows))
        return done

    def _row(self, channel: bytes, data: bytes, now: float) -> ev.TapRow | None:
        name = self._names.get(channel)  # decode each channel name once
        if name is None:
            if len(self._names) > MAX_CHANNELS:
                self._names.clear()
                self.channels.clear()
            name = self._names[channel] = channel.decode(errors="replace")
        try:
            frame = from_json(data)
        except ValueError:
            return None
        if type(frame) is not dict:
            return None
        if self._flat:  # plain keys: no path walking
            event_id, raw_seq = str(frame.get(self.event_id_path)), frame.get(self.seq_path)
        else:
            event_id, raw_seq = str(dotted(frame, self.event_id_path)), dotted(frame, self.seq_path)
        self.channels[name] = self.channels.get(name, 0) + 1
        return (
            now,
            name,
            str(frame.get("origin_replica") or name),
            str(frame.get("thread_id") or ""),
            event_id,
            raw_seq if type(raw_seq) is int else None,
            self.sent_at.get(event_id),
        )
