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
