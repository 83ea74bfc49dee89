"""Headless rehearsal: the playbook's steps in order with no UI, for CI and scripted drills — a loop over
the runbook runner (session/runbook.py), the same one the cockpit drives.

baseline facts → gates → fanout → canary traffic → guardrail watch → rollback on P0 breach →
verification → cleanup. What needs a person is answered from the command line: a manual fact from
`--fact NAME=VALUE`, a manual task from `--tick STEP:N[=note]`; nothing answered is "needs input", never
passed. An action that changes the system runs only with `--allow-destructive` (the selector removal
follows `--rollback`); the ones it did not run are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rollback_tui.session.engine import Engine
from rollback_tui.session.preview import ActionPreview
from rollback_tui.session.runbook import ItemResult, Question, Runbook, RunOptions

HEADLESS = "headless-rehearsal"  # the actor of what the runner does on its own
WITHHELD = "changes the system: not run without --allow-destructive"
TICKED = "ticked with --tick"  # the note of a manual task ticked without one


@dataclass
class RehearsalOptions:
    watch_s: float = 20.0  # how long the guardrail watch lasts without a breach
    canary_s: float = 3.0  # clean canary traffic before the next item
    traffic_rps: float | None = None  # the playbook's synthetic_traffic.rps unless set
    auto_rollback: bool = True  # roll back on the first P0 breach, as the runbook says
    allow_destructive: bool = False  # run the actions that change the system
    rollback: str = "on_breach"  # on_breach | always | never
    only: tuple[str, ...] = ()  # run only these steps (in playbook order); all when empty
    facts: dict[str, str] = field(default_factory=dict)  # manual fact → value (--fact)
    ticks: dict[str, str] = field(default_factory=dict)  # `STEP:N` → note for a manual task (--tick)


class Rehearsal:
    def __init__(self, engine: Engine, options: RehearsalOptions | None = None) -> None:
        self.engine = engine
        self.opts = options or RehearsalOptions()
        self.results: list[ItemResult] = []
        self.runbook = Runbook(
            engine,
            ask=self.answer,
            confirm=self.confirm,
            options=RunOptions(
                watch_s=self.opts.watch_s,
                canary_s=self.opts.canary_s,
                traffic_rps=self.opts.traffic_rps,
                rollback=self.opts.rollback,
                allow_changes=self.opts.allow_destructive,
                withheld_reason=WITHHELD,
                confirmed_via="--allow-destructive",
            ),
            actor=HEADLESS,
        )

    @property
    def withheld(self) -> list[ItemResult]:
        """The changes it did not make (no --allow-destructive)."""
        return [r for r in self.results if r.withheld]

    async def run(self) -> list[ItemResult]:
        self.engine.auto_rollback = self.opts.auto_rollback and self.opts.rollback != "never"
        for step in self.engine.playbook.steps:
            if not self.opts.only or step.name in self.opts.only:
                self.results += await self.runbook.run_step(step.name)
        self.engine.stop_traffic(actor=HEADLESS)
        return self.results

    async def answer(self, question: Question) -> str | None:
        if question.kind == "fact":
            return self.opts.facts.get(question.key)
        note = self.opts.ticks.get(question.key)
        return None if note is None else (note or TICKED)

    async def confirm(self, preview: ActionPreview) -> str | None:
        """The runner asks only for what this run may do (a change needs --allow-destructive, checked by
        the runner; a selector removal follows --rollback): confirmed as the flag says."""
        return preview.confirm_text
