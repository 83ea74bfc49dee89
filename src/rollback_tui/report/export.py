"""`export_session`: the evidence artefact — report.md, bundle.json, journal.jsonl, gate artefacts, SVG.

One streaming pass folds the journal (SessionState + report Evidence, bounded memory); the journal copy
and the bundle's events array are the journal's own lines passed through the Redactor again, written
block by block (in a child process for big journals, so both cores work). A 1,000,000-event journal
exports in a few seconds (bench/export.py).
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path, PurePath

from rollback_tui.core import events as ev
from rollback_tui.core.redact import Redactor
from rollback_tui.core.resume import (
    GATE_OUTPUT,
    SessionPlaybookError,
    credit_deferred,
    credit_grouped,
    scan_journal,
    session_playbook,
)
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.report.bundle import BUNDLE_HEAD, build_summary, bundle_tail
from rollback_tui.report.evidence import Evidence
from rollback_tui.report.markdown import render_markdown
from rollback_tui.report.outdir import ExportError, OutputDir, check_export_target, holds
from rollback_tui.report.redact_copy import redact_copy

log = logging.getLogger(__name__)

EXPORT_FRAMES = 20_000  # newest fanout frames parsed for the report's receive timestamps
PARALLEL_MIN_BYTES = 16 << 20  # below this, redact-copy in-process (a child costs ~0.1 s to start)
FILES = ("report.md", "bundle.json", "journal.jsonl")
_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

__all__ = ["ExportError", "automatic_export_dir", "check_export_target", "export_session"]


def _default_redactor(playbook: Playbook) -> Redactor:
    from rollback_tui.playbook.load import referenced_env_vars

    return Redactor.from_env(referenced_env_vars(playbook))


class _Unusable(Exception):
    """An artefact the export does not copy; the message (for the report's warnings) says why."""


def _artefact_name(recorded: str) -> str | None:
    """The file name a gate artefact was recorded under, or None when the recorded path does not name a
    file directly in an artefact directory (a tampered journal: `/etc/passwd`, `../x`)."""
    path = PurePath(recorded)
    if ".." in path.parts or path.name in ("", ".") or not path.parent.name.endswith("-artefacts"):
        return None
    return path.name


def _read_artefact(journal: Path, name: str) -> bytes:
    """Artefact `name` from the session's own artefact directory (the journal's sibling `<stem>-artefacts/`,
    where a journal moved with its artefacts finds them too), never through a symlink."""
    where = f"{journal.stem}-artefacts/{name}"
    try:
        dir_fd = os.open(journal.parent / f"{journal.stem}-artefacts", _READ_DIR)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except FileNotFoundError as exc:
        raise _Unusable(f"artefact {where}: not found at export") from exc
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _Unusable(f"artefact {where}: refused, a symlink (never followed)") from exc
        raise _Unusable(f"artefact {where}: unreadable ({exc.strerror})") from exc
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Unusable(f"artefact {where}: refused, not a regular file")
        return fh.read()


def _copy_artefacts(evidence: Evidence, journal: Path, out: OutputDir, redactor: Redactor) -> dict[str, str]:
    """Copy (redacted) every gate artefact the report refers to; recorded path → path in the bundle."""
    copied: dict[str, str] = {}
    seen: set[str] = set()
    target: OutputDir | None = None
    for run in evidence.gate_runs.values():
        recorded = run.finished.artefact if run.finished else None
        if not recorded or recorded in seen:
            continue
        seen.add(recorded)
        name = _artefact_name(recorded)
        try:
            if name is None:
                raise _Unusable(f"artefact {recorded}: refused, not in this session's artefact directory")
            data = _read_artefact(journal, name)
        except _Unusable as exc:
            evidence.warnings.append(str(exc))
            continue
        if f"artefacts/{name}" not in copied.values():
            target = target or out.subdir("artefacts")
            text = data.decode("utf-8", "surrogateescape")
            target.write(name, redactor(text).encode("utf-8", "surrogateescape"))
        copied[recorded] = f"artefacts/{name}"
    return copied


class _CopyJob:
    """The redacted journal copy + events body, in a child process for big journals."""

    def __init__(self, job: dict[str, object], parallel: bool, fds: tuple[int, ...]) -> None:
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
                    pass_fds=fds,  # the staged output files: the child writes to them, never opens a path
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


def automatic_export_dir(default: Path, journal: Path) -> Path:
    """Where the cockpit exports on its own (`e`, quit): `default`, or its fresh sibling `<default>-export`
    when `default` holds the journal. No one is there to pick another directory, so refusing would lose
    the export."""
    return default.with_name(default.name + "-export") if holds(default, journal) else default


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
    check_export_target(journal, out)  # before the playbook is loaded: refuse early and clearly
    if playbook is None:
        try:
            playbook = session_playbook(journal)
        except SessionPlaybookError as exc:
            raise ExportError(str(exc)) from exc
    redactor = redactor or _default_redactor(playbook)
    with OutputDir.open(out, source=journal) as target:
        paths = _write_export(
            journal, target, playbook, redactor, svg=svg, actor=actor, count_self=count_self
        )
        target.commit()  # only a complete export replaces the previous one
    return paths


def _write_export(
    journal: Path,
    target: OutputDir,
    playbook: Playbook,
    redactor: Redactor,
    *,
    svg: str | None,
    actor: str | None,
    count_self: bool,
) -> list[Path]:
    """Stage every export file in `target` (the caller commits them); returns their final paths."""
    out = target.path
    size, snapshot_end = _complete_bytes(journal)
    journal_fd, bundle_fd = target.create("journal.jsonl"), target.create("bundle.json")
    job: dict[str, object] = {
        "src": journal,
        "limit": size,
        "redactor": redactor,
        "journal_out": journal_fd,
        "events_out": bundle_fd,
        "events_head": BUNDLE_HEAD,
    }
    copy = _CopyJob(job, parallel=size >= PARALLEL_MIN_BYTES, fds=(journal_fd, bundle_fd))

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
        os.ftruncate(bundle_fd, 0)
        os.lseek(bundle_fd, 0, os.SEEK_SET)
        exclude = set(scan.bad_lines)
        redact_copy(journal, size, redactor, events_out=bundle_fd, events_head=BUNDLE_HEAD, exclude=exclude)

    artefacts = _copy_artefacts(evidence, journal, target, redactor)
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
    report = render_markdown(playbook, state, evidence, redactor=redactor, **meta)  # type: ignore[arg-type]
    target.write("report.md", report.encode())
    with open(bundle_fd, "wb", closefd=False) as fh:
        fh.seek(0, os.SEEK_END)  # after the events the copy wrote through this descriptor
        fh.write(redactor(bundle_tail(summary, sorted(set(artefacts.values())))).encode())
    if svg is not None:
        target.write("cockpit.svg", redactor(svg).encode())
    return paths
