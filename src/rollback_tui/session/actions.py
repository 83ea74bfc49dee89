"""Command actions as the engine runs them, each part journaled before it runs and after it ends.

* a `command` action: one command (its `watch` probes polled while it runs and afterwards);
* a `redeploy`: `prepare`, then each service at the last known good commit, then its `record_facts`
  captured (the new deployment ids) — a failed part stops the rest, named in the outcome;
* `stabilise_flags`: read the flags (every must_stay_on flag must be on), change each one, read them
  again (every protected flag unchanged, each change in place) — it refuses rather than touch a protection.

The whole action is ActionStarted/ActionFinished with `part` ""; its outcome says why in words. The
confirmation (the tier) is checked by the engine before any of this runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rollback_tui.core import events as ev
from rollback_tui.exec.commands import CommandError, fill, spec_argv
from rollback_tui.exec.supervise import CaptureResult, run_capture
from rollback_tui.playbook.model import CommandAction, CommandSpec, Redeploy, StabiliseFlags
from rollback_tui.session.preview import fact_value

if TYPE_CHECKING:
    from rollback_tui.session.engine import Engine

OUTPUT_KEPT = 5  # last lines of a part's output in its ActionFinished
ON = frozenset({"true", "1", "yes", "on", "enabled"})


class Refused(Exception):
    """The action must not go on (a protection is off, a value is missing); the message says why."""


def parse_flags(text: str, names: Iterable[str]) -> dict[str, str | None]:
    """`KEY=value` lines → the value of each flag in `names` (None when not printed). Other variables the
    read prints (secrets among them) are never kept."""
    wanted = list(names)
    found: dict[str, str | None] = dict.fromkeys(wanted)
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() in found:
            found[key.strip()] = value.strip().strip("'\"")
    return found


def is_on(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ON


class ActionRun:
    """One run of one action by one actor."""

    def __init__(self, engine: Engine, action: CommandAction | Redeploy | StabiliseFlags, actor: str) -> None:
        self.engine = engine
        self.action = action
        self.actor = actor
        self.started = time.monotonic()

    @property
    def name(self) -> str:
        return self.action.name

    async def run(self, *, include_optional: bool = False) -> str:
        """Run it to its end; returns the outcome (passed | failed | timed_out | cancelled | error)."""
        if isinstance(self.action, CommandAction):  # one command: the whole is that command
            result = await self.part("", self.action.command, watch=self.action.watch)
            return result.outcome
        self.engine.emit(ev.ActionStarted(action=self.name, actor=self.actor))
        try:
            if isinstance(self.action, Redeploy):
                outcome, error = await self._redeploy(self.action)
            else:
                outcome, error = await self._flags(self.action, include_optional)
        except Refused as exc:
            outcome, error = "failed", str(exc)
        except asyncio.CancelledError:
            self._finished("", "cancelled", "cancelled before it finished", self.started)
            raise
        self._finished("", outcome, error, self.started)
        return outcome

    def _finished(
        self, part: str, outcome: str, error: str | None, started: float, result: CaptureResult | None = None
    ) -> None:
        lines = (result.stdout + "\n" + result.stderr).strip().splitlines() if result is not None else []
        self.engine.emit(
            ev.ActionFinished(
                action=self.name,
                part=part,
                outcome=outcome,  # type: ignore[arg-type]
                exit_code=result.exit_code if result is not None else None,
                duration_s=round(time.monotonic() - started, 3),
                output=lines[-OUTPUT_KEPT:],
                error=error,
            )
        )
        if part == "" and outcome != "passed":  # on screen after any toast has faded
            self.engine.notice(
                "action", f"{self.name}: {outcome}" + (f" — {error}" if error else ""), "error"
            )

    async def part(self, part: str, spec: CommandSpec, watch: Iterable[str] = ()) -> CaptureResult:
        """Run one command as a part of this action (or as the whole, `part` ""), journaled before and after;
        `watch`: probes polled from now on, so what the command does to them shows while it runs."""
        started = time.monotonic()
        self.engine.emit(
            ev.ActionStarted(
                action=self.name, part=part, argv=spec_argv(spec), where=spec.where, actor=self.actor
            )
        )
        if watch:
            self.engine.watch_probes(list(watch))
        try:
            result = await run_capture(spec, self.engine.playbook)
        except asyncio.CancelledError:
            self._finished(part, "cancelled", "cancelled before it finished", started)
            raise
        self._finished(part, result.outcome, _why(result), started, result)
        return result

    async def _redeploy(self, action: Redeploy) -> tuple[str, str | None]:
        commit = fact_value(self.engine.state, action.last_known_good)
        if not commit:
            raise Refused(
                f"no value for fact {action.last_known_good}: capture the last known good commit first"
            )
        parts: list[tuple[str, CommandSpec]] = []
        if action.prepare is not None:
            parts.append(("prepare", action.prepare))
        parts += list(action.services.items())
        for i, (part, spec) in enumerate(parts):
            values = {"commit": commit} if part == "prepare" else {"commit": commit, "service": part}
            try:
                filled = fill(spec, values)
            except CommandError as exc:
                return "error", f"{part}: {exc}"
            result = await self.part(part, filled)
            if result.outcome != "passed":
                rest = [name for name, _ in parts[i + 1 :]]
                return result.outcome, f"{part}: {_why(result)}" + (
                    f"; not run: {', '.join(rest)}" if rest else ""
                )
        missing = await self._record(action.record_facts)
        return "passed", (f"redeployed {commit}; not recorded: {missing}" if missing else None)

    async def _record(self, facts: list[str]) -> str:
        """Capture the facts a redeploy records (the new deployment ids); what could not be recorded."""
        if not facts:
            return ""
        captured = await self.engine.capture_facts("after_rollback", facts)
        return "; ".join(f"{c.fact} ({c.error})" for c in captured if c.error or not c.observed)

    async def _flags(self, action: StabiliseFlags, include_optional: bool) -> tuple[str, str | None]:
        changes = [c for c in action.set if include_optional or not c.optional]
        protected = {f.lower() for f in action.must_stay_on}
        touched = [c.flag for c in changes if c.flag.lower() in protected]
        if touched:  # validation refuses this playbook already; a second line for what runs
            raise Refused(f"{', '.join(touched)} must stay on: not changing anything")
        # Filled before anything changes: a value refused (one read as an option) changes nothing.
        filled: list[tuple[str, CommandSpec]] = []
        for change in changes:
            try:
                spec = fill(action.command, {"flag": change.flag, "value": change.value})
            except CommandError as exc:
                return "error", f"{change.flag}: {exc}"
            filled.append((change.flag, spec))
        before = await self.engine.read_flags(action.name, "before")
        _refuse_unless_protected(action, before)
        for flag, command in filled:
            result = await self.part(flag, command)
            if result.outcome != "passed":
                return result.outcome, f"{flag}: {_why(result)}"
        after = await self.engine.read_flags(action.name, "after")
        if not after.observed or after.error:
            return "error", f"changed, but the flags could not be read back: {after.error}"
        was, now = before.values, after.values
        problems = [
            f"{flag} changed {_shown(was.get(flag))} → {_shown(now.get(flag))}: a protection was relaxed"
            for flag in action.must_stay_on
            if now.get(flag) != was.get(flag)
        ]
        problems += [
            f"{c.flag} reads {_shown(now.get(c.flag))}, not {c.value}"
            for c in changes
            if now.get(c.flag) != c.value
        ]
        return ("failed", "; ".join(problems)) if problems else ("passed", None)


def _refuse_unless_protected(action: StabiliseFlags, before: ev.FlagsRead) -> None:
    refusal = protection_refusal(action, before)
    if refusal:
        raise Refused(refusal)


def protection_refusal(action: StabiliseFlags, before: ev.FlagsRead) -> str | None:
    """Why no flag may change, as the flags read now (a protection off or unreadable), or None."""
    if not action.must_stay_on:
        return None
    if not before.observed or before.error:
        return f"the flags could not be read, so the protections cannot be verified: {before.error}"
    off = [
        f"{f}={_shown(before.values.get(f))}" for f in action.must_stay_on if not is_on(before.values.get(f))
    ]
    if off:
        return f"protections not on before any change ({', '.join(off)}): not changing anything"
    return None


def _shown(value: str | None) -> str:
    return "(not set)" if value is None else value


def _why(result: CaptureResult) -> str | None:
    """Why a command did not pass, in words (its error, or its exit and last stderr line)."""
    if result.outcome == "passed":
        return None
    if result.error:
        return result.error
    last = result.stderr.strip().splitlines()[-1:] or result.stdout.strip().splitlines()[-1:] or [""]
    return f"exit {result.exit_code}" + (f": {last[0]}" if last[0] else "")
