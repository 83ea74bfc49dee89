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
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rollback_tui import __version__
from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import GuardrailEvaluator, thin_evidence
from rollback_tui.core.journal import Journal
from rollback_tui.core.read.guardrails import time_to_detect_s
from rollback_tui.core.state import SessionState
from rollback_tui.core.unknown import UnknownWatch
from rollback_tui.playbook.model import (
    ChecklistItem,
    CommandAction,
    ExitCriterion,
    Playbook,
    Redeploy,
    SelectorRemoval,
    StabiliseFlags,
)

if TYPE_CHECKING:
    from rollback_tui.actions.gates import GateRunner
    from rollback_tui.core.checklist import ChecklistReport
    from rollback_tui.session.preview import ActionPreview, StepPreview

log = logging.getLogger(__name__)

Subscriber = Callable[[ev.Event], None]
_EVIDENCE = ev.EVIDENCE  # kinds that may change a checklist rule (a module global: emit is a hot path)


class NotAvailable(Exception):
    """An operator action whose feature has not been built or configured; the UI shows the reason."""


def current_operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


class Engine:
    # Operator features this engine implements (the UI says plainly which ones are not there yet).
    features: frozenset[str] = frozenset(
        {"fanout", "traffic", "rollback", "gates", "checklist", "export", "actions", "runbook"}
    )

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
        self.guardrails = GuardrailEvaluator(playbook)
        self.guardrails.resume(self.state)
        self.unknowns = UnknownWatch.from_state(self.state)
        self.auto_rollback = False  # headless policy: roll back on the first P0 breach
        self._rollback_lock = asyncio.Lock()
        self._gate_runner: GateRunner | None = None
        self._checklist: ChecklistReport | None = None
        self._ended = False
        self.screenshot: Callable[[], str] | None = None  # the UI sets this: SVG of the screen for exports
        self.export_dir: Path | None = None  # where an export without a directory goes (default: per user)
        self.watch_interval_s = 5.0  # how often a watched action's probes are polled (see watch_probes)
        self._subscribers: list[Subscriber] = []
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._flusher: asyncio.Task[None] | None = None

    # --- events -----------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: ev.E) -> ev.E:
        """Journal, fold, publish. Safe to call from any coroutine on the engine's loop."""
        event = self.journal.append(event)
        self.state.apply(event)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not stop the feed
                log.exception("subscriber failed on %s", event.kind)
        for notice in self.unknowns.observe(event):  # once when it turns unknown, once when it recovers
            self.emit(notice)
        derived_events = self.guardrails.observe(event)
        for change in self.guardrails.status_changes():
            self.emit(change)
        for derived in derived_events:
            self.emit(derived)
        if isinstance(event, ev.GuardrailBreach):
            self._on_breach(event)
        if event.kind in _EVIDENCE and not (isinstance(event, ev.ChecklistTicked) and event.auto):
            self._auto_tick()
        return event

    def _auto_tick(self) -> None:
        """Journal checklist items whose automatic rule started or stopped holding."""
        from rollback_tui.core.checklist import auto_ticks, evaluate

        for tick in auto_ticks(self.playbook, self.state, self._checklist):
            self.emit(tick)
        self._checklist = evaluate(self.playbook, self.state)

    def checklist(self) -> ChecklistReport:
        from rollback_tui.core.checklist import evaluate

        return evaluate(self.playbook, self.state)

    def notice(self, source: str, message: str, level: ev.NoticeLevel = "info") -> ev.Notice:
        return self.emit(ev.Notice(source=source, message=message, level=level))

    def operator_action(self, action: str, *, actor: str | None = None, **detail: Any) -> ev.Event:
        """Journal (fsync'd) an operator action before anything acts on it."""
        return self.emit(ev.OperatorAction(action=action, actor=actor or self.operator, detail=detail))

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
                transport_expected=rt.transport_expected if (rt := self.playbook.realtime) else None,
                runbook_items=True,
            )
        )

    def record_incident(
        self,
        incident: str | None = None,
        commander: str | None = None,
        scribe: str | None = None,
        *,
        actor: str | None = None,
    ) -> ev.IncidentRecorded:
        """Journal which incident this is and who runs it (durable); what is not given keeps its value."""
        before = self.state.incident

        def kept(value: str | None, name: str) -> str | None:  # one line: it heads the report
            return " ".join((value or "").split()) or (getattr(before, name) if before else None)

        recorded = ev.IncidentRecorded(
            incident=kept(incident, "incident"),
            commander=kept(commander, "commander"),
            scribe=kept(scribe, "scribe"),
            actor=actor or self.operator,
        )
        return self.emit(recorded)

    def start_readiness(self, *, again: bool = False) -> asyncio.Task[Any]:
        """Check in the background what every playbook item needs from here (probes/readiness.py); the
        result is journaled when it is in. `again`: a new check once the last one is done."""
        task = self._tasks.get("readiness")
        if task is None or (again and task.done()):
            task = self.spawn("readiness", self._check_readiness())
        return task

    async def readiness(self) -> ev.ReadinessChecked:
        """The readiness of every item (the session's check, started now if it was not)."""
        result = await asyncio.shield(self.start_readiness())
        if result is None:  # the check crashed; `spawn` journaled why
            raise NotAvailable("The readiness check stopped unexpectedly; see the notices.")
        return result

    async def _check_readiness(self) -> ev.ReadinessChecked:
        from rollback_tui.probes.readiness import check_readiness

        return self.emit(await check_readiness(self.playbook))

    async def start(self) -> None:
        """Start the background feeds (health polling, journal flusher)."""
        from rollback_tui.probes.health import HealthProbe

        if self.state.started is None:
            self.start_session()
        self._flusher = asyncio.create_task(self._flush_loop(), name="journal-flush")
        self.spawn("health", HealthProbe(self.playbook, self.emit).run())
        if any(p.interval_s for p in self.playbook.probes):
            from rollback_tui.probes.http_json import poll_probes

            self.spawn("probes", poll_probes(self.playbook, self.emit))
        if any(g.metric == "query" for g in self.playbook.guardrails):
            from rollback_tui.probes.metrics.prometheus import MetricPoller

            self.spawn("metrics", MetricPoller(self.playbook, self.emit).run())
        if self.playbook.load_balancer is not None:
            interval = 2.0 if self.playbook.load_balancer.traffic_control.driver == "lab" else 15.0
            self.spawn("routing", self._routing_loop(interval))

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
        # Cancelled before it ran (the session ended at once): close `coro`, which never started.
        task.add_done_callback(lambda t: coro.close() if t.cancelled() else None)
        self._tasks[name] = task
        return task

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    # --- operator actions (the UI and headless runner call these) ---------------------------------

    @property
    def artefact_dir(self) -> Path:
        return self.journal.path.with_name(self.journal.path.stem + "-artefacts")

    @property
    def gate_runner(self) -> GateRunner:
        from rollback_tui.actions.gates import GateRunner

        if self._gate_runner is None:
            self._gate_runner = GateRunner(
                self.playbook, self.emit, artefact_dir=self.artefact_dir, redactor=self.journal.redact
            )
        return self._gate_runner

    async def run_gates(
        self, names: list[str] | None = None, *, actor: str = "operator"
    ) -> list[ev.GateFinished]:
        """Run gates (all, in playbook order, by default); each start/line/finish is journaled."""
        if not self.playbook.gates:
            raise NotAvailable("This playbook has no gates.")
        busy = self.gate_runner.running()
        if busy:
            raise NotAvailable(f"Gates already running: {', '.join(busy)}.")
        if actor != "engine":
            self.operator_action("run_gates", gates=names or [g.name for g in self.playbook.gates])
        try:
            return await self.gate_runner.run_all(names, actor=self.operator if actor != "engine" else actor)
        except ValueError as exc:  # unknown gate, or one already running
            raise NotAvailable(str(exc)) from exc

    def cancel_gate(self, name: str) -> bool:
        cancelled = self.gate_runner.cancel(name)
        if cancelled:
            self.operator_action("cancel_gate", gate=name)
        return cancelled

    async def capture_facts(
        self, phase: str = "baseline", names: list[str] | None = None
    ) -> list[ev.FactCaptured]:
        from rollback_tui.probes.facts import capture_facts

        return await capture_facts(self.playbook, self.emit, phase=phase, names=names)  # type: ignore[arg-type]

    async def run_probes(self, names: list[str] | None = None) -> list[ev.ProbeResult]:
        from rollback_tui.probes.http_json import probe_once

        return await probe_once(self.playbook, self.emit, names)

    async def run_fanout_check(self, phase: str | None = None, *, actor: str = "operator") -> ev.FanoutResult:
        """Run the two-session cross-replica check (DESIGN §4); the result is journaled as it completes."""
        from rollback_tui.probes.fanout import FanoutVerifier

        if self.playbook.realtime is None:
            raise NotAvailable("This playbook has no realtime section, so there is no fanout to verify.")
        if self.running("fanout"):
            raise NotAvailable("A fanout check is already running.")
        if phase is None:
            phase = "after_rollback" if self.state.traffic.rollback.after_rollback else "before_rollback"
        if actor != "engine":
            self.operator_action("run_fanout_check", phase=phase)
        try:
            verifier = FanoutVerifier(self.playbook, self.emit, phase=phase)
        except ValueError as exc:  # e.g. an unset ${VAR} in a stream header: nothing could be checked
            raise NotAvailable(str(exc)) from exc
        result = await self.spawn("fanout", verifier.run())
        if result is None:  # the task crashed; `spawn` journaled why
            raise NotAvailable("The fanout check stopped unexpectedly; see the notices.")
        return result

    # --- traffic, guardrails, rollback -------------------------------------------------------------

    def start_traffic(self, rate_rps: float | None = None, *, actor: str | None = None, **kw: Any) -> float:
        """Synthetic traffic through the balancer (bounded in count and time), at the playbook's rate unless
        overridden. The intent is journaled before the first request; returns the rate."""
        from rollback_tui.probes.traffic import TrafficGenerator

        if self.playbook.load_balancer is None:
            raise NotAvailable("This playbook has no load_balancer: there is nowhere to send traffic.")
        rate = rate_rps or self.playbook.synthetic_rps
        if self.running("traffic"):
            return rate
        if self.guardrails.tests:  # sequential guardrails decide on the response, not the window's end
            kw.setdefault("close_on", self.guardrails.conclusive)
        try:
            generator = TrafficGenerator(self.playbook, self.emit, rate_rps=rate, **kw)
        except ValueError as exc:  # e.g. an unset ${VAR} in a send header: nothing would be sent
            raise NotAvailable(str(exc)) from exc
        self.operator_action("start_traffic", actor=actor, rate_rps=rate)
        for problem in thin_evidence(self.playbook, rate):
            self.notice("guardrails", problem, "warning")
        self.spawn("traffic", generator.run())
        return rate

    def stop_traffic(self, *, actor: str | None = None) -> bool:
        """Stop synthetic traffic (journaled first); False when none was running."""
        task = self._tasks.get("traffic")
        if task is None or task.done() or task.cancelling():
            return False
        self.operator_action("stop_traffic", actor=actor)
        task.cancel()
        return True

    async def inject_fault(
        self,
        replica: str,
        faults: dict[str, Any],
        apply: Callable[[], Awaitable[Any]],
        *,
        actor: str | None = None,
    ) -> None:
        """A lab fault: journaled (who, which replica, what) before `apply` (the lab's call) changes it."""
        if replica not in {r.name for r in self.playbook.replicas}:
            raise NotAvailable(f"No replica named {replica!r}.")
        self.operator_action("inject_fault", actor=actor, replica=replica, faults=faults)
        try:
            await apply()
        except Exception as exc:
            self.notice("lab", f"fault on {replica} not applied: {type(exc).__name__}: {exc}", "error")
            raise NotAvailable(f"The fault on {replica} was not applied: {exc}") from exc

    async def read_routing(self) -> ev.SelectorState:
        from rollback_tui.actions.traffic_control import TrafficControlError, make_driver

        try:
            driver = make_driver(self.playbook)
            state = await driver.read()
        except TrafficControlError as exc:
            raise NotAvailable(str(exc)) from exc
        event = ev.SelectorState(source=driver.name, **state.as_dict())
        if self.state.traffic.selector is None or _routing(self.state.traffic.selector) != _routing(event):
            self.emit(event)
        return event

    async def _routing_loop(self, interval_s: float) -> None:
        """Keep the traffic pane's selector current; a balancer that is down is a notice, not a crash."""
        down = False
        while True:
            try:
                await self.read_routing()
                if down:
                    self.notice("routing", "balancer admin reachable again")
                down = False
            except Exception as exc:  # NotAvailable, or a driver bug: reported once, polling goes on
                if not down:
                    reason = str(exc) if isinstance(exc, NotAvailable) else repr(exc)
                    self.notice("routing", reason, "warning")
                down = True
            await asyncio.sleep(interval_s)

    def _on_breach(self, breach: ev.GuardrailBreach) -> None:
        """The auto-rollback policy: a breach at or above the action's `trigger_severity` rolls back."""
        if not self.auto_rollback or self.running("rollback"):
            return
        action = self._selector_removal()
        if action is None or not triggers(action.trigger_severity, breach.severity):
            return
        status = self.state.traffic.rollback
        if status.in_progress or status.stage == "verified":
            return
        self.spawn("rollback", self._auto_rollback(action))

    async def _auto_rollback(self, action: SelectorRemoval) -> None:
        # A failure is journaled and announced by the rollback itself: no traceback for it.
        with contextlib.suppress(NotAvailable):
            await self.rollback(action.name, action.replica_set, actor="auto-rollback")

    def _selector_removal(self, name: str | None = None) -> SelectorRemoval | None:
        for action in self.playbook.actions:
            if isinstance(action, SelectorRemoval) and (name is None or action.name == name):
                return action
        return None

    def rollback_action(self, name: str | None = None) -> SelectorRemoval:
        """The selector removal the operator may confirm, or NotAvailable saying why there is none now."""
        spec = self._selector_removal(name)
        if spec is None:
            raise NotAvailable("This playbook has no selector_removal action.")
        status = self.state.traffic.rollback
        if status.in_progress or self._rollback_lock.locked():
            raise NotAvailable(f"A rollback is already in progress ({status.words}).")
        if status.stage == "verified" and status.action == spec.name:
            raise NotAvailable(f"{spec.name} is already rolled back and verified.")
        return spec

    def cancel_rollback(self, name: str | None = None, *, actor: str | None = None) -> ev.Event | None:
        """The operator declined the rollback at its confirmation: journaled with who and what was active."""
        spec = self._selector_removal(name)
        if spec is None:
            return None
        breach = self._active_breach()
        reason = "declined at the confirmation" + (
            f" while {breach.severity} {breach.guardrail} was breached" if breach else ""
        )
        return self.emit(ev.RollbackCancelled(action=spec.name, actor=actor or self.operator, reason=reason))

    async def rollback(
        self, action: str | None, confirmed_text: str, *, actor: str | None = None
    ) -> ev.RollbackVerified:
        """Remove the candidate from the selectors, then verify until 100 % of traffic lands on stable.

        Each stage is journaled before the next one acts (requested → applying → applied → verified, or
        failed with the reason); time to detect, RTO and time to mitigate go with the verification.
        Raises NotAvailable when the rollback cannot start or failed (the failure is journaled first).
        """
        spec = self.rollback_action(action)
        if confirmed_text.strip() != spec.replica_set:
            raise NotAvailable(f"Typed {confirmed_text!r}; type {spec.replica_set!r} exactly to confirm.")
        async with self._rollback_lock:
            return await self._rollback(spec, confirmed_text, actor)

    async def _rollback(
        self, spec: SelectorRemoval, confirmed_text: str, actor: str | None
    ) -> ev.RollbackVerified:
        breach = self._active_breach()
        requested = self.emit(
            ev.RollbackRequested(
                action=spec.name,
                actor=actor or self.operator,
                confirmed_text=confirmed_text,
                reason=f"guardrail {breach.guardrail} breached" if breach else "operator decision",
                replicas=list(spec.remove_replicas),
            )
        )
        try:
            await self._apply_removal(spec)
            verified = await self._verify_removal(spec, requested, breach)
        except asyncio.CancelledError:
            self._rollback_failed(spec, "the session ended before the rollback finished")
            raise
        except NotAvailable:
            raise
        except Exception as exc:  # a driver or verifier bug: the rollback did not complete, say so
            self._rollback_failed(spec, f"{type(exc).__name__}: {exc}")
            raise NotAvailable(f"Rollback failed: {exc}") from exc
        finally:
            self._announce_rollback()
        if not verified.ok:
            raise NotAvailable(f"Rollback not verified: {verified.error}")
        return verified

    def _announce_rollback(self) -> None:
        """The outcome goes to the notices too, so it is on screen after any toast has faded."""
        status = self.state.traffic.rollback
        if status.stage == "failed":
            self.notice("rollback", f"rollback {status.action} failed: {status.failure}", "error")
        elif status.stage == "verified":
            self.notice("rollback", f"rollback {status.action} verified: {', '.join(status.replicas)} out")

    def _rollback_failed(self, spec: SelectorRemoval, reason: str) -> None:
        stage = self.state.traffic.rollback.stage
        if stage in ("requested", "applying", "applied"):
            self.emit(ev.RollbackFailed(action=spec.name, stage=stage, reason=reason))

    async def _apply_removal(self, spec: SelectorRemoval) -> None:
        """Read the routing, journal the intent, change it, and read back that the candidates are gone."""
        from rollback_tui.actions.traffic_control import TrafficControlError, make_driver

        driver_name = "?"
        try:
            driver = make_driver(self.playbook)
            driver_name = driver.name
            before = await driver.read()
            self.emit(ev.RollbackApplying(action=spec.name, driver=driver.name, before=before.as_dict()))
            after = await driver.remove(spec.remove_replicas)
        except TrafficControlError as exc:
            self.emit(ev.RollbackApplied(action=spec.name, driver=driver_name, ok=False, error=str(exc)))
            raise NotAvailable(f"Rollback failed: {exc}") from exc
        still = [r for r in spec.remove_replicas if r in after.backends]
        error = f"{', '.join(still)} still selected after the change" if still else None
        self.emit(
            ev.RollbackApplied(
                action=spec.name,
                driver=driver.name,
                before=before.as_dict(),
                after=after.as_dict(),
                ok=not still,
                error=error,
            )
        )
        self.emit(ev.SelectorState(source=driver.name, **after.as_dict()))
        if error:
            raise NotAvailable(f"Rollback failed: {error}")

    async def _verify_removal(
        self, spec: SelectorRemoval, requested: ev.Event, breach: ev.GuardrailBreach | None
    ) -> ev.RollbackVerified:
        from rollback_tui.probes.protocol import identifier, verification_request
        from rollback_tui.probes.traffic import verify_stable

        assert self.playbook.load_balancer is not None
        # Called after _apply_removal read the routing back: every verification request is issued after
        # the change. Verified: one whole batch of verify_requests answered by kept replicas only — stable
        # ones, or candidates the action keeps on purpose; not every replica it did not remove.
        stable = set(self.playbook.kept_by(spec))
        ok, share, total, served = await verify_stable(
            self.playbook.load_balancer.url,
            stable,
            need=spec.verify_requests,
            timeout_s=spec.rto_budget_s,
            request=verification_request(self.playbook),
            identify=identifier(self.playbook),
        )
        verified = ev.RollbackVerified(
            action=spec.name,
            ok=ok,
            stable_share=round(share, 4),
            requests=total,
            error=None if ok else _unverified_reason(self.playbook, spec, stable, served, total),
        )
        verified.rto_s = round(verified.ts - requested.ts, 3)
        if breach is not None and breach.first_bad_ts:
            verified.time_to_detect_s = time_to_detect_s(breach)
            if ok:
                verified.time_to_mitigate_s = round(verified.ts - breach.first_bad_ts, 3)
        return self.emit(verified)

    def _active_breach(self) -> ev.GuardrailBreach | None:
        """The P0 breach this rollback answers: the first one still active, else the latest one since
        the previous verified rollback (it may have recovered by the time the operator confirms)."""
        active = [b for b in self.state.traffic.breaches.values() if b.severity == "P0"]
        if active:
            return min(active, key=lambda b: b.ts)
        previous = self.state.traffic.rollback_verified
        since = previous.ts if previous is not None else 0.0
        for entry in reversed(self.state.traffic.breach_log):
            if isinstance(entry, ev.GuardrailBreach) and entry.severity == "P0" and entry.ts > since:
                return entry
        return None

    # --- command actions: redeploy, flags, queue recovery (session/actions.py) --------------------------

    def _command_action(self, name: str) -> CommandAction | Redeploy | StabiliseFlags:
        action = next((a for a in self.playbook.actions if a.name == name), None)
        if action is None:
            raise NotAvailable(f"No action named {name!r} in this playbook.")
        if isinstance(action, SelectorRemoval):
            raise NotAvailable(f"{name} is a rollback: confirm it with the rollback (r), not as an action.")
        return action

    def preview_action(self, name: str) -> ActionPreview:
        """What action `name` would run (resolved argv, where, current → new flags), and what to type."""
        from rollback_tui.session.preview import action_preview

        try:
            return action_preview(self.playbook, name, self.state)
        except KeyError:
            raise NotAvailable(f"No action named {name!r} in this playbook.") from None

    def preview_step(self, step: str) -> StepPreview:
        """A step's notes and each item's resolved commands."""
        from rollback_tui.session.preview import step_preview

        try:
            return step_preview(self.playbook, step, self.state)
        except KeyError:
            raise NotAvailable(f"No runbook step named {step!r}.") from None

    def action_refusal(self, name: str, *, include_optional: bool = False) -> str | None:
        """Why action `name` cannot run now (before anyone is asked to confirm it), or None."""
        from rollback_tui.session.preview import fact_value

        action = self._command_action(name)
        if self.running(f"action:{name}"):
            return f"{name} is already running."
        if isinstance(action, Redeploy) and not fact_value(self.state, action.last_known_good):
            return f"No value for fact {action.last_known_good}: capture the last known good commit first."
        if isinstance(action, StabiliseFlags) and not any(
            include_optional or not c.optional for c in action.set
        ):
            optional = ", ".join(f"{c.flag}={c.value}" for c in action.set) or "none"
            return f"{name} has only optional changes ({optional}): run it as the operator's choice."
        return None

    async def run_action(
        self,
        name: str,
        *,
        confirmed_text: str | None = None,
        actor: str | None = None,
        via: str = "typed",
        include_optional: bool = False,
    ) -> str:
        """Run one of the playbook's command, redeploy or stabilise_flags actions.

        One that changes the system (`preview_action(name).changes`) runs only when `confirmed_text` is its
        `confirm_text`; the confirmation is journaled first (who, what they typed or `via`, the previewed
        argv). Each part is journaled as it starts and ends. Returns the outcome: passed | failed |
        timed_out | cancelled | error. Raises NotAvailable when it cannot start (nothing ran).
        `include_optional`: a flag change marked optional is applied too (the operator chose it).
        """
        from rollback_tui.session.actions import ActionRun

        action = self._command_action(name)
        refusal = self.action_refusal(name, include_optional=include_optional)
        if refusal:
            raise NotAvailable(refusal)
        preview = self.preview_action(name)
        actor = actor or self.operator
        if preview.changes:
            if (confirmed_text or "").strip() != preview.confirm_text:
                raise NotAvailable(
                    f"{name} changes {self.playbook.environment}: type {preview.confirm_text!r} to confirm."
                )
            self.emit(
                ev.ActionConfirmed(
                    action=name,
                    actor=actor,
                    typed=(confirmed_text or "").strip(),
                    via=via,
                    commands=[c.as_dict() for c in preview.commands],
                )
            )
        task = self.spawn(
            f"action:{name}", ActionRun(self, action, actor).run(include_optional=include_optional)
        )
        outcome = await task
        if outcome is None:  # it crashed; `spawn` journaled why
            raise NotAvailable(f"{name} stopped unexpectedly; see the notices.")
        return str(outcome)

    def decline_action(self, name: str, *, actor: str | None = None) -> ev.Event:
        """The operator declined an action at its confirmation (journaled with who)."""
        self._command_action(name)
        return self.operator_action("decline_action", actor=actor, name=name)

    async def read_flags(self, name: str, phase: Literal["before", "after"] = "before") -> ev.FlagsRead:
        """Read the flags a stabilise_flags action names with its `verify` command (journaled)."""
        from rollback_tui.exec.supervise import run_capture
        from rollback_tui.session.actions import parse_flags

        action = self._command_action(name)
        if not isinstance(action, StabiliseFlags):
            raise NotAvailable(f"{name} is not a stabilise_flags action.")
        names = [c.flag for c in action.set] + list(action.must_stay_on)
        if action.verify is None:
            return self.emit(
                ev.FlagsRead(
                    action=name,
                    phase=phase,
                    values=dict.fromkeys(names),
                    observed=False,
                    error="the action has no verify command to read the flags with",
                )
            )
        result = await run_capture(action.verify, self.playbook)
        error = None
        if result.outcome != "passed":
            last = (result.stderr.strip().splitlines() or [""])[-1]
            error = result.error or f"{result.outcome} (exit {result.exit_code}) {last}".strip()
        return self.emit(
            ev.FlagsRead(
                action=name,
                phase=phase,
                values=parse_flags(result.stdout, names)
                if result.outcome == "passed"
                else dict.fromkeys(names),
                observed=result.outcome != "error",
                error=error,
            )
        )

    async def inspect_dead_letters(self, probe: str) -> ev.DeadLettersInspected:
        """Count and newest items of the dead-letter queue, from the dead-letters probe's endpoint."""
        from rollback_tui.probes.http_json import inspect_dead_letters

        spec = next((p for p in self.playbook.probes if p.name == probe), None)
        if spec is None:
            raise NotAvailable(f"No probe named {probe!r}.")
        return await inspect_dead_letters(spec, self.emit)

    def watch_probes(self, names: list[str]) -> None:
        """Poll these probes every `watch_interval_s` (or their own, shorter, interval) for the rest of the
        session: a watched action's effect on them (a queue poisoned again) shows while it happens."""
        from rollback_tui.probes.http_json import probe_once

        interval_s = self.watch_interval_s

        async def poll(name: str, every: float) -> None:
            while True:
                await probe_once(self.playbook, self.emit, [name])
                await asyncio.sleep(every)

        for probe in self.playbook.probes:
            if probe.name in names and not self.running(f"watch:{probe.name}"):
                every = min(interval_s, probe.interval_s or interval_s)
                self.spawn(f"watch:{probe.name}", poll(probe.name, every))

    def record_fact(
        self, name: str, value: str, *, phase: str = "baseline", actor: str | None = None
    ) -> ev.FactCaptured:
        """A manual fact's value, as the operator gave it (journaled with who)."""
        fact = next((f for f in self.playbook.facts if f.name == name), None)
        if fact is None:
            raise NotAvailable(f"No fact named {name!r}.")
        if not value.strip():
            raise NotAvailable(f"{name}: an empty value is not a value.")
        return self.emit(
            ev.FactCaptured(
                fact=name,
                phase=phase,  # type: ignore[arg-type]
                values={"-": value.strip()},
                source=f"manual:{actor or self.operator}",
            )
        )

    @property
    def rolled_back(self) -> bool:
        """The candidate is out of the selection, or a redeploy of the last known good commit passed."""
        if self.state.traffic.rollback.after_rollback:
            return True
        redeploys = [a.name for a in self.playbook.actions if isinstance(a, Redeploy)]
        return any(self.state.actions[n].status == "passed" for n in redeploys if n in self.state.actions)

    # --- the runbook ---------------------------------------------------------------------------------

    def start_item(self, step: str, index: int, *, actor: str | None = None) -> ev.StepItemStarted:
        """The runner begins item `index` of `step` (journaled with who)."""
        item = self._step_item(step, index)
        return self.emit(ev.StepItemStarted(step=step, index=index, item=item, actor=actor or self.operator))

    def finish_item(
        self,
        step: str,
        index: int,
        outcome: ev.ItemOutcome,
        reason: str = "",
        *,
        note: str = "",
        actor: str | None = None,
        due: bool = False,
    ) -> ev.StepItemFinished:
        """What item `index` of `step` showed (`due`: a conditional item whose condition held); the step's
        status is folded from these."""
        item = self._step_item(step, index)
        finished = ev.StepItemFinished(
            step=step,
            index=index,
            item=item,
            outcome=outcome,
            reason=reason,
            note=note,
            actor=actor or self.operator,
            due=due,
        )
        return self.emit(finished)

    def _step_item(self, step: str, index: int) -> str:
        found = next((s for s in self.playbook.steps if s.name == step), None)
        if found is None:
            raise NotAvailable(f"No runbook step named {step!r}.")
        if not 0 <= index < len(found.do):
            raise NotAvailable(f"Step {step} has no item {index + 1}.")
        kind, ref = found.do[index].ref
        return f"{kind}: {ref}"

    def enter_step(self, step: str, *, actor: str | None = None) -> ev.StepEntered:
        """The operator (or the headless runner) moves the runbook tracker to `step` (journaled with who)."""
        if step not in [s.name for s in self.playbook.steps]:
            raise NotAvailable(f"No runbook step named {step!r}.")
        return self.emit(ev.StepEntered(step=step, actor=actor or self.operator))

    def step_after(self, offset: int = 1) -> str | None:
        """The step `offset` away from the current one (the first step when none was entered yet)."""
        names = [s.name for s in self.playbook.steps]
        if self.state.step not in names:
            return names[0] if offset > 0 and names else None
        index = names.index(self.state.step) + offset
        return names[index] if 0 <= index < len(names) else None

    def tick(
        self, item: str, checked: bool = True, note: str = "", *, actor: str | None = None
    ) -> ev.ChecklistTicked:
        """An operator's tick (or untick) of a checklist item or exit criterion, with who and why.

        A name that is not in the playbook is refused (a typo is never evidence); overriding an item that
        ticks itself from evidence needs a reason, journaled with the tick."""
        refusal = tick_refusal(self.playbook, item, note)
        if refusal:
            raise NotAvailable(refusal)
        tick = ev.ChecklistTicked(item=item, checked=checked, actor=actor or self.operator, note=note.strip())
        return self.emit(tick)

    def quit_anyway(
        self, *, running: list[str], verdict: str, missing: list[str], actor: str | None = None
    ) -> ev.Event:
        """The operator quits with work running or the exit criteria unmet: journaled (with what was left)
        before anything stops, so the evidence says the session was left, not that it was finished."""
        return self.operator_action("quit", actor=actor, running=running, verdict=verdict, missing=missing)

    async def export(self, directory: Path | None = None) -> list[Path]:
        """Markdown report + JSON bundle + journal copy + artefacts (+ SVG of the cockpit when shown)."""
        from rollback_tui import settings
        from rollback_tui.report.export import automatic_export_dir, export_session

        default = settings.export_dir() / self.journal.path.stem
        directory = directory or self.export_dir
        out = Path(directory) if directory else automatic_export_dir(default, self.journal.path)
        self.operator_action("export", directory=str(out))
        self.journal.flush(fsync=True)
        svg = self.screenshot() if self.screenshot is not None else None
        paths = await asyncio.to_thread(
            export_session,
            self.journal.path,
            out,
            playbook=self.playbook,
            svg=svg,
            redactor=self.journal.redact,
            actor=self.operator,
        )
        self.emit(ev.ExportWritten(directory=str(out), files=[p.name for p in paths], actor=self.operator))
        return paths

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.journal.batch_s / 2)
            self.journal.flush_due()

    async def stop(self, reason: str = "quit", *, close: bool = True) -> None:
        """Cancel every feed and action, journal the end of the session, close the journal.

        `close=False` keeps the journal open so a final export can still be recorded in it.
        """
        tasks = [t for t in self._tasks.values() if not t.done()]
        if self._flusher:
            tasks.append(self._flusher)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.journal.closed:
            return
        if not self._ended:
            self._ended = True
            self.emit(ev.SessionEnded(reason=reason))
        if close:
            self.journal.close()


def tick_refusal(playbook: Playbook, item: str, note: str) -> str | None:
    """Why an operator's tick of `item` with `note` is refused, or None (front ends check before a run)."""
    entries: list[ChecklistItem | ExitCriterion] = [*playbook.checklist, *playbook.exit_criteria]
    entry = next((c for c in entries if c.name == item), None)
    if entry is None:
        known = ", ".join(c.name for c in entries) or "none"
        return f"No checklist item or exit criterion named {item!r} (known: {known})."
    if entry.rule != "manual" and not note.strip():
        return f"{item} is decided automatically from evidence ({entry.rule}): overriding it needs a reason."
    return None


_SEVERITY_RANK = {"P0": 0, "P1": 1}


def triggers(trigger: str | None, severity: str) -> bool:
    """A breach of `severity` triggers a rollback whose trigger is `trigger` (P0 is the most severe)."""
    return trigger is not None and _SEVERITY_RANK.get(severity, 9) <= _SEVERITY_RANK.get(trigger, -1)


def _unverified_reason(
    playbook: Playbook, spec: SelectorRemoval, stable: set[str], served: dict[str, int], total: int
) -> str:
    """Why no batch of `verify_requests` requests was answered by kept replicas only."""
    others = {r: n for r, n in served.items() if r not in stable}
    if not total:
        return f"no verification request was answered within {spec.rto_budget_s:g} s"
    if others:
        candidates = {r.name for r in playbook.replicas if r.role == "candidate"}
        ranked = sorted(others.items(), key=lambda kv: -kv[1])
        listed = ", ".join(f"{n} by {'candidate ' if r in candidates else ''}{r}" for r, n in ranked)
        return f"{sum(others.values())} of {total} verification requests not served by stable ({listed})"
    return f"only {total} of {spec.verify_requests} verification requests answered in {spec.rto_budget_s:g} s"


def _routing(event: ev.SelectorState) -> tuple[Any, ...]:
    return (event.selector, event.weights, event.backends)


def default_journal_path(playbook: Playbook, base: Path) -> Path:
    import time

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return base / f"{playbook.name}-{stamp}.jsonl"
