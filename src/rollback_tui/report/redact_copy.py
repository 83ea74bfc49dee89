"""Copy a journal through the Redactor: to a JSONL copy and/or to the body of the bundle's events array.

Works on blocks of whole lines and redacts them exactly as line-by-line calls would, at a fraction of
the per-call cost (`redact_block`). The export runs this in a child process
for big journals (`python -m rollback_tui.report.redact_copy`, job on stdin as a pickle) so redaction
and the fold use both cores.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Collection
from pathlib import Path
from typing import BinaryIO

from rollback_tui.core import redact
from rollback_tui.core.redact import MASK, Redactor

BLOCK = 4 << 20


def _per_line(redactor: Redactor, text: str) -> str:
    return "\n".join(redactor(line) for line in text.split("\n"))


def _anchors_by_trigger(patterns: list, anchors: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """trigger → the Redactor's anchors inside it: a text can hold the trigger only if it holds them all."""
    return {t: frozenset(a for a in anchors if a in t) for triggers, _, _ in patterns for t in triggers}


def _trigger_lines(text: str, lowered: str, triggers: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, end) of every line of `text` whose lowercase form contains one of `triggers`, in order."""
    spans: set[tuple[int, int]] = set()
    if all("=" in t for t in triggers):
        # key=value triggers: only lines with an "=" can hold one (rare in JSON), so look there first.
        at = lowered.find("=")
        while at >= 0:
            start = lowered.rfind("\n", 0, at) + 1
            end = lowered.find("\n", at)
            end = len(lowered) if end < 0 else end
            line = lowered[start:end]
            if any(t in line for t in triggers):
                spans.add((start, end))
            at = lowered.find("=", end)
        return sorted(spans)
    for trigger in triggers:
        at = lowered.find(trigger)
        while at >= 0:
            start = lowered.rfind("\n", 0, at) + 1
            end = lowered.find("\n", at)
            end = len(lowered) if end < 0 else end
            spans.add((start, end))
            at = lowered.find(trigger, end)
    return sorted(spans)


def redact_block(redactor: Redactor, text: str) -> str:
    """`redactor` applied to each line of `text`, but fast: a pattern runs only on lines holding one of
    its trigger words (the Redactor's own prefilter), found by substring search over the whole block.

    Falls back to line-by-line calls if the Redactor's internals are not what this expects.
    """
    values = getattr(redactor, "_values", None)
    patterns = getattr(redact, "_PATTERNS", None)
    if type(redactor) is not Redactor or values is None or not patterns or any(len(p) != 3 for p in patterns):
        return _per_line(redactor, text)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    lowered = text.lower()
    if len(lowered) != len(text):  # lower() changed lengths (rare Unicode): offsets would not line up
        return _per_line(redactor, text)
    # A trigger can only be in the block if every anchor inside it is: ~13 scans of the block rule out
    # most of the ~25 triggers, each of which would otherwise cost a scan of its own (the bulk of an
    # export's time).
    anchors = tuple(getattr(redact, "_ANCHORS", ()))
    held = _anchors_by_trigger(patterns, anchors)
    absent = {a for a in anchors if a not in lowered}
    cache: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for triggers, pattern, repl in patterns:
        spans = cache.get(triggers)
        if spans is None:
            live = tuple(t for t in triggers if absent.isdisjoint(held[t]))
            spans = cache[triggers] = _trigger_lines(text, lowered, live) if live else []
        if not spans:
            continue
        parts, pos = [], 0
        for start, end in spans:
            parts += [text[pos:start], pattern.sub(repl, text[start:end])]
            pos = end
        parts.append(text[pos:])
        changed = "".join(parts)
        if changed != text:
            text, lowered = changed, changed.lower()
            cache.clear()  # offsets moved
            absent = {a for a in anchors if a not in lowered}  # a replacement may have written one
    return text


def _blocks(src: Path, limit: int):
    """(first line number, text) for blocks of whole lines within the first `limit` bytes."""
    lineno = 1
    rest = b""
    remaining = limit
    with open(src, "rb") as fh:
        while remaining > 0:
            data = fh.read(min(BLOCK, remaining))
            if not data:
                break
            remaining -= len(data)
            data = rest + data
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            if block:
                yield lineno, block.decode("utf-8", "surrogateescape")
                lineno += block.count(b"\n")
    if rest:
        yield lineno, rest.decode("utf-8", "surrogateescape") + "\n"


def _event_shaped(line: str) -> bool:
    return line.startswith('{"kind":"') and line.endswith("}")


def _open_out(target: Path | int) -> BinaryIO:
    return open(target, "wb", closefd=not isinstance(target, int))


def redact_copy(
    src: Path,
    limit: int,
    redactor: Redactor,
    *,
    journal_out: Path | int | None = None,
    events_out: Path | int | None = None,
    events_head: str = "",
    exclude: Collection[int] = (),
) -> int:
    """Write the redacted journal and/or `events_head` + the comma-separated event objects.

    Returns the number of events written. An output given as a descriptor (the export's staged file,
    also passed to the child process) is written from its current offset and left open.
    Every line goes into the events array as it is; when `exclude` is given (line numbers the fold
    could not read), those and any line that is not an event-shaped JSON object stay out, so the
    bundle remains valid JSON.
    """
    written = 0
    journal = _open_out(journal_out) if journal_out is not None else None
    events = _open_out(events_out) if events_out is not None else None
    try:
        if events is not None:
            events.write(events_head.encode())
        for first, text in _blocks(Path(src), limit):
            clean = redact_block(redactor, text)
            if journal is not None:
                journal.write(clean.encode("utf-8", "surrogateescape"))
            if events is None:
                continue
            if exclude:
                lines = clean[:-1].split("\n")
                body = ",\n".join(
                    ln for i, ln in enumerate(lines, first) if i not in exclude and _event_shaped(ln)
                )
                count = body.count("\n") + 1 if body else 0
            else:  # the fast path: the caller redoes the body with `exclude` if any line was unreadable
                body, count = clean[:-1].replace("\n", ",\n"), clean.count("\n")
            if count:
                if written:
                    events.write(b",\n")
                events.write(body.encode("utf-8", "surrogateescape"))
                written += count
    finally:
        for fh in (journal, events):
            if fh is not None:
                fh.close()
    return written


def main() -> None:
    job = pickle.load(sys.stdin.buffer)
    written = redact_copy(**job)
    sys.stdout.write(f"{written}\n")


if __name__ == "__main__":
    main()
