"""The session's mirror: its journal, line for line, in a Redis Stream that viewers elsewhere follow.

Writer (`JournalMirror`): a background task that tails the journal *file* and appends what the journal
has written — already redacted, whole lines only — to the stream `rollback-tui:mirror:<session>`, one
entry per batch of lines, with the batch's last `n` as the entry ID (`<n>-0`). It is off the engine's hot
path: the engine never waits for it, and it holds no copy of the session in memory — its backlog is the
journal file itself, from an offset. So:
* Redis down, slow or restarted: the session goes on (a notice says so, once), the mirror retries, and on
  reconnect reads the stream's newest ID and mirrors every journal line after it — from the start of the
  journal when a restarted Redis lost the stream. Nothing mirrored is lost and nothing is mirrored twice
  (IDs only grow; a batch whose lines are already there is trimmed first).
* The writer's `resume` (same journal, same session id) continues the same stream.
The stream is capped (`MAXLEN ~ max_len` entries) and expires `ttl_s` after its last line. A hash
`<stream>:meta` carries the playbook (redacted JSON) and the journal's first line, so a viewer needs
nothing but the URL.

Reader (`StreamFollower`): `XREAD`s the stream from the start, then follows it, folding lines into a
`LineFold` (which skips lines it already holds, by `n`). It only reads: nothing a viewer does reaches the
session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import ValidationError

from rollback_tui.core.follow import LineFold, line_n
from rollback_tui.core.redact import Redactor
from rollback_tui.playbook.model import Mirror, Playbook
from rollback_tui.playbook.secrets import resolve

if TYPE_CHECKING:
    from rollback_tui.session.engine import Engine

log = logging.getLogger(__name__)

KEY_PREFIX = "rollback-tui:mirror:"
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
CHUNK = 1 << 20  # bytes of journal per stream entry at most (one line longer than that is one entry)
DEFAULT_MAX_LEN = Mirror.model_fields["max_len"].default
DEFAULT_TTL_S = Mirror.model_fields["ttl_s"].default

Say = Callable[[str, str], None]  # (level, message): how the mirror tells the session what happens to it


class MirrorError(ValueError):
    """A mirror URL that cannot be used (shape, inline credential, unset ${VAR})."""


@dataclass(frozen=True)
class MirrorTarget:
    """`redis://[:${VAR}@]host[:port][/db][/<session>]`. `url` is kept as given (with its `${VAR}`s, so it
    can be printed); `resolved()` fills them from the environment at the moment of use."""

    url: str  # without the session
    session: str | None = None

    @classmethod
    def parse(cls, text: str, *, session_required: bool = False) -> MirrorTarget:
        shown = Redactor()(text)  # an inline password is refused, and not echoed back either
        parts = urlsplit(text)
        if parts.scheme not in ("redis", "rediss") or not parts.netloc:
            raise MirrorError(f"{shown!r}: expected redis://host[:port][/db][/session]")
        segments = [s for s in parts.path.split("/") if s]
        db = segments.pop(0) if segments and segments[0].isdigit() else None
        if len(segments) > 1:
            raise MirrorError(f"{shown!r}: expected at most a db number and a session id in the path")
        session = segments[0] if segments else None
        if session is not None and not SESSION_ID.match(session):
            raise MirrorError(f"{shown!r}: {session!r} is not a session id")
        if session_required and session is None:
            raise MirrorError(f"{shown!r}: name the session: redis://host:port/db/<session-id>")
        base = urlunsplit((parts.scheme, parts.netloc, f"/{db}" if db else "", "", ""))
        try:  # the playbook's own rules: credentials only as ${VAR}, nothing after the db
            Mirror(redis_url=urlunsplit((*urlsplit(base)[:3], parts.query, parts.fragment)))
        except ValidationError as exc:
            reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise MirrorError(f"{shown}: {reason}") from None
        return cls(base, session)

    def for_session(self, session: str) -> MirrorTarget:
        return MirrorTarget(self.url, session)

    @property
    def key(self) -> str:
        if self.session is None:
            raise MirrorError(f"{self.url}: no session id")
        return KEY_PREFIX + self.session

    @property
    def meta_key(self) -> str:
        return self.key + ":meta"

    @property
    def watch_url(self) -> str:
        """What a viewer passes to `rollback-tui watch` (with the ${VAR}s, never their values)."""
        db = "" if urlsplit(self.url).path.strip("/") else "/0"
        return f"{self.url}{db}/{self.session}"

    def resolved(self, environ: Any = None) -> tuple[str, list[str]]:
        """The URL with its ${VAR}s filled in, and the values used (secrets to redact).
        Raises MissingVariable."""
        return resolve(self.url, os.environ if environ is None else environ, "the mirror URL")

    def client(self, environ: Any = None) -> Any:
        import redis.asyncio as aioredis

        url, _ = self.resolved(environ)
        return aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def session_id(journal: Path) -> str:
    """A session's id is its journal's name: a resumed session keeps it, and so its stream."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", Path(journal).stem)[:128] or "session"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class JournalMirror:
    """Tails `journal_path` and appends its lines to the target's stream (see the module doc)."""

    def __init__(
        self,
        target: MirrorTarget,
        journal_path: Path,
        *,
        playbook: Playbook,
        redactor: Redactor,
        say: Say = lambda level, message: None,
        finished: Callable[[], bool] = lambda: False,
        max_len: int = DEFAULT_MAX_LEN,
        ttl_s: int = DEFAULT_TTL_S,
        poll_s: float = 0.05,
        retry_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        self.target = target if target.session else target.for_session(session_id(journal_path))
        self.path = Path(journal_path)
        _, used = self.target.resolved()
        redactor.add(used)  # a Redis error quoting the URL must not put its password in the journal
        self.redact = redactor
        self._playbook_json = redactor.json_line(playbook.model_dump_json(by_alias=True))
        self.say = say
        self.finished = finished  # True once the journal is closed: mirror what is left, then stop
        self.max_len, self.ttl_s = max_len, ttl_s
        self.poll_s, self.retry_s = poll_s, retry_s
        self.offset = 0  # journal bytes known to be in the stream (or before its newest entry)
        self.top = 0  # the newest n in the stream
        self.entries = 0  # entries this mirror appended
        self.down: str | None = None  # why Redis is unreachable, while it is
        self._announced = False
        self._redis: Any = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self._run_until_done(), name="journal-mirror")
        return self._task

    async def close(self, timeout_s: float = 10.0) -> bool:
        """Wait (at most `timeout_s`) until every journal line is mirrored; True when it is."""
        task = self._task
        if task is None:
            return self.caught_up()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return self.caught_up()

    def caught_up(self) -> bool:
        try:
            return self.offset >= self.path.stat().st_size
        except OSError:
            return False

    async def _run_until_done(self) -> None:
        try:
            await self.run()
        finally:
            await self._disconnect()
            if not self.caught_up():
                left = self.path.stat().st_size - self.offset if self.path.exists() else 0
                log.warning(
                    "mirror: %d bytes of the journal were not mirrored (%s); the journal holds them",
                    left,
                    self.down or "stopped",
                )

    async def run(self) -> None:
        """Mirror until the journal is finished and everything in it is in the stream."""
        delay = self.retry_s[0]
        while not self._journal_started():  # nothing to mirror yet, nor to say (a journal starts with its
            if self.finished():  # session's first event, not with the mirror's notices)
                return
            await asyncio.sleep(self.poll_s)
        while True:
            if self._redis is None and not await self._connect():
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_s[1])
                continue
            delay = self.retry_s[0]
            try:
                sent = await self.step()
            except Exception as exc:  # a dropped connection, a timeout, Redis restarting
                self._lost(exc)
                await self._disconnect()
                continue
            if not sent:
                if self.finished() and self.caught_up():
                    return
                await asyncio.sleep(self.poll_s)

    def _journal_started(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    # --- the work -------------------------------------------------------------------------------------

    async def _connect(self) -> bool:
        client = self.target.client()
        try:
            await client.hset(
                self.target.meta_key,
                mapping={
                    "session": self.target.session or "",
                    "journal": self.path.name,
                    "playbook": self._playbook_json,
                },
            )
            await client.expire(self.target.meta_key, self.ttl_s)
            top = await self._stream_top(client)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await client.aclose()
            self._lost(exc)
            return False
        self._redis = client
        if top < self.top:  # the stream lost lines (a Redis restarted without them): mirror them again
            self.offset = 0
        self.top = top
        if self.down is not None:
            self.say("info", f"mirror: Redis reachable again; mirroring from event {top + 1} on")
        elif not self._announced:
            self.say("info", f"mirroring to Redis; viewers: rollback-tui watch {self.target.watch_url}")
        self._announced = True
        self.down = None
        return True

    async def _stream_top(self, client: Any) -> int:
        newest = await client.xrevrange(self.target.key, count=1)
        return int(newest[0][0].split(b"-")[0]) if newest else 0

    def _lost(self, exc: BaseException) -> None:
        reason = self.redact(_describe(exc))
        if self.down is None:
            self.say(
                "warning",
                f"mirror: Redis unreachable ({reason}); the session goes on and the mirror catches up "
                "when Redis is back",
            )
        self.down = reason

    async def step(self) -> bool:
        """Append the next batch of journal lines to the stream; False when there is nothing new."""
        batch = self._read_batch()
        if batch is None:
            return False
        raw, last_n = batch
        if last_n <= self.top:  # all of it is in the stream already (a resumed writer, a reconnect)
            self.offset += len(raw)
            return True
        data = raw if (line_n(raw[: raw.find(b"\n")]) or 0) > self.top else _lines_after(raw, self.top)
        pipe = self._redis.pipeline(transaction=False)
        if self.offset == 0:  # the journal's first line names the session, for viewers of a trimmed stream
            pipe.hset(self.target.meta_key, "head", raw[: raw.find(b"\n") + 1])
        pipe.xadd(self.target.key, {"lines": data}, id=f"{last_n}-0", maxlen=self.max_len, approximate=True)
        pipe.expire(self.target.key, self.ttl_s)
        replies = await pipe.execute(raise_on_error=False)
        error = next((r for r in replies if isinstance(r, Exception)), None)
        if error is not None:
            if "equal or smaller" not in str(error):
                raise error
            self.top = await self._stream_top(self._redis)  # they are there already: learn the top again
            return True
        self.offset += len(raw)
        self.top = last_n
        self.entries += 1
        return True

    def _read_batch(self) -> tuple[bytes, int] | None:
        """Whole lines from `offset` (up to CHUNK bytes, or one longer line) and the last n among them.
        Lines without an n (unreadable to every fold) travel with their batch; a batch of nothing but
        those names no entry and is passed over."""
        while True:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.offset)
                    data = fh.read(CHUNK)
                    while b"\n" not in data and len(data) % CHUNK == 0 and data:  # a line longer than CHUNK
                        more = fh.read(CHUNK)
                        if not more:
                            break
                        data += more
            except FileNotFoundError:
                return None
            data = data[: data.rfind(b"\n") + 1]
            if not data:
                return None
            lines = data.split(b"\n")[:-1]
            last_n = next((n for n in map(line_n, reversed(lines)) if n is not None), None)
            if last_n is not None:
                return data, last_n
            self.offset += len(data)

    async def _disconnect(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await _close_quietly(client)


def _lines_after(data: bytes, top: int) -> bytes:
    """The lines of `data` whose n is past `top` (and the unnumbered ones among them)."""
    lines = data.split(b"\n")[:-1]
    keep = []
    started = False
    for raw in lines:
        n = line_n(raw)
        if n is not None and n > top:
            started = True
        if started:
            keep.append(raw)
    return b"\n".join(keep) + b"\n" if keep else b""


async def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()


# --- the viewer's side ----------------------------------------------------------------------------------


class StreamFollower:
    """Folds a mirrored session from its stream: from the start, then live (see the module doc)."""

    writing: bool | None = None  # a stream cannot tell whether its session's cockpit still writes

    def __init__(
        self,
        target: MirrorTarget,
        fold: LineFold | None = None,
        *,
        on_status: Callable[[str, str], None] = lambda level, text: None,
        block_ms: int = 1000,
        retry_s: tuple[float, float] = (0.2, 5.0),
    ) -> None:
        if target.session is None:
            raise MirrorError(f"{target.url}: no session id")
        self.target = target
        self.fold = fold or LineFold()
        self.on_status = on_status
        self.block_ms = block_ms
        self.retry_s = retry_s
        self.last_id = b"0-0"
        self.following = False
        self.trimmed = 0  # events older than the stream's first entry (trimmed before this viewer came)

    async def playbook(self) -> Playbook | None:
        """The playbook the mirror published with the session (None when there is no such session)."""
        client = self.target.client()
        try:
            raw = await client.hget(self.target.meta_key, "playbook")
        finally:
            await _close_quietly(client)
        return Playbook.model_validate_json(raw) if raw else None

    async def run(self, on_kinds: Callable[[set[str]], None]) -> None:
        """Follow for ever (cancel to stop); `on_kinds(kinds)` after each batch folded."""
        delay = self.retry_s[0]
        while True:
            client = self.target.client()
            self.following = False
            try:
                await self._follow(client, on_kinds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.on_status("warning", f"mirror unreachable ({_describe(exc)}); retrying")
                delay = self.retry_s[0] if self.following else min(delay * 2, self.retry_s[1])
                await asyncio.sleep(delay)
            finally:
                await _close_quietly(client)

    async def _follow(self, client: Any, on_kinds: Callable[[set[str]], None]) -> None:
        key = self.target.key
        if self.last_id == b"0-0":
            await self._head(client, on_kinds)
        self.on_status("info", "following")
        self.following = True  # connected: after a drop, the first retry comes soon
        while True:
            reply = await client.xread({key: self.last_id}, count=64, block=self.block_ms)
            for _stream, entries in reply or ():
                kinds: set[str] = set()
                for entry_id, fields in entries:
                    kinds |= self.fold.feed(fields.get(b"lines", b""), self.target.watch_url)
                    self.last_id = entry_id
                on_kinds(kinds)

    async def _head(self, client: Any, on_kinds: Callable[[set[str]], None]) -> None:
        """A stream trimmed before this viewer joined: fold the session's first line (it names the
        session) and say how many events are missing, instead of pretending to hold them all."""
        first = await client.xrange(self.target.key, count=1)
        if not first:
            return
        lines = first[0][1].get(b"lines", b"")
        n = line_n(lines[: lines.find(b"\n")]) or 1
        if n > 1:
            head = await client.hget(self.target.meta_key, "head")
            if head:
                on_kinds(self.fold.feed(head, self.target.watch_url))
            self.trimmed = n - 1 - (1 if head else 0)
            self.on_status(
                "warning", f"the mirror holds events from n={n} on: {self.trimmed} older ones were trimmed"
            )


# --- the session's side ----------------------------------------------------------------------------


def start_mirror(engine: Engine, url: str | None) -> JournalMirror | None:
    """Mirror `engine`'s journal when asked: `url` (the --mirror option), else the playbook's `mirror:`.

    The mirror runs on its own task and ends once the journal is closed and mirrored: whoever closes the
    journal awaits `close()` (session/runtime.py does). What happens to it is journaled as notices from
    the session's first line on, and logged once the journal is closed.
    """
    spec = engine.playbook.mirror
    text = url or (spec.redis_url if spec is not None else None)
    if not text:
        return None

    def say(level: str, message: str) -> None:
        if engine.journal.closed:
            log.warning("%s", message)
        else:
            engine.notice("mirror", message, level)  # type: ignore[arg-type]

    mirror = JournalMirror(
        MirrorTarget.parse(text),
        engine.journal.path,
        playbook=engine.playbook,
        redactor=engine.journal.redact,
        say=say,
        finished=lambda: engine.journal.closed,
        max_len=spec.max_len if spec is not None and not url else DEFAULT_MAX_LEN,
        ttl_s=spec.ttl_s if spec is not None and not url else DEFAULT_TTL_S,
    )
    mirror.start()
    return mirror
