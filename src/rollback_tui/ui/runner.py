"""The cockpit's seam to the runbook runner the session layer is getting (issue 14: session/runbook.py).

The cockpit needs, and reads, only this:
* `preview_action(engine, name)` — what an action would run (argv with its placeholders filled, `${VAR}` left
  as the name, where it runs), whether it changes something and what to type to confirm it;
* `preview_step(engine, step)` — a step's description and each item's note and resolved commands;
* `make_runbook(engine, ask=, confirm=)` — `run_step(step)`, `run_item(step, index)` (a retry), `busy`;
* `decline(engine, name)` — the operator declined an action at its confirmation.

Until the runner is merged, the interim versions below work over the engine's existing intents and say
plainly (NotAvailable) what only the runner will do; once the engine has `preview_action`, `preview_step` and
`decline_action` and `session/runbook.py` exists, each function here is one line and the interim classes
go. The dialogs and the Runbook pane read only the fields of the Protocols below, which the runner's
dataclasses (session/preview.py) have too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rollback_tui.core import events as ev
from rollback_tui.core.text import command_line
from rollback_tui.exec.commands import CommandError, fill, spec_argv
from rollback_tui.playbook.model import (
    CommandAction,
    CommandSpec,
    Playbook,
    Redeploy,
    SelectorRemoval,
    StabiliseFlags,
    Step,
    StepItem,
)
from rollback_tui.session.engine import Engine, NotAvailable

# --- what the cockpit reads -----------------------------------------------------------------------


class CommandShown(Protocol):
    @property
    def label(self) -> str: ...  # "" for an action's one command; a service, `prepare`, a flag
    @property
    def where(self) -> str: ...  # "local" or the name of an SSH host
    @property
    def cwd(self) -> str | None: ...
    @property
    def text(self) -> str: ...


class FlagShown(Protocol):
    @property
    def text(self) -> str: ...  # `S3_STARTUP_CHECK_STRICT true → false (optional)`


class ActionShown(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def changes(self) -> bool: ...
    @property
    def confirm_text(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def commands(self) -> Sequence[CommandShown]: ...
    @property
    def flags(self) -> Sequence[FlagShown]: ...
    @property
    def notes(self) -> Sequence[str]: ...


class ItemShown(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def note(self) -> str: ...
    @property
    def changes(self) -> bool: ...
    @property
    def commands(self) -> Sequence[CommandShown]: ...


class StepShown(Protocol):
    @property
    def description(self) -> str: ...
    @property
    def items(self) -> Sequence[ItemShown]: ...


class Question(Protocol):
    @property
    def kind(self) -> str: ...  # "fact" | "manual"
    @property
    def ref(self) -> str: ...
    @property
    def text(self) -> str: ...


class StepRunner(Protocol):
    @property
    def busy(self) -> bool: ...

    async def run_step(self, step: str) -> Sequence[Any]: ...

    async def run_item(self, step: str, index: int) -> Any: ...


Ask = Callable[[Any], Awaitable[str | None]]  # a Question → the value / note, or None
Confirm = Callable[[Any], Awaitable[str | None]]  # an ActionShown → what the operator typed, or None


def preview_action(engine: Engine, name: str) -> ActionShown:
    own = getattr(engine, "preview_action", None)
    return own(name) if own is not None else _InterimPreviews(engine.playbook).action(name)


def preview_step(engine: Engine, step: str) -> StepShown:
    own = getattr(engine, "preview_step", None)
    return own(step) if own is not None else _InterimPreviews(engine.playbook).step(step)


def decline(engine: Engine, name: str) -> None:
    """Journal the decline where the engine can (a selector removal's always; others with the runner)."""
    action = engine.playbook.action(name)
    if isinstance(action, SelectorRemoval):
        engine.cancel_rollback(name)
        return
    own = getattr(engine, "decline_action", None)
    if own is not None:
        own(name)


def make_runbook(engine: Engine, *, ask: Ask, confirm: Confirm) -> StepRunner:
    try:
        from rollback_tui.session.runbook import Runbook  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _InterimRunbook(engine, ask=ask, confirm=confirm)
    return Runbook(engine, ask=ask, confirm=confirm)  # type: ignore[no-any-return,unused-ignore]


# --- interim: until the runner is merged ------------------------------------------------------------


@dataclass(frozen=True)
class _Command:
    label: str
    argv: tuple[str, ...]
    where: str = "local"
    cwd: str | None = None

    @property
    def text(self) -> str:
        return command_line(list(self.argv)) + ("" if self.where == "local" else f" @ {self.where}")


@dataclass(frozen=True)
class _Preview:
    name: str
    title: str
    kind: str
    changes: bool
    confirm_text: str
    environment: str
    commands: tuple[_Command, ...] = ()
    flags: tuple[FlagShown, ...] = ()  # current → new values arrive with the runner
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Item:
    index: int
    note: str
    changes: bool = False
    commands: tuple[_Command, ...] = ()


@dataclass(frozen=True)
class _StepPreview:
    description: str
    items: tuple[_Item, ...]


def _changes(playbook: Playbook, action: Any) -> bool:
    """The runner's policy until it lands: destructive, or anything in a production playbook, or a kind that
    always changes (redeploy, flags, the selector)."""
    declared = getattr(action, "changes", None)
    if declared is not None:
        return bool(declared)
    if not isinstance(action, CommandAction):
        return True
    return action.destructive or playbook.environment == "production"


def _command(spec: CommandSpec, label: str = "", values: dict[str, str] | None = None) -> _Command:
    with contextlib.suppress(CommandError):
        spec = fill(spec, values or {})
    return _Command(label, tuple(spec_argv(spec)), spec.where, spec.cwd)


class _InterimPreviews:
    def __init__(self, playbook: Playbook) -> None:
        self.playbook = playbook

    def action(self, name: str) -> _Preview:
        action = next((a for a in self.playbook.actions if a.name == name), None)
        if action is None:
            raise NotAvailable(f"No action named {name!r} in this playbook.")
        commands: list[_Command] = []
        notes: list[str] = []
        if isinstance(action, CommandAction):
            commands.append(_command(action.command))
        elif isinstance(action, Redeploy):
            commands += [
                _command(spec, service, {"service": service}) for service, spec in action.services.items()
            ]
            notes.append(f"{{commit}} comes from fact {action.last_known_good}")
        elif isinstance(action, StabiliseFlags):
            commands += [
                _command(action.command, c.flag, {"flag": c.flag, "value": c.value}) for c in action.set
            ]
            notes.append(f"must stay on: {', '.join(action.must_stay_on) or 'none declared'}")
        else:
            notes.append(f"takes {', '.join(action.remove_replicas)} out of the load balancer's selection")
        confirm = action.replica_set if isinstance(action, SelectorRemoval) else action.name
        return _Preview(
            action.name,
            action.title,
            action.kind,
            _changes(self.playbook, action),
            confirm,
            self.playbook.environment,
            tuple(commands),
            notes=tuple(notes),
        )

    def step(self, name: str) -> _StepPreview:
        step = next((s for s in self.playbook.steps if s.name == name), None)
        if step is None:
            raise NotAvailable(f"No runbook step named {name!r}.")
        return _StepPreview(step.description, tuple(self._item(i, item) for i, item in enumerate(step.do)))

    def _item(self, index: int, item: StepItem) -> _Item:
        kind, ref = item.ref
        if kind == "gate":
            return _Item(index, item.note, commands=(_command(self.playbook.gate(ref)),))
        if kind == "fact":
            fact = next(f for f in self.playbook.facts if f.name == ref)
            commands = (_command(fact.command),) if fact.command is not None else ()
            return _Item(index, item.note, commands=commands)
        if kind == "action":
            preview = self.action(ref)
            return _Item(index, item.note, preview.changes, preview.commands)
        return _Item(index, item.note)


@dataclass(frozen=True)
class _Question:
    kind: str
    ref: str
    text: str


_GATE = {"passed": "passed", "failed": "failed", "timed_out": "failed", "cancelled": "cancelled"}


class _InterimRunbook:
    """A step's items in order over the engine's existing intents. What only the runner can do (journal an
    item's start and outcome, record a manual fact, run a redeploy or flag change) is NotAvailable here:
    the item's status is then what the journal shows about its ref (core/read/steps.py)."""

    def __init__(self, engine: Engine, *, ask: Ask, confirm: Confirm) -> None:
        self.engine = engine
        self.ask = ask
        self.confirm = confirm
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def run_step(self, step: str) -> list[tuple[int, str]]:
        found = self._step(step)
        async with self._guard():
            if self.engine.state.step != step:
                self.engine.enter_step(step)
            outcomes: list[tuple[int, str]] = []
            for index, item in enumerate(found.do):
                if self._skip(item, outcomes):
                    continue
                outcomes.append((index, await self._run(found, index)))
            return outcomes

    async def run_item(self, step: str, index: int) -> str:
        found = self._step(step)
        if not 0 <= index < len(found.do):
            raise NotAvailable(f"Step {step} has no item {index + 1}.")
        async with self._guard():
            return await self._run(found, index)

    def _step(self, name: str) -> Step:
        step = next((s for s in self.engine.playbook.steps if s.name == name), None)
        if step is None:
            raise NotAvailable(f"No runbook step named {name!r}.")
        return step

    def _guard(self) -> asyncio.Lock:
        if self._lock.locked():
            raise NotAvailable("A runbook step is already running.")
        return self._lock

    def _skip(self, item: StepItem, outcomes: list[tuple[int, str]]) -> bool:
        if item.when == "optional":
            return True
        if item.when == "on_failure":
            return not any(outcome == "failed" for _, outcome in outcomes)
        if item.when == "on_breach":
            log = [b for b in self.engine.state.traffic.breach_log if isinstance(b, ev.GuardrailBreach)]
            return not any(
                b.guardrail in item.breach_of if item.breach_of else b.severity == "P0" for b in log
            )
        return False

    async def _run(self, step: Step, index: int) -> str:
        kind, ref = step.do[index].ref
        try:
            return await getattr(self, f"_{kind}")(step, index, ref)
        except NotAvailable as exc:  # could not run: unknown, never a failure — and said
            self.engine.notice("runbook", f"{step.name} {index + 1}. {kind}: {ref}: {exc}", "warning")
            return "unknown"

    async def _gate(self, step: Step, index: int, name: str) -> str:
        finished = (await self.engine.run_gates([name], actor="engine"))[0]
        return _GATE.get(finished.outcome, "unknown")

    async def _fact(self, step: Step, index: int, name: str) -> str:
        fact = next(f for f in self.engine.playbook.facts if f.name == name)
        if fact.source == "manual":
            raise NotAvailable("recording a manual fact arrives with the runbook runner")
        phase = "after_rollback" if self.engine.state.traffic.rollback.after_rollback else "baseline"
        captured = (await self.engine.capture_facts(phase, [name]))[0]
        if not captured.observed:
            return "unknown"
        return "failed" if captured.error or captured.agree is False else "passed"

    async def _probe(self, step: Step, index: int, name: str) -> str:
        result = (await self.engine.run_probes([name]))[0]
        return {"ok": "passed", "failed": "failed"}.get(result.status, "unknown")

    async def _manual(self, step: Step, index: int, text: str) -> str:
        note = ((await self.ask(_Question("manual", text, text))) or "").strip()
        if not note:
            return "needs_input"
        # Until the runner journals an item's outcome, the operator's note is journaled as a notice.
        self.engine.notice(
            "runbook", f"{step.name} {index + 1}. {text} — done by {self.engine.operator}: {note}"
        )
        return "passed"

    async def _guardrail(self, step: Step, index: int, name: str) -> str:
        raise NotAvailable("judging a guardrail item arrives with the runbook runner")

    async def _check(self, step: Step, index: int, check: str) -> str:
        if check == "fanout":
            return "passed" if (await self.engine.run_fanout_check(actor="engine")).passed else "failed"
        if check == "traffic":
            self.engine.start_traffic()
            return "passed"
        if check == "export":
            await self.engine.export()
            return "passed"
        if check == "cleanup":
            self.engine.stop_traffic()
            return "passed"
        raise NotAvailable(f"check {check} arrives with the runbook runner")

    async def _action(self, step: Step, index: int, name: str) -> str:
        preview = _InterimPreviews(self.engine.playbook).action(name)
        typed = await self.confirm(preview) if preview.changes else None
        if preview.changes and typed is None:
            decline(self.engine, name)
            return "cancelled"
        if preview.kind == "selector_removal":
            assert typed is not None
            verified = await self.engine.rollback(name, typed)
            return "passed" if verified.ok else "failed"
        outcome = await self.engine.run_action(name, confirmed_text=typed)
        return _GATE.get(outcome, "unknown")
