"""One-line display of text and commands, shared by the cockpit panes and the evidence report."""

from __future__ import annotations


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
