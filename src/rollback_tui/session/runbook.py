"""The runbook runner: one step's items, in order, through the engine — for the cockpit and the headless
rehearsal alike (session/rehearsal.py is a loop over `run_step`).

    runbook = Runbook(engine, ask=ask, confirm=confirm)
    results = await runbook.run_step("identify-last-known-good")  # every item, in order
    result = await runbook.run_item("roll-back-code", 0)  # one item again (a retry, an optional one)
    runbook.preview_step("roll-back-code")  # notes and resolved commands, as data

Each item is journaled as it starts (StepItemStarted) and with what it showed (StepItemFinished: passed |
failed | unknown | skipped | needs_input | cancelled, and why in words); a step's status is folded from
these (core/read/steps.py), never from the tracker having entered it.

What needs a person goes through two callbacks the front end provides:
* `ask(question) -> str | None` — a manual fact's value, a manual task's note (the cockpit: a modal;
  headless: `--fact NAME=VALUE`, `--tick STEP:N[=note]`). None: the item needs input, it did not pass.
* `confirm(preview) -> typed text | None` — an action that changes the system, with its resolved commands
  (the cockpit: a typed confirmation; headless: `--allow-destructive`). None: declined, nothing ran.

An item that could not run or could not look is *unknown*: it never counts as a failure, so it never
triggers an `on_failure` item. An optional item is the operator's choice: `run_step` skips it,
`run_item` runs it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import hms
from rollback_tui.core.read.guardrails import readings, standings
from rollback_tui.core.read.traffic import traffic_since
from rollback_tui.core.read.words import pct
from rollback_tui.core.verdict import answered_by_rollback
from rollback_tui.playbook.model import Fact, Redeploy, SelectorRemoval, StabiliseFlags, Step, StepItem
from rollback_tui.session.actions import protection_refusal
from rollback_tui.session.engine import Engine, NotAvailable
from rollback_tui.session.preview import ActionPreview, StepPreview

log = logging.getLogger(__name__)

Outcome = Literal["passed", "failed", "unknown", "skipped", "needs_input", "cancelled"]


@dataclass(frozen=True)
class Question:
    """What the runner asks the operator for."""

    step: str
    index: int
    kind: Literal["fact", "manual"]
    ref: str  # the fact's name, or the manual task's text
    key: str  # how headless answers it: the fact's name (--fact), or `STEP:N` (--tick), N from 1
    text: str  # the question, in words


Ask = Callable[[Question], Awaitable[str | None]]
Confirm = Callable[[ActionPreview], Awaitable[str | None]]


@dataclass(frozen=True)
class ItemResult:
    step: str
    index: int
    item: str  # `action: replay-dead-letters`
    outcome: Outcome
    reason: str = ""
    withheld: bool = False  # a change not run because changes are not allowed here (headless)

    @property
    def text(self) -> str:
        return f"{self.step} {self.index + 1}. {self.item} {self.outcome}" + (
            f" — {self.reason}" if self.reason else ""
        )


@dataclass
class RunOptions:
    watch_s: float = 20.0  # how long a guardrail_watch item watches without a breach
    canary_s: float = 3.0  # how long a traffic item lets canary traffic flow before judging it
    traffic_rps: float | None = None  # the playbook's synthetic rate unless set
    rollback: str = "on_breach"  # the selector removal's own policy: on_breach | always | never
    allow_changes: bool = True  # False: actions that change the system are skipped, never confirmed
    withheld_reason: str = "changes are not allowed in this run"
    confirmed_via: str = "typed"  # how `confirm` answers: typed (an operator) | --allow-destructive


Result = tuple[Outcome, str]  # (outcome, reason)
_GATE = {"passed": "passed", "failed": "failed", "timed_out": "failed", "cancelled": "cancelled"}
_PROBE = {"ok": "passed", "failed": "failed", "unknown": "unknown"}
_ACTION = {"passed": "passed", "failed": "failed", "timed_out": "failed", "cancelled": "cancelled"}
_GUARDRAIL = {"ok": "passed", "breach": "failed", "over": "failed"}  # unknown, waiting: could not judge


class Runbook:
    def __init__(
        self,
        engine: Engine,
        *,
        ask: Ask,
        confirm: Confirm,
        options: RunOptions | None = None,
        actor: str | None = None,
    ) -> None:
        self.engine = engine
        self.playbook = engine.playbook
        self.ask = ask
        self.confirm = confirm
        self.opts = options or RunOptions()
        self.actor = actor or engine.operator
        self._busy = asyncio.Lock()

    # --- what the pane shows ---------------------------------------------------------------------------

    def preview_step(self, step: str) -> StepPreview:
        return self.engine.preview_step(step)

    def preview_action(self, name: str) -> ActionPreview:
        return self.engine.preview_action(name)

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    # --- running ------------------------------------------------------------------------------------

    async def run_step(self, step: str) -> list[ItemResult]:
        """Every item of `step`, in order (the tracker moves there first). Optional items are skipped."""
        found = self._step(step)
        async with self._lock():
            if self.engine.state.step != step:
                self.engine.enter_step(step, actor=self.actor)
            results: list[ItemResult] = []
            for index in range(len(found.do)):
                results.append(await self._run(found, index, results, explicit=False))
            return results

    async def run_item(self, step: str, index: int) -> ItemResult:
        """One item again — a retry of a failed one, or an optional one the operator chose to run."""
        found = self._step(step)
        if not 0 <= index < len(found.do):
            raise NotAvailable(f"Step {step} has no item {index + 1}.")
        async with self._lock():
            earlier = [self._last(found, j) for j in range(index)]
            return await self._run(found, index, [r for r in earlier if r is not None], explicit=True)

    def _step(self, step: str) -> Step:
        found = next((s for s in self.playbook.steps if s.name == step), None)
        if found is None:
            raise NotAvailable(f"No runbook step named {step!r}.")
        return found

    def _lock(self) -> asyncio.Lock:
        if self._busy.locked():
            raise NotAvailable("A runbook step is already running.")
        return self._busy

    def _last(self, step: Step, index: int) -> ItemResult | None:
        run = self.engine.state.step_items.get((step.name, index))
        if run is None or run.status == "running":
            return None
        return ItemResult(step.name, index, run.item, run.status, run.reason)  # type: ignore[arg-type]

    async def _run(self, step: Step, index: int, earlier: list[ItemResult], *, explicit: bool) -> ItemResult:
        item = step.do[index]
        kind, ref = item.ref
        label = f"{kind}: {ref}"
        skip = self._skip_reason(item, earlier, explicit)
        if skip:
            return self._finish(step, index, label, "skipped", skip)
        # A breach or a failure made it due: not running it (not allowed, the policy) counts against its step.
        due = item.when in ("on_breach", "on_failure") and not explicit
        if kind == "action" and self._withheld(ref):
            reason = self.opts.withheld_reason
            return self._finish(step, index, label, "skipped", reason, withheld=True, due=due)
        self.engine.start_item(step.name, index, actor=self.actor)
        rolled_back = self.engine.rolled_back  # as it starts: what it shows is after the rollback
        note = ""
        try:
            if kind == "manual":
                (outcome, reason), note = await self._manual(step, index, ref)
            else:
                outcome, reason = await getattr(self, f"_{kind}")(step, index, ref, item, explicit)
        except asyncio.CancelledError:
            self._finish(step, index, label, "cancelled", "cancelled before it finished", due=due)
            raise
        except NotAvailable as exc:  # it could not run: unknown, never a failure
            outcome, reason = "unknown", str(exc)
        except Exception as exc:  # a bug must not pass for an outcome of the system: say it could not run
            log.exception("runbook item %s/%d failed", step.name, index)
            outcome, reason = "unknown", f"could not run: {type(exc).__name__}: {exc}"
        if self._verifies_nothing(step, item, outcome, rolled_back):
            outcome, reason = self._no_rollback_to_verify(reason, rolled_back)
        return self._finish(step, index, label, outcome, reason, note=note, due=due)

    def _verifies_nothing(self, step: Step, item: StepItem, outcome: Outcome, rolled_back: bool) -> bool:
        """A passed item of a step that verifies the rollback, not run over an applied rollback from start
        to end (the rollback's own action excepted: it is what makes the session after the rollback)."""
        if not step.verifies_rollback or outcome != "passed" or (rolled_back and self.engine.rolled_back):
            return False
        return not (item.action and isinstance(self.playbook.action(item.action), SelectorRemoval | Redeploy))

    def _no_rollback_to_verify(self, shown: str, rolled_back_at_start: bool) -> Result:
        """An item of a step that verifies the rollback passed, but not over a rollback applied before it
        began and still applied when it ended: it showed the system, not a rollback. Unknown, as what
        could not be observed is; failed when the rollback failed."""
        rollback = self.engine.state.traffic.rollback
        if self.engine.rolled_back:
            why = "the rollback was applied only while it ran"
        elif rollback.stage == "none":
            why = "no rollback was applied in this session"
        else:
            when = " while it ran" if rolled_back_at_start else ""
            why = f"rollback {rollback.action} {rollback.words}{when}"
        outcome: Outcome = "failed" if rollback.stage == "failed" else "unknown"
        return outcome, f"{why}, so it verifies none — it passed" + (f": {shown}" if shown else "")

    def _finish(
        self,
        step: Step,
        index: int,
        label: str,
        outcome: Outcome,
        reason: str,
        *,
        note: str = "",
        withheld: bool = False,
        due: bool = False,
    ) -> ItemResult:
        self.engine.finish_item(step.name, index, outcome, reason, note=note, actor=self.actor, due=due)
        return ItemResult(step.name, index, label, outcome, reason, withheld)

    def _skip_reason(self, item: StepItem, earlier: list[ItemResult], explicit: bool) -> str | None:
        if explicit:  # the operator chose this item: its condition is theirs to judge
            return None
        if item.when == "on_breach" and not (self._forced(item) or self._breached(item)):
            return "no guardrail breach" + (f" of {', '.join(item.breach_of)}" if item.breach_of else "")
        if item.when == "on_failure" and not any(r.outcome == "failed" for r in earlier):
            if any(r.outcome == "unknown" for r in earlier):
                return "nothing failed earlier in this step (what could not run is unknown, not a failure)"
            return "nothing failed earlier in this step"
        if item.when == "optional":
            condition = item.condition.strip()
            return "optional, the operator decides" + (f": {condition}" if condition else "")
        return None

    def _forced(self, item: StepItem) -> bool:
        """`--rollback always` runs a rollback item whether or not anything breached."""
        if item.action is None or self.opts.rollback != "always":
            return False
        return isinstance(self.playbook.action(item.action), SelectorRemoval | Redeploy)

    def _breached(self, item: StepItem) -> bool:
        """A P0 breach (or one of `breach_of`) happened in this session, active or already handled."""
        log_ = [b for b in self.engine.state.traffic.breach_log if isinstance(b, ev.GuardrailBreach)]
        if item.breach_of:
            return any(b.guardrail in item.breach_of for b in log_)
        return any(b.severity == "P0" for b in log_)

    def _withheld(self, name: str) -> bool:
        """A change this run may not make (a selector removal follows its own `rollback` policy)."""
        action = self.playbook.action(name)
        if isinstance(action, SelectorRemoval):
            return False
        return not self.opts.allow_changes and self.engine.preview_action(name).changes

    # --- items ----------------------------------------------------------------------------------------

    def _fact_phase(self, name: str) -> str:
        if self.engine.rolled_back:
            return "after_rollback"
        baseline = self.engine.state.facts.get(f"{name}@baseline")
        return "check" if baseline is not None and baseline.observed and not baseline.error else "baseline"

    async def _fact(self, step: Step, index: int, name: str, item: StepItem, explicit: bool) -> Result:
        fact = next(f for f in self.playbook.facts if f.name == name)
        phase = self._fact_phase(name)
        if fact.source == "manual":
            question = Question(step.name, index, "fact", name, name, f"{fact.title}: what is the value?")
            value = (await self.ask(question) or "").strip()
            if not value:
                return "needs_input", f"no value given for {name}"
            recorded = self.engine.record_fact(name, value, phase=phase, actor=self.actor)
            outcome, reason = fact_outcome(fact, recorded)  # a typed value meets `expect` like a captured one
            return outcome, f"{value} (recorded by {self.actor})" if outcome == "passed" else reason
        captured = await self.engine.capture_facts(phase, [name])
        return fact_outcome(fact, captured[0])

    async def _gate(self, step: Step, index: int, name: str, item: StepItem, explicit: bool) -> Result:
        finished = (await self.engine.run_gates([name], actor="engine"))[0]
        outcome = _GATE.get(finished.outcome, "unknown")  # could not run, interrupted: unknown
        code = f"exit {finished.exit_code}" if finished.exit_code is not None else ""
        return outcome, "" if outcome == "passed" else (finished.error or code or finished.outcome)  # type: ignore[return-value]

    async def _probe(self, step: Step, index: int, name: str, item: StepItem, explicit: bool) -> Result:
        dead_letters = any(
            g.probe == name for g in self.playbook.guardrails if g.metric == "dead_letters_growth"
        )
        if dead_letters:
            seen = await self.engine.inspect_dead_letters(name)
            if seen.count is None:
                return ("unknown" if not seen.observed else "failed"), seen.error or "no count"
            newest = f"; newest: {seen.newest[0]}" if seen.newest else ""
            return "passed", f"{seen.count} dead letters{newest}"
        result = (await self.engine.run_probes([name]))[0]
        return _PROBE[result.status], (
            result.error or ""
        ) if result.status != "ok" else f"value {result.value}"  # type: ignore[return-value]

    async def _guardrail(self, step: Step, index: int, name: str, item: StepItem, explicit: bool) -> Result:
        now = readings(self.playbook, self.engine.state, time.time())
        reading = next(r for r in now if r.rail.name == name)
        text = f"{reading.label} {reading.text}" + (f" — {reading.why}" if reading.why else "")
        return _GUARDRAIL.get(reading.status, "unknown"), text  # type: ignore[return-value]

    async def _manual(self, step: Step, index: int, text: str) -> tuple[Result, str]:
        question = Question(step.name, index, "manual", text, f"{step.name}:{index + 1}", text)
        note = (await self.ask(question) or "").strip()
        if not note:
            return ("needs_input", "waiting for the operator to confirm it, with a note"), ""
        return ("passed", f"confirmed by {self.actor}"), note

    async def _check(self, step: Step, index: int, check: str, item: StepItem, explicit: bool) -> Result:
        if check == "fanout":
            phase = "after_rollback" if self.engine.rolled_back else "before_rollback"
            result = await self.engine.run_fanout_check(phase, actor="engine")
            return ("passed", "") if result.passed else ("failed", "; ".join(dict.fromkeys(result.reasons)))
        if check == "traffic":
            return await self._traffic()
        if check == "guardrail_watch":
            return await self._watch()
        if check == "cleanup":
            self.engine.stop_traffic(actor=self.actor)
            return "passed", "synthetic traffic stopped; each check removed its synthetic thread"
        paths = await self.engine.export()  # export: the evidence so far (the session's end exports again)
        return "passed", f"{len(paths)} files in {paths[0].parent}" if paths else "nothing written"

    async def _traffic(self) -> Result:
        """Canary traffic for `canary_s`, judged on what was sent in that time and nothing from before:
        failed when a request was answered by no replica (as `check traffic` says), or, after the
        rollback, by a replica it took out of traffic."""
        if self.playbook.load_balancer is None:
            raise NotAvailable("no load balancer in the playbook")
        since = time.time()
        self.engine.start_traffic(self.opts.traffic_rps, actor=self.actor)
        await asyncio.sleep(self.opts.canary_s)
        totals = traffic_since(self.engine.state, since, f"{self.opts.canary_s:g} s canary")
        if not totals.requests:
            return "unknown", "synthetic traffic produced no responses yet"
        shown = f"{totals.text()}; {totals.split_text(r.name for r in self.playbook.replicas)}"
        unanswered = sum(totals.unattributed.values())
        if unanswered:
            return "failed", f"{unanswered} of {totals.requests} requests answered by no replica — {shown}"
        still = {r: totals.served[r] for r in self._out_of_traffic() if totals.served.get(r)}
        if still:
            named = ", ".join(f"{r} answered {n}" for r, n in still.items())
            return "failed", f"after the rollback {named} of {totals.requests} requests — {shown}"
        return "passed", shown

    def _out_of_traffic(self) -> list[str]:
        """After the rollback, the replicas that must not answer: the candidates it did not keep (those it
        removed, and any other candidate still selected), not only those it removed."""
        rollback = self.engine.state.traffic.rollback
        if not rollback.after_rollback:
            return []
        action = next((a for a in self.playbook.actions if a.name == rollback.action), None)
        kept = self.playbook.kept_by(action) if isinstance(action, SelectorRemoval) else []
        candidates = [r.name for r in self.playbook.replicas if r.role == "candidate" and r.name not in kept]
        return list(dict.fromkeys([*rollback.replicas, *candidates]))

    async def _watch(self) -> Result:
        """Watch the guardrails for `watch_s`; stop early once a P0 breach was rolled back during the watch
        (or seen, when nothing rolls back on its own). Failed on a breach during the watch, and on one from
        before it that still holds (one a verified rollback answered excepted): the trigger conditions are
        not clear."""
        since = time.time()
        deadline = time.monotonic() + self.opts.watch_s
        while time.monotonic() < deadline:
            traffic = self.engine.state.traffic
            if traffic.rollback.stage in ("verified", "failed") and (traffic.rollback.ended_ts or 0) >= since:
                break
            if any(b.severity == "P0" for b in traffic.breaches.values()) and not self.engine.auto_rollback:
                break
            await asyncio.sleep(0.1)
        traffic = self.engine.state.traffic
        breaches = [b for b in traffic.breach_log if isinstance(b, ev.GuardrailBreach) and b.ts >= since]
        if breaches:
            named = ", ".join(dict.fromkeys(f"{b.severity} {b.guardrail}" for b in breaches))
            return "failed", f"breached: {named}"
        # Where each breach from before stands (core/read/guardrails.py, as the verdict and the report say):
        # held is not clear; one its guardrail can no longer observe is neither held nor cleared.
        rollback = traffic.rollback
        open_ = [s for s in standings(self.engine.state) if not answered_by_rollback(s.breach, rollback)]
        still = [s.breach for s in open_ if s.held]
        if still:
            named = ", ".join(f"{b.severity} {b.guardrail} (since {hms(b.ts)})" for b in still)
            return "failed", f"still breached: {named}"
        if open_:
            named = "; ".join(
                f"{s.breach.severity} {s.breach.guardrail} breached at {hms(s.breach.ts)}, unknown since "
                f"{hms(s.since or s.breach.ts)}: {s.why}"
                for s in open_
            )
            return "unknown", f"not clear, not held: {named}"
        now = readings(self.playbook, self.engine.state, time.time())
        blind = [r.rail.name for r in now if r.status in ("unknown", "waiting")]
        if now and len(blind) == len(now):
            return "unknown", f"no guardrail could judge ({', '.join(blind)})"
        return "passed", f"no guardrail breached in {time.time() - since:.0f} s"

    async def _action(self, step: Step, index: int, name: str, item: StepItem, explicit: bool) -> Result:
        action = self.playbook.action(name)
        if isinstance(action, SelectorRemoval):
            return await self._rollback(action)
        refusal = self.engine.action_refusal(name, include_optional=explicit)
        if refusal:
            return "unknown", refusal
        if isinstance(action, StabiliseFlags):  # current values first: the preview shows current → new
            refusal = protection_refusal(action, await self.engine.read_flags(name, "before"))
            if refusal:  # nobody is asked to confirm a change that must not happen
                return "failed", refusal
        preview = self.engine.preview_action(name)
        typed = None
        if preview.changes:
            typed = await self.confirm(preview)
            if typed is None:
                self.engine.decline_action(name, actor=self.actor)
                return "cancelled", "declined at the confirmation"
        outcome = await self.engine.run_action(
            name,
            confirmed_text=typed,
            actor=self.actor,
            via=self.opts.confirmed_via,
            include_optional=explicit,
        )
        run = self.engine.state.actions.get(name)
        reason = (run.whole.error if run and run.whole else None) or ""
        if outcome == "error":
            return "unknown", reason or "could not run"
        return _ACTION.get(outcome, "unknown"), reason  # type: ignore[return-value]

    async def _rollback(self, action: SelectorRemoval) -> Result:
        for _ in range(100):  # an automatic rollback may be under way: wait for it
            if not self.engine.running("rollback"):
                break
            await asyncio.sleep(0.1)
        status = self.engine.state.traffic.rollback
        if status.stage == "verified" and status.action == action.name:
            return "passed", f"{action.name} already rolled back and verified"
        if self.opts.rollback == "never":
            return "skipped", "the rollback policy is never"
        typed = await self.confirm(self.engine.preview_action(action.name))
        if typed is None:
            self.engine.cancel_rollback(action.name, actor=self.actor)
            return "cancelled", "declined at the confirmation"
        try:
            verified = await self.engine.rollback(action.name, typed, actor=self.actor)
        except NotAvailable as exc:
            if self.engine.state.traffic.rollback.stage == "failed":
                return "failed", self.engine.state.traffic.rollback.failure or str(exc)
            raise
        return "passed", f"verified: {pct(verified.stable_share)} of {verified.requests} requests on stable"


def fact_outcome(fact: Fact, captured: ev.FactCaptured) -> Result:
    """What a captured fact showed: unknown when it could not look, failed on an error, a disagreement
    between replicas or a value other than the one the runbook requires."""
    if not captured.observed:
        return "unknown", captured.error or "could not observe"
    if captured.error:
        return "failed", captured.error
    if captured.agree is False:
        return "failed", f"replicas disagree: {captured.values_text()}"
    values = {v for v in captured.values.values()}
    if fact.expect is not None and values != {fact.expect}:
        return "failed", f"expected {fact.expect}, got {captured.values_text()}"
    return "passed", captured.values_text()
