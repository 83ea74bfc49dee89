"""Sequential detection of a 5xx rate: decided on the response that makes the evidence conclusive, with
its evidence journaled, a bounded false-alarm rate, and a fold that replays the decision exactly."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import GuardrailEvaluator, sequential_test, thin_evidence
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.guardrails import breach_text, readings
from rollback_tui.core.sequential import SequentialTest
from rollback_tui.core.state import SessionState
from test_guardrails import _playbook

RAIL = {
    "name": "cand-5xx",
    "title": "5xx on blue-next",
    "metric": "http_5xx_rate",
    "threshold": 0.05,
    "window_s": 10,
    "scope": "candidate",
    "detection": {"mode": "sequential", "false_alarm_rate": 0.001},
}
FIXED = {**RAIL, "name": "cand-5xx-window", "detection": None, "window_s": 2}


Answer = tuple[str | None, bool]  # (replica or None: no replica answered, 5xx)


def _window(ts: float, answers: list[Answer], window_s: float = 1.0, order: bool = True) -> ev.TrafficWindow:
    per: dict[str, int] = {}
    errors: dict[str, int] = {}
    unattributed = 0
    for replica, bad in answers:
        if replica is None:
            unattributed += 1
            continue
        per[replica] = per.get(replica, 0) + 1
        errors[replica] = errors.get(replica, 0) + bad
    return ev.TrafficWindow(
        ts=ts,
        window_s=window_s,
        requests=len(answers),
        per_replica=per,
        errors_5xx={r: n for r, n in errors.items() if n},
        unattributed={"balancer unreachable": unattributed} if unattributed else {},
        sequence=ev.response_sequence(answers) if order else "",
    )


class Feed:
    """What the traffic generator does with an evaluator: every answer goes to `conclusive` as it comes
    back, and the window closes on the answer that decides; each closed window is observed."""

    def __init__(self, evaluator: GuardrailEvaluator, t0: float = 1000.0) -> None:
        self.g, self.now, self.opened = evaluator, t0, t0
        self.open: list[Answer] = []
        self.derived: list[ev.Event] = []
        self.at: list[float] = []  # when each derived event came (the window it was observed with)
        self.windows: list[ev.TrafficWindow] = []

    def answer(self, replica: str | None, bad: bool, dt: float = 0.01) -> None:
        self.now += dt
        self.open.append((replica, bad))
        if self.g.conclusive(replica, 503 if bad else 201) or self.now - self.opened >= 1.0:
            self.close()

    def close(self) -> None:
        window = _window(self.now, self.open, round(self.now - self.opened, 3))
        self.windows.append(window)
        for event in self.g.observe(window):
            self.derived.append(event)
            self.at.append(self.now)
        self.open, self.opened = [], self.now

    def breaches(self) -> list[ev.GuardrailBreach]:
        return [e for e in self.derived if isinstance(e, ev.GuardrailBreach)]


def test_it_breaches_on_the_deciding_response_and_the_breach_carries_checkable_evidence() -> None:
    feed = Feed(GuardrailEvaluator(_playbook(RAIL)))
    rng = random.Random(1)
    for _ in range(300):  # healthy: 15 % of traffic on the candidate, no 5xx
        feed.answer("blue-next" if rng.random() < 0.15 else "stable-a", False)
    assert feed.breaches() == []
    fault_at = feed.now
    failures = [True, False, True, True, False, True, False, True, True, True, False, True]
    for bad in failures:
        feed.answer("blue-next", bad)
        if feed.breaches():
            break
    (breach,) = feed.breaches()
    # Decided on a response, mid-window: the window was closed on it and the breach journaled with it.
    assert feed.windows[-1].window_s < 1.0 and feed.windows[-1].ts == feed.now
    assert breach.value > breach.threshold == 0.05 and breach.errors is not None and breach.requests
    assert breach.value == round(breach.errors / breach.requests, 4)
    # The statistic follows from the run's counts: errors·log(p1/p0) - others·log((1-p0)/(1-p1)).
    p0, p1 = 0.05, breach.alternative
    assert p1 is not None and breach.statistic is not None and breach.bound is not None
    expected = breach.errors * math.log(p1 / p0) - (breach.requests - breach.errors) * math.log(
        (1 - p0) / (1 - p1)
    )
    assert breach.statistic == pytest.approx(expected, abs=1e-3)
    assert breach.statistic >= breach.bound == round(math.log(3 / 0.001), 3)
    assert breach.first_bad_ts is not None and breach.first_bad_ts <= fault_at  # a window start: never late
    words = f"over {breach.requests} responses ({breach.errors} failed) · sequential evidence "
    assert words in breach_text(breach)


def test_its_bound_is_the_minimum_evidence_not_a_request_count() -> None:
    test = sequential_test(_playbook(RAIL).guardrails[0])
    assert test is not None
    need = test.fewest_errors()
    assert 1 < need < 10  # fewer than the 10 requests a fixed window waits for
    feed = Feed(GuardrailEvaluator(_playbook(RAIL)))
    for _ in range(need - 1):
        feed.answer("blue-next", True)
    assert feed.breaches() == []  # not conclusive yet: shown as over, never ok
    state = SessionState()
    for w in [*feed.windows, _window(feed.now, feed.open)]:
        state.apply(w)
    (reading,) = readings(feed.g.playbook, state, feed.now)
    assert reading.status == "over" and reading.evidence and reading.evidence.startswith("sequential ")
    feed.answer("blue-next", True)
    (breach,) = feed.breaches()
    assert breach.requests == need == breach.errors


def test_a_rate_at_the_threshold_false_alarms_no_more_often_than_configured() -> None:
    """Mean responses to a false alarm ≥ 1 / false_alarm_rate while the true rate sits at the threshold
    (the worst case), and none at all at 0 %."""
    test = SequentialTest.of(0.05, 0.01)
    rng = random.Random(7)
    lengths = []
    for _ in range(200):
        cusum, n = test.start(), 0
        while not cusum.step(rng.random() < 0.05):
            n += 1
        lengths.append(n)
    assert sum(lengths) / len(lengths) >= 1 / 0.01
    cusum = test.start()
    assert not any(cusum.step(False) for _ in range(100_000))


def test_a_window_without_its_order_counts_as_one_batch_never_more() -> None:
    answers: list[Answer] = [("blue-next", False)] * 6 + [("blue-next", True)] * 5
    ordered, batch = GuardrailEvaluator(_playbook(RAIL)), GuardrailEvaluator(_playbook(RAIL))
    ordered.observe(_window(1.0, answers))
    batch.observe(_window(1.0, answers, order=False))  # a journal written before the order was recorded
    rail = ordered.playbook.guardrails[0]
    with_order, without = ordered.reading(rail, 1.0).evidence, batch.reading(rail, 1.0).evidence
    assert with_order is not None and without is not None
    assert without.statistic < with_order.statistic  # the clean ones first, then 5 failures: order tells


def test_the_fold_replays_the_decision_from_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s.jsonl")
    g = GuardrailEvaluator(_playbook(RAIL, FIXED))
    feed = Feed(g)
    rng = random.Random(3)
    for i in range(400):
        bad = i > 250 and rng.random() < 0.3
        feed.answer("blue-next" if rng.random() < 0.3 else "stable-a", bad)
    live = feed.breaches()
    for w in feed.windows:
        journal.append(w)
    journal.close()
    replayed = GuardrailEvaluator(_playbook(RAIL, FIXED))
    again = [
        e
        for w in read_journal(journal.path).events
        for e in replayed.observe(w)
        if isinstance(e, ev.GuardrailBreach)
    ]
    fields = ("guardrail", "value", "requests", "errors", "statistic", "bound", "first_bad_ts")
    assert [b.model_dump(include=set(fields)) for b in again] == [
        b.model_dump(include=set(fields)) for b in live
    ]
    assert {b.guardrail for b in live} >= {"cand-5xx"}


def test_recovered_once_the_window_is_within_and_the_evidence_is_gone() -> None:
    feed = Feed(GuardrailEvaluator(_playbook(RAIL)))
    for _ in range(20):
        feed.answer("blue-next", True)
    assert len(feed.breaches()) == 1
    # blue-next removed: traffic goes on without it; the failures leave the 10 s window
    for _ in range(1200):
        feed.answer("stable-a", False)
    kinds = [(e.kind, at) for e, at in zip(feed.derived, feed.at, strict=True)]
    assert [k for k, _ in kinds] == ["guardrail_breach", "guardrail_recovered"]
    assert kinds[1][1] - kinds[0][1] >= 10 - 1  # not before the failures left the window


def test_only_its_scope_counts() -> None:
    feed = Feed(GuardrailEvaluator(_playbook(RAIL)))
    for _ in range(50):
        feed.answer("stable-a", True)
        feed.answer(None, True)  # nobody answered: a failure of the service, not of the candidate
    assert feed.breaches() == []
    everyone = Feed(GuardrailEvaluator(_playbook({**RAIL, "scope": "all"})))
    for _ in range(10):
        everyone.answer(None, True)
    assert len(everyone.breaches()) == 1


def test_the_playbook_says_where_sequential_detection_applies() -> None:
    for bad, words in [
        ({"metric": "p95_latency_ms"}, "detection applies to metric http_5xx_rate"),
        ({"sustained_s": 5}, "sustained_s does not apply"),
        ({"baseline": {"compare": "ratio"}}, "not a baseline"),
        ({"detection": {"mode": "sequential", "detect_rates": [0.04]}}, "must be over the threshold"),
        ({"detection": {"mode": "sequential", "false_alarm_rate": 0.5}}, "less than or equal to 0.05"),
    ]:
        with pytest.raises(ValidationError, match=words):
            _playbook({**RAIL, **bad})
    rail = _playbook({**RAIL, "threshold": 0.4}).guardrails[0]
    test = sequential_test(rail)
    assert test is not None and all(0.4 < r < 1 for r in test.rates)


def test_thin_evidence_for_a_sequential_rail_is_its_own_bound() -> None:
    pb = _playbook({**RAIL, "window_s": 1})
    (problem,) = thin_evidence(pb, 5)  # 5 rps at 10 %: half a candidate response per 1 s window
    assert problem.startswith("cand-5xx needs at least")
    assert thin_evidence(pb, 50) == []


def test_good_answers_right_after_the_breach_are_no_recovery() -> None:
    """The fault goes on after the breach: its window still holds mostly the clean seconds before the
    fault (a rate within the threshold) and the next good answers pull the statistic under its bound —
    which once recovered the rail and breached it again, answer after answer."""
    feed = Feed(GuardrailEvaluator(_playbook(RAIL)))
    for _ in range(900):  # 9 s of clean candidate traffic
        feed.answer("blue-next", False)
    while not feed.breaches():
        feed.answer("blue-next", True)
    feed.answer("blue-next", False)
    feed.answer("blue-next", False)
    feed.close()  # the traffic window's clock ticks: its evidence is just under the bound now
    for _ in range(20):  # the fault goes on: a third of the answers fail
        for bad in (False, False, True):
            feed.answer("blue-next", bad)
    assert [e.kind for e in feed.derived] == ["guardrail_breach"]
