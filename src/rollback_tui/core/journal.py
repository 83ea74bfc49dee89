"""The append-only JSONL session journal: the source of truth the UI, report and resume fold over.

* Every line is redacted before it is written; the file is created with mode 0600.
* DURABLE events (operator actions, gate results, ticks…) are written and fsync'd before
  `append` returns. Other events are buffered and written in batches (at most `batch_s` old),
  by `flush_due()` or the next durable append — ordering on disk is always append order.
* `read_journal` skips a torn last line (a crash mid-write) with a warning instead of failing;
  `core/resume.py` truncates it and reopens the journal for appending.
* A Journal holds an exclusive advisory lock (flock) on its file for as long as it is open, and the kernel
  drops it when the writer dies (kill -9 included): `writer_holds` is how a viewer tells a session still
  written from one whose cockpit is gone, and a second writer (a `resume` while the cockpit still runs) is
  refused (JournalBusy) instead of interleaving its lines with the first one's. Where flock is missing
  (Windows, some network file systems) nothing is locked and a viewer cannot tell (None).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from pydantic import ValidationError

try:
    import fcntl
except ImportError:  # pragma: no cover - no advisory locks on this platform: viewers cannot tell
    fcntl = None  # type: ignore[assignment]

from rollback_tui.core.events import DURABLE, E, Event, parse_event
from rollback_tui.core.redact import Redactor

log = logging.getLogger(__name__)


_encode = msgspec.json.Encoder().encode
_LOCK_WAIT_S = 1.0  # a viewer's probe holds its shared lock for two system calls: the writer waits it out


class JournalBusy(Exception):
    """Another process writes this journal (its cockpit still runs): a second writer is refused."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path}: another rollback-tui process is writing this journal (its cockpit still runs); "
            "stop it first, or follow it read-only with `rollback-tui watch`"
        )


def hold_for_writing(fd: int, path: Path) -> None:
    """Take the writer's exclusive lock on `fd` (held until it is closed, or the process dies).

    Without waiting, retried: a viewer's probe (`writer_holds`) may hold the file for an instant. Still held
    after `_LOCK_WAIT_S`: another writer has it (JournalBusy). Where flock fails the session goes on
    unlocked and says so in the log.
    """
    if fcntl is None:
        return
    deadline = time.monotonic() + _LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise JournalBusy(path) from None
            time.sleep(0.001)
        except OSError as exc:
            log.warning("%s: cannot lock (%s); viewers cannot tell this session is live", path, exc)
            return


def writer_holds(fd: int) -> bool | None:
    """Whether a writer (a Journal) holds the file open on `fd`, the caller's own descriptor: a shared lock
    is tried without waiting and released at once. Shared, so two viewers probing at the same instant never
    take each other for a writer; only the writer's exclusive lock refuses it. None where it cannot be told
    (no flock)."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _to_json(event: Event) -> bytes:
    """One journal line (without the newline), `kind` first.

    The model's serializer directly: the same bytes as model_dump_json() without its per-call overhead.
    A fanout tap batch (plain floats, strings and ints, a few hundred rows per line, thousands of lines
    a minute) is encoded by msgspec instead, twice as fast; the JSON is the same but for the exponent
    style of floats past 1e16 (`1e16`, not `1e+16`), which every JSON reader takes alike.
    """
    if event.kind == "fanout_tap_batch":
        with contextlib.suppress(TypeError):  # a value msgspec does not know: pydantic's way
            return _encode(event.__dict__)
    return event.__pydantic_serializer__.to_json(event)


class Journal:
    def __init__(
        self,
        path: Path,
        redactor: Redactor | None = None,
        *,
        batch_s: float = 0.2,
        batch_max: int = 512,
        next_n: int = 1,
    ) -> None:
        self.path = Path(path)
        self.redact = redactor or Redactor()
        self.batch_s = batch_s
        self.batch_max = batch_max
        self._n = next_n
        self._pending: list[bytes] = []  # redacted lines and their newlines
        self._pending_since = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.chmod(self.path, 0o600)
        if next_n == 1 and os.fstat(self._fd).st_size > 0:
            os.close(self._fd)  # not this session's journal: neither kept open nor locked
            raise FileExistsError(f"{self.path} already holds a session; use `rollback-tui resume`")
        try:
            hold_for_writing(self._fd, self.path)
        except JournalBusy:
            os.close(self._fd)
            raise

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def append(self, event: E) -> E:
        """Stamp `n`, redact, write. Returns the stamped event (durable ones are on disk by then)."""
        if self.closed:
            raise RuntimeError("journal is closed")
        event.n = self._n
        self._n += 1
        raw = _to_json(event)
        text = raw.decode()
        redacted = self.redact.json_line(text)
        line = raw if redacted is text else redacted.encode()  # nothing masked: the serializer's bytes
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending += (line, b"\n")
        if event.kind in DURABLE:
            self.flush(fsync=True)
        elif len(self._pending) >= 2 * self.batch_max:
            self.flush()
        return event

    def flush_due(self) -> None:
        if self._pending and time.monotonic() - self._pending_since >= self.batch_s:
            self.flush()

    def flush(self, *, fsync: bool = False) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if not self.closed:
            self.flush(fsync=True)
            os.close(self._fd)
            self._fd = -1


@dataclass
class ReadResult:
    events: list[Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    torn_tail_offset: int | None = None  # byte offset where an incomplete last line starts

    @property
    def skipped(self) -> int:
        return len(self.warnings)


def read_journal(path: Path) -> ReadResult:
    result = ReadResult()
    offset = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                result.warnings.append(f"{path}:{lineno}: torn last line ({len(raw)} bytes) skipped")
                result.torn_tail_offset = offset
                break
            offset += len(raw)
            try:
                result.events.append(parse_event(raw))
            except (ValidationError, ValueError) as exc:
                result.warnings.append(f"{path}:{lineno}: unreadable line skipped ({_short(exc)})")
    for warning in result.warnings:
        log.warning(warning)
    return result


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(map(str, err['loc'])) or 'line'}: {err['msg']}"
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg}"
    return str(exc)[:120]
