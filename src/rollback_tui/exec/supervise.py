"""Run a command spec to its end, locally or over SSH: start, wait for exit / timeout / cancel, kill what
is left, close. A failure to even start is an `error` outcome with a clear message, never a traceback;
a shell's exit 127 ("command not found") counts as that too: the command could not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rollback_tui.exec.commands import (
    CommandError,
    Execution,
    OnLine,
    build_env,
    resolve_argv,
    resolve_refs,
    this_installation,
)
from rollback_tui.exec.local import KILL_GRACE_S, LocalExecution
from rollback_tui.exec.remote import RemoteExecution
from rollback_tui.playbook.model import CommandSpec, Playbook

COMMAND_NOT_FOUND = 127  # what a shell exits with when the command is not there


def make_execution(
    spec: CommandSpec, playbook: Playbook, on_line: OnLine, environ: Mapping[str, str] | None = None
) -> tuple[Execution, list[str]]:
    """Build the execution for a spec; returns it with the secret values its env resolved."""
    resolved = build_env(spec, environ)
    lookup = os.environ if environ is None else environ
    command = resolve_argv(spec, lookup)
    secrets = [*resolved.secrets, *command.secrets]
    cwd = spec.cwd
    if cwd is not None:
        cwd, used = resolve_refs(cwd, lookup, "cwd")
        secrets.extend(used)
    if spec.where == "local":
        env = {**resolved.full, **command.script_env}
        return LocalExecution(this_installation(command.argv), cwd=cwd, env=env, on_line=on_line), secrets
    host = next((h for h in playbook.hosts if h.name == spec.where), None)
    if host is None:
        raise CommandError(f"where: {spec.where!r} is neither 'local' nor a host in the playbook")
    env = {**resolved.passed, **command.script_env}  # sent as SSH env requests, checked on arrival
    remote = RemoteExecution(
        host, command.argv, cwd=cwd, env=env, on_line=on_line, required_env=sorted(command.script_env)
    )
    return remote, secrets


@dataclass
class Outcome:
    outcome: str  # passed | failed | timed_out | cancelled | error
    exit_code: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


async def supervise(execution: Execution, timeout_s: float, cancelled: asyncio.Event) -> Outcome:
    """Start, then wait for exit, timeout or cancel; always kill what is left and close."""
    try:
        await execution.start()
    except CommandError as exc:
        await execution.close()
        return Outcome("error", error=str(exc))
    except asyncio.CancelledError:
        await asyncio.shield(execution.close())
        raise
    waiter = asyncio.ensure_future(execution.wait())
    canceller = asyncio.ensure_future(cancelled.wait())
    try:
        first = asyncio.FIRST_COMPLETED
        done, _ = await asyncio.wait({waiter, canceller}, timeout=timeout_s, return_when=first)
        if waiter in done:
            try:
                result = _exited(waiter.result())
            except CommandError as exc:  # e.g. the SSH connection dropped mid-run
                return Outcome("error", error=str(exc))
        else:
            reason = "cancelled" if cancelled.is_set() else "timed_out"
            stopped = await execution.kill()
            code = None
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(waiter, KILL_GRACE_S + 3)
            error = "cancelled by operator" if reason == "cancelled" else f"timed out after {timeout_s:g} s"
            # The command can end just as the limit (or the cancel) comes: then nothing was stopped, and
            # the outcome is its own, not a timeout with its exit status 0 beside it. A local command's
            # reaper outlives it for a moment: its report says whether the command had ended first.
            if code is not None and (not stopped or getattr(execution, "ended_on_its_own", False)):
                result = _exited(code)
            else:
                result = Outcome(reason, exit_code=code, error=error)
        result.notes.extend(getattr(execution, "notes", []))
        if kill_error := getattr(execution, "kill_error", None):
            result.notes.append(kill_error)
        return result
    except asyncio.CancelledError:
        await asyncio.shield(execution.kill())
        raise
    finally:
        canceller.cancel()
        if not waiter.done():
            waiter.cancel()
        await execution.close()


def _exited(code: int) -> Outcome:
    """The outcome of a command that ran to its end with this exit status."""
    if code == COMMAND_NOT_FOUND:
        return Outcome("error", exit_code=code, error="command not found (exit 127)")
    return Outcome("passed" if code == 0 else "failed", exit_code=code)


@dataclass
class CaptureResult:
    outcome: str
    exit_code: int | None
    stdout: str
    stderr: str
    error: str | None = None


async def run_capture(
    spec: CommandSpec,
    playbook: Playbook,
    *,
    environ: Mapping[str, str] | None = None,
    max_lines: int = 10_000,
) -> CaptureResult:
    """Run a command to read its output (facts, traffic reads); bounded, never raises."""
    out: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def keep(stream: str, line: str) -> None:
        if len(out[stream]) < max_lines:
            out[stream].append(line)

    try:
        execution, _ = make_execution(spec, playbook, keep, environ)
    except CommandError as exc:
        return CaptureResult("error", None, "", "", str(exc))
    result = await supervise(execution, spec.timeout_s, asyncio.Event())
    return CaptureResult(
        result.outcome, result.exit_code, "\n".join(out["stdout"]), "\n".join(out["stderr"]), result.error
    )
