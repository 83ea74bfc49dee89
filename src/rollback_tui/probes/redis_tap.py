"""A raw Redis pub/sub tap: PSUBSCRIBE a pattern and turn every fanout frame into a row of a FanoutTapBatch.

Used by the fanout verifier (to see which channel prefix each replica publishes under) and by the
benchmark of how fast the engine ingests fanout. `channels` counts frames per channel (bounded: a tap
on a busy prefix sees one channel per thread, so the map is reset past MAX_CHANNELS).

The tap speaks RESP on its own connection (redis://, rediss:// and unix:// URLs, AUTH from the URL).
Once subscribed, the socket is read straight into one buffer (READ_CHUNK at a time, a BufferedProtocol
on the connection's transport), hiredis splits it into messages, and every complete message of a read
is ingested in one synchronous pass as one batch. A frame of the usual shape is decoded by msgspec,
which builds only the four fields a row needs and skips the rest of the payload unparsed; any other
payload (ids at dotted paths, a numeric id, a float seq…) takes the general path, which gives the same
row the fast one would. Together that is about 2 µs per frame, journal and fold included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import hiredis
import msgspec
from pydantic_core import from_json

from rollback_tui.core import events as ev
from rollback_tui.probes.health import dotted

Emit = Callable[[ev.Event], ev.Event]
MAX_CHANNELS = 4096
_CHANNEL = itemgetter(1)  # a TapRow's channel
_NOT_ENOUGH = object()  # what the parser returns when no complete reply is left (a reply may be 0 or False)
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

    opts: dict[str, Any] = dict(parse_url(os.path.expandvars(url)))
    kind = opts.get("connection_class")
    if kind is UnixDomainSocketConnection:
        opening = asyncio.open_unix_connection(opts["path"])
    else:
        tls = None
        if kind is SSLConnection:  # verified by default: the system CAs, or ?ssl_ca_certs=FILE as redis-py
            tls = ssl.create_default_context(cafile=opts.get("ssl_ca_certs") or None)
            if str(opts.get("ssl_check_hostname", "")).lower() in ("false", "0", "no"):
                tls.check_hostname = False
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


_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_TAP_PLACEHOLDER = re.compile(r"(\{prefix\}|\{thread_id\})")


def channel_pattern(template: str, thread_id: str) -> str:
    """The PSUBSCRIBE pattern of a channel template (`{prefix}{thread_id}` → `*<thread>`): any prefix, this
    thread, every other character literal (glob characters escaped)."""
    parts = _TAP_PLACEHOLDER.split(template)
    out = []
    for part in parts:
        if part == "{prefix}":
            out.append("*")
        else:
            out.append(_GLOB_SPECIAL.sub(r"\\\1", thread_id if part == "{thread_id}" else part))
    return "".join(out)


def channel_prefix_reader(template: str, thread_id: str) -> Callable[[str], str | None]:
    """channel name → the prefix it carries where the template says `{prefix}` (None: no such place)."""
    parts = _TAP_PLACEHOLDER.split(template)
    if "{prefix}" not in parts:
        return lambda channel: None
    regex = "".join(
        "(?P<prefix>.*)" if part == "{prefix}" else re.escape(thread_id if part == "{thread_id}" else part)
        for part in parts
    )
    compiled = re.compile(regex, re.DOTALL)

    def prefix(channel: str) -> str | None:
        match = compiled.fullmatch(channel)
        return match.group("prefix") if match else None

    return prefix


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
        thread_id_path: str = "thread_id",
        replica_path: str = "origin_replica",
        sent_at: dict[str, float] | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.pattern = pattern
        self.emit = emit
        self.run_id = run
        self.event_id_path = event_id_path
        self.seq_path = seq_path
        self.thread_id_path = thread_id_path
        self.replica_path = replica_path
        self.sent_at = sent_at if sent_at is not None else {}
        self.channels: Counter[str] = Counter()  # channel → frames seen on it
        self._decode = _fast_decoder(event_id_path, seq_path, thread_id_path, replica_path).decode
        self._names: dict[bytes, str] = {}
        self.received = 0
        self.subscribed = False

    async def run(self, limit: int | None = None) -> int:
        """Ingest until cancelled (or `limit` frames). Raises on connection errors; the caller reports."""
        _, writer = await open_pubsub(self.redis_url)
        transport = writer.transport
        ingest = _Ingest(self, limit)
        # From here the connection's bytes go straight from the socket into hiredis, read by read: no
        # stream buffer in between (its copies and pause/resume cost as much as parsing on a flood).
        transport.set_protocol(ingest)
        try:
            transport.write(_command("PSUBSCRIBE", self.pattern))
            await ingest.finished
            return self.received
        finally:
            ingest.finished.cancel()  # cancelled or done: a later connection_lost has nobody to tell
            transport.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(ingest.closed), 2)

    def _drain(self, parser: hiredis.Reader, limit: int | None) -> bool:
        """Ingest every complete message in the parser as one batch; True once `limit` frames arrived."""
        messages = list(iter(parser.gets, _NOT_ENOUGH))  # one C-level loop over the whole read
        now = time.time()  # every frame of one socket read arrived at the same moment
        names, decode, slow = self._names, self._decode, self._slow_row
        sent_at = self.sent_at.get if self.sent_at else None  # the verifier's sends; empty for a plain tap
        rows: list[ev.TapRow] = []
        append = rows.append
        for message in messages:
            if type(message) is not list or len(message) != 4:  # pmessage is the only 4-element reply
                self._control(message)
                continue
            _, _, channel, data = message
            name = names.get(channel) or self._name(channel)
            try:
                frame = decode(data)
            except msgspec.DecodeError:  # not the usual shape (or not JSON): the general path decides
                row = slow(name, data, now)
                if row is not None:
                    append(row)
                continue
            eid = frame.event_id
            sent = sent_at(eid) if sent_at else None
            append((now, name, frame.replica or name, frame.thread_id, eid, frame.seq, sent))
        if not rows:
            return False
        done = limit is not None and self.received + len(rows) >= limit
        if done:
            del rows[limit - self.received :]  # type: ignore[operator]
        self.received += len(rows)
        self.channels.update(map(_CHANNEL, rows))  # counted in C
        # The rows are typed right here, so pydantic's validation would only re-check them.
        self.emit(ev.trusted(ev.FanoutTapBatch, ts=now, run=self.run_id, rows=rows))
        return done

    def _control(self, message: Any) -> None:
        if isinstance(message, list) and message and message[0] == b"psubscribe":
            self.subscribed = True
        elif isinstance(message, Exception):
            raise TapError(f"redis refused PSUBSCRIBE {self.pattern}: {message}")

    def _name(self, channel: bytes) -> str:
        """Decode a channel name once (the cache is bounded: a busy prefix has one channel per thread)."""
        if len(self._names) > MAX_CHANNELS:
            self._names.clear()
            self.channels.clear()
        name = self._names[channel] = channel.decode(errors="replace")
        return name

    def _slow_row(self, name: str, data: bytes, now: float) -> ev.TapRow | None:
        """Any JSON payload: dotted paths, ids that are numbers, seq that is not an int; None if not JSON."""
        try:
            frame = from_json(data)
        except ValueError:
            return None
        if type(frame) is not dict:
            return None
        event_id = str(dotted(frame, self.event_id_path))
        raw_seq = dotted(frame, self.seq_path)
        return (
            now,
            name,
            str(dotted(frame, self.replica_path) or name),
            str(dotted(frame, self.thread_id_path) or ""),
            event_id,
            raw_seq if type(raw_seq) is int else None,
            self.sent_at.get(event_id),
        )


class _Ingest(asyncio.BufferedProtocol):
    """The tap's connection once subscribed: the transport reads into one buffer (READ_CHUNK at a time),
    hiredis parses it, and the tap ingests every complete message of the read as one batch."""

    def __init__(self, tap: RedisTap, limit: int | None) -> None:
        loop = asyncio.get_running_loop()
        self.tap, self.limit = tap, limit
        self.finished: asyncio.Future[None] = loop.create_future()  # limit reached, or what went wrong
        self.closed: asyncio.Future[None] = loop.create_future()
        self.buffer = bytearray(READ_CHUNK)
        # Handed out as a view: asyncio's TLS transport fills it in pieces through `buf[offset:]`, which
        # on a bytearray would be a copy (the bytes lost, zeros parsed); a memoryview slice is the buffer.
        self._view = memoryview(self.buffer)
        self.parser = hiredis.Reader(notEnoughData=_NOT_ENOUGH)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.finished.done():
            return
        self.parser.feed(self.buffer, 0, nbytes)  # type: ignore[arg-type]  # hiredis reads any buffer
        try:
            if self.tap._drain(self.parser, self.limit):
                self.finished.set_result(None)
        except Exception as exc:  # a refused PSUBSCRIBE, a failing emit: `run` raises it
            self.finished.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            self.finished.set_exception(TapError("redis closed the tap connection"))
        if not self.closed.done():
            self.closed.set_result(None)


class _NeverMatches:
    """The fast decoder of a tap whose ids sit at dotted paths: every payload takes the general path."""

    def decode(self, data: bytes) -> Any:
        raise msgspec.DecodeError("dotted paths need the general decoder")


def _fast_decoder(
    event_id_path: str, seq_path: str, thread_id_path: str = "thread_id", replica_path: str = "origin_replica"
) -> Any:
    """A msgspec decoder for the usual frame: a JSON object whose event id is a string, whose seq is an int
    (or null, or absent), whose thread id and origin replica are strings (or absent), each a top-level key
    (the playbook names them; the lab's are event_id, seq, thread_id, origin_replica). Other keys are
    skipped unparsed. Anything else raises DecodeError and goes to `_slow_row`, which gives the same row
    the fast path would have, so the two agree on every payload the fast one accepts. (One payload the
    fast path keeps and the general one would drop: invalid UTF-8 inside a skipped field, e.g. `text`.
    Its id, seq and thread are intact, so the frame counts as received.)"""
    keys = {"event_id": event_id_path, "seq": seq_path, "thread_id": thread_id_path, "replica": replica_path}
    if any("." in path for path in keys.values()):
        return _NeverMatches()
    if len(set(keys.values())) < len(keys):  # e.g. seq_path "thread_id": the general path sorts it out
        return _NeverMatches()
    shape = msgspec.defstruct(
        "TapPayload",
        [("event_id", str), ("seq", int | None, None), ("thread_id", str, ""), ("replica", str, "")],
        rename=keys,
        gc=False,  # strings and ints only: nothing for the garbage collector to track
    )
    return msgspec.json.Decoder(shape)
