"""Incident facts in the evidence (issue 14 item 6): `--incident/--commander/--scribe` journaled at the
start and in the report header; the summary paragraph the report opens with and the headless verdict
prints — what broke, when it was detected and mitigated, the impact, the state now, what could not be
observed — from one read model (core/read/incident.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import build_lab_playbook, removal_action
from rollback_tui.cli.headless import verdict_lines
from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import GuardrailEvaluator
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.incident import IncidentFold
from rollback_tui.core.read.summary import summarize
from rollback_tui.core.read.traffic import TrafficTotals
from rollback_tui.core.state import fold
from rollback_tui.playbook.load import load_playbook
from rollback_tui.report.bundle import build_bundle
from rollback_tui.report.markdown import render_markdown
from rollback_tui.session.runtime import SessionRuntime
from rollback_tui.ui.panes.base import View
from rollback_tui.ui.panes.presenter import tiles
from support.http import JsonHandler
from test_cli import run
from test_report import DATA, SECRET, session  # noqa: F401  (the recorded-session fixture)

T0 = 1767268800.0  # 2026-01-01T12:00:00Z
PLAYBOOK = load_playbook(DATA / "playbook.yaml")


def paragraph(report: str) -> str:
    line = next(ln for ln in report.splitlines() if ln.startswith("**Summary.** "))
    return line.removeprefix("**Summary.** ")


def test_the_report_opens_with_what_broke_when_it_was_detected_and_mitigated_and_the_impact(
    session: Path,  # noqa: F811
) -> None:
    events = read_journal(session).events
    report = render_markdown(PLAYBOOK, fold(events), events)
    assert report.splitlines()[2].startswith("**Summary.** What broke: ")  # right under the title
    assert paragraph(report) == (
        "What broke: P0 guardrail candidate-5xx breached: http_5xx_rate 20.0% > 2.0% over 10 s. "
        "Detected at 12:00:42Z, within 3.01 s of the first bad sample (in the window from 12:00:39Z). "
        "Mitigated at 12:00:57Z by rollback remove-blue-next (blue-next out of traffic; 100.0% of 200 "
        "requests on stable): within 18.1 s of the first bad sample, RTO 12.5 s. "
        # 18 one-second windows of 100 requests end after the first bad sample, up to the verification;
        # the 6 from 12:00:40Z to 12:00:45Z carried 3 blue-next 5xx each.
        "Impact in the incident window (12:00:39Z → 12:00:57Z, 18.1 s): 1800 requests, 18 5xx (1.0%). "
        "Now (12:01:50Z): ? NO DATA — stable-a no recent sample; stable-b no recent sample. "
        "Everything that reported could be observed."
    )


def recorder() -> tuple[list[ev.Event], Callable[[float, ev.Event], None]]:
    """A recorded session's events and `at(offset, event)` appending the next one, opened by the start."""
    events: list[ev.Event] = []

    def at(offset: float, event: ev.Event) -> None:
        event.ts, event.n = T0 + offset, len(events) + 1
        events.append(event)

    at(0, ev.SessionStarted(playbook="playbook.yaml", playbook_name="rehearsal-fixture",
                            playbook_title="t", environment="staging", operator="alice", host="ops-1",
                            version="0.1.0"))  # fmt: skip
    return events, at


def failed_rollback_session() -> list[ev.Event]:
    """Canary traffic, a P0 breach, a rollback whose traffic-control change failed, and a probe that could
    not observe (its token unset) — the session ends with blue-next still in traffic."""
    events, at = recorder()
    at(0.1, ev.IncidentRecorded(incident="INC-42", commander="bob", scribe="carol", actor="alice"))
    for name in ("stable-a", "stable-b", "blue-next"):
        at(1, ev.HealthSample(replica=name, status="ok", latency_ms=5.0))
    at(2, ev.ProbeResult(probe="dead-letters", ok=False, observed=False,
                         error="environment variable OPS_API_TOKEN is not set"))  # fmt: skip
    for t in range(10, 30):
        errors = {"blue-next": 5} if t >= 20 else {}
        per = {"stable-a": 40, "stable-b": 40, "blue-next": 20}
        at(t, ev.TrafficWindow(window_s=1.0, requests=100, per_replica=per, errors_5xx=errors))
        if t == 22:
            at(22.5, ev.GuardrailBreach(guardrail="candidate-5xx", severity="P0", metric="http_5xx_rate",
                                        value=0.25, threshold=0.02, window_s=10.0, first_bad_ts=T0 + 19.0,
                                        scope="candidate"))  # fmt: skip
            at(23, ev.RollbackRequested(action="remove-blue-next", actor="alice", confirmed_text="blue-next",
                                        reason="candidate-5xx breached", replicas=["blue-next"]))  # fmt: skip
            at(23.5, ev.RollbackApplying(action="remove-blue-next", driver="lab"))
            at(24, ev.RollbackApplied(action="remove-blue-next", driver="lab", ok=False,
                                      error="admin endpoint refused the change (HTTP 503)"))  # fmt: skip
    at(31, ev.SessionEnded(reason="quit"))
    return events


def test_a_failed_rollback_and_an_unknown_probe_are_said_in_the_paragraph_and_the_headless_verdict() -> None:
    events = failed_rollback_session()
    state = fold(events)
    report = render_markdown(PLAYBOOK, state, events)
    text = paragraph(report)
    assert text.startswith(
        "What broke: P0 guardrail candidate-5xx breached: http_5xx_rate 25.0% > 2.0% over 10 s. "
        "Detected at 12:00:22Z, within 3.5 s of the first bad sample (in the window from 12:00:19Z). "
        "Not mitigated: rollback remove-blue-next FAILED — admin endpoint refused the change (HTTP 503). "
        # Windows ending after 12:00:19Z up to the end: 12:00:20Z … 12:00:29Z, 5 blue-next 5xx each.
        "Impact in the incident window (12:00:19Z → end of session 12:00:31Z, not mitigated): "
        "1000 requests, 50 5xx (5.0%). "
        "Now (12:00:31Z): ✗ FAILING — "
    ), text
    assert "rollback failed: admin endpoint refused the change (HTTP 503)" in text
    assert text.endswith(
        "Could not be observed: probe dead-letters (environment variable OPS_API_TOKEN is not set; "
        "still unknown at the end)."
    )
    header = report.split("## Exit verdict")[0]
    assert "| Incident | INC-42 |" in header and "| Commander | bob |" in header
    assert "| Scribe | carol |" in header

    # The headless verdict prints the same sentences, folded live from the same events.
    live = IncidentFold()
    for event in events:
        live.observe(event)
    summary = summarize(PLAYBOOK, state, incident=live)
    lines = verdict_lines(summary, TrafficTotals("whole session"), Path("j.jsonl"), [])
    assert lines[1] == "  summary:" and " ".join(line.strip() for line in lines[2:8]) == text

    bundle = build_bundle(PLAYBOOK, state, events)["summary"]
    assert bundle["session"]["incident"] == "INC-42" and bundle["session"]["commander"] == "bob"
    incident = bundle["incident"]
    assert incident["rollback"] == "failed" and incident["mitigated"] is None
    assert incident["first_bad"] == "2026-01-01T12:00:19Z" and incident["time_to_detect_s"] == 3.5
    assert incident["impact"]["requests"] == 1000 and incident["impact"]["errors_5xx"] == {"blue-next": 50}
    assert incident["unobserved"] == [
        {"what": "probe dead-letters", "why": "environment variable OPS_API_TOKEN is not set",
         "latest_why": None, "still_unknown": True}
    ]  # fmt: skip


def test_a_session_where_nothing_broke_says_so() -> None:
    events = failed_rollback_session()[:6]  # started, incident, health, the unknown probe: nothing broke
    state = fold(events)
    text = paragraph(render_markdown(PLAYBOOK, state, events))
    assert text.startswith("Nothing broke: no guardrail breached; no replica, gate, check, probe or fact")
    assert "Impact" not in text and "mitigated" not in text


def test_the_window_that_ended_before_the_first_bad_sample_is_not_incident_traffic() -> None:
    """Recorded from a demo rehearsal (the traffic generator's windows and the sequential breach, as
    journaled): the fault window's start — its end minus its duration, which is journaled to the
    millisecond — lies 0.4 ms before the previous window's end. That clean window (197 requests, all
    answered before the fault was even injected) was counted as incident traffic: "354 requests, 5 5xx
    (1.4%)" where the incident window held 157 requests and 5 5xx (3.2%)."""
    clean = {"stable-a": 79, "stable-b": 94, "blue-next": 24}
    recorded = [
        ev.TrafficWindow(ts=1796016997.1158946, window_s=1.001, requests=200,
                         per_replica={"stable-a": 79, "stable-b": 87, "blue-next": 34}),
        ev.TrafficWindow(ts=1796016998.1223133, window_s=1.006, requests=197, per_replica=clean),
        ev.TrafficWindow(ts=1796016998.9028068, window_s=0.781, requests=157,
                         per_replica={"blue-next": 19, "stable-a": 67, "stable-b": 71},
                         errors_5xx={"blue-next": 5}),
        ev.GuardrailBreach(ts=1796016998.903282, guardrail="candidate-5xx", severity="P0",
                           metric="http_5xx_rate", value=0.625, threshold=0.05, window_s=10.0,
                           first_bad_ts=1796016998.1218069, scope="candidate", requests=8, errors=5,
                           statistic=9.587, bound=8.006, alternative=0.5),
    ]  # fmt: skip
    events: list[ev.Event] = [ev.SessionStarted(ts=1796016994.0, playbook="playbook.yaml",
                                                playbook_name="rehearsal-fixture", playbook_title="t",
                                                environment="lab", operator="alice", host="h",
                                                version="0")]  # fmt: skip
    events += recorded
    for n, event in enumerate(events, start=1):
        event.n = n
    state = fold(events)
    text = paragraph(render_markdown(PLAYBOOK, state, events))
    assert "157 requests, 5 5xx (3.2%)." in text, text
    live = IncidentFold()
    for event in events:
        live.observe(event)
    assert live.traffic.requests == 157 and live.traffic.errors == {"blue-next": 5}


async def test_incident_facts_are_journaled_at_the_start_and_kept_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    incident = {"incident": "https://status.example/inc/42", "commander": "bob", "scribe": None}
    async with SessionRuntime(PLAYBOOK, "pb.yaml", journal=Journal(path), incident=incident) as engine:
        engine.record_incident(scribe=" carol\nsmith ")  # later: the scribe joins; the rest is kept
    recorded = [e for e in read_journal(path).events if isinstance(e, ev.IncidentRecorded)]
    assert [(e.incident, e.commander, e.scribe) for e in recorded] == [
        ("https://status.example/inc/42", "bob", None),
        ("https://status.example/inc/42", "bob", "carol smith"),  # one line: it heads the report
    ]
    assert fold(read_journal(path).events).incident == recorded[-1]


@pytest.fixture
def healthy_replica() -> Iterator[str]:
    """A real HTTP server answering the health check with status ok."""

    class Health(JsonHandler):
        def do_GET(self) -> None:
            body = json.dumps({"status": "ok", "commit": "abc1234"}).encode()
            self.send_json(body, 200)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_headless_prints_readiness_before_it_runs_and_the_paragraph_in_its_verdict(
    tmp_path: Path, healthy_replica: str
) -> None:
    book = tmp_path / "tiny.yaml"
    gates = [
        {"name": "lint", "title": "Lint", "argv": ["rollback-tui-no-such-linter"]},
        {"name": "smoke", "title": "Smoke", "argv": ["python3", "-c", "raise SystemExit(3)"]},
    ]
    doc = {
        "version": 1,
        "name": "tiny",
        "title": "Tiny",
        "replicas": [{"name": "api", "url": healthy_replica, "role": "stable"}],
        "gates": gates,
        "steps": [{"name": "validate", "title": "Validate", "do": [{"gate": "lint"}, {"gate": "smoke"}]}],
    }
    book.write_text(yaml.safe_dump(doc))
    out = tmp_path / "evidence"
    args = ["--incident", "INC-7", "--commander", "bob", "--scribe", "carol", "--export", str(out)]
    result = run("rehearse", str(book), "--headless", "--no-lab", "--watch", "1", *args, tmp=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    log = result.stdout.splitlines()
    # The readiness table comes before the first step runs, and names what cannot run and why.
    headline = next(i for i, line in enumerate(log) if "items cannot run from" in line)
    assert log[headline].startswith("✗ 2 of 4 items cannot run from ")
    assert headline < next(i for i, line in enumerate(log) if "Step validate entered" in line)
    lint = next(line for line in log[:headline] if line.startswith("✗ gate lint"))
    assert lint.split()[3:6] == ["binary", "rollback-tui-no-such-linter", "missing"]

    summary = log.index("  summary:")
    sentences = [line.strip() for line in log[summary + 1 :] if line.startswith("    ")]
    assert sentences[:3] == [
        "What broke: gate smoke failed (exit 3).",
        f"Detected at {sentences[1].split()[2]}",
        "Not mitigated: no rollback was executed.",
    ]
    assert sentences[-1].startswith("Could not be observed: gate lint (")
    recorded = [e for e in read_journal(out / "journal.jsonl").events if isinstance(e, ev.IncidentRecorded)]
    assert [(e.incident, e.commander, e.scribe) for e in recorded] == [("INC-7", "bob", "carol")]
    report = (out / "report.md").read_text()
    assert "| Incident | INC-7 |" in report and "| Scribe | carol |" in report
    assert paragraph(report) == " ".join(sentences)  # the report opens with the same words
    assert "- gate lint — cannot run: binary rollback-tui-no-such-linter missing (not on PATH)" in report
    bundle = json.loads((out / "bundle.json").read_text())["summary"]
    assert bundle["incident"]["text"] == " ".join(sentences)
    assert (bundle["readiness"]["ready"], bundle["readiness"]["items_ready"]) == (False, 2)


def test_a_query_breach_does_not_claim_a_bad_sample_at_the_start_of_its_window() -> None:
    # A Prometheus rate over 3 s that crosses 0.6 s after the fault: the breach's first_bad_ts is its
    # range's start, 2.4 s BEFORE the fault (never understating the time to detect). The summary said
    # "3 s after the first bad sample (12:00:07Z)": a bad sample at a time when nothing was bad yet.
    events, at = recorder()
    at(10.6, ev.GuardrailBreach(guardrail="prom-candidate-5xx", severity="P0", metric="query",
                                value=0.12, threshold=0.05, window_s=3.0, first_bad_ts=T0 + 7.6,
                                scope="candidate"))  # fmt: skip
    at(12, ev.SessionEnded(reason="quit"))
    state = fold(events)
    text = paragraph(render_markdown(PLAYBOOK, state, events))
    assert "Detected at 12:00:10Z, within 3 s of the first bad sample (in the window from 12:00:07Z)." in text
    assert "after the first bad sample" not in text
    report = render_markdown(PLAYBOOK, state, events)
    assert "| Bad window from | Detect within |" in report


PROM_5XX = {
    "name": "prom-candidate-5xx", "title": "5xx on blue-next (Prometheus)", "metric": "query", "query": "q",
    "samples_query": "s", "min_samples": 10, "unit": "ratio", "threshold": 0.05, "window_s": 3,
    "interval_s": 1, "scope": "candidate", "severity": "P0",
}  # fmt: skip
BLIND_PLAYBOOK = build_lab_playbook(
    prometheus=[{"name": "lab-prometheus", "url": "http://127.0.0.1:19090"}],
    guardrails=[PROM_5XX],
    actions=[removal_action()],
)


def blinded_breach_session() -> list[ev.Event]:
    """The demo's ending: prom-candidate-5xx breaches, the rollback takes blue-next out of traffic, and
    its query has no series to judge from then on — fed through the engine's own evaluator, which
    journals what it derives (the breach) and how the guardrail's data stands."""
    events, at = recorder()
    evaluator = GuardrailEvaluator(BLIND_PLAYBOOK)

    def observed(offset: float, event: ev.Event) -> None:
        at(offset, event)
        for derived in [*evaluator.observe(event), *evaluator.status_changes()]:
            at(offset, derived)

    for name in ("stable-a", "stable-b", "blue-next"):
        at(1, ev.HealthSample(replica=name, status="ok", latency_ms=5.0))
    for t, value in ((2, 0.01), (3, 0.01), (4, 0.3), (5, 0.3)):
        observed(t, ev.MetricSample(guardrail="prom-candidate-5xx", server="lab-prometheus", query="q",
                                    window_s=3, value=value, samples=50))  # fmt: skip
    at(6, ev.RollbackRequested(action="remove-blue-next", actor="auto-rollback", confirmed_text="blue-next",
                               replicas=["blue-next"]))  # fmt: skip
    at(6.2, ev.RollbackApplying(action="remove-blue-next", driver="lab"))
    at(6.5, ev.RollbackApplied(action="remove-blue-next", driver="lab"))
    for t in (8, 9, 10):  # blue-next serves nothing: no requests to count, no ratio to take
        observed(t, ev.MetricSample(guardrail="prom-candidate-5xx", server="lab-prometheus", query="q",
                                    window_s=3, samples=0.0, errors={"value": "no series"}))  # fmt: skip
    for name in ("stable-a", "stable-b", "blue-next"):
        at(10, ev.HealthSample(replica=name, status="ok", latency_ms=5.0))
    at(11, ev.SessionEnded(reason="quit"))
    return events


def test_a_breach_its_guardrail_can_no_longer_observe_is_unknown_since_then_not_still_breached() -> None:
    # The demo: after the rollback removed blue-next, prom-candidate-5xx had no series; nothing observed
    # a recovery, and the report said "Still breached at the end: prom-candidate-5xx" (the tile showed an
    # active breach) — a breach nothing had observed since the rollback.
    events = blinded_breach_session()
    state = fold(events)
    blind = "unknown since 12:00:08Z: no data to judge it; blue-next out of traffic since the rollback "
    blind += "(12:00:06Z)"
    summary = summarize(BLIND_PLAYBOOK, state)
    assert summary.verdict.problems == [
        "rollback applied, verifying",  # never verified here: the verdict cannot call it mitigated
        "P0 prom-candidate-5xx unknown since its breach — breached at 12:00:04Z"
        " (query 30.0% > 5.0% over 3 s), " + blind,
    ]
    [rail] = summary.guardrails
    assert rail.line == (
        "? unknown (P0 breach at 12:00:04Z) prom-candidate-5xx ≤ 5.0% over 3 s · no verdict — " + blind
    )
    report = render_markdown(BLIND_PLAYBOOK, state, events)
    assert "Still breached" not in report
    assert "Breached, then unknown at the end (neither still breached nor recovered):\n\n" in report
    assert f"- prom-candidate-5xx — breached at 12:00:04Z, {blind}\n" in report
    lines = verdict_lines(summary, TrafficTotals("whole session"), Path("j.jsonl"), [])
    assert f"  guardrail {rail.line}" in lines and f"  - why: {summary.verdict.problems[0]}" in lines
    bundle = build_bundle(BLIND_PLAYBOOK, state, events)["summary"]
    assert bundle["active_breaches"] == []
    assert bundle["breaches_unknown_since"] == [
        {"guardrail": "prom-candidate-5xx", "breached": "2026-01-01T12:00:04Z",
         "since": "2026-01-01T12:00:08Z", "why": blind.split(": ", 1)[1]}
    ]  # fmt: skip
    _, rows = tiles(state, BLIND_PLAYBOOK, View(now=T0 + 11))
    breach = next(tile for row in rows for tile in row if tile.label == "ACTIVE BREACH")
    assert (breach.value, breach.tone) == ("P0 prom-candidate-5xx", "stale")
    assert breach.detail == f"breached at 12:00:04Z, {blind}"


def test_a_breach_still_observed_over_its_threshold_stays_breached() -> None:
    # The other side: its query still answers over the threshold after the rollback: still breached.
    events = [e for e in blinded_breach_session() if not (isinstance(e, ev.MetricSample) and e.value is None)]
    events = [e for e in events if not isinstance(e, ev.GuardrailStatus) or e.status == "observed"]
    state = fold(events)
    report = render_markdown(BLIND_PLAYBOOK, state, events)
    assert "Still breached at the end: prom-candidate-5xx." in report and "then unknown" not in report
    summary = summarize(BLIND_PLAYBOOK, state)
    assert summary.verdict.level == "fail" and summary.guardrails[0].status == "breach"
    _, rows = tiles(state, BLIND_PLAYBOOK, View(now=T0 + 11))
    assert next(t for row in rows for t in row if t.label == "ACTIVE BREACH").tone == "fail"


def test_a_subject_unknown_again_for_another_reason_says_the_latest_reason_too() -> None:
    # The demo's prom-p95-latency: unknown at the start (no traffic yet: no series on either side), observed,
    # then unknown again after the rollback (the candidate side: NaN). The paragraph said only the first
    # reason, "…no series…; still unknown at the end" — not why it was unknown at the end.
    events, at = recorder()
    at(1, ev.GuardrailStatus(guardrail="prom-p95", status="unknown", reason="no series on either side"))
    at(5, ev.GuardrailStatus(guardrail="prom-p95", status="observed"))
    at(9, ev.GuardrailStatus(guardrail="prom-p95", status="unknown", reason="candidate side: NaN"))
    at(10, ev.SessionEnded(reason="quit"))
    text = paragraph(render_markdown(PLAYBOOK, fold(events), events))
    assert (
        "guardrail prom-p95 (no series on either side; later candidate side: NaN; still unknown at the end)"
    ) in text, text
