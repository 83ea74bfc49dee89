"""The cockpit screen: the panes (ui/screens/panes.py) plus the operator's keys.

Its bindings come from the command table (ui/commands.py); its actions open the dialogs and run engine calls
through the app, which turns every outcome into a toast and every failure into a notification, never a crash.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from textual import work
from textual.screen import ModalScreen

from rollback_tui.playbook.model import CommandAction
from rollback_tui.session.engine import Engine, NotAvailable
from rollback_tui.ui.commands import SCREEN_ACTIONS, bindings
from rollback_tui.ui.panes.base import Activity
from rollback_tui.ui.screens.actions import ActionsScreen
from rollback_tui.ui.screens.confirm import ConfirmRollback
from rollback_tui.ui.screens.panes import PanesScreen
from rollback_tui.ui.screens.reason import ReasonPrompt

if TYPE_CHECKING:
    from rollback_tui.ui.app import CockpitApp

log = logging.getLogger(__name__)

ACTIVITY_HZ = 8  # spinners and elapsed times while something runs


class CockpitScreen(PanesScreen):
    BINDINGS = bindings("screen")
    if TYPE_CHECKING:
        app: CockpitApp  # the app this screen is made for: its engine wiring, workers and toasts

    def __init__(self, engine: Engine, *, share: bool, present: bool = False) -> None:
        super().__init__(engine.journal.path, engine.operator, engine.playbook, share=share, present=present)
        self.engine = engine
        # What the operator started and is still running (spinners, elapsed times).
        self._gates_queued: frozenset[str] = frozenset()
        self._gates_requested_at: float | None = None
        self._fanout_since: float | None = None
        self._traffic_since: float | None = None
        self._traffic_rps: float | None = None
        self._rollback_since: float | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a dialog is open the operator's actions wait (and leave the footer behind it).
        return not (action in SCREEN_ACTIONS and isinstance(self.app.screen, ModalScreen))

    # --- what is running ------------------------------------------------------------------------

    def activity(self, live: bool) -> Activity:
        running = self._fanout_since or self._traffic_since or self._rollback_since or self._gates_queued
        return Activity(
            gates_queued=self._gates_queued,
            gates_requested_at=self._gates_requested_at,
            fanout_since=self._fanout_since,
            traffic_since=self._traffic_since,
            traffic_rps=self._traffic_rps,
            rollback_since=self._rollback_since,
            frame=int(time.monotonic() * ACTIVITY_HZ) if running and live else 0,
        )

    def tick_activity(self) -> None:
        """While something runs, keep its spinner and elapsed time moving (and notice traffic ending)."""
        mark = self.app.mark_dirty
        if self._traffic_since is not None and not self.engine.running("traffic"):
            self._traffic_since = None
            mark({"traffic"})
        if self._gates_queued or any(g.status == "running" for g in self.engine.state.gates.values()):
            mark({"gates"})
        if self._fanout_since is not None:
            mark({"fanout"})
        if self._traffic_since is not None or self._rollback_since is not None:
            mark({"traffic"})

    # --- gates ----------------------------------------------------------------------------------

    def action_run_gates(self) -> None:
        if self.app.busy("gates"):
            self.notify("Gates are already running — c cancels them.", severity="warning", timeout=4)
            return
        self.run_gates_worker()

    @work(exclusive=True, group="gates", exit_on_error=False)
    async def run_gates_worker(self, names: list[str] | None = None) -> None:
        self._gates_queued = frozenset(names or [g.name for g in self.engine.playbook.gates])
        self._gates_requested_at = time.time()
        self.app.mark_dirty({"gates"})
        try:
            await self.app.perform("gates", lambda: self.engine.run_gates(names))
        finally:
            self._gates_queued, self._gates_requested_at = frozenset(), None
            self.app.mark_dirty({"gates", "steps"})

    def action_cancel_gates(self) -> None:
        running = [g.name for g in self.engine.state.gates.values() if g.status == "running"]
        queued = bool(self._gates_queued)
        cancelled = [name for name in running if self._cancel_gate(name)]
        if queued:  # the queued ones must not start after the running one is cancelled
            self.workers.cancel_group(self, "gates")
        if cancelled or queued:
            self.notify(f"Cancelling {', '.join(cancelled) or 'queued gates'}…", timeout=3)
        else:
            self.notify("No gates are running.", timeout=3)

    def _cancel_gate(self, name: str) -> bool:
        try:
            return self.engine.cancel_gate(name)
        except Exception as exc:
            self.app.report_failure("cancel", exc)
            return False

    # --- fanout and traffic -----------------------------------------------------------------------

    def action_fanout(self) -> None:
        if self.app.busy("fanout"):
            self.notify("A fanout check is already running.", timeout=3)
            return
        self.fanout_worker()

    @work(exclusive=True, group="fanout", exit_on_error=False)
    async def fanout_worker(self) -> None:
        self._fanout_since = time.time()
        self.app.mark_dirty({"fanout"})
        try:
            await self.app.perform("fanout check", self.engine.run_fanout_check)
        finally:
            self._fanout_since = None
            self.app.mark_dirty({"fanout", "verdict", "steps"})

    def action_traffic(self) -> None:
        """Start synthetic canary traffic through the balancer, or stop it."""
        try:
            if self.engine.stop_traffic():
                self._traffic_since = None
                self.notify("Synthetic traffic stopped.", timeout=3)
            else:
                rps = self.engine.start_traffic()
                self._traffic_since, self._traffic_rps = time.time(), rps
                self.notify(f"Synthetic traffic started: {rps:g} rps through the balancer.", timeout=3)
        except NotAvailable as exc:
            self.app.not_available("traffic: not available", exc)
        except Exception as exc:
            self.app.report_failure("traffic", exc)
        self.app.mark_dirty({"traffic"})

    # --- rollback -------------------------------------------------------------------------------

    def action_rollback(self) -> None:
        """Ask for the typed confirmation; the engine journals the request, or the operator's decline."""
        try:
            removal = self.engine.rollback_action()
        except NotAvailable as exc:
            self.app.not_available("rollback", exc)
            return

        def answered(typed: str | None) -> None:
            if typed is None:
                try:
                    self.engine.cancel_rollback(removal.name)
                except Exception as exc:
                    self.app.report_failure("rollback", exc)
                    return
                self.notify("Rollback declined; nothing changed.", timeout=3)
                return
            if self.app.busy("rollback"):
                self.notify("A rollback is already in progress.", severity="warning", timeout=4)
                return
            self.rollback_worker(removal.name, typed)

        self.app.push_screen(ConfirmRollback(removal, self.engine.playbook), callback=answered)

    @work(exclusive=True, group="rollback", exit_on_error=False)
    async def rollback_worker(self, action: str, typed: str) -> None:
        self._rollback_since = time.time()
        self.app.mark_dirty({"traffic"})
        try:
            await self.app.perform("rollback", lambda: self.engine.rollback(action, typed))
        finally:
            self._rollback_since = None
            self.app.mark_dirty({"traffic", "steps", "status"})

    # --- checklist, runbook, playbook actions, export ---------------------------------------------

    def action_tick(self) -> None:
        item = self.panes["checklist"].highlighted_item()
        if item is None:
            self.notify("Highlight a checklist item first (↑/↓).", severity="warning", timeout=3)
            return
        status = self.engine.checklist().get(item)
        checked = not (status.checked if status else False)
        if status is None or status.rule == "manual":
            self.app.launch("tick", lambda: self.engine.tick(item, checked, ""))
            return
        verb = "Tick" if checked else "Untick"
        question = f"{verb} '{status.text}' by hand? Its evidence decides it automatically ({status.rule})."

        def answered(reason: str | None) -> None:
            if reason is not None:
                self.app.launch("tick", lambda: self.engine.tick(item, checked, reason))

        self.app.push_screen(ReasonPrompt(question), callback=answered)

    def action_step(self, offset: int) -> None:
        step = self.engine.step_after(offset)
        if step is None:
            self.notify("No step that way.", severity="warning", timeout=2)
            return
        self.app.launch("step", lambda: self.engine.enter_step(step))

    def action_actions(self) -> None:
        actions = [a for a in self.engine.playbook.actions if isinstance(a, CommandAction)]
        if not actions:
            self.notify("This playbook has no command actions.", severity="warning", timeout=3)
            return

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                name, typed = answer
                self.app.launch(name, lambda: self.engine.run_action(name, confirmed_text=typed or None))

        self.app.push_screen(ActionsScreen(actions), callback=chosen)

    def action_export(self) -> None:
        self.app.launch("export", self.engine.export)
