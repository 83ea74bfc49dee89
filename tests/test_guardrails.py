"""Guardrail evaluation over sliding windows: breach, sustain, recovery, scopes."""

from __future__ import annotations

import socket
from pathlib import Path

from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import GuardrailEvaluator, thin_evidence
from rollback_tui.core.journal import Journal
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes.health import HealthProbe
from rollback_tui.session.engine import Engine


def _playbook(*rails: dict) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "t",
            "title": "t",
            "replicas": [
                {"name": "stable-a", "url": "http://127.0.0.1:1", "role": "stable"},
                {"name": "blue-next", "url": "http://127.0.0.1:2", "role": "candidate"},
            ],
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "x"}]}],
            "guardrails": list(rails),
        }
    )


def _window(ts: float, stable=(90, 0), candidate=(10, 0), **kw) -> ev.TrafficWindow:
    return ev.TrafficWindow(
        ts=ts,
        window_s=1.0,
        requests=stable[0] + candidate[0],
        per_replica={"stable-a": stable[0], "blue-next": candidate[0]},
        errors_5xx={"stable-a": stable[1], "blue-next": candidate[1]},
        **kw,
    )


RAIL_5XX = {
    "name": "cand-5xx",
    "title": "5xx on blue-next",
    "metric": "http_5xx_rate",
    "threshold": 0.05,
    "window_s": 3,
    "scope": "candidate",
}


def test_candidate_5xx_breach_then_recovery_after_removal():
    g = GuardrailEvaluator(_playbook(RAIL_5XX))
    assert g.observe(_window(100.0)) == []
    out = g.observe(_window(101.0, candidate=(10, 5)))
    assert len(out) == 1 and isinstance(out[0], ev.GuardrailBreach)
    breach = out[0]
    assert breach.value == 0.25 and breach.threshold == 0.05 and breach.severity == "P0"
    assert breach.first_bad_ts == 100.0  # start of the window that held the first bad sample
    assert g.observe(_window(102.0, candidate=(10, 5))) == []  # already breached: no repeat
    # blue-next removed: traffic keeps flowing, none of it to the candidate
    g.observe(_window(103.0, stable=(100, 0), candidate=(0, 0)))
    g.observe(_window(104.0, stable=(100, 0), candidate=(0, 0)))
    # the 3 s window still holds the bad window at 102 …
    assert g.observe(_window(105.0, stable=(100, 0), candidate=(0, 0))) == []
    out = g.observe(_window(106.0, stable=(100, 0), candidate=(0, 0)))
    assert [type(e) for e in out] == [ev.GuardrailRecovered]


def test_stable_errors_do_not_trip_a_candidate_scoped_rail():
    g = GuardrailEvaluator(_playbook(RAIL_5XX))
    assert g.observe(_window(1.0, stable=(90, 90), candidate=(10, 0))) == []


def test_too_few_requests_is_not_evidence():
    g = GuardrailEvaluator(_playbook({**RAIL_5XX, "scope": "all"}))
    assert g.observe(_window(1.0, stable=(2, 2), candidate=(1, 1))) == []


def test_a_few_failing_candidate_requests_are_no_verdict_not_zero_percent():
    g = GuardrailEvaluator(_playbook(RAIL_5XX))
    rail = g.tracks["cand-5xx"].rail
    # 6 candidate requests in the window, half of them 5xx, among plenty of stable traffic: too few to
    # call a rate, and certainly not "0 % errors".
    assert g.observe(_window(1.0, stable=(50, 0), candidate=(3, 2))) == []
    assert g.observe(_window(2.0, stable=(50, 0), candidate=(3, 1))) == []
    assert g.value(rail, 2.0) is None
    # None of the traffic reaches the candidate (it was removed): nothing there is failing.
    g2 = GuardrailEvaluator(_playbook(RAIL_5XX))
    g2.observe(_window(1.0, stable=(50, 0), candidate=(0, 0)))
    assert g2.value(rail, 1.0) == 0.0


def test_requests_no_replica_answered_fail_the_service_and_judge_no_role():
    service = {**RAIL_5XX, "name": "service-5xx", "scope": "all"}
    stable = {**RAIL_5XX, "name": "stable-5xx", "scope": "stable"}
    g = GuardrailEvaluator(_playbook(RAIL_5XX, service, stable))
    # A stable replica is dead: the balancer answers its share itself, a 502 without X-Served-By.
    no_identity = {"no replica identified (HTTP 502)": 40}
    dead = _window(1.0, stable=(50, 0), candidate=(10, 0), unattributed=no_identity)
    out = g.observe(dead.model_copy(update={"requests": 100}))
    assert [(b.guardrail, b.value) for b in out] == [("service-5xx", 0.4)]
    # The balancer is down: nothing answered. A role-scoped rate has nothing to judge, which is not "0 %".
    g = GuardrailEvaluator(_playbook(RAIL_5XX, service, stable))
    down = ev.TrafficWindow(
        ts=1.0, window_s=1.0, requests=50, per_replica={}, transport_errors=50,
        unattributed={"balancer unreachable": 50},
    )  # fmt: skip
    assert [(b.guardrail, b.value) for b in g.observe(down)] == [("service-5xx", 1.0)]
    assert g.value(g.tracks["cand-5xx"].rail, 1.0) is None
    assert g.value(g.tracks["stable-5xx"].rail, 1.0) is None


def test_thin_evidence_names_rails_that_cannot_trip_at_the_synthetic_rate():
    pb = _playbook({**RAIL_5XX, "window_s": 2}, {**RAIL_5XX, "name": "all-5xx", "scope": "all"})
    (problem,) = thin_evidence(pb, 20)  # 20 rps at 10 % over 2 s: 4 candidate requests per window
    assert problem.startswith("cand-5xx needs 10 candidate requests per 2 s window") and "≥ 50 rps" in problem
    assert thin_evidence(pb, 50) == []


def test_sustained_p95_only_breaches_when_held():
    rail = {
        "name": "p95",
        "title": "p95",
        "metric": "p95_latency_ms",
        "threshold": 300,
        "window_s": 1,
        "sustained_s": 3,
        "severity": "P1",
    }
    g = GuardrailEvaluator(_playbook(rail))
    assert g.observe(_window(10.0, p95_ms=500)) == []
    assert g.observe(_window(11.0, p95_ms=500)) == []
    out = g.observe(_window(12.0, p95_ms=500))
    assert len(out) == 1 and out[0].severity == "P1"
    assert g.observe(_window(13.0, p95_ms=100))[0].kind == "guardrail_recovered"


def test_health_dead_letters_and_gate_metrics():
    rails = [
        {"name": "health", "title": "h", "metric": "health_failing", "threshold": 0},
        {
            "name": "dlq",
            "title": "d",
            "metric": "dead_letters_growth",
            "threshold": 5,
            "window_s": 60,
            "probe": "dead-letters",
        },
        {"name": "smoke", "title": "s", "metric": "gate_failed", "threshold": 0, "gate": "smoke"},
    ]
    g = GuardrailEvaluator(_playbook(*rails))
    assert g.observe(ev.HealthSample(ts=1, replica="stable-a", status="ok")) == []
    assert g.observe(ev.HealthSample(ts=2, replica="blue-next", status="timeout"))[0].guardrail == "health"
    assert g.observe(ev.ProbeResult(ts=3, probe="dead-letters", ok=True, value=2)) == []
    assert g.observe(ev.ProbeResult(ts=4, probe="dead-letters", ok=True, value=6)) == []  # +4
    assert g.observe(ev.ProbeResult(ts=5, probe="dead-letters", ok=True, value=9))[0].value == 7
    passed = ev.GateFinished(ts=6, gate="smoke", run="1", outcome="passed", exit_code=0, duration_s=1)
    assert g.observe(passed) == []
    failed = passed.model_copy(update={"outcome": "failed", "exit_code": 1, "ts": 7})
    assert g.observe(failed)[0].guardrail == "smoke"


def test_an_interrupted_gate_is_unknown_never_a_breach():
    rail = {"name": "smoke", "title": "s", "metric": "gate_failed", "threshold": 0, "gate": "smoke"}
    g = GuardrailEvaluator(_playbook(rail))
    # Journaled on resume: the cockpit stopped while the gate ran, so its outcome is not known.
    interrupted = ev.GateFinished(
        ts=9, gate="smoke", run="1", outcome="interrupted", duration_s=1, last_seen_ts=5
    )
    assert g.observe(interrupted) == []
    assert g.value(g.tracks["smoke"].rail, 9) is None


def test_time_to_detect_starts_at_the_first_window_with_bad_samples():
    g = GuardrailEvaluator(_playbook({**RAIL_5XX, "window_s": 10}))
    assert g.observe(_window(1.0)) == [] and g.observe(_window(2.0)) == []
    assert g.observe(_window(3.0, candidate=(10, 1))) == []  # 1/30: under the threshold
    assert g.observe(_window(4.0, candidate=(10, 1))) == []  # 2/40 = 0.05: not above it
    breach = g.observe(_window(5.0, candidate=(10, 1)))[0]  # 3/50 = 0.06
    assert breach.first_bad_ts == 2.0  # the window that ended at 3.0 held the first error


# --- unknown is neither ok nor a breach ---------------------------------------------------------------


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _engine(tmp_path: Path, **doc: object) -> Engine:
    base = _playbook().model_dump(by_alias=True, exclude_unset=True)
    engine = Engine(Playbook.model_validate({**base, **doc}), Journal(tmp_path / "s.jsonl"), operator="al")
    engine.start_session()
    return engine


async def test_a_replica_that_does_not_resolve_is_unknown_one_that_refuses_is_failing(tmp_path: Path) -> None:
    rail = {"name": "health", "title": "h", "metric": "health_failing", "threshold": 0, "severity": "P0"}
    replicas = [
        {"name": "stable-a", "url": "http://stable-a.rollback-tui.invalid:8080", "role": "stable"},
        {"name": "blue-next", "url": _refused_url(), "role": "candidate"},
    ]
    engine = _engine(tmp_path, replicas=replicas[:1], guardrails=[rail], health_timeout_s=2)
    [sample] = await HealthProbe(engine.playbook, engine.emit).once()
    assert sample.status == "unknown" and "does not resolve from here" in (sample.error or "")
    assert engine.state.traffic.breach_log == []  # not "production failed"
    assert engine.state.rails["health"].status == "unknown"
    assert engine.state.replicas["stable-a"].failures == 0
    await engine.stop()

    engine = _engine(tmp_path / "refused", replicas=replicas[1:], guardrails=[rail], health_timeout_s=2)
    [sample] = await HealthProbe(engine.playbook, engine.emit).once()
    assert sample.status == "down"  # a replica that does not answer is failing, as the runbooks say
    [breach] = [e for e in engine.state.traffic.breach_log if isinstance(e, ev.GuardrailBreach)]
    assert breach.guardrail == "health" and breach.severity == "P0"
    await engine.stop()


async def test_a_gate_that_cannot_run_is_unknown_not_a_breach(tmp_path: Path) -> None:
    gates = [
        {"name": "smoke", "title": "smoke", "argv": ["no-such-binary-rtui", "scripts/smoke.mjs"]},
        {"name": "sh-smoke", "title": "sh smoke", "argv": ["sh", "-c", "no-such-binary-rtui"]},
        {"name": "e2e", "title": "e2e", "argv": ["sh", "-c", "exit 1"]},
    ]
    rails = [
        {
            "name": f"{g['name']}-failed",
            "title": "t",
            "metric": "gate_failed",
            "threshold": 0,
            "gate": g["name"],
        }
        for g in gates
    ]
    engine = _engine(tmp_path, gates=gates, guardrails=rails)
    outcomes = {f.gate: (f.outcome, f.exit_code) for f in await engine.run_gates(actor="engine")}
    assert outcomes == {"smoke": ("error", None), "sh-smoke": ("error", 127), "e2e": ("failed", 1)}
    breached = [e.guardrail for e in engine.state.traffic.breach_log if isinstance(e, ev.GuardrailBreach)]
    assert breached == ["e2e-failed"]  # only the gate that ran and failed
    smoke = engine.state.rails["smoke-failed"]
    assert smoke.status == "unknown" and smoke.reason == (
        "gate smoke could not run: command not found: no-such-binary-rtui"
    )
    assert (
        engine.state.rails["sh-smoke-failed"].reason
        == "gate sh-smoke could not run: command not found (exit 127)"
    )
    await engine.stop()


def test_guardrail_status_is_journaled_once_per_change() -> None:
    rail = {"name": "dlq", "title": "d", "metric": "dead_letters_growth", "threshold": 5, "window_s": 60}
    g = GuardrailEvaluator(_playbook({**rail, "probe": "dead-letters"}))

    def probe(ts: float, value: int | None = None, **kw: object) -> list[tuple[str, str | None]]:
        assert (
            g.observe(ev.ProbeResult(ts=ts, probe="dead-letters", ok=value is not None, value=value, **kw))
            == []
        )
        return [(c.status, c.reason) for c in g.status_changes()]

    unset = {"observed": False, "error": "environment variable T is not set"}
    assert probe(1, **unset) == [("unknown", "probe dead-letters: environment variable T is not set")]
    assert probe(2, **unset) == [] and probe(3, **unset) == []  # once, not once per poll
    assert probe(4, 10) == [("waiting", None)]  # one count: growth needs two
    assert probe(5, 11) == [("observed", None)]
    assert probe(6, 12) == []
    assert probe(100, 12) == []  # the window emptied to one count: not journaled
    assert probe(101, error="expected HTTP 200, got 503") == [
        ("unknown", "probe dead-letters failed: expected HTTP 200, got 503")
    ]


# --- judged against the baseline, metric queries, the generic HTTP JSON source --------------------

RAIL_P95_BASELINE = {
    "name": "p95-vs-stable",
    "title": "p95 of blue-next against stable",
    "metric": "p95_latency_ms",
    "threshold": 2.0,
    "window_s": 3,
    "scope": "candidate",
    "severity": "P1",
    "baseline": {"compare": "ratio", "min_samples": 20},
}


def _slow(ts: float, stable_ms: float, candidate_ms: float, candidate_n: int = 10) -> ev.TrafficWindow:
    return _window(
        ts,
        candidate=(candidate_n, 0),
        p95_ms=max(stable_ms, candidate_ms),
        p95_by_replica={"stable-a": stable_ms, "blue-next": candidate_ms},
    )


def test_baseline_every_replica_slowed_alike_trips_nothing_the_candidate_alone_does() -> None:
    absolute = {**RAIL_P95_BASELINE, "name": "p95", "baseline": None, "threshold": 250, "scope": "all"}
    g = GuardrailEvaluator(_playbook(RAIL_P95_BASELINE, absolute))
    host_wide = [e for ts in range(100, 106) for e in g.observe(_slow(ts, 400.0, 420.0))]
    # The absolute threshold calls host-wide slowness a bad release; the baseline does not.
    assert [b.guardrail for b in host_wide if isinstance(b, ev.GuardrailBreach)] == ["p95"]
    reading = g.reading(g.playbook.guardrails[0], 105.0)
    assert reading.sides == (420.0, 400.0) and reading.value == 1.05
    out = [e for ts in range(106, 110) for e in g.observe(_slow(ts, 400.0, 1300.0))]
    breach = next(e for e in out if isinstance(e, ev.GuardrailBreach) and e.guardrail == "p95-vs-stable")
    assert breach.value > 2.0 and breach.candidate is not None and breach.baseline == 400.0


def test_baseline_needs_its_samples_on_both_sides() -> None:
    g = GuardrailEvaluator(_playbook(RAIL_P95_BASELINE))
    # 3 candidate requests a window: 9 in the window, below min_samples 20 — a slow handful is no verdict.
    assert [e for ts in range(100, 106) for e in g.observe(_slow(ts, 10.0, 900.0, candidate_n=3))] == []
    assert g.reading(g.playbook.guardrails[0], 105.0).status == "waiting"
    # Removed from the selectors, the candidate serves nothing: it is not doing worse than stable.
    for ts in range(106, 110):
        g.observe(_slow(ts, 10.0, 0.0, candidate_n=0))
    assert g.reading(g.playbook.guardrails[0], 109.0).value == 1.0


def test_baseline_5xx_difference() -> None:
    rail = {**RAIL_5XX, "threshold": 0.05, "baseline": {"compare": "difference", "min_samples": 10}}
    g = GuardrailEvaluator(_playbook(rail))
    # 20 % errors everywhere (a shared dependency failing): the candidate is no worse than stable.
    assert g.observe(_window(100.0, stable=(90, 18), candidate=(10, 2))) == []
    out = g.observe(_window(101.0, stable=(90, 18), candidate=(10, 8)))
    assert len(out) == 1 and isinstance(out[0], ev.GuardrailBreach)
    assert out[0].candidate == 0.5 and out[0].baseline == 0.2


RAIL_QUERY = {
    "name": "prom-5xx",
    "title": "5xx on blue-next (Prometheus)",
    "metric": "query",
    "query": 'sum(rate(x{replica=~"{replicas}"}[{window}]))',
    "threshold": 0.05,
    "window_s": 5,
    "interval_s": 1,
    "scope": "candidate",
}


def _playbook_with_prometheus(*rails: dict) -> Playbook:
    data = _playbook(*rails).model_dump()
    data["prometheus"] = [{"name": "prom", "url": "http://127.0.0.1:9"}]
    return Playbook.model_validate(data)


def _sample(ts: float, value: float | None = None, **kw: object) -> ev.MetricSample:
    return ev.MetricSample(
        ts=ts, guardrail="prom-5xx", server="prom", query="q", window_s=5, value=value, **kw
    )


def test_query_that_cannot_answer_is_unknown_never_a_breach_and_a_crossing_breaches() -> None:
    g = GuardrailEvaluator(_playbook_with_prometheus(RAIL_QUERY))
    g.observe(_window(99.0))  # traffic windows in range must not move the query's first bad sample
    assert g.observe(_sample(100.0, 0.01)) == []
    assert [(c.status, c.reason) for c in g.status_changes()] == [("observed", None)]
    down = {"value": "Prometheus prom unreachable: connection refused"}
    assert g.observe(_sample(101.0, errors=down)) == []
    assert [(c.status, c.reason) for c in g.status_changes()] == [("unknown", down["value"])]
    assert g.observe(_sample(102.0, errors=down)) == []  # still unknown for that reason: no repeat
    assert g.status_changes() == []
    assert g.observe(_sample(102.5, errors={"value": "no series"})) == []  # another reason is a change
    assert [(c.status, c.reason, c.ts) for c in g.status_changes()] == [("unknown", "no series", 102.5)]
    out = g.observe(_sample(103.0, 0.2))
    assert len(out) == 1 and isinstance(out[0], ev.GuardrailBreach)
    # The bad samples lie within the window it was evaluated over: TTD from its start never understates.
    assert out[0].first_bad_ts == 98.0 and out[0].value == 0.2 and out[0].metric == "query"
    # A stopped evaluation goes stale: unknown, not the last value held forever.
    assert g.reading(g.playbook.guardrails[0], 200.0).unknown == "its query has not been evaluated for 97 s"


def test_query_min_samples_and_partial_answers() -> None:
    rail = {**RAIL_QUERY, "samples_query": "sum(y)", "min_samples": 10}
    g = GuardrailEvaluator(_playbook_with_prometheus(rail))
    assert g.observe(_sample(100.0, 0.5, samples=3.0)) == []  # a handful of requests: no verdict
    assert g.reading(g.playbook.guardrails[0], 100.0).status == "waiting"
    g.observe(_sample(101.0, 0.01, errors={"samples": "samples query: no series"}))
    assert g.reading(g.playbook.guardrails[0], 101.0).unknown == "samples query: no series"
    # Some replicas could not be asked: over the threshold stands, within it cannot be said.
    partial = {"value": "blue-next-2: timed out"}
    assert g.reading(g.playbook.guardrails[0], 101.0).value is None
    g.observe(_sample(102.0, 0.01, samples=50.0, errors=partial))
    assert g.reading(g.playbook.guardrails[0], 102.0).unknown == partial["value"]
    out = g.observe(_sample(103.0, 0.3, samples=50.0, errors=partial))
    assert [type(e).__name__ for e in out] == ["GuardrailBreach"]


def test_http_json_probe_value_is_a_generic_metric_source() -> None:
    rail = {"name": "queue", "title": "q", "metric": "http_json", "probe": "queue-depth", "threshold": 100}
    grow = {**rail, "name": "queue-growth", "reduce": "growth", "threshold": 5, "window_s": 60}
    g = GuardrailEvaluator(_playbook(rail, grow))

    def probe(ts: float, value: object) -> list[str]:
        result = ev.ProbeResult(ts=ts, probe="queue-depth", ok=True, value=value)
        return [e.guardrail for e in g.observe(result) if isinstance(e, ev.GuardrailBreach)]

    assert probe(1, 40) == []
    assert probe(2, "48") == ["queue-growth"]  # 8 more within the window; a numeric string counts
    assert probe(3, 120) == ["queue"]
    assert probe(4, "n/a") == []
    assert g.reading(g.playbook.guardrails[0], 4).unknown == "probe queue-depth value is not a number: 'n/a'"


def test_a_query_over_its_threshold_must_hold_sustained_s_of_evaluations() -> None:
    g = GuardrailEvaluator(_playbook_with_prometheus({**RAIL_QUERY, "sustained_s": 3}))
    assert g.observe(_sample(100.0, 0.2)) == []  # over at once, but its window is not its history
    assert g.observe(_sample(102.0, 0.2)) == []
    out = g.observe(_sample(103.0, 0.2))
    assert len(out) == 1 and isinstance(out[0], ev.GuardrailBreach)
    assert out[0].first_bad_ts == 95.0  # TTD from the first crossing's window start: never understated


def test_a_recovery_reads_in_the_unit_its_breach_read_in_wherever_it_is_told() -> None:
    """The reproducer: the event log and headless log (the timeline's words) said `recovered (0.012)` for a
    breach they had told as `query 250 ms > 100 ms`, and `recovered (0.01)` after `http_5xx_rate 50.0%`,
    while the report's breach table said `query 12 ms`: a recovery reads in its breach's unit, everywhere."""
    from rollback_tui.core.read.timeline import describe
    from rollback_tui.report.markdown import _recovered_value

    rail = {**RAIL_QUERY, "unit": "ms", "threshold": 100}
    playbook = _playbook_with_prometheus(rail)
    g = GuardrailEvaluator(playbook)
    breach = g.observe(_sample(100.0, 250.0))[0]
    recovered = g.observe(_sample(101.0, 12.0))[0]
    assert isinstance(breach, ev.GuardrailBreach) and isinstance(recovered, ev.GuardrailRecovered)
    assert "query 250 ms > 100 ms" in (describe(breach) or "")
    assert describe(recovered) == "Guardrail prom-5xx recovered (query 12 ms)"
    assert _recovered_value(recovered, playbook) == "query 12 ms"

    g = GuardrailEvaluator(_playbook(RAIL_5XX))
    g.observe(_window(100.0, candidate=(10, 5)))
    g.observe(_window(101.0, stable=(0, 0), candidate=(100, 1)))
    recovered = g.observe(_window(104.0, stable=(0, 0), candidate=(100, 1)))[0]
    assert isinstance(recovered, ev.GuardrailRecovered)
    assert describe(recovered) == "Guardrail cand-5xx recovered (http_5xx_rate 1.0%)"
    # A journal written before recoveries carried their metric: the value as it was journaled.
    old = ev.GuardrailRecovered(guardrail="cand-5xx", value=0.01)
    assert describe(old) == "Guardrail cand-5xx recovered (0.01)"
