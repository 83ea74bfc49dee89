"""Number formats shared by every front end, so a value reads the same on screen, in the log and report."""

from __future__ import annotations

import time


def num(value: float | None, unit: str = "") -> str:
    """`3.01 s`; `-` when there is no value."""
    if value is None:
        return "-"
    return f"{value:g}{unit}"


def ms(value: float | None) -> str:
    """`9.0 ms`, `25 ms`; `—` when there is no value."""
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def took(seconds: float) -> str:
    """How long something took: `120 ms`, `4.0 ms` under a second ("0.0 s" says nothing), else `2.5 s`."""
    return ms(seconds * 1000) if seconds < 1 else f"{seconds:.1f} s"


def pct(fraction: float | None) -> str:
    """`4.2%` of a fraction (0.042); `—` when there is no value."""
    return "—" if fraction is None else f"{fraction:.1%}"


def secs(value: float | None) -> str:
    """`3.01 s` (as journaled, like the report's `num(value, " s")`); `—` when there is no value."""
    return "—" if value is None else f"{value:g} s"


def hms(ts: float | None) -> str:
    """UTC wall-clock time of an event, as in '04:12:03Z'."""
    if ts is None:
        return "?"
    return time.strftime("%H:%M:%SZ", time.gmtime(ts))
