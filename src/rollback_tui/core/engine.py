"""The engine: owns the probe/action tasks, journals every event, folds it, then publishes it.

Order is the contract: journal.append → state.apply → subscribers. A subscriber (the UI, the
headless runner) never sees an event that is not in the journal. The engine never imports
Textual; the UI subscribes with a callback that posts a Textual message.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rollback_tui import __version__
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook

log = logging.getLogger(__name__)

Subscriber = Callable[[ev.Event], None]


class NotAvailable(Exception):
    """An operator action whose feature has not been built or configured; the UI shows the reason."""


def current_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


class Engine:
    def __init__(
        self,
        playbook: Playbook,
        journal: Journal,
        *,
        playbook_path: str = "",
        operator: str | None = None,
        state: SessionState | None = None,
    ) -> None:
        self.playbook = playbook
        self.playbook_path = playbook_path
        self.journal = journal
        self.operator = operator or current_operator()
        self.state = state or SessionState()
        self._subscribers: list[Subscriber] = []
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._flusher: asyncio.Task[None] | None = None

    # --- events -----------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: ev.Event) -> ev.Event:
        """Journal, fold, publish. Safe to call from any coroutine on the engine's loop."""
        event = self.journal.append(event)
        self.state.apply(event)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the feed
                log.exception("subscriber failed on %s", event.kind)
        return event

    def notice(self, source: str, message: str, level: str = "info") -> None:
        self.emit(ev.Notice(source=source, message=message, level=level))  # type: ignore[arg-type]

    def operator_action(self, action: str, **detail: Any) -> ev.Event:
        """Journal (fsync'd) an operator action before anything acts on it."""
        return self.emit(ev.OperatorAction(action=action, actor=self.operator, detail=detail))

    # --- lifecycle --------------------------------------------------------------------------------

    def start_session(self) -> None:
        self.emit(
            ev.SessionStarted(
                playbook=self.playbook_path,
                playbook_name=self.playbook.name,
                playbook_title=self.playbook.title,
                environment=self.playbook.environment,
                operator=self.operator,
                host=socket.gethostname(),
                version=__version__,
                replicas=[
                    {"name": r.name, "role": r.role, "url": r.url, "labels": r.labels}
                    for r in self.playbook.replicas
                ],
            )
        )

    async def start(self) -> None:
        """Start the background feeds (health polling, journal flusher)."""
        from rollback_tui.probes.health import HealthProbe

        if self.state.started is None:
            self.start_session()
        self._flusher = asyncio.create_task(self._flush_loop(), name="journal-flush")
        self.spawn("health", HealthProbe(self.playbook, self.emit).run())

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a feed or action as a named task; a crash becomes a journaled notice, not a dead app."""
        old = self._tasks.get(name)
        if old is not None and not old.done():
            old.cancel()

        async def guarded() -> Any:
            try:
                return await coro
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("task %s failed", name)
                self.notice(name, f"{name} stopped: {type(exc).__name__}: {exc}", "error")
                return None

        task = asyncio.create_task(guarded(), name=name)
        self._tasks[name] = task
        return task

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    # --- operator actions (the UI and headless runner call these) ---------------------------------

    async def run_gates(self, names: list[str] | None = None) -> None:
        raise NotAvailable("Gate runs arrive with the gates issue (#6).")

    async def run_fanout_check(self) -> None:
        raise NotAvailable("The two-session fanout check arrives with the fanout issue (#4).")

    async def rollback(self, action: str, confirmed_text: str) -> None:
        raise NotAvailable("Selector removal arrives with the traffic/rollback issue (#5).")

    def tick(self, item: str, checked: bool = True, note: str = "") -> None:
        raise NotAvailable("Checklist ticking arrives with the evidence issue (#8).")

    async def export(self, directory: Path | None = None) -> list[Path]:
        raise NotAvailable("Export arrives with the evidence issue (#8).")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.journal.batch_s / 2)
            self.journal.flush_due()

    async def stop(self, reason: str = "quit") -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        if self._flusher:
            tasks.append(self._flusher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self.journal.closed:
            self.emit(ev.SessionEnded(reason=reason))
            self.journal.close()


def default_journal_path(playbook: Playbook, base: Path) -> Path:
    import time

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return base / f"{playbook.name}-{stamp}.jsonl"
