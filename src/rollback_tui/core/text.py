"""One-line display of text and commands, shared by the cockpit panes and the evidence report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def one_line(text: str, width: int | None = None) -> str:
    """The first line of `text`, with … when anything (more lines, more columns) was cut."""
    first, _, rest = text.strip().partition("\n")
    cut = bool(rest.strip())
    if width is not None and len(first) > width:
        first, cut = first[: max(0, width - 1)], True
    return first.rstrip() + "…" if cut else first


def command_line(argv: list[str], width: int | None = None) -> str:
    """argv as ONE display line: arguments joined, only the first line of a multi-line script."""
    return one_line(" ".join(argv), width)


def weight_changes(before: dict, after: dict) -> str | None:
    """'blue-next 50 → 0' for every weight a routing change moved (a weight-based driver's rollback)."""
    wb, wa = before.get("weights") or {}, after.get("weights") or {}
    moved = [
        f"{name} {wb.get(name, '-')} → {wa.get(name, '-')}"
        for name in sorted(set(wb) | set(wa))
        if wb.get(name) != wa.get(name)
    ]
    return ", ".join(moved) or None


def routing_text(routing: Mapping[str, Any]) -> str:
    """A routing read-back in words: its selector and the backends it routes to, each with its weight. A
    weight the read-back gives for a replica it does not route to is labelled so: the lab balancer reports
    every backend's configured weight, also that of the candidate a selector removal took out."""
    weights = routing.get("weights") or {}
    backends = list(routing.get("backends") or [])
    head = f"selector {routing.get('selector', {})}, backends "
    if not backends:  # not read back (a bare selector): the weights as given
        listed = ", ".join(f"{k} {v}" for k, v in weights.items())
        return head + "-" + (f", weights {listed}" if listed else "")
    routed = ", ".join(f"{b} {weights[b]}" if b in weights else b for b in backends)
    idle = [f"{name} (configured weight {w})" for name, w in weights.items() if name not in backends]
    return head + routed + (f"; not routed: {', '.join(idle)}" if idle else "")
