"""Copy a journal through the Redactor: to a JSONL copy and/or to the body of the bundle's events array.

Works on blocks of whole lines (the redaction patterns never span a newline, so a block redacts exactly
like its lines one by one, at a fraction of the per-call cost). The export runs this in a child process
for big journals (`python -m rollback_tui.report.redact_copy`, job on stdin as a pickle) so redaction
and the fold use both cores.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Collection
from pathlib import Path

from rollback_tui.core.redact import Redactor

BLOCK = 4 << 20


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


def redact_copy(
    src: Path,
    limit: int,
    redactor: Redactor,
    *,
    journal_out: Path | None = None,
    events_out: Path | None = None,
    exclude: Collection[int] = (),
) -> int:
    """Write the redacted journal and/or the comma-separated event objects; returns events written.

    Lines that are not event-shaped JSON objects, and line numbers in `exclude` (lines the fold could
    not read), stay out of the events array so the bundle remains valid JSON.
    """
    written = 0
    journal = open(journal_out, "wb") if journal_out else None  # noqa: SIM115
    events = open(events_out, "wb") if events_out else None  # noqa: SIM115
    try:
        for first, text in _blocks(Path(src), limit):
            clean = redactor(text)
            if journal is not None:
                journal.write(clean.encode("utf-8", "surrogateescape"))
            if events is None:
                continue
            lines = clean[:-1].split("\n")
            if exclude:
                keep = [ln for i, ln in enumerate(lines, first) if i not in exclude and _event_shaped(ln)]
            else:
                keep = [ln for ln in lines if _event_shaped(ln)]
            if keep:
                if written:
                    events.write(b",\n")
                events.write(",\n".join(keep).encode("utf-8", "surrogateescape"))
                written += len(keep)
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
