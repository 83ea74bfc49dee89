"""Following a session that is still being written: a viewer is one more fold over the journal.

* `LineFold` folds whole journal lines, in journal order, into its own SessionState. A line it already
  holds (its `n` is not past the fold's last one) is skipped unparsed: a mirror may resend lines after a
  reconnect, and a file follower may see a journal again after the writer's `resume`.
* `FileFollower` reads what a writer appended to a journal file since the last read, whole lines only:
  a line being written (or torn by a crash) waits for its newline. A large backlog (a late viewer of a long
  session) is folded first with `fold_journal`, the fast fold resume uses; a journal replaced or cut
  shorter than what was read (not a `resume`, which only drops a torn tail nobody read) starts the fold
  over. Each poll also asks whether a writer still holds the journal (`writing`, from the Journal's lock):
  a session whose cockpit died without ending it is not live, whatever its last line says.

Nothing here writes: a viewer never appends to the session it watches.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rollback_tui.core.events import Event
from rollback_tui.core.journal import _short, writer_holds
from rollback_tui.core.resume import fold_journal, parse_line
from rollback_tui.core.state import SessionState

# Every journal line starts {"kind":"…","ts":…,"n":N, (the journal's own serialisation), so a line's n is
# found in its first bytes without parsing it.
_N = re.compile(rb',"n":(\d+)[,}]')
_N_WITHIN = 128
READ_MAX = 4 << 20  # bytes read per poll: a backlog is folded in steps, the view stays responsive
FAST_FROM = 8 << 20  # a backlog at least this large is folded by fold_journal (seconds, not minutes)


def line_n(raw: bytes) -> int | None:
    """The `n` of one journal line, or None when the line does not carry one where the journal puts it."""
    match = _N.search(raw, 0, _N_WITHIN)
    return int(match.group(1)) if match else None


@dataclass
class LineFold:
    """A viewer's fold: whole journal lines in, SessionState out, each event applied once."""

    state: SessionState = field(default_factory=SessionState)
    warnings: list[str] = field(default_factory=list)
    on_event: Callable[[Event], None] | None = None  # sees every event folded (tests, counters)
    lines: int = 0  # lines folded

    def feed(self, data: bytes, where: str = "journal") -> set[str]:
        """Fold `data` (whole lines, each ending with a newline); the kinds of the events folded."""
        kinds: set[str] = set()
        state = self.state
        for raw in data.split(b"\n")[:-1]:
            n = line_n(raw)
            if n is not None and n <= state.last_n:
                continue  # already folded: a resend
            try:
                event = parse_line(raw)
            except (ValidationError, ValueError) as exc:
                self.warnings.append(f"{where}: unreadable line skipped ({_short(exc)})")
                continue
            state.apply(event)
            self.lines += 1
            kinds.add(event.kind)
            if self.on_event is not None:
                self.on_event(event)
        return kinds


class FileFollower:
    """Reads a journal file as its writer appends to it; `poll()` folds what is new into `fold`."""

    def __init__(
        self,
        path: Path,
        fold: LineFold | None = None,
        *,
        on_status: Callable[[str, str], None] = lambda level, text: None,
        poll_s: float = 0.1,
    ) -> None:
        self.path = Path(path)
        self.fold = fold or LineFold()
        self.on_status = on_status  # (level, words): how the viewer says what the follow is doing
        self.poll_s = poll_s
        self.fast_from = FAST_FROM
        self.offset = 0  # bytes folded (always the end of a whole line)
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file being followed
        self.restarts = 0  # times the journal was replaced or cut and the fold started over
        # Whether a writer held the journal at the last poll; None before one, or where it cannot be told.
        self.writing: bool | None = None

    def poll(self) -> set[str]:
        """Fold every whole line appended since the last poll; the kinds folded ({} when none). Updates
        `writing` first: the lines read then are at least as new as the answer.

        Raises FileNotFoundError while the journal does not exist (yet).
        """
        with open(self.path, "rb") as fh:
            st = os.fstat(fh.fileno())
            self.writing = writer_holds(fh.fileno())
            identity = (st.st_dev, st.st_ino)
            if self._identity is not None and (identity != self._identity or st.st_size < self.offset):
                self._start_over()
            self._identity = identity
            if self.offset == 0 and self.fold.state.last_n == 0 and st.st_size >= self.fast_from:
                return self._catch_up()
            if st.st_size <= self.offset:
                return set()
            fh.seek(self.offset)
            data = fh.read(READ_MAX)
        end = data.rfind(b"\n") + 1
        if end == 0:
            return set()  # a line still being written
        self.offset += end
        return self.fold.feed(data[:end], str(self.path))

    async def run(self, on_kinds: Callable[[set[str]], None]) -> None:
        """Follow for ever (cancel to stop): `on_kinds(kinds)` after each poll that folded something."""
        status = ""
        while True:
            try:
                kinds = self.poll()
                now = "following"
            except FileNotFoundError:
                kinds, now = set(), f"waiting for {self.path} to exist"
            except OSError as exc:
                kinds, now = set(), f"cannot read {self.path}: {exc.strerror or exc}"
            if now != status:
                status = now
                self.on_status("info" if now == "following" else "warning", now)
            if kinds:
                on_kinds(kinds)
            await asyncio.sleep(0 if kinds else self.poll_s)  # a backlog is folded in steps, between paints

    def _catch_up(self) -> set[str]:
        """The backlog in one fast pass (deferred kinds folded as resume folds them), then tail from there."""
        seen: set[str] = set()

        def note(event: Event) -> None:
            seen.add(event.kind)
            if self.fold.on_event is not None:
                self.fold.on_event(event)

        state, scan = fold_journal(self.path, note)
        self.fold.state = state
        self.fold.lines += scan.events
        self.fold.warnings += [w for w in scan.warnings if "torn last line" not in w]  # torn: still written
        self.offset = scan.bytes_read
        return seen | set(state.counts)

    def _start_over(self) -> None:
        self.fold.state = SessionState()
        self.fold.warnings.append(f"{self.path}: the journal was replaced or cut short; folding it again")
        self.offset = 0
        self.restarts += 1
