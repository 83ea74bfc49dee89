"""Recorded-session builders: the session start every journal opens with, and a typical breach."""

from __future__ import annotations

from typing import Any

from rollback_tui.core import events as ev

T0 = 1767268800.0  # 2026-01-01 12:00:00 UTC: recorded sessions read the same in every run


def session_started(**overrides: Any) -> ev.SessionStarted:
    """A SessionStarted as the engine journals it; override what the test is about."""
    fields: dict[str, Any] = {
        "playbook": "pb.yaml",
        "playbook_name": "pb",
        "playbook_title": "t",
        "environment": "lab",
        "operator": "alice",
        "host": "h",
        "version": "0",
        "ts": T0,
    }
    fields.update(overrides)
    return ev.SessionStarted(**fields)


def breach(
    ts: float,
    *,
    value: float = 0.3,
    threshold: float = 0.05,
    window_s: float = 2,
    bad_for_s: float = 1,
    **kw: Any,
) -> ev.GuardrailBreach:
    """A P0 candidate-5xx breach at `ts` whose first bad sample was `bad_for_s` earlier."""
    fields: dict[str, Any] = {
        "guardrail": "candidate-5xx",
        "severity": "P0",
        "metric": "http_5xx_rate",
        "value": value,
        "threshold": threshold,
        "window_s": window_s,
        "first_bad_ts": ts - bad_for_s,
        "scope": "candidate",
        "ts": ts,
    }
    fields.update(kw)
    return ev.GuardrailBreach(**fields)
