"""Headless rehearsal: walk the playbook's steps in order with no UI, for CI and scripted drills.

baseline facts → gates → fanout → canary traffic → guardrail watch → rollback on P0 breach →
verification → cleanup. Every item becomes journaled events through the engine; the verdict is the
playbook's exit criteria evaluated over the resulting state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rollback_tui.core import events as ev
from rollback_tui.core.read.guardrails import readings
from rollback_tui.core.read.traffic import recent_traffic, split_window_s
from rollback_tui.exec.commands import fill
from rollback_tui.playbook.model import (
    CommandAction,
    CommandSpec,
    Redeploy,
    SelectorRemoval,
    StabiliseFlags,
    Step,
    StepItem,
)
from rollback_tui.session.engine import Engine, NotAvailable

Hook = Callable[[], Awaitable[None]]
HEADLESS = "headless-rehearsal"  # the actor of what the runner does on its own


@dataclass
class RehearsalOptions:
    watch_s: float = 20.0  # how long the guardrail watch lasts without a breach
    canary_s: float = 3.0  # clean canary traffic before the next item
    traffic_rps: float | None = None  # the playbook's synthetic_traffic.rps unless set
    auto_rollback: bool = True  # roll back on the first P0 breach, as the runbook says
    allow_destructive: bool = False  # run redeploy / flag / destructive command actions
    rollback: str = "on_breach"  # on_breach | always | never


class Rehearsal:
    def __init__(self, engine: Engine, options: RehearsalOptions | None = None) -> None:
        self.engine = engine
        self.opts = options or RehearsalOptions()
        self.playbook = engine.playbook
        self._step_failed = False

    @property
    def rolled_back(self) -> bool:
        return self.engine.state.traffic.rollback.after_rollback

    @property
    def phase(self) -> str:
        return "after_rollback" if self.rolled_back else "baseline"

    def note(self, message: str, level: ev.NoticeLevel = "info") -> None:
        self.engine.notice("rehearsal", message, level)

    async def run(self) -> None:
        self.engine.auto_rollback = self.opts.auto_rollback and self.opts.rollback != "never"
        for step in self.playbook.steps:
            self.engine.enter_step(step.name, actor=HEADLESS)
            await self.run_step(step)
        self.engine.stop_traffic(actor=HEADLESS)

    async def run_step(self, step: Step) -> None:
        self._step_failed = False
        for item in step.do:
            kind, ref = item.ref
            skip = self._skip_reason(item)
            if skip:
                self.note(f"{step.name}: {kind} {ref} skipped — {skip}")
                continue
            try:
                await getattr(self, f"_{kind}")(ref, item)
            except NotAvailable as exc:
                self.note(f"{step.name}: {kind} {ref}: {exc}", "warning")
            except Exception as exc:  # one broken item is journaled; the rehearsal carries on
                self._step_failed = True
                self.note(f"{step.name}: {kind} {ref} failed: {type(exc).__name__}: {exc}", "error")

    def _breached(self, item: StepItem) -> bool:
        """A P0 breach (or one of `breach_of`) happened in this session, active or already handled."""
        log = [b for b in self.engine.state.traffic.breach_log if isinstance(b, ev.GuardrailBreach)]
        if item.breach_of:
            return any(b.guardrail in item.breach_of for b in log)
        return any(b.severity == "P0" for b in log)

    def _skip_reason(self, item: StepItem) -> str | None:
        forced = item.action is not None and self.opts.rollback == "always"
        if item.when == "on_breach" and not forced and not self._breached(item):
            return "no guardrail breach"
        if item.when == "on_failure" and not self._step_failed:
            return "nothing failed earlier in this step"
        if item.when == "optional":
            return f"optional, the operator decides ({item.condition or 'only if needed'})"
        return None

    # --- items ------------------------------------------------------------------------------------

    async def _fact(self, name: str, item: StepItem) -> None:
        await self.engine.capture_facts(self.phase, [name])

    async def _gate(self, name: str, item: StepItem) -> None:
        results = await self.engine.run_gates([name], actor="engine")
        self._step_failed |= any(r.outcome != "passed" for r in results)

    async def _probe(self, name: str, item: StepItem) -> None:
        await self.engine.run_probes([name])

    async def _manual(self, text: str, item: StepItem) -> None:
        self.note(f"manual task for the operator: {text}")

    async def _guardrail(self, name: str, item: StepItem) -> None:
        # "Holds" only with data to hold on: unknown or waiting is said as such, never as ok — in the
        # words the traffic pane and the report use for it.
        now = readings(self.playbook, self.engine.state, time.time())
        reading = next(r for r in now if r.rail.name == name)
        why = f": {reading.why}" if reading.why else ""
        level: ev.NoticeLevel = "info" if reading.status == "ok" else "warning"
        self.note(f"guardrail {reading.glyph} {reading.label} {reading.text}{why}", level)

    async def _check(self, check: str, item: StepItem) -> None:
        if check == "fanout":
            phase = "after_rollback" if self.rolled_back else "before_rollback"
            result = await self.engine.run_fanout_check(phase, actor="engine")
            self._step_failed |= not result.passed
        elif check == "traffic":
            await self._traffic()
        elif check == "guardrail_watch":
            await self._watch()
        elif check == "cleanup":
            self.engine.stop_traffic(actor=HEADLESS)
            self.note("synthetic traffic stopped; synthetic threads cleaned up by each check")
        elif check == "export":
            self.note("export: the session is exported when the rehearsal ends")

    async def _traffic(self) -> None:
        if self.playbook.load_balancer is None:
            raise NotAvailable("no load balancer in the playbook")
        self.engine.start_traffic(self.opts.traffic_rps, actor=HEADLESS)
        await asyncio.sleep(self.opts.canary_s)
        totals = recent_traffic(self.engine.state, time.time(), split_window_s(self.playbook))
        if not totals.requests:
            self.note("synthetic traffic produced no responses yet", "warning")
            return
        self.note(f"traffic {totals.text()}; {totals.split_text(r.name for r in self.playbook.replicas)}")

    async def _watch(self) -> None:
        """Watch guardrails; stop early once a P0 breach has been handled (rolled back) or seen."""
        deadline = time.monotonic() + self.opts.watch_s
        while time.monotonic() < deadline:
            state = self.engine.state.traffic
            if state.rollback.stage in ("verified", "failed"):
                return
            if any(b.severity == "P0" for b in state.breaches.values()) and not self.engine.auto_rollback:
                return
            await asyncio.sleep(0.1)
        if not self.engine.state.traffic.breach_log:
            self.note(f"no guardrail breached in {self.opts.watch_s:g} s")

    async def _action(self, name: str, item: StepItem) -> None:
        action = self.playbook.action(name)
        if isinstance(action, SelectorRemoval):
            await self._rollback(action, item)
        elif isinstance(action, CommandAction) and (self.opts.allow_destructive or not action.destructive):
            outcome = await self.engine.run_action(name, confirmed_text=name, actor=HEADLESS)
            self._step_failed |= outcome != "passed"
        elif isinstance(action, Redeploy) and self.opts.allow_destructive:
            commit = self._fact_value(action.last_known_good)
            if commit is None:
                self.note(
                    f"action {name}: no value for fact {action.last_known_good}; not redeploying", "error"
                )
                return
            for service, spec in action.services.items():
                await self._command(f"{name}:{service}", fill(spec, {"commit": commit, "service": service}))
        elif isinstance(action, StabiliseFlags) and self.opts.allow_destructive:
            for change in action.set:
                if change.optional:
                    self.note(
                        f"action {name}: {change.flag}={change.value} is optional; left for the operator"
                    )
                    continue
                values = {"flag": change.flag, "value": change.value}
                await self._command(f"{name}:{change.flag}", fill(action.command, values))
        else:
            self.note(
                f"action {name} ({action.kind}) changes production: not run headless "
                "without --allow-destructive",
                "warning",
            )

    def _fact_value(self, fact: str) -> str | None:
        for phase in ("baseline", "check", "after_rollback"):
            captured = self.engine.state.facts.get(f"{fact}@{phase}")
            if captured is not None:
                value = next((v for v in captured.values.values() if v), None)
                if value:
                    return value
        return None

    async def _rollback(self, action: SelectorRemoval, item: StepItem) -> None:
        # The guardrail watch may still be running its auto-rollback; wait for it.
        for _ in range(100):
            if not self.engine.running("rollback"):
                break
            await asyncio.sleep(0.1)
        status = self.engine.state.traffic.rollback
        if status.stage == "verified":
            self.note(f"rollback {action.name} already applied and verified")
            return
        if self.opts.rollback == "never":
            self.note(f"rollback {action.name} not run (--rollback never)")
            return
        try:
            await self.engine.rollback(action.name, action.replica_set, actor=HEADLESS)
        except NotAvailable as exc:
            if status.stage != "failed":
                raise
            self._step_failed = True
            self.note(f"rollback {action.name} failed: {status.failure or exc}", "error")

    async def _command(self, name: str, spec: CommandSpec) -> None:
        outcome = await self.engine.run_command(name, spec, actor=HEADLESS)
        self._step_failed |= outcome != "passed"
