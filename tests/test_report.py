"""Export: Markdown + JSON golden files from a recorded journal, redaction everywhere, robustness.

Regenerate the golden files after an intended change with: UPDATE_GOLDEN=1 pytest tests/test_report.py
(and the fixture journal itself with tests/data/export/make_session.py).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build_lab_playbook, encodings, holds_secret, removal_action
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.timeline import describe
from rollback_tui.core.redact import MASK, Redactor
from rollback_tui.core.state import fold
from rollback_tui.playbook.load import load_playbook
from rollback_tui.report import export as export_mod
from rollback_tui.report.bundle import build_bundle
from rollback_tui.report.evidence import TrafficHistory
from rollback_tui.report.export import ExportError, export_session
from rollback_tui.report.markdown import render_markdown
from rollback_tui.report.redact_copy import redact_block
from rollback_tui.session.engine import Engine

DATA = Path(__file__).parent / "data" / "export"
GOLDEN = DATA / "golden"
SECRET = "s3cr3t-fixture-value-42"  # in the fixture's gate output, unknown to the redactor that wrote it


@pytest.fixture
def session(tmp_path: Path) -> Path:
    """A copy of the recorded session (journal, its playbook, its gate artefacts) in a fresh directory."""
    for name in ("session.jsonl", "playbook.yaml"):
        shutil.copy(DATA / name, tmp_path / name)
    shutil.copytree(DATA / "session-artefacts", tmp_path / "session-artefacts")
    return tmp_path / "session.jsonl"


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
    expected = path.read_text()
    assert actual == expected, f"{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"


def test_export_matches_the_golden_report_and_summary(session: Path, tmp_path: Path) -> None:
    out = tmp_path / "evidence"
    # No playbook argument: it is loaded from the session_started event's path (next to the journal).
    paths = export_session(session, out, redactor=Redactor([SECRET]), svg="<svg><text>cockpit</text></svg>")
    names = sorted(str(p.relative_to(out)) for p in paths)
    assert names == [
        "artefacts/release-gates-surreal-g1base00.log",
        "artefacts/release-gates-surreal-g2after0.log",
        "bundle.json",
        "cockpit.svg",
        "journal.jsonl",
        "report.md",
    ]
    assert all(p.is_file() for p in paths)
    check_golden("report.md", (out / "report.md").read_text())
    bundle = json.loads((out / "bundle.json").read_text())
    check_golden("summary.json", json.dumps(bundle["summary"], indent=1, ensure_ascii=False) + "\n")
    # A second export of the same journal is byte-identical (no clock reads, no temp paths).
    again = tmp_path / "again" / "evidence"
    export_session(session, again, redactor=Redactor([SECRET]), svg="<svg/>")
    assert (again / "report.md").read_text() == (out / "report.md").read_text()


def test_the_report_follows_the_playbook_sections(session: Path, tmp_path: Path) -> None:
    export_session(session, tmp_path / "out", redactor=Redactor([SECRET]))
    report = (tmp_path / "out" / "report.md").read_text()
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Exit verdict: COMPLETE",
        "## Baseline facts",
        "## Timeline",
        "## Runbook steps",
        "## Gates",
        "## Realtime fanout",
        "## Replica traffic distribution",
        "## Guardrails, time to detect and RTO",
        "## Readiness",
        "## Data-collection failures",
        "## Evidence checklist",
        "## Exit criteria",
        "## Incident follow-up",
    ]
    for section in ("### Timeline", "### Impact", "### Root cause", "### Corrective actions"):
        assert section in report
    assert "| 2026-01-01T12:00:45Z | Rollback remove-blue-next applied via lab" in report
    assert "`evt-f2after0-1` | B | stable-b | 4 | 2026-01-01T12:01:44.204Z" in report
    traffic_rows = [ln for ln in report.split("## Replica traffic")[1].split("## Guardrails")[0].splitlines()]
    assert 3 <= len([ln for ln in traffic_rows if ln.startswith("| 2026")]) <= 30


def test_secrets_are_redacted_in_every_exported_file(session: Path, tmp_path: Path) -> None:
    assert SECRET in session.read_text()  # the journal has it (written by a redactor that did not know it)
    assert SECRET in (session.parent / "session-artefacts" / "release-gates-surreal-g2after0.log").read_text()
    out = tmp_path / "out"
    paths = export_session(session, out, redactor=Redactor([SECRET]), svg=f"<svg><text>{SECRET}</text></svg>")
    for path in paths:
        assert SECRET not in path.read_text(), path.name
    assert "using credentials *** for the staging cluster" in (out / "journal.jsonl").read_text()


def test_encoded_forms_of_secrets_are_masked_in_the_report_bundle_and_journal_copy(
    session: Path, tmp_path: Path
) -> None:
    # Warning notices (the report's timeline shows them) carry SECRET URL-encoded, hex-encoded and
    # base64-encoded, alone and inside longer data at each byte offset; the journal did not know SECRET.
    forms = encodings(SECRET)
    *lines, ended = session.read_text().splitlines(keepends=True)
    last = ev.parse_event(ended)
    for i, (name, form) in enumerate(forms.items()):
        notice = ev.Notice(
            level="warning", source="probe", message=f"{name}: {form}", ts=last.ts - 1, n=last.n + i
        )
        lines.append(notice.model_dump_json() + "\n")
    last.n += len(forms)
    session.write_text("".join(lines) + last.model_dump_json() + "\n")
    assert all(holds_secret(line, SECRET) for line in lines[-len(forms) :])

    out = tmp_path / "out"
    export_session(session, out, redactor=Redactor([SECRET]))
    report = (out / "report.md").read_text()
    assert all(f"Warning from probe: {name}: " in report for name in forms)  # the notices are in it
    bundle = json.loads((out / "bundle.json").read_text())
    messages = [e["message"] for e in bundle["events"] if e["kind"] == "notice" and e["source"] == "probe"]
    assert len(messages) == len(forms) and all(MASK in m for m in messages)
    for name in ("report.md", "bundle.json", "journal.jsonl"):
        assert not holds_secret((out / name).read_text(), SECRET), name


def test_bundle_holds_every_event_and_the_summary(session: Path, tmp_path: Path) -> None:
    export_session(session, tmp_path / "out", redactor=Redactor([SECRET]))
    bundle = json.loads((tmp_path / "out" / "bundle.json").read_text())
    journal = read_journal(session).events
    assert bundle["format"] == "rollback-tui-bundle/1"
    assert [e["n"] for e in bundle["events"]] == [e.n for e in journal]
    assert [ev.parse_event(json.dumps(e)).kind for e in bundle["events"]] == [e.kind for e in journal]
    summary = bundle["summary"]
    assert summary["verdict"]["complete"] is True and summary["verdict"]["missing"] == []
    assert summary["rollback"]["rto_s"] == 12.5 and summary["rollback"]["time_to_detect_s"] == 3.01
    assert [g["outcome"] for g in summary["gates"]] == ["passed", "passed"]
    assert bundle["artefacts"] == [
        "artefacts/release-gates-surreal-g1base00.log",
        "artefacts/release-gates-surreal-g2after0.log",
    ]


def test_in_memory_render_and_bundle_agree_with_the_export(session: Path, tmp_path: Path) -> None:
    playbook = load_playbook(DATA / "playbook.yaml")
    events = read_journal(session).events
    state = fold(events)
    markdown = render_markdown(playbook, state, events, redactor=Redactor([SECRET]))
    assert markdown == render_markdown(playbook, fold(events), events, redactor=Redactor([SECRET]))
    # Without the export counted, the report_exported item is still open — and the verdict says so.
    assert "## Exit verdict: NOT COMPLETE" in markdown
    assert "- All evidence checklist items are checked — 4/5 checked; open: report-stored" in markdown
    assert "  - no export written yet" in markdown
    bundle = build_bundle(playbook, state, events)
    assert len(bundle["events"]) == len(events)
    assert bundle["summary"]["checklist"][4]["checked"] is False


def test_no_follow_up_section_when_the_playbook_has_none(session: Path) -> None:
    playbook = load_playbook(DATA / "playbook.yaml").model_copy(update={"follow_up": []})
    events = read_journal(session).events
    assert "Incident follow-up" not in render_markdown(playbook, fold(events), events)


def test_the_parallel_copy_writes_the_same_files_as_in_process(
    session: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export_session(session, tmp_path / "inline" / "out", redactor=Redactor([SECRET]))
    monkeypatch.setattr(export_mod, "PARALLEL_MIN_BYTES", 0)  # force the child process
    export_session(session, tmp_path / "child" / "out", redactor=Redactor([SECRET]))
    for name in ("report.md", "bundle.json", "journal.jsonl"):
        child, inline = tmp_path / "child" / "out" / name, tmp_path / "inline" / "out" / name
        assert child.read_bytes() == inline.read_bytes(), name


def test_a_torn_tail_and_a_corrupt_line_still_export_valid_json(session: Path, tmp_path: Path) -> None:
    lines = session.read_bytes().splitlines(keepends=True)
    lines.insert(5, b'{"kind":"health_sample","ts":"not a number"}\n')
    session.write_bytes(b"".join(lines) + b'{"kind":"fanout_frame","ts":17')
    out = tmp_path / "out"
    export_session(session, out, redactor=Redactor([SECRET]))
    bundle = json.loads((out / "bundle.json").read_text())
    assert len(bundle["events"]) == len(lines) - 1
    warnings = bundle["summary"]["warnings"]
    assert len(warnings) == 2 and "line 6" not in warnings[0]
    assert ":6: unreadable line skipped" in warnings[0] and "torn last line" in warnings[1]
    assert "## Journal warnings" in (out / "report.md").read_text()
    assert (out / "journal.jsonl").read_bytes().endswith(b"}\n")


def test_export_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="no such journal"):
        export_session(tmp_path / "missing.jsonl", tmp_path / "out")
    journal = tmp_path / "s.jsonl"
    started = ev.SessionStarted(
        playbook="gone.yaml",
        playbook_name="x",
        playbook_title="x",
        environment="e",
        operator="o",
        host="h",
        version="0",
    )
    journal.write_text(started.model_dump_json() + "\n")
    with pytest.raises(ExportError, match=r"playbook gone\.yaml of this session not found"):
        export_session(journal, tmp_path / "out")


def test_block_redaction_equals_line_by_line() -> None:
    lines = [
        ev.GateOutput(gate="g", run="r", stream="stdout", line=text).model_dump_json()
        for text in (
            "fetch https://ci:hunter22@registry.example.com/v2/?token=abc123&x=1",
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "export GITHUB_TOKEN=ghp_abcdefgh API_KEY=zzz",
            'config {"password": "pa55word!", "user": "bob"}',
            "all good, 42 tests passed",
            "uses the exact value verysecretvalue in a sentence",
            "cookie=abc; basic dXNlcjpwYXNz",
        )
    ] + [json.dumps({"kind": "notice", "message": "ünïcödé İstanbul token=x"})]
    redactor = Redactor(["verysecretvalue"])
    block = "\n".join(lines) + "\n"
    expected = "\n".join(redactor(line) for line in lines) + "\n"
    assert redact_block(redactor, block) == expected
    assert expected != block  # the fixture really holds secrets


FRAGMENTS = [
    "token=abc123", "Bearer eyJ.x.y", 'password": "pa55"', "https://u:pw@host/x", "sig=0a1b", "API_KEY=z",
    "apikey", 'Cookie": "c=1"', "basic dXNlcjpw", "secret=s", "Authorization", "plain words", "kind", "ǅ",
    "verysecretvalue", "KEY", "passw", "://", " ", "=",
    # its encoded forms, whole and in halves, which only some blocks join
    *encodings("verysecretvalue").values(), "dmVyeXNlY3", "JldHZhbHVl", "76657279736563", "72657476616c7565",
]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from(FRAGMENTS), max_size=4).map("".join), min_size=1, max_size=12))
def test_block_redaction_equals_line_by_line_whatever_the_block_holds(texts: list[str]) -> None:
    # Blocks that hold only some triggers (the others are ruled out from their anchors) redact alike.
    lines = [ev.GateOutput(gate="g", run="r", stream="stdout", line=t).model_dump_json() for t in texts]
    redactor = Redactor(["verysecretvalue"])
    block = "\n".join(lines) + "\n"
    assert redact_block(redactor, block) == "\n".join(redactor(line) for line in lines) + "\n"


def test_traffic_history_stays_within_its_row_budget() -> None:
    history = TrafficHistory(rows=30)
    for s in range(1000):
        history.add(ev.TrafficWindow(ts=1000.0 + s, window_s=1.0, requests=10, per_replica={"a": 7, "b": 3}))
    rows = history.rows()
    assert len(rows) <= 30
    assert sum(r.requests for r in rows) == 10_000
    assert all(r.served == {"a": r.requests * 7 // 10, "b": r.requests * 3 // 10} for r in rows)
    assert rows[0].first_ts == 999.0 and rows[-1].last_ts == 1999.0


def test_requests_no_replica_answered_are_reported_as_failures_in_words() -> None:
    playbook = load_playbook(DATA / "playbook.yaml")
    served = {"stable-a": 6, "blue-next": 4}
    events: list[ev.Event] = [
        ev.TrafficWindow(ts=1000.0, window_s=1.0, requests=10, per_replica=served),
        ev.TrafficWindow(ts=1001.0, window_s=1.0, requests=10, per_replica={}, transport_errors=10,
                         unattributed={"balancer unreachable": 10}),
    ]  # fmt: skip
    report = render_markdown(playbook, fold(events), events).split("## Replica traffic")[1]
    header, _, first, second = report.split("## Guardrails")[0].strip().splitlines()[-4:]
    assert header.split("|")[-4:-1] == [" balancer unreachable ", " 5xx ", " Note "], header
    assert first.split("|")[-4] == " 0.0% " and second.split("|")[-4] == " 100.0% ", (first, second)
    rows = build_bundle(playbook, fold(events), events)["summary"]["traffic"]
    assert [row.get("unattributed") for row in rows] == [None, {"balancer unreachable": 10}]


def test_the_streaming_export_summarises_like_the_in_memory_fold(tmp_path: Path) -> None:
    """Long gate runs and many frames take the export's fast path; the summary must not change."""
    from rollback_tui.core.journal import Journal

    playbook = load_playbook(DATA / "playbook.yaml")
    path = tmp_path / "long.jsonl"
    journal = Journal(path)
    journal.append(ev.SessionStarted(playbook="x", playbook_name="p", playbook_title="t", environment="e",
                                     operator="o", host="h", version="0"))  # fmt: skip
    for run, lines in (("early", 30), ("long", 700), ("late", 250)):
        journal.append(
            ev.GateOutput(gate="release-gates-surreal", run=run, stream="stdout", line="before start")
        )
        journal.append(ev.GateStarted(gate="release-gates-surreal", run=run, argv=["just"], where="local"))
        for i in range(lines):
            journal.append(
                ev.GateOutput(gate="release-gates-surreal", run=run, stream="stdout", line=f"{run} {i}")
            )
            if i % 3 == 0:
                journal.append(ev.FanoutFrame(run=f"f{i}", session="A", replica="stable-a", thread_id="t",
                                              event_id=f"{run}{i}", received_at=float(i)))  # fmt: skip
        journal.append(
            ev.GateFinished(gate="release-gates-surreal", run=run, outcome="passed", duration_s=1.0)
        )
    journal.close()
    exported = tmp_path / "out"
    export_session(path, exported, playbook=playbook, count_self=False)
    streamed = json.loads((exported / "bundle.json").read_text())["summary"]
    events = read_journal(path).events
    in_memory = build_bundle(playbook, fold(events), events, journal_name="long.jsonl")["summary"]
    assert streamed["gates"] == in_memory["gates"]
    assert [g["journaled_output_lines"] for g in streamed["gates"]] == [30, 700, 250]
    assert streamed["gates"][1]["output_tail"][-1] == "long 699"
    assert streamed["session"]["counts"] == in_memory["session"]["counts"]
    assert streamed["fanout_frames_total"] == in_memory["fanout_frames_total"] == 328


def test_a_replica_missing_from_later_windows_shows_as_zero(session: Path) -> None:
    playbook = load_playbook(DATA / "playbook.yaml")
    events = [
        ev.TrafficWindow(ts=100.0, window_s=1.0, requests=10, per_replica={"stable-a": 8, "blue-next": 2}),
        ev.TrafficWindow(ts=200.0, window_s=1.0, requests=10, per_replica={"stable-a": 10}),
    ]
    report = render_markdown(playbook, fold(events), events)
    rows = [line for line in report.splitlines() if line.startswith("| 1970")]
    assert rows[0].split(" | ")[2:4] == ["80.0%", "20.0%"]
    assert rows[-1].split(" | ")[2:4] == ["100.0%", "0.0%"]


def test_fact_values_read_as_words_in_reports() -> None:
    pending = ev.FactCaptured(fact="db-tag", values={"-": None}, source="manual:pending")
    assert pending.values_text() == "pending: record it by hand"
    assert ev.FactCaptured(fact="t", values={"-": "3.0.0"}, source="env:TAG").values_text() == "3.0.0"
    split = ev.FactCaptured(fact="p", values={"stable-a": "chat:rt:", "blue-next": None}, source="health")
    assert split.values_text() == "stable-a: chat:rt:; blue-next: —"
    failed = ev.FactCaptured(fact="c", values={"-": None}, source="command", error="exit 2")
    assert failed.values_text() == "no value"


def test_operator_action_details_stay_on_one_line_in_the_timeline() -> None:
    script = "import json\nprint(json.dumps({'a': 1}))\n"
    detail = {"name": "x", "argv": ["python3", "-c", script]}
    action = ev.OperatorAction(action="run_action", actor="bob", detail=detail)
    text = describe(action)
    assert text == "Operator bob: run_action (name=x, argv=python3 -c import json…)"
    long = ev.OperatorAction(action="tick", actor="bob", detail={"note": "y" * 300})
    assert describe(long) == f"Operator bob: tick (note={'y' * 100}…)"


def test_a_gate_script_is_a_code_block_printed_once_per_gate(session: Path, tmp_path: Path) -> None:
    script = "import sys\nprint('gate ok')\nsys.exit(0)\n"
    with session.open("a") as fh:
        for run in ("s1", "s2"):
            started = ev.GateStarted(gate="scripted", run=run, argv=["python3", "-c", script], where="local")
            finished = ev.GateFinished(gate="scripted", run=run, outcome="passed", duration_s=0.1)
            fh.write(started.model_dump_json() + "\n" + finished.model_dump_json() + "\n")
    export_session(session, tmp_path / "out", redactor=Redactor([SECRET]))
    report = (tmp_path / "out" / "report.md").read_text()
    section = report.split("### scripted", 1)[1].split("\n## ", 1)[0]
    assert "Command: `python3 -c <script>` on local (by engine); the script below" in section
    assert "Command: `python3 -c <script>` on local (by engine); the script as above" in section
    assert section.count("print('gate ok')") == 1
    assert "```text\nimport sys\nprint('gate ok')\nsys.exit(0)\n```" in section


def test_data_collection_failures_list_each_unknown_with_its_reason_and_when(
    session: Path, tmp_path: Path
) -> None:
    t0 = 1767268950.0  # after the recorded session's own events
    unset = "environment variable OPS_API_TOKEN is not set (needed by header Authorization)"
    events: list[ev.Event] = [
        ev.ProbeResult(ts=t0, probe="dead-letters", ok=False, observed=False, error=unset),
        ev.ProbeResult(ts=t0 + 30, probe="dead-letters", ok=False, observed=False, error=unset),
        ev.ProbeResult(ts=t0 + 60, probe="dead-letters", ok=True, value=4),
        ev.ProbeResult(ts=t0 + 90, probe="dead-letters", ok=False, error="expected HTTP 200, got 503"),
        ev.HealthSample(ts=t0 + 1, replica="stable-a", status="unknown", error="host name does not resolve"),
        ev.HealthSample(ts=t0 + 2, replica="stable-b", status="down", error="connection refused"),
        ev.GateStarted(ts=t0 + 3, gate="smoke", run="r9", argv=["node", "smoke.mjs"], where="local"),
        ev.GateFinished(
            ts=t0 + 3, gate="smoke", run="r9", outcome="error", duration_s=0, error="command not found: node"
        ),
        ev.FactCaptured(
            ts=t0 + 4, fact="lkg", values={"-": None}, source="command:gh", observed=False, error="no gh"
        ),
    ]
    with session.open("a") as fh:
        fh.writelines(e.model_dump_json() + "\n" for e in events)
    export_session(session, tmp_path / "out", redactor=Redactor([SECRET]))
    report = (tmp_path / "out" / "report.md").read_text()
    failures = report.split("## Data-collection failures\n", 1)[1].split("\n## ", 1)[0]
    table = [line for line in failures.splitlines() if line.startswith("| ")][1:]  # below the header
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert rows == [
        [
            "probe dead-letters",
            unset,
            "2026-01-01T12:02:30Z",
            "2026-01-01T12:03:00Z",
            "2",
            "2026-01-01T12:03:30Z",
        ],
        [
            "replica stable-a health",
            "host name does not resolve",
            "2026-01-01T12:02:31Z",
            "2026-01-01T12:02:31Z",
            "1",
            "still unknown",
        ],
        [
            "gate smoke",
            "command not found: node",
            "2026-01-01T12:02:33Z",
            "2026-01-01T12:02:33Z",
            "1",
            "still unknown",
        ],
        ["fact lkg", "no gh", "2026-01-01T12:02:34Z", "2026-01-01T12:02:34Z", "1", "still unknown"],
    ]  # the 503 and the refused replica are failures of the target, not data-collection failures
    assert "| lkg | baseline | no value (unknown, could not observe: no gh) |" in report
    assert "**Run r9: COULD NOT RUN**" in report
    summary = json.loads((tmp_path / "out" / "bundle.json").read_text())["summary"]
    assert [f["what"] for f in summary["data_collection_failures"]] == [r[0] for r in rows]


def test_prometheus_guardrails_are_reported_with_query_window_value_and_time() -> None:
    from rollback_tui.playbook.load import bundled_playbook

    playbook = load_playbook(bundled_playbook("demo"))
    t0 = 1767268800.0
    query = '1000 * histogram_quantile(0.95, sum by (le) (rate(x{replica=~"blue-next"}[10s])))'
    events: list[ev.Event] = [
        ev.SessionStarted(ts=t0, playbook="demo.yaml", playbook_name="demo", playbook_title="Demo",
                          environment="lab", operator="alice", host="h", version="0"),
        ev.MetricSample(ts=t0 + 1, guardrail="prom-candidate-5xx", server="lab-prometheus", query="q5",
                        window_s=3, value=0.02, samples=40),
        ev.MetricSample(ts=t0 + 2, guardrail="prom-p95-latency", server="lab-prometheus", query=query,
                        window_s=10, value=300.0, samples=60, baseline=100.0, baseline_samples=400),
        ev.GuardrailBreach(ts=t0 + 7, guardrail="prom-p95-latency", severity="P1", metric="query", value=3.0,
                           threshold=2, window_s=10, first_bad_ts=t0 + 2, candidate=300.0, baseline=100.0,
                           compare="ratio", unit="ms"),
        ev.MetricSample(ts=t0 + 8, guardrail="prom-idempotency-collisions", server="lab-prometheus",
                        query="q", window_s=10, errors={"value": "Prometheus lab-prometheus: no series"}),
    ]  # fmt: skip
    report = render_markdown(playbook, fold(events), events)
    section = report.split("## Guardrails, time to detect and RTO\n", 1)[1].split("\n## ", 1)[0]
    times = "\N{MULTIPLICATION SIGN}"
    assert (
        f"| prom-p95-latency | breach P1 | query {times}3.00 (candidate 300 ms vs stable 100 ms)"
        f" | {times}2.00 over 10 s |"
    ) in section
    assert (
        f"- ✗ BREACH P1 prom-p95-latency {times}3.00 > {times}2.00 over 10 s"
        " · candidate 300 ms vs stable 100 ms"
    ) in section
    assert "| prom-candidate-5xx | lab-prometheus | `q5` | 3 s | 2.0% | 2026-01-01T12:00:01Z |" in section
    assert (
        "| prom-p95-latency | lab-prometheus | `1000 * histogram_quantile(0.95, sum by (le)"
        ' (rate(x{replica=~"blue-next"}[10s])))` | 10 s | \N{MULTIPLICATION SIGN}3.00'
        " (candidate 300 ms vs stable 100 ms) | 2026-01-01T12:00:02Z |"
    ) in section
    assert (
        "| prom-idempotency-collisions | lab-prometheus | `q` | 10 s |"
        " unknown: Prometheus lab-prometheus: no series | 2026-01-01T12:00:08Z |"
    ) in section


REMOVAL = build_lab_playbook(actions=[removal_action(verify_requests=20)])


@pytest.mark.parametrize("lab_playbook", [REMOVAL], indirect=True)
async def test_the_routing_after_a_selector_removal_lists_what_the_balancer_routes_to(
    lab, tmp_path: Path
) -> None:
    """The report's rollback read 'after: selector {…track: stable}, backends stable-a, stable-b, weights
    stable-a 45, stable-b 45, blue-next 10' — the lab balancer's admin state gives every backend's
    configured weight, also of the one the selector no longer matches. The weights shown are those of the
    backends it routes to; blue-next's is labelled as not routed."""
    engine = Engine(lab.playbook, Journal(tmp_path / "j.jsonl"), operator="t")
    verified = await engine.rollback("remove-blue-next", "blue-next")
    await engine.stop()
    assert verified.ok
    events = read_journal(tmp_path / "j.jsonl").events
    applied = next(e for e in events if isinstance(e, ev.RollbackApplied))
    assert (
        applied.after["backends"] == ["stable-a", "stable-b"] and applied.after["weights"]["blue-next"] == 10
    )
    report = render_markdown(lab.playbook, fold(events), events)
    after = next(line for line in report.splitlines() if line.lstrip().startswith("- after: "))
    assert after.strip() == (
        "- after: selector {'app': 'api', 'track': 'stable'}, backends stable-a 45, stable-b 45; "
        "not routed: blue-next (configured weight 10)"
    )
    before = next(line for line in report.splitlines() if line.lstrip().startswith("- before: "))
    assert (
        before.strip() == "- before: selector {'app': 'api'}, backends stable-a 45, stable-b 45, blue-next 10"
    )


def test_the_report_numbers_a_step_once_when_its_title_is_numbered(session: Path, tmp_path: Path) -> None:
    """The shipped playbooks number their step titles ("1. Capture baseline evidence"); the report read
    "**1. 1. Capture baseline evidence**", numbering them again."""
    book = session.parent / "playbook.yaml"
    text = book.read_text()
    for n, title in enumerate(("Capture baseline evidence", "Trigger rollback", "Rollback verification"), 1):
        text = text.replace(f"title: {title}\n", f"title: {n}. {title}\n")
    book.write_text(text)
    export_session(session, tmp_path / "out", redactor=Redactor([SECRET]))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "- **1. Capture baseline evidence** (baseline): passed" in report
    assert "- **3. Rollback verification** (verify): passed" in report
    assert "1. 1." not in report and "3. 3." not in report
