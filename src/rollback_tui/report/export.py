"""`export_session`: the evidence artefact — report.md, bundle.json, journal.jsonl, gate artefacts, SVG.

One streaming pass folds the journal (SessionState + report Evidence, bounded memory); the journal copy
and the bundle's events array are the journal's own lines passed through the Redactor again, written
block by block (in a child process for big journals, so both cores work). A 1,000,000-event journal
exports in a few seconds (bench/export.py).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

from rollback_tui.core import events as ev
from rollback_tui.core.redact import Redactor
from rollback_tui.core.resume import GATE_OUTPUT, credit_deferred, credit_grouped, first_event, scan_journal
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.report.bundle import BUNDLE_HEAD, build_summary, bundle_tail
from rollback_tui.report.evidence import Evidence
from rollback_tui.report.markdown import render_markdown
from rollback_tui.report.redact_copy import redact_copy

log = logging.getLogger(__name__)

EXPORT_FRAMES = 20_000  # newest fanout frames parsed for the report's receive timestamps
PARALLEL_MIN_BYTES = 16 << 20  # below this, redact-copy in-process (a child costs ~0.1 s to start)
FILES = ("report.md", "bundle.json", "journal.jsonl")


class ExportError(Exception):
    """The export cannot be written (unreadable journal, no playbook…); the message says why."""


def _load_session_playbook(journal: Path) -> Playbook:
    first = first_event(journal)
    if not isinstance(first, ev.SessionStarted) or not first.playbook:
        raise ExportError(f"{journal}: no session_started event naming a playbook; pass the playbook")
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    recorded = Path(first.playbook)
    candidates = [recorded] if recorded.is_absolute() else [recorded, journal.parent / recorded]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return load_playbook(candidate)
            except PlaybookError as exc:
                raise ExportError(f"playbook {candidate} of this session is invalid:\n{exc}") from exc
    raise ExportError(f"playbook {first.playbook} of this session not found; pass --playbook")


def _default_redactor(playbook: Playbook) -> Redactor:
    from rollback_tui.playbook.load import referenced_env_vars

    return Redactor.from_env(referenced_env_vars(playbook))


def _resolve_artefact(recorded: str, journal: Path) -> Path | None:
    path = Path(recorded)
    candidates = [path] if path.is_absolute() else [path, journal.parent / path]
    # A journal moved with its artefact directory (<stem>-artefacts/ next to it) still finds them.
    candidates.append(journal.parent / f"{journal.stem}-artefacts" / path.name)
    return next((c for c in candidates if c.is_file()), None)


def _copy_artefacts(evidence: Evidence, journal: Path, out_dir: Path, redactor: Redactor) -> dict[str, str]:
    """Copy (redacted) every gate artefact the report refers to; recorded path → path in the bundle."""
    copied: dict[str, str] = {}
    for run in evidence.gate_runs.values():
        recorded = run.finished.artefact if run.finished else None
        if not recorded or recorded in copied:
            continue
        source = _resolve_artefact(recorded, journal)
        if source is None:
            evidence.warnings.append(f"artefact {Path(recorded).name}: not found at export")
            continue
        target = out_dir / "artefacts" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_bytes().decode("utf-8", "surrogateescape")
        target.write_bytes(redactor(text).encode("utf-8", "surrogateescape"))
        copied[recorded] = f"artefacts/{source.name}"
    return copied


class _CopyJob:
    """The redacted journal copy + events body, in a child process for big journals."""

    def __init__(self, job: dict[str, object], parallel: bool) -> None:
        self.job = job
        self.proc: subprocess.Popen[bytes] | None = None
        if parallel:
            try:
                payload = pickle.dumps(job)
            except (pickle.PicklingError, TypeError, AttributeError):
                return  # e.g. a custom redactor that cannot cross processes: copy in-process
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "rollback_tui.report.redact_copy"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                assert self.proc.stdin is not None
                self.proc.stdin.write(payload)
                self.proc.stdin.close()
            except OSError as exc:  # cannot start a child: do it in-process
                log.warning("redact-copy child failed to start (%s); copying in-process", exc)
                self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self) -> None:
        if self.proc is None:
            redact_copy(**self.job)  # type: ignore[arg-type]
            return
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.wait() != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise ExportError(f"redacting the journal copy failed: {tail[0]}")


def _complete_bytes(path: Path) -> tuple[int, int]:
    """(length up to the last newline, file length) now: a torn last line is left out of the export."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(pos, 1 << 16)
            fh.seek(pos - step)
            block = fh.read(step)
            if pos == end and block.endswith(b"\n"):
                return end, end
            cut = block.rfind(b"\n")
            if cut >= 0:
                return pos - step + cut + 1, end
            pos -= step
    return 0, end


def export_written_event(out_dir: Path, paths: list[Path], actor: str) -> ev.ExportWritten:
    """The event the engine journals after an export (what the report_exported rule looks for)."""
    return ev.ExportWritten(directory=str(out_dir), files=[p.name for p in paths], actor=actor)


def export_session(
    journal_path: Path | str,
    out_dir: Path | str,
    *,
    playbook: Playbook | None = None,
    svg: str | None = None,
    redactor: Redactor | None = None,
    actor: str | None = None,
    count_self: bool = True,
) -> list[Path]:
    """Write the evidence export of a journal into `out_dir`; returns the files written.

    `count_self`: the report and summary already count this export for the `report_exported` rule (the
    caller journals `export_written_event(...)` afterwards). `actor` defaults to the session's operator.
    Raises ExportError with a readable message when the journal or its playbook cannot be used.
    """
    journal = Path(journal_path)
    out = Path(out_dir)
    if not journal.is_file():
        raise ExportError(f"{journal}: no such journal")
    if playbook is None:
        playbook = _load_session_playbook(journal)
    redactor = redactor or _default_redactor(playbook)
    out.mkdir(parents=True, exist_ok=True)

    size, snapshot_end = _complete_bytes(journal)
    bundle = out / "bundle.json"
    job: dict[str, object] = {
        "src": journal,
        "limit": size,
        "redactor": redactor,
        "journal_out": out / "journal.jsonl",
        "events_out": bundle,
        "events_head": BUNDLE_HEAD,
    }
    copy = _CopyJob(job, parallel=size >= PARALLEL_MIN_BYTES)

    state, evidence = SessionState(), Evidence()

    def apply(event: ev.Event) -> None:
        state.apply(event)
        evidence.observe(event)

    def credit(kind: str, skipped: int, per_run: dict[str, int]) -> None:
        credit_grouped(state, kind, skipped, per_run)
        evidence.credit_output(per_run)

    try:
        scan = scan_journal(
            journal,
            apply,
            deferred={"fanout_frame": EXPORT_FRAMES},
            on_deferred=lambda kind, skipped: credit_deferred(state, kind, skipped),
            grouped={"gate_output": GATE_OUTPUT},
            on_grouped=credit,
            limit=size,
        )
    except BaseException:
        copy.kill()
        raise
    torn = snapshot_end - size
    if torn > 0:
        scan.warnings.append(f"{journal}: torn last line ({torn} bytes) skipped")
    if scan.events:
        state.last_n, state.last_ts = scan.last_n, scan.last_ts
    copy.wait()
    if scan.bad_lines:
        # Rare: corrupt lines. Redo the events body without them so the bundle stays valid JSON.
        redact_copy(
            journal, size, redactor, events_out=bundle, events_head=BUNDLE_HEAD, exclude=set(scan.bad_lines)
        )

    artefacts = _copy_artefacts(evidence, journal, out, redactor)
    paths = [out / name for name in FILES] + [out / a for a in sorted(set(artefacts.values()))]
    if svg is not None:
        paths.append(out / "cockpit.svg")
    if count_self:
        who = actor or (state.started.operator if state.started else "unknown")
        self_event = export_written_event(out, paths, who)
        self_event.ts = state.last_ts or 0.0
        state.apply(self_event)
        state.counts[self_event.kind] -= 1  # not (yet) in the journal
        if not state.counts[self_event.kind]:
            del state.counts[self_event.kind]

    meta = {"journal_name": journal.name, "artefacts": artefacts, "warnings": scan.warnings}
    summary = build_summary(playbook, state, evidence, **meta)  # type: ignore[arg-type]
    (out / "report.md").write_text(render_markdown(playbook, state, evidence, redactor=redactor, **meta))  # type: ignore[arg-type]
    with open(bundle, "ab") as fh:
        fh.write(redactor(bundle_tail(summary, sorted(set(artefacts.values())))).encode())
    if svg is not None:
        (out / "cockpit.svg").write_text(redactor(svg))
    os.chmod(out / "journal.jsonl", 0o600)
    return paths
