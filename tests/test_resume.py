"""Resume: the fast fold equals the plain fold, torn tails are cut, and kill -9 loses nothing acknowledged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import pid_alive
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, JournalBusy, read_journal
from rollback_tui.core.resume import ResumeError, fold_journal, resume_session
from rollback_tui.core.state import FANOUT_LOG, SessionState, fold
from rollback_tui.playbook.load import load_playbook
from rollback_tui.report.export import export_session
from test_ui_support import JOURNALS

DATA = Path(__file__).parent / "data"


def started(**kw: object) -> ev.SessionStarted:
    return ev.SessionStarted(
        playbook="pb.yaml", playbook_name="pb", playbook_title="t", environment="lab", operator="alice",
        host="h", version="0", **kw,
    )  # fmt: skip


def busy_journal(path: Path, frames: int = 1500, windows: int = 700) -> None:
    """More frames and traffic windows than the state keeps, interleaved with everything else."""
    journal = Journal(path)
    journal.append(started(replicas=[{"name": "stable-a", "role": "stable"}]))
    for i in range(max(frames, windows)):
        if i < frames:
            run, session = f"r{i // 50}", "AB"[i % 2]
            frame = ev.FanoutFrame(
                run=run,
                session=session,
                replica="stable-a",
                thread_id="t",
                event_id=f"e{i}",
                seq=i,
                received_at=i,
            )
            journal.append(frame)
        if i < windows:
            journal.append(ev.TrafficWindow(window_s=1.0, requests=10, per_replica={"stable-a": 10}))
        if i % 97 == 0:
            journal.append(
                ev.HealthSample(replica="stable-a", status="ok" if i % 2 else "down", latency_ms=i)
            )
            journal.append(ev.GateOutput(gate="g", run="x", stream="stdout", line=f"line {i}"))
        if i == 300:
            journal.append(ev.GateStarted(gate="g", run="x", argv=["true"], where="local"))
    journal.append(ev.FanoutFrame(run="last", session="A", replica="stable-a", thread_id="t", event_id="z",
                                  received_at=1.0))  # fmt: skip
    journal.close()


def snapshot(state: SessionState) -> dict[str, object]:
    return {
        "counts": dict(state.counts),
        "last": (state.last_n, state.last_ts),
        "frames": [f.n for f in state.fanout.frames],
        "frames_total": state.fanout.frames_total,
        "windows": [w.n for w in state.traffic.windows],
        "replicas": {
            n: (r.status, r.samples, r.failures, list(r.latencies)) for n, r in state.replicas.items()
        },
        "gates": {n: (g.status, list(g.tail), g.output_lines) for n, g in state.gates.items()},
    }


@pytest.mark.parametrize("source", ["busy", "recorded"])
def test_fast_fold_equals_the_plain_fold(tmp_path: Path, source: str) -> None:
    if source == "busy":
        path = tmp_path / "busy.jsonl"
        busy_journal(path)
    else:
        path = DATA / "export" / "session.jsonl"
    plain = fold(read_journal(path).events)
    fast, scan = fold_journal(path)
    assert snapshot(fast) == snapshot(plain)
    assert scan.events == sum(plain.counts.values())
    if source == "busy":
        assert plain.fanout.frames_total > FANOUT_LOG and len(plain.traffic.windows) == 300


@pytest.mark.parametrize("frames_per_batch", [1, 3, 40])  # 40: far more frames than the log keeps
def test_the_fold_of_a_journal_orders_frames_and_tap_batches_as_the_live_fold(
    tmp_path: Path, frames_per_batch: int
) -> None:
    """A fanout check's frames between the Redis tap's batches: the fanout log that resume, watch and
    export fold from the journal is the one the live session folded, frame for frame and in order."""
    path = tmp_path / "s.jsonl"
    journal, live = Journal(path), SessionState()
    live.apply(journal.append(started()))
    for i in range(30):
        rows = [(float(i), "chat:rt:t", "stable-a", "t", f"tap{i}-{k}", k, None) for k in range(i % 4 + 1)]
        live.apply(journal.append(ev.FanoutTapBatch(run="tap", rows=rows)))
        for k in range(frames_per_batch):
            frame = ev.FanoutFrame(run="f", session="AB"[k % 2], replica="stable-a", thread_id="t",
                                   event_id=f"e{i}-{k}", seq=k, received_at=float(i))  # fmt: skip
            live.apply(journal.append(frame))
    journal.close()
    folded, _ = fold_journal(path)
    assert list(folded.fanout.frames) == list(live.fanout.frames)
    assert folded.fanout.frames_total == live.fanout.frames_total
    assert list(fold(read_journal(path).events).fanout.frames) == list(live.fanout.frames)


def test_resume_cuts_a_torn_tail_and_carries_on_numbering(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    busy_journal(path, frames=20, windows=5)
    whole = path.read_bytes()
    count = len(whole.splitlines())
    path.write_bytes(whole + b'{"kind":"fanout_frame","ts":1767')
    journal, state, result = resume_session(path, operator="bob")
    assert result.recovered == count and result.torn_tail_offset == len(whole)
    assert len(result.warnings) == 1 and "torn last line" in result.warnings[0]
    assert state.resumes == 1 and state.last_n == count + 1
    journal.append(ev.OperatorAction(action="after_resume", actor="bob"))
    journal.close()
    events = read_journal(path).events
    assert [e.n for e in events] == list(range(1, count + 3))
    resumed = events[-2]
    assert isinstance(resumed, ev.SessionResumed)
    assert (resumed.operator, resumed.recovered_events, resumed.skipped_lines) == ("bob", count, 1)


def test_a_journal_another_process_writes_is_neither_resumed_nor_cut(tmp_path: Path) -> None:
    """`resume` while the session's cockpit still ran: its line being written looked like a torn tail and
    was cut, and both processes appended to one journal, their numbers interleaved. The writer's lock
    refuses the second writer; the file is left as it is. Once the writer is gone, resume works."""
    from watch_support import start_writer

    path = tmp_path / "s.jsonl"
    writer = start_writer(path, JOURNALS / "rehearsal-full.jsonl")  # a real process holding the journal
    try:
        path.write_bytes(path.read_bytes() + b'{"kind":"fanout_frame","ts":1767')  # mid-write, as it were
        before = path.read_bytes()
        with pytest.raises(ResumeError, match="another rollback-tui process is writing this journal"):
            resume_session(path, operator="bob")
        with pytest.raises(JournalBusy):
            Journal(path, next_n=10_000)
        assert path.read_bytes() == before
    finally:
        writer.kill()
        writer.wait()
    journal, _state, result = resume_session(path, operator="bob")  # its writer gone: the usual resume
    journal.close()
    assert result.torn_tail_offset is not None
    assert path.read_bytes().startswith(before[: result.torn_tail_offset])


def test_resume_refuses_what_is_not_a_session(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="no such journal"):
        resume_session(tmp_path / "missing.jsonl")
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    with pytest.raises(ResumeError, match="no readable events"):
        resume_session(garbage)
    headless = tmp_path / "headless.jsonl"
    headless.write_text(ev.Notice(source="x", message="y", n=1).model_dump_json() + "\n")
    with pytest.raises(ResumeError, match="no session_started"):
        resume_session(headless)


# --- kill -9 ---------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from rollback_tui.core import events as ev
    from rollback_tui.core.journal import Journal
    from rollback_tui.core.resume import resume_session

    path = Path(sys.argv[1])
    if path.exists():
        journal, state, result = resume_session(path, operator="child", batch_s=0.01)
    else:
        journal = Journal(path, batch_s=0.01)
        journal.append(ev.SessionStarted(playbook="p", playbook_name="p", playbook_title="t", environment="e",
                                         operator="child", host="h", version="0"))
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        for k in range(5):
            journal.append(ev.FanoutFrame(run="r", session="A", replica="a", thread_id="t",
                                          event_id=f"{i}.{k}", received_at=0.0))
        journal.flush_due()
        if i % 3 == 0:
            event = journal.append(ev.OperatorAction(action="tick", actor="child", detail={"i": i}))
        else:
            event = journal.append(ev.ChecklistTicked(item="x", checked=bool(i % 2), actor="child"))
        print(event.n, flush=True)  # acknowledged: append returned, the durable event is on disk
    """
)


def _acknowledged(proc: subprocess.Popen[str], into: list[int], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            ready.set()
        elif line.strip():
            into.append(int(line))
    ready.set()


@pytest.mark.integration
def test_kill_9_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(8)
    path = tmp_path / "killed.jsonl"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    acknowledged: list[int] = []
    deadline = time.monotonic() + 40
    for round_no in range(20):
        assert time.monotonic() < deadline, f"too slow: {round_no} rounds"
        proc = subprocess.Popen(
            [sys.executable, str(script), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        got: list[int] = []
        ready = threading.Event()
        reader = threading.Thread(target=_acknowledged, args=(proc, got, ready), daemon=True)
        reader.start()
        try:
            assert ready.wait(20), "child never became ready"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            reader.join(5)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        proc.stderr.close()  # type: ignore[union-attr]
        acknowledged += got
        if round_no % 5 == 4:  # a power cut mid-write: a torn last line the next resume must cut off
            with open(path, "ab") as fh:
                fh.write(b'{"kind":"checklist_ticked","ts":17672')

        # The journal always parses: at most a torn last line, never a corrupt one in the middle.
        result = read_journal(path)
        assert all("torn last line" in w for w in result.warnings) and len(result.warnings) <= 1
        durable = {e.n: e.kind for e in result.events}
        missing = [n for n in acknowledged if durable.get(n) not in ("operator_action", "checklist_ticked")]
        assert not missing, f"round {round_no}: acknowledged events lost: {missing[:5]}"
        numbers = [e.n for e in result.events]
        assert numbers == sorted(set(numbers)), "n must stay strictly increasing across resumes"
    assert len(acknowledged) > 20
    resumed = [e for e in read_journal(path).events if isinstance(e, ev.SessionResumed)]
    assert len(resumed) == 19


# --- gates running when the cockpit died -----------------------------------------------------------


def test_resume_journals_an_unfinished_gate_as_interrupted_once(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    journal.append(started())
    journal.append(ev.GateStarted(gate="done", run="d1", argv=["true"], where="local", ts=100.0))
    journal.append(ev.GateFinished(gate="done", run="d1", outcome="passed", duration_s=1, ts=101.0))
    journal.append(ev.GateStarted(gate="long", run="l1", argv=["sleep", "300"], where="local", ts=110.0))
    for i in range(500):  # more lines than the fold keeps: the newest one must still date it
        journal.append(ev.GateOutput(gate="long", run="l1", stream="stdout", line=f"{i}", ts=110.0 + i / 2))
    journal.append(ev.HealthSample(replica="a", status="ok", ts=1000.0))  # later, but not the gate's
    journal.close()

    resumed_journal, state, _ = resume_session(path, operator="bob")
    resumed_journal.close()
    gate = state.gates["long"]
    assert (gate.status, gate.exit_code, gate.duration_s) == ("interrupted", None, 249.5)
    assert state.gates["done"].status == "passed"
    events = read_journal(path).events
    assert [e.kind for e in events[-2:]] == ["session_resumed", "gate_finished"]
    finished = events[-1]
    assert isinstance(finished, ev.GateFinished)
    assert (finished.gate, finished.run, finished.outcome) == ("long", "l1", "interrupted")
    assert (finished.last_seen_ts, finished.started_ts, finished.output_lines) == (359.5, 110.0, 500)
    assert "the cockpit stopped while the gate ran (last seen 00:05:59Z)" in (finished.error or "")

    again, state, _ = resume_session(path, operator="bob")
    again.close()
    assert state.gates["long"].status == "interrupted"
    assert sum(isinstance(e, ev.GateFinished) for e in read_journal(path).events) == 2  # not journaled twice


# A headless cockpit: the real Engine and Journal running one long gate whose tree holds a background
# child and a child that called setsid (out of the gate's process group). The test kills it with -9.
CRASHING_COCKPIT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from rollback_tui.session.engine import Engine
    from rollback_tui.core.journal import Journal
    from rollback_tui.playbook.load import load_playbook

    async def main() -> None:
        book, journal = sys.argv[1], Path(sys.argv[2])
        engine = Engine(load_playbook(book), Journal(journal), playbook_path=book, operator="crash-test")
        await engine.start()
        await engine.run_gates(actor="operator")

    asyncio.run(main())
    """
)
LONG_GATE = (
    "echo $$ > gate.pid; sleep 3411 & echo $! > child.pid; setsid sleep 3412 & echo $! > escaped.pid; "
    "echo started; wait"
)


def wait_for(what: str, condition: Callable[[], object], timeout_s: float = 20.0) -> object:
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def gate_pids(work: Path) -> dict[str, int] | None:
    files = {name: work / f"{name}.pid" for name in ("gate", "child", "escaped")}
    texts = {name: f.read_text().strip() if f.exists() else "" for name, f in files.items()}
    return {n: int(t) for n, t in texts.items()} if all(t.isdigit() for t in texts.values()) else None


def journaled(path: Path, kind: type[ev.Event]) -> list[ev.Event]:
    return [e for e in read_journal(path).events if isinstance(e, kind)]


@pytest.mark.integration
def test_kill_9_of_the_cockpit_ends_its_gate_and_resume_records_it_interrupted(tmp_path: Path) -> None:
    work, journal = tmp_path / "work", tmp_path / "session.jsonl"
    work.mkdir()
    book = tmp_path / "playbook.yaml"
    book.write_text(
        json.dumps(
            {
                "name": "crash", "title": "crash",
                "replicas": [{"name": "a", "url": "http://127.0.0.1:1", "role": "stable"}],
                "gates": [{"name": "long", "title": "long", "argv": ["sh", "-c", LONG_GATE], "cwd": str(work),
                           "timeout_s": 600}],
                "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
            }
        )
    )  # fmt: skip
    script = tmp_path / "cockpit.py"
    script.write_text(CRASHING_COCKPIT)
    cockpit = subprocess.Popen([sys.executable, str(script), str(book), str(journal)], stderr=subprocess.PIPE)
    pids: dict[str, int] = {}
    try:
        pids = wait_for("the gate's pid files", lambda: gate_pids(work))  # type: ignore[assignment]
        wait_for("the escapee to leave the session", lambda: session_of(pids["escaped"]) == pids["escaped"])
        assert session_of(pids["gate"]) == pids["gate"] != pids["escaped"]
        wait_for("the output line", lambda: journaled(journal, ev.GateOutput))
        cockpit.kill()
        cockpit.wait(10)
        assert cockpit.returncode == -signal.SIGKILL, cockpit.stderr.read() if cockpit.stderr else ""

        # Its gate dies with it: the command, its background child and the child that left its group.
        wait_for("the gate's processes to end", lambda: not any(map(pid_alive, pids.values())), 5)
    finally:
        for pid in pids.values():  # leave nothing behind if the fix regresses
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if cockpit.poll() is None:
            cockpit.kill()
        cockpit.wait()
        cockpit.stderr.close()  # type: ignore[union-attr]

    (gate_start,) = journaled(journal, ev.GateStarted)
    last_line = journaled(journal, ev.GateOutput)[-1]
    assert not journaled(journal, ev.GateFinished)

    resumed, state, _ = resume_session(journal, operator="bob")
    resumed.close()
    gate = state.gates["long"]
    assert gate.status == "interrupted" and gate.run == gate_start.run  # type: ignore[attr-defined]
    (finished,) = journaled(journal, ev.GateFinished)
    assert isinstance(finished, ev.GateFinished) and finished.outcome == "interrupted"
    assert finished.last_seen_ts == last_line.ts and finished.started_ts == pytest.approx(gate_start.ts)

    export_session(journal, tmp_path / "out", playbook=load_playbook(book))
    report = (tmp_path / "out" / "report.md").read_text()
    assert f"**Run {finished.run}: INTERRUPTED**" in report and "last seen" in report
