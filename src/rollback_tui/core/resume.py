"""Crash-safe resume, and the fast one-pass journal fold that resume and export share.

`resume_session(path)` rebuilds the SessionState from a journal left behind by a killed cockpit (kill -9,
lost SSH session, closed terminal), truncates a torn last line, reopens the journal for appending after
the last recovered `n`, and journals a SessionResumed event. Nothing acknowledged is lost: durable events
were fsync'd before their append returned, so they are complete lines before any torn tail.

Speed (a 1,000,000-event journal in a few seconds) comes from `scan_journal`:
* the event kind is read from the line's fixed prefix (`{"kind":"…"`, how the journal writes every line),
  and the line is validated by that kind's own model — much cheaper than the discriminated union,
  which must parse the JSON twice;
* high-rate kinds whose fold only keeps the newest N (fanout frames, traffic windows) are *deferred*:
  they are counted, the newest N raw lines are kept, and only those are parsed at the end. Deferred lines
  outside that window are not validated (they are never looked at), only checked to be whole lines.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import typing
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import hms
from rollback_tui.core.journal import Journal, JournalBusy, ReadResult, _short, writer_holds
from rollback_tui.core.redact import Redactor
from rollback_tui.core.rollback import unfinished
from rollback_tui.core.state import FANOUT_LOG, GATE_TAIL, SessionState
from rollback_tui.playbook.model import Playbook

log = logging.getLogger(__name__)

PREFIX = b'{"kind":"'
_PREFIX_LEN = len(PREFIX)


def _models() -> dict[bytes, type[ev.Event]]:
    union = typing.get_args(ev.AnyEvent)[0]
    out: dict[bytes, type[ev.Event]] = {}
    for model in typing.get_args(union):
        kind = model.model_fields["kind"].default
        out[kind.encode()] = model
    return out


MODELS = _models()

# Kinds whose fold keeps only the newest N events (plus a counter), so older ones need not be parsed.
STATE_DEFERRED: dict[str, int] = {
    "fanout_frame": FANOUT_LOG,
    "traffic_window": SessionState().traffic.windows.maxlen or 300,
}
# Kinds folded into the same place as a deferred kind: the lines of that kind held so far are applied
# before one of these, so the place keeps the journal's order (the fanout log interleaves a fanout
# check's frames with the Redis tap's batches, as the live fold did).
SAME_PLACE: dict[str, str] = {"fanout_tap_batch": "fanout_frame"}


class ResumeError(Exception):
    """The journal cannot be resumed (missing, unreadable, or holds no session)."""


@dataclass
class ScanResult:
    events: int = 0  # events folded (parsed or deferred)
    warnings: list[str] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)  # line numbers of unreadable lines
    torn_tail_offset: int | None = None
    last_n: int = 0
    last_ts: float | None = None
    bytes_read: int = 0


@dataclass
class ResumeResult(ReadResult):
    """What `resume_session` recovered. `events` is left empty: a long journal is folded, not held."""

    recovered: int = 0
    last_n: int = 0


def parse_line(raw: bytes) -> ev.Event:
    """Parse one journal line, validating it with its own kind's model when the prefix says which."""
    if raw.startswith(PREFIX):
        end = raw.find(b'"', _PREFIX_LEN)
        model = MODELS.get(raw[_PREFIX_LEN:end])
        if model is not None:
            return model.model_validate_json(raw)
    return ev.parse_event(raw)


@dataclass(frozen=True)
class Grouped:
    """Defer a kind per group — gate output per run: keep the newest `keep` lines of each of the newest
    `groups` groups, count the rest. An event of `reset_kind` whose `field` equals a group's key drops
    what was kept and counted for that group before it (a GateStarted restarts its run's output)."""

    field: str
    keep: int
    groups: int
    reset_kind: str | None = None


# Gate output: the state keeps the newest GATE_TAIL lines of each gate's current run.
MAX_RUNS_KEPT = 200
GATE_OUTPUT = Grouped(field="run", keep=GATE_TAIL, groups=MAX_RUNS_KEPT, reset_kind="gate_started")


class _Held:
    """What a scan keeps aside instead of parsing: the newest lines of deferred kinds, and of grouped
    kinds per group, with counts of everything passed over (to credit the fold with at the end)."""

    def __init__(self, deferred: Mapping[str, int], grouped: Mapping[str, Grouped]) -> None:
        self.keep: dict[bytes, deque[tuple[int, bytes]]] = {
            k.encode(): deque(maxlen=n) for k, n in deferred.items()
        }
        self.seen = dict.fromkeys(self.keep, 0)
        self.applied = dict.fromkeys(self.keep, 0)  # held lines applied early (see SAME_PLACE)
        self.before = {k: held for k, place in SAME_PLACE.items() if (held := place.encode()) in self.keep}
        self.specs = {k.encode(): (f'"{g.field}":"'.encode(), g.keep, g.groups) for k, g in grouped.items()}
        self.kept: dict[bytes, OrderedDict[bytes, deque[tuple[int, bytes]]]] = {
            k: OrderedDict() for k in self.specs
        }
        self.counted: dict[bytes, dict[bytes, int]] = {k: {} for k in self.specs}
        self.totals = dict.fromkeys(self.specs, 0)
        self.resets: dict[str, list[tuple[bytes, str]]] = {}
        for kind, g in grouped.items():
            if g.reset_kind:
                self.resets.setdefault(g.reset_kind, []).append((kind.encode(), g.field))

    def hold_grouped(self, kind: bytes, lineno: int, raw: bytes) -> bool:
        """Keep a grouped kind's line under its group; False when it must be parsed after all."""
        marker, per_group, max_groups = self.specs[kind]
        at = raw.find(marker) + len(marker)
        key = raw[at : raw.find(b'"', at)]
        if at <= len(marker) or b"\\" in key:
            return False
        groups = self.kept[kind]
        buf = groups.get(key)
        if buf is None:
            buf = groups[key] = deque(maxlen=per_group)
            if len(groups) > max_groups:
                groups.popitem(last=False)
        buf.append((lineno, raw))
        counts = self.counted[kind]
        counts[key] = counts.get(key, 0) + 1
        self.totals[kind] += 1
        return True

    def reset(self, event: ev.Event) -> None:
        for group_kind, attr in self.resets.get(event.kind, ()):
            key = str(getattr(event, attr)).encode()
            self.kept[group_kind].pop(key, None)
            self.counted[group_kind].pop(key, None)

    def take(self, kind: bytes) -> list[tuple[int, bytes]]:
        """The lines of a deferred kind held so far, to apply now: none of them is in the way of the
        newest N any more once the fold has them."""
        buf = self.keep[kind]
        lines = list(buf)
        buf.clear()
        self.applied[kind] += len(lines)
        return lines

    def retained(self) -> list[tuple[int, bytes]]:
        """Every kept line, in journal order."""
        out = [item for buf in self.keep.values() for item in buf]
        out += [item for groups in self.kept.values() for buf in groups.values() for item in buf]
        return sorted(out)

    def report(
        self,
        on_deferred: Callable[[str, int], None] | None,
        on_grouped: Callable[[str, int, dict[str, int]], None] | None,
    ) -> None:
        if on_deferred is not None:
            for kind, buf in self.keep.items():
                on_deferred(kind.decode(), self.seen[kind] - self.applied[kind] - len(buf))
        if on_grouped is not None:
            for kind, groups in self.kept.items():
                held = {key: len(buf) for key, buf in groups.items()}
                per_group = {key.decode(): n - held.get(key, 0) for key, n in self.counted[kind].items()}
                on_grouped(kind.decode(), self.totals[kind] - sum(held.values()), per_group)


def scan_journal(
    path: Path,
    apply: Callable[[ev.Event], None],
    *,
    deferred: Mapping[str, int] | None = None,
    on_deferred: Callable[[str, int], None] | None = None,
    grouped: Mapping[str, Grouped] | None = None,
    on_grouped: Callable[[str, int, dict[str, int]], None] | None = None,
    limit: int | None = None,
) -> ScanResult:
    """Fold a journal in one streaming pass: `apply(event)` for every readable event.

    Kinds in `deferred` (kind → how many of the newest to keep) are counted instead; at the end their
    newest lines are parsed and applied (after the others, in journal order; before an event folded into
    the same place, see SAME_PLACE, those held so far are) and `on_deferred(kind, skipped)` reports how
    many were never parsed so the caller can credit them (counts, totals). Kinds in `grouped` are kept
    per group (see Grouped); `on_grouped(kind, skipped, skipped_per_group)` reports those. Corrupt lines
    are warnings. Deferred lines that are never parsed are not validated.
    `limit`: read only the first `limit` bytes (whole lines), as the export does for a live journal.
    """
    held = _Held(deferred or {}, grouped or {})
    result = ScanResult()
    offset = 0
    last_raw: bytes | None = None
    # The loop is the hot path of a million-line journal: locals only, no attribute lookups per line.
    keep, seen, specs, resets, before = held.keep, held.seen, held.specs, held.resets, held.before
    validators: dict[bytes, Callable[[bytes], ev.Event]] = {
        kind: model.__pydantic_validator__.validate_json for kind, model in MODELS.items()
    }
    events = 0
    last: ev.Event | None = None
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if limit is not None and offset >= limit:
                break  # a live journal: lines appended after the caller's snapshot are left out
            if raw[-1:] != b"\n":
                result.warnings.append(f"{path}:{lineno}: torn last line ({len(raw)} bytes) skipped")
                result.torn_tail_offset = offset
                break
            offset += len(raw)
            validate: Callable[[bytes], ev.Event] = ev.parse_event
            if raw.startswith(PREFIX):
                kind = raw[_PREFIX_LEN : raw.find(b'"', _PREFIX_LEN)]
                whole = raw.endswith(b"}\n")
                if whole and (kind in seen or (kind in specs and held.hold_grouped(kind, lineno, raw))):
                    if kind in seen:
                        seen[kind] += 1
                        keep[kind].append((lineno, raw))
                    events += 1
                    last_raw = raw
                    continue
                validate = validators.get(kind, ev.parse_event)
            try:
                event = validate(raw)
            except (ValidationError, ValueError) as exc:
                result.warnings.append(f"{path}:{lineno}: unreadable line skipped ({_short(exc)})")
                result.bad_lines.append(lineno)
                continue
            if event.kind in resets:
                held.reset(event)
            if event.kind in before and keep[place := before[event.kind]]:
                _apply_lines(path, held.take(place), apply, result)
            apply(event)
            events += 1
            last_raw = None
            last = event
    result.events = events
    if last is not None:
        result.last_n, result.last_ts = last.n, last.ts
    result.bytes_read = offset
    _apply_lines(path, held.retained(), apply, result)
    held.report(on_deferred, on_grouped)
    if last_raw is not None:  # the journal ends with a deferred event: it sets last n / ts
        with contextlib.suppress(ValidationError, ValueError):
            tail = parse_line(last_raw)
            result.last_n, result.last_ts = tail.n, tail.ts
    return result


def _apply_lines(
    path: Path, lines: list[tuple[int, bytes]], apply: Callable[[ev.Event], None], result: ScanResult
) -> None:
    """Parse what was kept aside, in journal order; an unreadable one is a warning, not an event."""
    for lineno, raw in lines:
        try:
            event = parse_line(raw)
        except (ValidationError, ValueError) as exc:
            result.warnings.append(f"{path}:{lineno}: unreadable line skipped ({_short(exc)})")
            result.bad_lines.append(lineno)
            result.events -= 1
            continue
        apply(event)


def first_event(path: Path) -> ev.Event | None:
    """The journal's first readable event (normally SessionStarted, which names the playbook)."""
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                return None
            try:
                return parse_line(raw)
            except (ValidationError, ValueError):
                continue
    return None


class SessionPlaybookError(Exception):
    """The playbook a journal's session started with cannot be found or loaded; the message says why."""


def session_playbook(journal: Path) -> Playbook:
    """The playbook the journal's SessionStarted names: its path as recorded, or (relative) next to the
    journal, so a journal moved with its playbook still finds it."""
    first = first_event(journal)
    if not isinstance(first, ev.SessionStarted) or not first.playbook:
        raise SessionPlaybookError(
            f"{journal}: no session_started event naming a playbook; pass the playbook"
        )
    from rollback_tui.playbook.load import PlaybookError, load_playbook  # YAML only when it is needed

    recorded = Path(first.playbook)
    candidates = [recorded] if recorded.is_absolute() else [recorded, journal.parent / recorded]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return load_playbook(candidate)
            except PlaybookError as exc:
                why = f"playbook {candidate} of this session is invalid:\n{exc}"
                raise SessionPlaybookError(why) from exc
    raise SessionPlaybookError(f"playbook {first.playbook} of this session not found; pass --playbook")


def credit_deferred(state: SessionState, kind: str, skipped: int) -> None:
    """Account for deferred events that were counted but never parsed (see STATE_DEFERRED)."""
    state.counts[kind] += skipped
    if kind == "fanout_frame":
        state.fanout.frames_total += skipped


def credit_grouped(state: SessionState, kind: str, skipped: int, per_group: dict[str, int]) -> None:
    """Account for grouped deferred events (gate output per run) that were never parsed."""
    state.counts[kind] += skipped
    if kind == "gate_output":
        for gate in state.gates.values():
            if gate.run in per_group:
                gate.output_lines += per_group[gate.run]


def fold_journal(
    path: Path, apply: Callable[[ev.Event], None] | None = None
) -> tuple[SessionState, ScanResult]:
    """SessionState of a journal, exactly as `state.fold(read_journal(path).events)` but fast.

    `apply`, if given, also sees every parsed event (after the state has folded it).
    """
    state = SessionState()

    def both(event: ev.Event) -> None:
        state.apply(event)
        if apply is not None:
            apply(event)

    result = scan_journal(
        path,
        state.apply if apply is None else both,
        deferred=STATE_DEFERRED,
        on_deferred=lambda kind, skipped: credit_deferred(state, kind, skipped),
        grouped={"gate_output": GATE_OUTPUT},
        on_grouped=lambda kind, skipped, per_group: credit_grouped(state, kind, skipped, per_group),
    )
    # Deferred events were applied last; the journal's real last event decides these.
    if result.events:
        state.last_n, state.last_ts = result.last_n, result.last_ts
    return state, result


def _current_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def interrupted_gates(state: SessionState) -> list[ev.GateFinished]:
    """Runs the journal shows started but never finished: the cockpit stopped while they ran.

    Their processes died with it (see exec/reaper.py), and their outcome is unknown: they end as
    *interrupted*, last seen at their newest journaled line, never as still running.
    """
    out = []
    for gate in state.gates.values():
        if gate.status != "running" or gate.run is None or gate.started_ts is None:
            continue
        seen = max(gate.last_seen_ts or gate.started_ts, gate.started_ts)
        out.append(
            ev.GateFinished(
                gate=gate.name,
                run=gate.run,
                outcome="interrupted",
                duration_s=round(seen - gate.started_ts, 3),
                output_lines=gate.output_lines,
                last_seen_ts=seen,
                error=f"the cockpit stopped while the gate ran (last seen {hms(seen)}); outcome unknown",
            )
        )
    return out


def interrupted_runs(state: SessionState, last_seen: float | None = None) -> list[ev.Event]:
    """Runbook items and action parts the journal shows started but never finished: the cockpit stopped
    while they ran (its last journaled event at `last_seen`). What they did is unknown; they end as such,
    never as still running."""
    seen = f" (last seen {hms(last_seen)})" if last_seen is not None else ""
    why = f"interrupted: the cockpit stopped while it ran{seen}; outcome unknown"
    out: list[ev.Event] = []
    for run in state.actions.values():
        for part in run.parts.values():
            if part.status == "running":
                out.append(
                    ev.ActionFinished(action=run.name, part=part.part, outcome="interrupted", error=why)
                )
    for item in state.step_items.values():
        if item.status == "running":
            out.append(
                ev.StepItemFinished(
                    step=item.step,
                    index=item.index,
                    item=item.item,
                    outcome="unknown",
                    reason=why,
                    actor="resume",
                )
            )
    return out


def resume_session(
    journal_path: Path | str,
    redactor: Redactor | None = None,
    *,
    operator: str | None = None,
    batch_s: float = 0.2,
) -> tuple[Journal, SessionState, ResumeResult]:
    """Rebuild the session from its journal and reopen it for appending (after a SessionResumed event,
    then what the killed session left mid-way: an unfinished rollback as failed, each running gate and
    action as interrupted, each running runbook item as unknown).

    Raises ResumeError when the file is missing or holds no readable session.
    """
    path = Path(journal_path)
    if not path.is_file():
        raise ResumeError(f"{path}: no such journal")
    try:
        state, scan = fold_journal(path)
    except OSError as exc:
        raise ResumeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    for warning in scan.warnings:
        log.warning(warning)
    if scan.torn_tail_offset is not None:
        with open(path, "r+b") as fh:
            if writer_holds(fh.fileno()):  # its "torn" line is the one being written: never cut it
                raise ResumeError(str(JournalBusy(path)))
            fh.truncate(scan.torn_tail_offset)
            os.fsync(fh.fileno())
    if scan.events == 0 and path.stat().st_size > 0:
        raise ResumeError(f"{path}: no readable events ({scan.warnings[0] if scan.warnings else 'empty'})")
    if state.started is None:
        raise ResumeError(f"{path}: not a rollback-tui session (no session_started event)")
    try:
        journal = Journal(path, redactor, batch_s=batch_s, next_n=scan.last_n + 1)
    except JournalBusy as exc:
        raise ResumeError(str(exc)) from None
    last_seen = state.last_ts
    resumed = journal.append(
        ev.SessionResumed(
            operator=operator or _current_operator(),
            recovered_events=scan.events,
            skipped_lines=len(scan.warnings),
        )
    )
    state.apply(resumed)
    # What the killed session left mid-way is journaled as such, never left "in progress" forever.
    interrupted = unfinished(state.traffic.rollback, last_seen)
    if interrupted is not None:
        state.apply(journal.append(interrupted))
    for finished in [*interrupted_gates(state), *interrupted_runs(state, last_seen)]:
        state.apply(journal.append(finished))
    result = ResumeResult(
        events=[],
        warnings=scan.warnings,
        torn_tail_offset=scan.torn_tail_offset,
        recovered=scan.events,
        last_n=scan.last_n,
    )
    return journal, state, result
