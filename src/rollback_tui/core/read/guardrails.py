"""Each guardrail's value, the window it is over, and its status — judged as the engine judges it.

The value comes from `guardrail_readings` (the engine's own evaluator over the session state), so the
screen, the headless log and the report show the number that decides a breach, with its window — or, when
there is none, that it is unknown (with what could not be observed) or still waiting for data.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import Reading, guardrail_readings, no_data
from rollback_tui.core.read.words import hms, ms, pct
from rollback_tui.core.rollback import RollbackStatus
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Guardrail, Playbook

# Metrics judged on the latest observation rather than over `window_s`.
_POINT_IN_TIME = {"health_failing": "latest samples", "gate_failed": "last run"}
_GLYPH = {"breach": "✗", "unknown": "?", "waiting": "?", "over": "!", "ok": "✓"}


# The unit a synthetic metric's values read in; a query's is the one its playbook declares (`unit:`).
_METRIC_UNIT = {"http_5xx_rate": "ratio", "p95_latency_ms": "ms"}


def _metric_unit(metric: str, unit: str | None = None) -> str:
    """ratio | ms | s | count: a query's `unit` as declared, a synthetic metric's by its name."""
    if metric == "query" and unit is not None:
        return unit
    return _METRIC_UNIT.get(metric, "count")


def _unit(rail: Guardrail) -> str:
    return _metric_unit(rail.metric, rail.unit)


def _in_unit(unit: str, value: float) -> str:
    """`4.2%` for a ratio, `250 ms`, `1.50 s`, the count otherwise."""
    if unit == "ratio":
        return pct(value)
    if unit == "ms":
        return ms(value)
    return f"{value:.2f} s" if unit == "s" else f"{value:g}"


def compared(how: str | None, text: str, value: float) -> str:
    """A comparison against the baseline: `x1.30` with the multiplication sign (a ratio), `+35 ms` (a
    difference); else `text`."""
    if how == "ratio":
        return f"\N{MULTIPLICATION SIGN}{value:.2f}"
    if how == "difference" and value >= 0:
        return f"+{text}"
    return text


def value_text(rail: Guardrail, value: float | None) -> str:
    """A guardrail's value (or threshold) in its unit (a query's `unit`), or as a baseline comparison."""
    if value is None:
        return "no data"
    how = rail.baseline.compare if rail.baseline is not None else None
    return compared(how, _in_unit(_unit(rail), value), value)


def sides_text(rail: Guardrail, sides: tuple[float, float]) -> str:
    """`candidate 212 ms vs stable 118 ms`: the two sides a baseline comparison compared."""
    unit = _unit(rail)
    return f"candidate {_in_unit(unit, sides[0])} vs stable {_in_unit(unit, sides[1])}"


def window_text(metric: str, window_s: float) -> str:
    """What the value is over: `over 30 s`, or `latest samples` / `last run` for point-in-time metrics."""
    return _POINT_IN_TIME.get(metric) or f"over {window_s:g} s"


def _breach_unit(breach: ev.GuardrailBreach) -> str:
    """The unit a breach reads in: the one journaled with it (a query's), else its metric's."""
    return _metric_unit(breach.metric, breach.unit)


def breach_number(breach: ev.GuardrailBreach, value: float) -> str:
    """A breach's value or threshold: in its unit, or as the comparison it was judged by."""
    return compared(breach.compare, _in_unit(_breach_unit(breach), value), value)


def recovered_text(recovered: ev.GuardrailRecovered) -> str:
    """`http_5xx_rate 1.0%`: a recovery's value as its breach read; a journal from before recoveries
    carried their metric, the bare value."""
    if recovered.metric is None:
        return f"{recovered.value:g}"
    value, unit = recovered.value, _metric_unit(recovered.metric, recovered.unit)
    return f"{recovered.metric} {compared(recovered.compare, _in_unit(unit, value), value)}"


def breach_sides(breach: ev.GuardrailBreach) -> str:
    """` (candidate 310 ms vs stable 100 ms)` for a breach judged against the baseline, else ``."""
    if breach.candidate is None or breach.baseline is None:
        return ""
    unit = _breach_unit(breach)
    return f" (candidate {_in_unit(unit, breach.candidate)} vs stable {_in_unit(unit, breach.baseline)})"


def breach_window(breach: ev.GuardrailBreach) -> str:
    """What a breach's value is over: `over 10 s`; decided by a sequential test, the run of responses
    its evidence came from, `over 31 responses (9 failed)`."""
    if breach.requests is not None and breach.statistic is not None:
        return f"over {breach.requests} responses ({breach.errors} failed)"
    return window_text(breach.metric, breach.window_s)


def breach_evidence(breach: ev.GuardrailBreach) -> str:
    """` · sequential evidence 9.10 ≥ 8.01` (its statistic and bound) for a breach a sequential test
    decided, else ``."""
    if breach.statistic is None or breach.bound is None:
        return ""
    return f" · sequential evidence {breach.statistic:.2f} ≥ {breach.bound:.2f}"


def breach_text(breach: ev.GuardrailBreach) -> str:
    """`http_5xx_rate 20.0% > 2.0% over 10 s` — a breach as it was journaled; against the baseline, the
    comparison and both sides: `p95_latency_ms x3.10 > x2.00 over 10 s (candidate 310 ms vs stable 100
    ms)`; decided by a sequential test, its run and evidence: `http_5xx_rate 29.0% > 5.0% over 31
    responses (9 failed) · sequential evidence 9.10 ≥ 8.01`."""
    return (
        f"{breach.metric} {breach_number(breach, breach.value)} > "
        f"{breach_number(breach, breach.threshold)} {breach_window(breach)}"
        + breach_sides(breach)
        + breach_evidence(breach)
    )


def time_to_detect_s(breach: ev.GuardrailBreach) -> float | None:
    """From the start of the window that held the first bad sample to the breach: an upper bound (the
    summary says "within X s of the first bad sample"); None when the breach has no first bad sample."""
    return None if breach.first_bad_ts is None else round(breach.ts - breach.first_bad_ts, 3)


@dataclass(frozen=True)
class Standing:
    """Where an active breach (journaled, never recovered) stands now: still held — its guardrail has
    observed nothing since that clears it — or unknown since `since`, when its guardrail stopped having
    data (`why`): neither still breached nor recovered, since nothing has observed either."""

    breach: ev.GuardrailBreach
    since: float | None = None  # unknown since then; None: its guardrail still observes
    why: str = ""

    @property
    def held(self) -> bool:
        return self.since is None

    @property
    def name(self) -> str:
        return f"{self.breach.severity} {self.breach.guardrail}"

    @property
    def when(self) -> str:
        """`breached at 12:00:10Z, unknown since 12:00:14Z: no series`; `breached since 12:00:10Z`."""
        if self.held:
            return f"breached since {hms(self.breach.ts)}"
        return f"breached at {hms(self.breach.ts)}, {self.unknown}"

    @property
    def text(self) -> str:
        """`breached since 12:00:10Z: http_5xx_rate 20.0% > 2.0% over 10 s`; `breached at 12:00:10Z
        (http_5xx_rate 20.0% > 2.0% over 10 s), unknown since 12:00:14Z: no series`."""
        if self.held:
            return f"{self.when}: {breach_text(self.breach)}"
        return f"breached at {hms(self.breach.ts)} ({breach_text(self.breach)}), " + self.unknown

    @property
    def unknown(self) -> str:
        """`unknown since 12:00:14Z: no series`; `` while held."""
        return "" if self.held else f"unknown since {hms(self.since)}: {self.why}"


def _out_of_traffic(breach: ev.GuardrailBreach, rollback: RollbackStatus, since: float) -> str:
    """`; blue-next out of traffic since the rollback (12:00:12Z)` when a candidate's guardrail went
    blind after a rollback took the candidates out of traffic, else ``."""
    applied = rollback.applied_ts
    if breach.scope != "candidate" or not rollback.after_rollback or applied is None or applied > since:
        return ""
    out = ", ".join(rollback.replicas) or "the candidates"
    return f"; {out} out of traffic since the rollback ({hms(applied)})"


def standings(state: SessionState) -> list[Standing]:
    """Every active breach and where it stands, held ones first, then P0 first, then the earliest: the
    one order the verdict, the ACTIVE BREACH tile, the report and the headless verdict read. A breach
    stands unknown once its guardrail journaled, after it, that it cannot judge (unknown, or waiting
    for data: core/guardrails.py journals that while breached)."""
    found: list[Standing] = []
    for breach in state.traffic.breaches.values():
        seen = state.rails.get(breach.guardrail)
        if seen is None or seen.since is None or seen.since < breach.ts or seen.status == "observed":
            found.append(Standing(breach))
            continue
        why = seen.reason or "no data to judge it"
        why += _out_of_traffic(breach, state.traffic.rollback, seen.since)
        found.append(Standing(breach, seen.since, why))
    return sorted(found, key=lambda s: (not s.held, s.breach.severity, s.breach.ts))


def breach_time_to_detect_s(state: SessionState) -> float | None:
    """The time to detect before a verified rollback: the first active breach's, as the ACTIVE BREACH
    tile orders them (P0 first, then the earliest), else the latest journaled one's."""
    active = sorted(state.traffic.breaches.values(), key=lambda b: (b.severity, b.ts))
    journaled = [e for e in state.traffic.breach_log if isinstance(e, ev.GuardrailBreach)]
    breach = active[0] if active else (journaled[-1] if journaled else None)
    return None if breach is None else time_to_detect_s(breach)


@dataclass(frozen=True)
class GuardrailReading:
    rail: Guardrail
    reading: Reading  # the value now over the window, or why there is none (core/guardrails.py)
    breach: ev.GuardrailBreach | None = None  # the active breach, if any
    standing: Standing | None = None  # where that breach stands

    @property
    def value(self) -> float | None:
        return self.reading.value

    @property
    def blind(self) -> bool:
        """Breached, then unknown: nothing has observed since whether it still holds."""
        return self.standing is not None and not self.standing.held

    @property
    def status(self) -> str:
        """breach | unknown (could not observe, a breach since then too) | waiting (no data yet) | over
        (over the threshold, not yet held `sustained_s`) | ok."""
        if self.blind:
            return "unknown"
        if self.breach is not None:
            return "breach"
        if self.reading.unknown:
            return "unknown"
        if self.value is None:
            return "waiting"
        return "over" if self.value > self.rail.threshold else "ok"

    @property
    def glyph(self) -> str:
        return _GLYPH[self.status]

    @property
    def label(self) -> str:
        """`BREACH P0`, `unknown (P0 breach at 12:00:10Z)`, `unknown`, `waiting`, `over`, `ok`."""
        if self.breach is None:
            return self.status
        severity = self.breach.severity
        return f"unknown ({severity} breach at {hms(self.breach.ts)})" if self.blind else f"BREACH {severity}"

    @property
    def shown(self) -> float | None:
        """The value shown: while breached, the one that tripped it."""
        return self.breach.value if self.breach is not None else self.value

    @property
    def window(self) -> str:
        if self.breach is not None:
            return breach_window(self.breach)
        return window_text(self.rail.metric, self.rail.window_s)

    @property
    def measure(self) -> str:
        """`20.0% > 2.0% over 10 s`; `≤ 2.0% over 10 s` while waiting; `… · no verdict` when unknown."""
        threshold = value_text(self.rail, self.rail.threshold)
        status = self.status
        if status in ("waiting", "unknown"):
            return f"≤ {threshold} {self.window}" + (" · no verdict" if status == "unknown" else "")
        op = ">" if status in ("breach", "over") else "≤"
        return f"{value_text(self.rail, self.shown)} {op} {threshold} {self.window}"

    @property
    def against(self) -> str | None:
        """Against the baseline: `candidate 240 ms vs stable 110 ms` (while breached, what tripped it)."""
        breach = self.breach
        if breach is not None and breach.candidate is not None and breach.baseline is not None:
            return sides_text(self.rail, (breach.candidate, breach.baseline))
        return sides_text(self.rail, self.reading.sides) if self.reading.sides is not None else None

    @property
    def evidence(self) -> str | None:
        """A sequential test's standing: `sequential evidence 2.31/8.01` (its statistic against its
        bound), or the evidence of its breach while breached."""
        if self.breach is not None and self.breach.statistic is not None:
            return breach_evidence(self.breach).removeprefix(" · ")
        found = self.reading.evidence
        if found is None:
            return None
        return f"sequential evidence {found.statistic:.2f}/{found.bound:.2f}"

    @property
    def evaluated_at(self) -> float | None:
        """When its query was last evaluated (metric: query), for the front ends to show in their clock."""
        return self.reading.at

    @property
    def text(self) -> str:
        """`candidate-5xx 20.0% > 2.0% over 10 s` — what every front end shows after the status."""
        extra = "".join(f" · {part}" for part in (self.against, self.evidence) if part)
        return f"{self.rail.name} {self.measure}{extra}"

    @property
    def why(self) -> str | None:
        """Why there is no value: what could not be observed, or what data it still waits for."""
        if self.standing is not None and self.blind:
            return self.standing.unknown
        if self.status == "unknown":
            return self.reading.unknown
        return no_data(self.rail) if self.status == "waiting" else None

    @property
    def line(self) -> str:
        """`✗ BREACH P0 candidate-5xx 20.0% > 2.0% over 10 s`, with why there is no value when there is
        none (report, headless verdict; the traffic pane puts the why of an unknown on lines of its own)."""
        return f"{self.glyph} {self.label} {self.text}" + (f" — {self.why}" if self.why else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "guardrail": self.rail.name,
            "status": self.status,
            "metric": self.rail.metric,
            "value": None if self.shown is None else round(self.shown, 4),
            "threshold": self.rail.threshold,
            "window": self.window,
            "against": self.against,
            "evidence": self.evidence,
            "evaluated_at": self.evaluated_at,
            "text": self.text,
            "why": self.why,
        }


def readings(playbook: Playbook, state: SessionState, now: float) -> list[GuardrailReading]:
    """Every guardrail of the playbook, in its order, at `now` (judged as the engine judges it)."""
    found = guardrail_readings(playbook, state, now)
    breaches = state.traffic.breaches
    stand = {s.breach.guardrail: s for s in standings(state)}
    return [
        GuardrailReading(rail, found[rail.name], breaches.get(rail.name), stand.get(rail.name))
        for rail in playbook.guardrails
    ]
