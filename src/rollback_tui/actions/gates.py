"""Release gates: commands run locally or over SSH, streamed, bounded, recorded.

Local commands run from an argv (a shell only with an explicit `shell: true`) in their own
session/process group, so a timeout or cancel can kill everything they started: SIGTERM to the
group, SIGKILL after a grace period. Output is streamed line by line through an OutputRecorder
(every line to the redacted artefact file, a rate-limited share to the journal). A failure to
even start (command not found, unset `${VAR}`, unreachable host, refused host key) is an `error`
outcome with a clear message, never a traceback: the gate could not run, which is not a failure. A
shell's (or the remote shell's) exit 127, "command not found", counts as that too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rollback_tui.core.events import Event, GateFinished, GateStarted
from rollback_tui.core.redact import Redactor
from rollback_tui.exec.commands import (
    CommandError,
    Execution,
    LineSplitter,
    OnLine,
    OutputRecorder,
    build_env,
    resolve_refs,
    spec_argv,
    this_installation,
)
from rollback_tui.exec.remote import RemoteExecution
from rollback_tui.playbook.model import CommandSpec, Gate, Playbook
from rollback_tui.playbook.secrets import ENV_REF

KILL_GRACE_S = 2.0
DRAIN_GRACE_S = 2.0
COMMAND_NOT_FOUND = 127  # what a shell exits with when the command is not there


class LocalExecution:
    """A local subprocess in its own process group."""

    def __init__(self, argv: list[str], *, cwd: str | None, env: dict[str, str], on_line: OnLine) -> None:
        self.argv, self.cwd, self.env, self.on_line = argv, cwd, env, on_line
        self.proc: asyncio.subprocess.Process | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self.leftovers = False  # processes still held the output open after the command exited

    async def start(self) -> None:
        if self.cwd and not Path(self.cwd).is_dir():
            raise CommandError(f"working directory {self.cwd} does not exist")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandError(f"command not found: {self.argv[0]}") from None
        except PermissionError:
            raise CommandError(f"permission denied: {self.argv[0]} is not executable") from None
        except OSError as exc:
            raise CommandError(f"could not start {self.argv[0]}: {exc.strerror or exc}") from None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            asyncio.create_task(self._pump(self.proc.stdout, "stdout")),
            asyncio.create_task(self._pump(self.proc.stderr, "stderr")),
        ]

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        splitter = LineSplitter()
        while data := await reader.read(65536):
            for line in splitter.feed(data):
                self.on_line(stream, line)
        for line in splitter.close():
            self.on_line(stream, line)

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        # Background children may still hold the pipes: give them a moment, then end the group.
        _, pending = await asyncio.wait(self._pumps, timeout=DRAIN_GRACE_S)
        if pending:
            self.leftovers = True
            self._signal_group(signal.SIGKILL)
            await asyncio.wait(pending, timeout=DRAIN_GRACE_S)
            for task in pending:
                task.cancel()
        self._signal_group(signal.SIGKILL)  # nothing the gate started outlives it
        return code

    async def kill(self) -> None:
        """SIGTERM the group; SIGKILL it once the leader and the pipes are done, or after the grace."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        waiters = [asyncio.ensure_future(self.proc.wait()), *self._pumps]
        await asyncio.wait(waiters, timeout=KILL_GRACE_S)
        self._signal_group(signal.SIGKILL)

    async def close(self) -> None:
        for task in self._pumps:
            task.cancel()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def make_execution(
    spec: CommandSpec, playbook: Playbook, on_line: OnLine, environ: Mapping[str, str] | None = None
) -> tuple[Execution, list[str]]:
    """Build the execution for a spec; returns it with the secret values its env resolved."""
    resolved = build_env(spec, environ)
    lookup = os.environ if environ is None else environ
    secrets = list(resolved.secrets)
    argv: list[str] = []
    for index, arg in enumerate(spec_argv(spec)):
        if spec.shell:  # a shell string is never interpolated (the model forbids ${...} in it)
            argv.append(arg)
            continue
        value, used = resolve_refs(arg, lookup, f"argv[{index}]")
        argv.append(value)  # one argv element each: no shell ever re-splits the value
        secrets.extend(used)
    cwd = spec.cwd
    if cwd is not None:
        cwd, used = resolve_refs(cwd, lookup, "cwd")
        secrets.extend(used)
    if spec.where == "local":
        return LocalExecution(this_installation(argv), cwd=cwd, env=resolved.full, on_line=on_line), secrets
    host = next((h for h in playbook.hosts if h.name == spec.where), None)
    if host is None:
        raise CommandError(f"where: {spec.where!r} is neither 'local' nor a host in the playbook")
    return RemoteExecution(host, argv, cwd=cwd, env=resolved.passed, on_line=on_line), secrets


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
                code = waiter.result()
            except CommandError as exc:  # e.g. the SSH connection dropped mid-run
                return Outcome("error", error=str(exc))
            if code == COMMAND_NOT_FOUND:
                result = Outcome("error", exit_code=code, error="command not found (exit 127)")
            else:
                result = Outcome("passed" if code == 0 else "failed", exit_code=code)
        else:
            reason = "cancelled" if cancelled.is_set() else "timed_out"
            await execution.kill()
            code = None
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(waiter, KILL_GRACE_S + 3)
            error = "cancelled by operator" if reason == "cancelled" else f"timed out after {timeout_s:g} s"
            result = Outcome(reason, exit_code=code, error=error)
        if getattr(execution, "leftovers", False):
            result.notes.append("background processes kept the output open; their process group was killed")
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


def referenced_env(playbook: Playbook) -> set[str]:
    """Every `${VAR}` name the playbook's commands reference (their values are secrets)."""
    names: set[str] = set()
    specs: list[CommandSpec] = [*playbook.gates, *(f.command for f in playbook.facts if f.command)]
    for spec in specs:
        for value in spec.env.values():
            names.update(ENV_REF.findall(value))
    for probe in playbook.probes:
        for value in probe.headers.values():
            names.update(ENV_REF.findall(value))
    return names


class GateRunner:
    """Runs the playbook's gates and journals GateStarted / GateOutput / GateFinished."""

    def __init__(
        self,
        playbook: Playbook,
        emit: Callable[[Event], Event],
        *,
        artefact_dir: Path,
        env: Mapping[str, str] | None = None,
        max_tail: int = 200,
        lines_per_s: float = 100.0,
        redactor: Redactor | None = None,
    ) -> None:
        self.playbook = playbook
        self.emit = emit
        self.artefact_dir = Path(artefact_dir)
        self.environ: Mapping[str, str] = os.environ if env is None else env
        self.max_tail = max_tail
        self.lines_per_s = lines_per_s
        # Share the journal's redactor where possible: secret values resolved here are added to it.
        self.redact = redactor or Redactor.from_env(referenced_env(playbook), self.environ)
        self._cancel: dict[str, asyncio.Event] = {}

    def running(self) -> list[str]:
        return list(self._cancel)

    def cancel(self, gate: str) -> bool:
        flag = self._cancel.get(gate)
        if flag is None or flag.is_set():
            return False
        flag.set()
        return True

    def _gate(self, name: str) -> Gate:
        for gate in self.playbook.gates:
            if gate.name == name:
                return gate
        known = ", ".join(g.name for g in self.playbook.gates) or "none"
        raise ValueError(f"unknown gate {name!r} (the playbook defines: {known})")

    async def run(self, gate: str, *, actor: str = "engine") -> GateFinished:
        spec = self._gate(gate)
        if gate in self._cancel:
            raise ValueError(f"gate {gate!r} is already running")
        run = uuid.uuid4().hex[:8]
        flag = self._cancel[gate] = asyncio.Event()
        started = time.monotonic()
        recorder: OutputRecorder | None = None
        try:
            self.emit(GateStarted(gate=gate, run=run, argv=spec_argv(spec), where=spec.where, actor=actor))
            recorder = OutputRecorder(
                gate,
                run,
                self.emit,
                self.redact,
                self.artefact_dir / f"{gate}-{run}.log",
                lines_per_s=self.lines_per_s,
                tail=self.max_tail,
            )
            try:
                execution, secrets = make_execution(spec, self.playbook, recorder.line, self.environ)
            except CommandError as exc:
                result = Outcome("error", error=str(exc))
            else:
                self.redact.add(secrets)
                result = await supervise(execution, spec.timeout_s, flag)
            for note in result.notes:
                recorder.note(note)
        except asyncio.CancelledError:
            self._finish(gate, run, Outcome("cancelled", error="gate task cancelled"), started, recorder)
            raise
        finally:
            self._cancel.pop(gate, None)
        return self._finish(gate, run, result, started, recorder)

    def _finish(
        self, gate: str, run: str, result: Outcome, started: float, recorder: OutputRecorder | None
    ) -> GateFinished:
        artefact = None
        lines = 0
        if recorder is not None:
            if result.error:
                recorder.note(result.error)
            recorder.close()
            lines = recorder.lines
            artefact = str(recorder.artefact) if recorder.artefact else None
        event = GateFinished(
            gate=gate,
            run=run,
            outcome=result.outcome,  # type: ignore[arg-type]
            exit_code=result.exit_code,
            duration_s=round(time.monotonic() - started, 3),
            output_lines=lines,
            artefact=artefact,
            error=self.redact(result.error) if result.error else None,
        )
        return self.emit(event)  # type: ignore[return-value]

    async def run_all(self, names: list[str] | None = None, *, actor: str = "engine") -> list[GateFinished]:
        """Playbook order; consecutive `parallel: true` gates run concurrently as one batch."""
        if names is not None:
            for name in names:
                self._gate(name)
        gates = [g for g in self.playbook.gates if names is None or g.name in names]
        results: list[GateFinished] = []
        batch: list[Gate] = []

        async def flush() -> None:
            if batch:
                results.extend(await asyncio.gather(*(self.run(g.name, actor=actor) for g in batch)))
                batch.clear()

        for gate in gates:
            if gate.parallel:
                batch.append(gate)
                continue
            await flush()
            results.append(await self.run(gate.name, actor=actor))
        await flush()
        return results
