"""What a step or an action would do, as data, before anything runs: the Runbook pane's detail, the
confirmation dialog, `rehearse --dry-run` and the journaled confirmation all show these.

Commands are shown as the playbook wrote them with their `{placeholders}` filled in when the value is
known (a redeploy's `{commit}` from the last-known-good fact, a flag's `{value}`): a `${VAR}` stays the
variable's name, so a preview never holds a secret's value. Front ends still pass the text through their
redactor (share mode hides more).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from rollback_tui.core.state import SessionState
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
    action_changes,
)

AnyAction = SelectorRemoval | Redeploy | StabiliseFlags | CommandAction


@dataclass(frozen=True)
class CommandPreview:
    label: str  # "" for an action's one command; a service, `prepare`, a flag, `read`
    argv: tuple[str, ...]
    where: str = "local"
    cwd: str | None = None
    env: tuple[str, ...] = ()  # `KEY=value` as written (a ${VAR} stays a name)

    @property
    def text(self) -> str:
        """`railway up --service web --ci` (`… @ host` when it runs over SSH)."""
        env = " ".join(shlex.quote(e) for e in self.env)
        line = (env + " " if env else "") + shlex.join(self.argv)
        return line + ("" if self.where == "local" else f" @ {self.where}")

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "argv": list(self.argv), "where": self.where}


@dataclass(frozen=True)
class FlagPreview:
    flag: str
    current: str | None  # None: not read yet, or the read did not print it
    new: str | None  # None: a protected flag, never changed
    protected: bool = False
    optional: bool = False
    reason: str = ""

    @property
    def text(self) -> str:
        now = "?" if self.current is None else self.current
        if self.protected:
            return f"{self.flag} {now} (must stay on)"
        return f"{self.flag} {now} → {self.new}" + (" (optional)" if self.optional else "")


@dataclass(frozen=True)
class ActionPreview:
    name: str
    title: str
    kind: str
    changes: bool  # typed confirmation; headless only with --allow-destructive
    confirm_text: str  # what the operator types to confirm (when it changes something)
    environment: str
    commands: tuple[CommandPreview, ...] = ()
    flags: tuple[FlagPreview, ...] = ()
    watch: tuple[str, ...] = ()  # probes polled while it runs
    notes: tuple[str, ...] = ()  # what the operator should know first, in words


@dataclass(frozen=True)
class ItemPreview:
    index: int
    kind: str
    ref: str
    when: str
    condition: str
    note: str
    changes: bool = False  # an action that changes the system
    commands: tuple[CommandPreview, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.ref}"


@dataclass(frozen=True)
class StepPreview:
    name: str
    title: str
    description: str
    items: tuple[ItemPreview, ...] = field(default_factory=tuple)

    @property
    def notes(self) -> list[str]:
        """The step's description, then each item's note in order (what the runbook says to do)."""
        return [
            n for n in [self.description, *(f"{i.index + 1}. {i.note}" for i in self.items if i.note)] if n
        ]


def command_preview(
    spec: CommandSpec, label: str = "", values: Mapping[str, str] | None = None
) -> CommandPreview:
    """A command as it would run: placeholders in `values` filled, `${VAR}` left as the name."""
    try:
        filled = fill(spec, values or {})
    except CommandError:  # refused by validation already; shown unfilled rather than not at all
        filled = spec
    env = tuple(f"{k}={v}" for k, v in spec.env.items())
    return CommandPreview(label, tuple(spec_argv(filled)), filled.where, filled.cwd, env)


def fact_value(state: SessionState | None, fact: str) -> str | None:
    """The newest non-empty value captured for `fact` (any phase), or None."""
    if state is None:
        return None
    captured = [f for f in state.facts.values() if f.fact == fact and f.observed and not f.error]
    for event in sorted(captured, key=lambda f: f.ts, reverse=True):
        value = next((v for v in event.values.values() if v), None)
        if value:
            return value
    return None


def confirm_text(action: AnyAction) -> str:
    """What the operator types to confirm: the replica set for a selector removal, else the action's name."""
    return action.replica_set if isinstance(action, SelectorRemoval) else action.name


def action_preview(playbook: Playbook, name: str, state: SessionState | None = None) -> ActionPreview:
    """The resolved commands of action `name` (KeyError when there is none)."""
    action = next((a for a in playbook.actions if a.name == name), None)
    if action is None:
        raise KeyError(name)
    commands: list[CommandPreview] = []
    notes: list[str] = []
    flags: tuple[FlagPreview, ...] = ()
    watch: tuple[str, ...] = ()
    if isinstance(action, CommandAction):
        commands.append(command_preview(action.command))
        watch = tuple(action.watch)
    elif isinstance(action, Redeploy):
        commands, notes = _redeploy_commands(action, state)
    elif isinstance(action, StabiliseFlags):
        commands, flags = _flag_commands(action, state)
    else:
        notes.append(f"takes {', '.join(action.remove_replicas)} out of the load balancer's selection")
    return ActionPreview(
        name=action.name,
        title=action.title,
        kind=action.kind,
        changes=action_changes(playbook, action),
        confirm_text=confirm_text(action),
        environment=playbook.environment,
        commands=tuple(commands),
        flags=flags,
        watch=watch,
        notes=tuple(notes),
    )


def _redeploy_commands(
    action: Redeploy, state: SessionState | None
) -> tuple[list[CommandPreview], list[str]]:
    commit = fact_value(state, action.last_known_good)
    notes = [
        f"{{commit}} is {commit} (fact {action.last_known_good})"
        if commit
        else f"{{commit}} comes from fact {action.last_known_good}, not captured yet: capture it first"
    ]
    if action.forbid_destructive_migrations:
        notes.append("no destructive downgrade migrations: the schema stays forward-only")
    if action.record_facts:
        notes.append(f"afterwards records {', '.join(action.record_facts)}")
    commands = []
    if action.prepare is not None:
        commands.append(command_preview(action.prepare, "prepare", {"commit": commit} if commit else {}))
    for service, spec in action.services.items():
        values = {"service": service, **({"commit": commit} if commit else {})}
        commands.append(command_preview(spec, service, values))
    return commands, notes


def _flag_commands(
    action: StabiliseFlags, state: SessionState | None
) -> tuple[list[CommandPreview], tuple[FlagPreview, ...]]:
    before = (state.flags.get(action.name, {}) if state is not None else {}).get("before")
    current = before.values if before is not None else {}
    rows = [
        FlagPreview(c.flag, current.get(c.flag), c.value, optional=c.optional, reason=c.reason)
        for c in action.set
    ]
    rows += [FlagPreview(f, current.get(f), None, protected=True) for f in action.must_stay_on]
    commands = []
    if action.verify is not None:
        commands.append(command_preview(action.verify, "read"))
    commands += [
        command_preview(action.command, c.flag, {"flag": c.flag, "value": c.value}) for c in action.set
    ]
    return commands, tuple(rows)


def item_preview(
    playbook: Playbook, index: int, item: StepItem, state: SessionState | None = None
) -> ItemPreview:
    kind, ref = item.ref
    commands: tuple[CommandPreview, ...] = ()
    changes = False
    if kind == "gate":
        gate = next((g for g in playbook.gates if g.name == ref), None)
        commands = (command_preview(gate),) if gate is not None else ()
    elif kind == "fact":
        fact = next((f for f in playbook.facts if f.name == ref), None)
        if fact is not None and fact.command is not None:
            commands = (command_preview(fact.command),)
        elif fact is not None and fact.url is not None:
            commands = (CommandPreview("http", ("GET", fact.url)),)
    elif kind == "probe":
        probe = next((p for p in playbook.probes if p.name == ref), None)
        commands = (CommandPreview("http", (probe.method, probe.url)),) if probe is not None else ()
    elif kind == "action" and any(a.name == ref for a in playbook.actions):
        preview = action_preview(playbook, ref, state)
        commands, changes = preview.commands, preview.changes
    return ItemPreview(index, kind, ref, item.when, item.condition, item.note, changes, commands)


def step_preview(playbook: Playbook, step: Step | str, state: SessionState | None = None) -> StepPreview:
    """Step `step` (or its name; KeyError when there is none) with each item's resolved commands."""
    if isinstance(step, str):
        found = next((s for s in playbook.steps if s.name == step), None)
        if found is None:
            raise KeyError(step)
        step = found
    items = tuple(item_preview(playbook, i, item, state) for i, item in enumerate(step.do))
    return StepPreview(step.name, step.title, step.description, items)
