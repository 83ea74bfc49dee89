"""The cockpit screen: the panes (ui/screens/panes.py) plus the operator's keys.

Its bindings come from the command table (ui/commands.py); its actions open the dialogs and run engine calls
through the app, which turns every outcome into a toast and every failure into a notification, never a crash.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from textual import on, work
from textual.actions import parse
from textual.app import ComposeResult
from textual.screen import ModalScreen

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import hms
from rollback_tui.core.read.actions import last_run
from rollback_tui.core.verdict import stale_after_s, verdict
from rollback_tui.playbook.model import SelectorRemoval, StabiliseFlags
from rollback_tui.session.engine import Engine, NotAvailable
from rollback_tui.session.preview import ActionPreview, StepPreview
from rollback_tui.session.runbook import Question, Runbook
from rollback_tui.ui.commands import SCREEN_ACTIONS, bindings, commands, supported
from rollback_tui.ui.panes.base import Activity, blocked_mark, cannot_run
from rollback_tui.ui.panes.steps import StepsPane
from rollback_tui.ui.screens.actions import ActionsScreen, last_run_mark
from rollback_tui.ui.screens.confirm import ConfirmAction, ConfirmRollback
from rollback_tui.ui.screens.panes import PanesScreen
from rollback_tui.ui.screens.quit import QuitConcerns
from rollback_tui.ui.screens.readiness import Recheck
from rollback_tui.ui.screens.reason import ReasonPrompt, TextPrompt

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
        # (action, parameters) offered: `2` focuses the Fanout pane only where there is one.
        self._offered = frozenset(parse(c.action)[1:] for c in commands(supports=supported(engine.playbook)))
        self.runbook = Runbook(engine, ask=self.ask, confirm=self.confirm)

    def compose(self) -> ComposeResult:
        yield from super().compose()
        self.panes["steps"].details = self._step_details

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SCREEN_ACTIONS and (action, parameters) not in self._offered:
            return False  # not in this playbook: no key, no footer hint (the help says why)
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

    def running_work(self) -> list[str]:
        """What quitting now would stop, in words (the quit dialog lists it)."""
        engine, state, busy = self.engine, self.engine.state, self.app.busy
        work = []
        if engine.running("traffic"):
            rps = f" at {self._traffic_rps:g} rps" if self._traffic_rps else ""
            work.append(f"synthetic traffic{rps}")
        gates = [g.name for g in state.gates.values() if g.status == "running"] or sorted(self._gates_queued)
        if gates or busy("gates"):
            work.append(f"gates {', '.join(gates)}".strip())
        if engine.running("fanout") or busy("fanout"):
            work.append("the fanout check")
        rollback = state.traffic.rollback
        if rollback.in_progress or busy("rollback"):
            work.append(f"the rollback ({rollback.words})")
        if self.runbook.busy or busy("runbook"):
            work.append(f"runbook step {self.panes['steps'].running or ''}".strip())
        actions = {a.name for a in engine.playbook.actions}
        work += [f"action {w.name}" for w in self.app.workers if w.name in actions and not w.is_finished]
        return work

    def quit_concerns(self) -> QuitConcerns:
        return QuitConcerns(
            running=self.running_work(),
            verdict=verdict(self.engine.state, self.app.now(), stale_after_s(self.engine.playbook)),
            exit=self.engine.checklist().verdict,
            exported=self.exported_text(),
        )

    def exported_text(self) -> str:
        """The latest journaled export: when, where, how many files (redacted as the toasts were)."""
        exports = self.engine.state.exports
        if not exports:
            return ""
        last = exports[-1]
        return self.app.redact(f"{hms(last.ts)} to {last.directory} ({len(last.files)} files)")

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

    def operator_acted(self, event: ev.OperatorAction) -> None:
        """Traffic started or stopped, by `s`, a runbook step or the palette: the Traffic pane says it runs
        (and `s` that it stops it) from the journaled intent, not from who pressed what."""
        if event.action == "start_traffic":
            rate = event.detail.get("rate_rps")
            self._traffic_since = event.ts
            self._traffic_rps = float(rate) if isinstance(rate, int | float) else None
        elif event.action == "stop_traffic":
            self._traffic_since = None
        else:
            return
        self.app.mark_dirty({"traffic"})

    def action_traffic(self) -> None:
        """Start synthetic canary traffic through the balancer, or stop it."""
        try:
            if self.engine.stop_traffic():
                self.notify("Synthetic traffic stopped.", timeout=3)
            else:
                rps = self.engine.start_traffic()
                self.notify(f"Synthetic traffic started: {rps:g} rps through the balancer.", timeout=3)
        except NotAvailable as exc:
            self.app.not_available("traffic: not available", exc)
        except Exception as exc:
            self.app.report_failure("traffic", exc)
        self.app.mark_dirty({"traffic"})

    # --- rollback -------------------------------------------------------------------------------

    def action_rollback(self, name: str | None = None) -> None:
        """Ask for the typed confirmation; the engine journals the request, or the operator's decline."""
        try:
            removal = self.engine.rollback_action(name)
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
        names = [a.name for a in self.engine.playbook.actions]
        if not names:
            self.notify("This playbook has no actions.", severity="warning", timeout=3)
            return

        def chosen(name: str | None) -> None:
            if name is not None:
                self.run_playbook_action(name)

        previews = [self.engine.preview_action(n) for n in names]
        why, view = cannot_run(self.engine.state), self.app.view()
        blocked = {n: blocked_mark(w, view) for n in names if (w := why("action", n))}
        state = self.engine.state  # what ran, as journaled (a resumed session's runs too)
        ran = {n: last_run_mark(r, view) for n in names if (r := last_run(state, n))}
        self.app.push_screen(ActionsScreen(previews, blocked, ran), callback=chosen)

    def run_playbook_action(self, name: str) -> None:
        """Run one playbook action on its own (the operator chose it, optional flag changes included): the
        rollback through its own dialog; anything that changes something only after a typed confirmation
        of its preview (resolved argv, where it runs, current → new flags)."""
        if isinstance(self.engine.playbook.action(name), SelectorRemoval):
            self.action_rollback(name)
            return
        self.app.launch(name, lambda: self._confirm_and_run(name))

    async def _confirm_and_run(self, name: str) -> str | None:
        refusal = self.engine.action_refusal(name, include_optional=True)
        if refusal:  # before anyone is asked to confirm what would be refused
            raise NotAvailable(refusal)
        if isinstance(self.engine.playbook.action(name), StabiliseFlags):
            await self.engine.read_flags(name, "before")  # the preview shows current → new
        preview = self.engine.preview_action(name)
        typed = await self.confirm(preview) if preview.changes else None
        if preview.changes and typed is None:
            self._declined(name)
            return None
        return await self.engine.run_action(name, confirmed_text=typed, include_optional=True)

    def _confirmation(self, preview: ActionPreview) -> ConfirmAction | ConfirmRollback:
        action = self.engine.playbook.action(preview.name)
        if isinstance(action, SelectorRemoval):
            return ConfirmRollback(action, self.engine.playbook)
        return ConfirmAction(preview, self.engine.playbook, self.app.redact, self.share)

    def _declined(self, name: str) -> None:
        """Journaled with who (a selector removal as a declined rollback); nothing ran."""
        if isinstance(self.engine.playbook.action(name), SelectorRemoval):
            self.engine.cancel_rollback(name)
        else:
            self.engine.decline_action(name)
        self.notify(f"{name} declined; nothing ran.", timeout=3)

    # --- the runbook: steps run from the Runbook pane -----------------------------------------------

    @on(StepsPane.Run)
    def _run_step(self, message: StepsPane.Run) -> None:
        self.run_step(message.step)

    @on(StepsPane.Retry)
    def _retry_item(self, message: StepsPane.Retry) -> None:
        self.run_step(message.step, message.index)

    def run_step(self, step: str, index: int | None = None) -> None:
        """Run a step's items in order (or one item again) through the runbook runner, in a worker."""
        if self.runbook.busy or self.app.busy("runbook"):
            self.notify("A runbook step is already running.", severity="warning", timeout=3)
            return
        self.runbook_worker(step, index)

    @work(group="runbook", exit_on_error=False)
    async def runbook_worker(self, step: str, index: int | None) -> None:
        steps = self.panes["steps"]
        steps.running = step
        self.app.mark_dirty({"steps"})
        label = f"step {step}" if index is None else f"step {step} item {index + 1}"
        try:
            if index is None:
                await self.app.perform(label, lambda: self.runbook.run_step(step))
            else:
                await self.app.perform(label, lambda: self.runbook.run_item(step, index))
        finally:
            steps.running = None
            self.app.mark_dirty({"steps", "verdict", "checklist", "gates", "traffic"})

    async def ask(self, question: Question) -> str | None:
        """The runner's question for the operator (a manual fact's value, a manual task's note)."""
        where = f"step {question.step}, item {question.index + 1}"
        if question.kind == "fact":
            hint = "Type the value (journaled with your name as the fact's value); Esc leaves it waiting:"
            title = f"Fact {question.ref} — {where}"
            prompt = TextPrompt(question.text, hint=hint, placeholder=question.ref, title=title)
        else:
            hint = "Type a note saying it is done (journaled with your name); Esc leaves it waiting:"
            title = f"Manual task — {where}"
            prompt = TextPrompt(question.text, hint=hint, placeholder="done: how / where", title=title)
        return await self.app.push_screen_wait(prompt)

    async def confirm(self, preview: ActionPreview) -> str | None:
        """The runner's confirmation of an action that changes something: typed, with its preview."""
        return await self.app.push_screen_wait(self._confirmation(preview))

    def _step_details(self, step: str) -> StepPreview | None:
        try:
            return self.engine.preview_step(step)
        except Exception:  # a preview is help, not a reason to lose the pane
            log.exception("no preview for step %s", step)
            return None

    def readiness_recheck(self) -> Recheck:
        """The readiness screen's `r`: a new check through the engine, journaled when it is in."""
        return lambda: self.engine.start_readiness(again=True)

    def action_export(self) -> None:
        self.app.launch("export", self.engine.export)
