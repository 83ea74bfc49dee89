"""One session's life, written once for every front end: lab → journal → engine → final export → close.

    async with SessionRuntime(playbook, path, journal=journal, lab=lab, export_on_exit=True) as engine:
        ...  # the cockpit runs, or the headless rehearsal walks the runbook

On the way out, whatever happened inside: the engine stops (feeds cancelled, the session's end journaled),
the evidence is exported unless a front end already did, the journal is closed, its mirror (`mirror=`, or
the playbook's `mirror:`; session/mirror.py) gets what is left of it, the lab is stopped.
The session layer never imports the lab: the CLI hands it in as anything with start/stop/playbook.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from rollback_tui.core.journal import Journal, JournalBusy
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine

if TYPE_CHECKING:
    from rollback_tui.session.mirror import JournalMirror

MIRROR_FINAL_S = 10.0  # how long the end of a session waits for its mirror to take the last lines


class LabHandle(Protocol):
    """What the runtime needs of the embedded lab (lab.supervisor.Lab)."""

    playbook: Playbook
    redis_kind: str
    prometheus_note: str  # what to say about the lab's Prometheus ("" when the playbook asks for none)

    @property
    def prometheus_up(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class JournalUnavailable(Exception):
    """The session's journal could not be opened (it holds another session, another process writes it, or
    the file system refused): nothing was journaled and the lab, if started, is stopped again."""


class SessionRuntime:
    def __init__(
        self,
        playbook: Playbook,
        playbook_path: str,
        *,
        journal: Journal | Callable[[Playbook], Journal],
        state: SessionState | None = None,
        operator: str | None = None,
        lab: LabHandle | None = None,
        lab_notice: str = "embedded lab up",
        export_on_exit: bool = False,
        export_dir: Path | None = None,
        end_reason: str = "quit",
        mirror: str | None = None,
        incident: Mapping[str, str | None] | None = None,
    ) -> None:
        self.playbook = playbook
        self.playbook_path = str(Path(playbook_path).resolve()) if playbook_path else playbook_path
        self._journal = journal  # or a factory: a new journal is opened only once the lab is up
        self.journal: Journal | None = journal if isinstance(journal, Journal) else None
        self.state = state
        self.operator = operator
        self.lab = lab
        self.lab_notice = lab_notice
        self.export_on_exit = export_on_exit
        self.export_dir = export_dir
        self.end_reason = end_reason
        self.incident = {k: v for k, v in (incident or {}).items() if v}  # incident, commander, scribe
        self.engine: Engine | None = None
        self.exported: list[Path] | None = None  # set by a front end that exported itself (with its SVG)
        self.export_error: str | None = None
        self.mirror_url = mirror
        self.mirror: JournalMirror | None = None

    async def __aenter__(self) -> Engine:
        playbook = self.playbook
        if self.lab is not None:
            try:
                await self.lab.start()
            except BaseException:
                await self.lab.stop()
                raise
            playbook = self.lab.playbook
        if self.journal is None:
            assert callable(self._journal)
            try:
                self.journal = self._journal(playbook)
            except (OSError, JournalBusy) as exc:  # FileExistsError: it holds another session
                if self.lab is not None:
                    await self.lab.stop()
                raise JournalUnavailable(f"error: cannot open the journal: {exc}") from None
        self.engine = Engine(
            playbook, self.journal, playbook_path=self.playbook_path, operator=self.operator, state=self.state
        )
        self.engine.export_dir = self.export_dir
        if self.mirror_url or playbook.mirror is not None:  # imported only then: startup stays as fast
            from rollback_tui.session.mirror import start_mirror

            self.mirror = start_mirror(self.engine, self.mirror_url)
        if self.engine.state.started is None:
            self.engine.start_session()
        if self.incident:
            self.engine.record_incident(**self.incident)
        if self.lab is not None:
            self.engine.notice("lab", f"{self.lab_notice} · Redis: {self.lab.redis_kind}")
            if self.lab.prometheus_note:  # last: the notice line shows it when the session opens
                self.engine.notice(
                    "lab", self.lab.prometheus_note, "info" if self.lab.prometheus_up else "warning"
                )
        self.engine.start_readiness()  # journaled when in: what cannot run from here, and why
        return self.engine

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        engine, journal = self.engine, self.journal
        assert engine is not None and journal is not None
        try:
            await engine.stop(self.end_reason, close=False)
            if self.export_on_exit and self.exported is None and not journal.closed:
                await self._export(engine)
        finally:
            journal.close()
            if self.mirror is not None:  # before the lab: the mirror may be the lab's own Redis
                await self.mirror.close(MIRROR_FINAL_S)
            if self.lab is not None:
                with contextlib.suppress(Exception):
                    await self.lab.stop()

    async def _export(self, engine: Engine) -> None:
        from rollback_tui.report.export import ExportError

        try:
            self.exported = await engine.export(self.export_dir)
        except (ExportError, OSError) as exc:  # the journal is intact; `rollback-tui export` can retry
            self.export_error = str(exc)
            engine.notice("export", f"export failed: {exc}", "error")
