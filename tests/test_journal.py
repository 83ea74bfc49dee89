"""Journal: round trip, redaction, torn last line, permissions, durability, resume."""

from __future__ import annotations

import json
import os
import stat

import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.redact import Redactor
from rollback_tui.core.state import fold


def _sample(i: int, replica: str = "stable-a") -> ev.HealthSample:
    return ev.HealthSample(replica=replica, status="ok", latency_ms=float(i), channel_prefix="chat:rt:")


def test_round_trip_preserves_every_event_in_order(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    written = [journal.append(_sample(i)) for i in range(50)]
    written.append(journal.append(ev.OperatorAction(action="run_gates", actor="alice")))
    journal.close()

    result = read_journal(path)
    assert result.warnings == []
    assert [e.n for e in result.events] == list(range(1, 52))
    assert result.events == written
    assert isinstance(result.events[-1], ev.OperatorAction)


def test_file_mode_is_0600(tmp_path):
    path = tmp_path / "sub" / "s.jsonl"
    Journal(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_durable_event_is_on_disk_before_append_returns(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path, batch_s=3600)
    journal.append(_sample(1))
    assert path.read_text() == ""  # high-rate sample still batched
    journal.append(ev.ChecklistTicked(item="x", checked=True, actor="bob"))
    lines = path.read_text().splitlines()  # the tick flushed everything before it, in order
    assert [json.loads(line)["kind"] for line in lines] == ["health_sample", "checklist_ticked"]
    journal.close()


def test_batched_events_flush_when_due(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path, batch_s=0.0)
    journal.append(_sample(1))
    journal.flush_due()
    assert len(path.read_text().splitlines()) == 1
    journal.close()


def test_secrets_are_redacted_before_they_reach_disk(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path, Redactor(["hunter2-super-secret"]))
    journal.append(ev.Notice(source="gate", message="using token hunter2-super-secret now"))
    journal.append(ev.Notice(source="probe", message="GET https://u:pa55word@h/x?token=abc123&x=1"))
    journal.append(
        ev.GateOutput(gate="g", run="r", stream="stdout", line="Authorization: Bearer eyJhbGciOi.xyz")
    )
    journal.close()
    text = path.read_text()
    for secret in ("hunter2-super-secret", "pa55word", "abc123", "eyJhbGciOi.xyz"):
        assert secret not in text
    events = read_journal(path).events
    assert events[0].message == "using token *** now"
    assert events[1].message == "GET https://u:***@h/x?token=***&x=1"


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    for i in range(3):
        journal.append(ev.OperatorAction(action=f"a{i}", actor="x"))
    journal.close()
    with open(path, "ab") as fh:
        fh.write(b'{"kind": "operator_action", "action": "tor')
    result = read_journal(path)
    assert [e.action for e in result.events] == ["a0", "a1", "a2"]
    assert len(result.warnings) == 1 and "torn last line" in result.warnings[0]


def test_corrupt_middle_line_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "s.jsonl"
    good = ev.OperatorAction(action="a", actor="x", n=1).model_dump_json()
    path.write_text(good + "\n" + "not json at all\n" + '{"kind": "no_such_kind"}\n' + good + "\n")
    result = read_journal(path)
    assert len(result.events) == 2
    assert [w.split(":")[1] for w in result.warnings] == ["2", "3"]


def test_resume_truncates_torn_tail_and_continues_numbering(tmp_path):
    from rollback_tui.core.resume import resume_session

    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    journal.append(
        ev.SessionStarted(
            playbook="p.yaml",
            playbook_name="p",
            playbook_title="p",
            environment="e",
            operator="x",
            host="h",
            version="0",
        )
    )
    for i in range(4):
        journal.append(ev.OperatorAction(action=f"a{i}", actor="x"))
    journal.close()
    with open(path, "ab") as fh:
        fh.write(b'{"kind": "oper')

    journal, _state, result = resume_session(path, operator="x")
    assert result.recovered == 5 and result.torn_tail_offset is not None
    journal.append(ev.OperatorAction(action="after", actor="x"))
    journal.close()
    again = read_journal(path)
    assert again.warnings == []
    assert [e.n for e in again.events] == [1, 2, 3, 4, 5, 6, 7]  # 6 is the SessionResumed marker
    assert again.events[-1].action == "after"


def test_refuses_to_overwrite_an_existing_session(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    journal.append(ev.OperatorAction(action="a", actor="x"))
    journal.close()
    with pytest.raises(FileExistsError, match="resume"):
        Journal(path)


def test_fold_of_read_back_journal_equals_live_state(tmp_path):
    path = tmp_path / "s.jsonl"
    journal = Journal(path)
    live = []
    for i in range(10):
        live.append(journal.append(_sample(i, "stable-a")))
        live.append(journal.append(_sample(i, "blue-next").model_copy(update={"channel_prefix": "other:"})))
    journal.close()
    replayed = fold(read_journal(path).events)
    expected = fold(live)
    assert replayed.prefixes == expected.prefixes == {"stable-a": "chat:rt:", "blue-next": "other:"}
    assert list(replayed.replicas["stable-a"].latencies) == list(expected.replicas["stable-a"].latencies)


def test_trusted_events_serialise_exactly_like_validated_ones(tmp_path):
    values = dict(
        ts=1.5,
        run="r",
        session="tap",
        replica="stable-a",
        thread_id="t",
        event_id="evt-1",
        seq=3,
        sent_at=None,
        received_at=2.0,
        latency_ms=None,
        replay=False,
    )
    fast = ev.trusted(ev.FanoutFrame, **values)
    slow = ev.FanoutFrame(**values)
    assert fast == slow and fast.model_dump_json() == slow.model_dump_json()
    journal = Journal(tmp_path / "s.jsonl")
    journal.append(fast)
    journal.close()
    assert read_journal(tmp_path / "s.jsonl").events == [slow.model_copy(update={"n": 1})]
    with pytest.raises(KeyError):
        ev.trusted(ev.FanoutFrame, run="r")  # every field must be given


def test_tap_batch_lines_read_back_as_the_same_event(tmp_path):
    from rollback_tui.core.journal import _to_json
    from rollback_tui.core.resume import parse_line

    rows = [
        (1795500349.0669072, "chat:rt:t1", "stable-a", "t1", "evt-1", 1, None),
        (1795500349.0669072, 'chat:"q"\\', "blue-next", "t\u00e9\u2028\x01", "evt-2", None, 1795500348.5),
        (0.1, "c", "r", "", "e", 2**70, 5e-324),
    ]
    fast = ev.trusted(ev.FanoutTapBatch, ts=1795500349.0669072, run="tap", rows=rows)
    slow = ev.FanoutTapBatch(ts=1795500349.0669072, run="tap", rows=rows)
    # msgspec writes the line (it is the hot one); for such values byte for byte what pydantic writes
    assert _to_json(fast) == _to_json(slow) == slow.__pydantic_serializer__.to_json(slow)
    journal = Journal(tmp_path / "s.jsonl")
    journal.append(fast)
    journal.append(
        ev.trusted(ev.FanoutTapBatch, ts=2e21, run="big", rows=[(1e300, "c", "r", "t", "e", 1, 1e16)])
    )
    journal.close()
    raw = (tmp_path / "s.jsonl").read_bytes().splitlines()
    assert raw[0].startswith(b'{"kind":"fanout_tap_batch",')  # resume reads the kind from this prefix
    events = read_journal(tmp_path / "s.jsonl").events
    assert events[0] == slow.model_copy(update={"n": 1}) == parse_line(raw[0])
    assert events[1].rows == [(1e300, "c", "r", "t", "e", 1, 1e16)] and events[1].ts == 2e21
