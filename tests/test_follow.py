"""Following a journal while it is written (core/follow.py): a viewer's fold is the journal's fold.

Real journals written by the real Journal, read by the real follower; no mocks.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.follow import FileFollower, LineFold, line_n
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.resume import fold_journal, resume_session
from rollback_tui.core.state import fold
from test_ui_support import rehearsal_full_events
from watch_support import state_digest


def _events() -> list[ev.Event]:
    return [e.model_copy() for e in rehearsal_full_events()]


def test_line_n_reads_the_number_the_journal_writes_third(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    for event in _events()[:5]:
        journal.append(event)
    journal.close()
    lines = (tmp_path / "j.jsonl").read_bytes().splitlines()
    assert [line_n(line) for line in lines] == [1, 2, 3, 4, 5]
    assert line_n(b'{"kind":"notice","message":"\\"n\\":7"}') is None  # n only where the journal puts it


def test_a_follower_started_before_the_writer_folds_every_event_once(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    seen: list[ev.Event] = []
    follower = FileFollower(path, LineFold(on_event=seen.append))
    journal = Journal(path, batch_s=0.0)
    events = _events()
    for i, event in enumerate(events):
        journal.append(event)
        if i % 7 == 0:
            journal.flush()
            follower.poll()
    journal.close()
    follower.poll()
    expected = read_journal(path).events
    assert seen == expected  # event for event, in order, none twice
    assert state_digest(follower.fold.state) == state_digest(fold(expected))


def test_a_line_being_written_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "torn.jsonl"
    journal = Journal(path)
    first, second = _events()[:2]
    journal.append(first)
    journal.close()
    whole = path.read_bytes()
    follower = FileFollower(path)
    follower.poll()
    assert follower.fold.state.last_n == 1
    second.n = 2
    line = second.model_dump_json().encode()
    with open(path, "ab") as fh:
        fh.write(line[:10])  # the writer is mid-line
    assert follower.poll() == set()
    assert follower.offset == len(whole) and follower.fold.warnings == []
    with open(path, "ab") as fh:
        fh.write(line[10:] + b"\n")
    assert follower.poll() == {second.kind}
    assert follower.fold.state.last_n == 2


def test_a_late_follower_catches_up_with_the_fast_fold_then_follows(tmp_path: Path) -> None:
    path = tmp_path / "late.jsonl"
    journal = Journal(path)
    events = _events()
    half = len(events) // 2
    for event in events[:half]:
        journal.append(event)
    journal.flush()
    follower = FileFollower(path)
    follower.fast_from = 1  # this backlog is small: fold it the way a long session's is folded
    follower.poll()
    assert follower.fold.state.last_n == half
    for event in events[half:]:
        journal.append(event)
    journal.close()
    follower.poll()
    source, _ = fold_journal(path)  # the fast fold's own result: what resume and export rebuild
    assert state_digest(follower.fold.state) == state_digest(source)
    assert follower.restarts == 0


def test_the_follower_survives_the_writers_crash_and_resume(tmp_path: Path) -> None:
    """kill -9 mid-line, then `resume`: the torn tail the follower never read is cut, and the resumed
    writer's lines (SessionResumed first) follow on — no restart of the fold, nothing folded twice."""
    path = tmp_path / "crash.jsonl"
    events = _events()
    journal = Journal(path)
    for event in events[:40]:
        journal.append(event)
    journal.close()
    with open(path, "ab") as fh:
        fh.write(b'{"kind":"health_sample","ts":1.0,"n":41,"replica":"sta')  # died mid-write
    seen: list[ev.Event] = []
    follower = FileFollower(path, LineFold(on_event=seen.append))
    follower.poll()
    resumed, _, _ = resume_session(path, operator="bob")
    for event in events[40:]:
        resumed.append(event)
    resumed.close()
    follower.poll()
    assert follower.restarts == 0
    source = fold(read_journal(path).events)
    assert state_digest(follower.fold.state) == state_digest(source)
    assert follower.fold.state.resumes == 1
    assert [e.n for e in seen][-len(events[40:]) :] == list(
        range(source.last_n - len(events[40:]) + 1, source.last_n + 1)
    )


def test_the_follower_tells_whether_a_writer_holds_the_journal(tmp_path: Path) -> None:
    """The Journal's lock, from open to close — and through `resume`; a journal refused to a new session
    (it already holds one) is left unlocked, not held by a writer that never wrote."""
    path = tmp_path / "held.jsonl"
    journal = Journal(path)
    journal.append(_events()[0])
    follower = FileFollower(path)
    follower.poll()
    assert follower.writing is True
    journal.close()
    with pytest.raises(FileExistsError):
        Journal(path)
    follower.poll()
    assert follower.writing is False
    resumed, _, _ = resume_session(path, operator="bob")
    follower.poll()
    assert follower.writing is True and follower.fold.state.resumes == 1
    resumed.close()
    follower.poll()
    assert follower.writing is False


def test_a_replaced_journal_is_folded_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    for event in _events()[:30]:
        journal.append(event)
    journal.close()
    follower = FileFollower(path)
    follower.poll()
    other = tmp_path / "other.jsonl"
    journal = Journal(other)
    for event in _events()[:10]:
        journal.append(event)
    journal.close()
    os.replace(other, path)
    follower.poll()
    assert follower.restarts == 1
    assert state_digest(follower.fold.state) == state_digest(fold(read_journal(path).events))
    assert any("replaced or cut short" in w for w in follower.fold.warnings)


def test_a_resent_line_is_folded_once_and_an_unreadable_one_is_a_warning() -> None:
    events = _events()[:6]
    for n, event in enumerate(events, 1):
        event.n = n
    lines = [e.model_dump_json().encode() + b"\n" for e in events]
    folded = LineFold()
    folded.feed(b"".join(lines[:4]))
    folded.feed(b"".join(lines[2:]))  # a mirror resending after a reconnect
    folded.feed(b'{"kind":"notice","ts":1.0,"n":7,"level":"info"}\n')  # no source, no message
    assert folded.lines == 6
    assert state_digest(folded.state) == state_digest(fold(events))
    assert len(folded.warnings) == 1 and "unreadable line skipped" in folded.warnings[0]


def test_two_viewers_probing_at_once_never_take_each_other_for_a_writer(tmp_path: Path) -> None:
    """Each viewer probes a journal by locking it for an instant. With an exclusive probe, two viewers of a
    session no cockpit writes could catch each other's probe and read LIVE for a poll (and `resume` be
    refused as 'another process is writing'). The probe is shared: only a writer's lock refuses it."""
    import fcntl

    from rollback_tui.core.journal import writer_holds

    path = tmp_path / "s.jsonl"
    path.write_bytes(b"")
    other_viewer = os.open(path, os.O_RDONLY)
    mine = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(other_viewer, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the other viewer, mid-probe
        assert writer_holds(mine) is False
        fcntl.flock(other_viewer, fcntl.LOCK_UN)
        journal = Journal(path, next_n=1)  # a writer
        assert writer_holds(mine) is True
        journal.close()
        assert writer_holds(mine) is False
    finally:
        os.close(other_viewer)
        os.close(mine)
