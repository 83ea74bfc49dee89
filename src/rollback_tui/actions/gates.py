"""Release gates: commands run locally or over SSH, streamed, bounded, recorded.

Local commands run from an argv (a shell only with an explicit `shell: true`) in their own session,
under a small supervisor (reaper.py, Linux), so everything they started ends with them: when they exit
(leftovers are killed and noted), on timeout or cancel (SIGTERM, SIGKILL after a grace period), and
when the cockpit dies, even by SIGKILL. Output is streamed line by line through an OutputRecorder
(every line to the redacted artefact file, a rate-limited share to the journal). A failure to
even start (command not found, unset `${VAR}`, unreachable host, refused host key) is an `error`
outcome with a clear message, never a traceback: the gate could not run, which is not a failure. A
shell's (or the remote shell's) exit 127, "command not found", counts as that too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rollback_tui.actions.reaper import LC_CTYPE_VAR
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
)
from rollback_tui.exec.remote import RemoteExecution
from rollback_tui.playbook.model import CommandSpec, Gate, Playbook
from rollback_tui.playbook.secrets import ENV_REF

KILL_GRACE_S = 2.0
DRAIN_GRACE_S = 0.5  # after the command exited: how long its output may still take to arrive
REAPER = Path(__file__).with_name("reaper.py")
LEFTOVERS_NAMED = 5
COMMAND_NOT_FOUND = 127  # what a shell exits with when the command is not there


def supervised() -> bool:
    """Whether local commands run under the reaper (it needs Linux's prctl and /proc)."""
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self") and REAPER.is_file()


def start_error(command: str, exc: OSError) -> CommandError:
    if isinstance(exc, FileNotFoundError):
        return CommandError(f"command not found: {command}")
    if isinstance(exc, PermissionError):
        return CommandError(f"permission denied: {command} is not executable")
    return CommandError(f"could not start {command}: {exc.strerror or exc}")


def leftovers_note(killed: list[list[object]]) -> str:
    """`killed 2 leftover processes …: sleep (pid 41), sh (pid 42)` — what outlived the command."""
    named = ", ".join(f"{name} (pid {pid})" for pid, name in killed[:LEFTOVERS_NAMED])
    more = f" and {len(killed) - LEFTOVERS_NAMED} more" if len(killed) > LEFTOVERS_NAMED else ""
    plural = "process" if len(killed) == 1 else "processes"
    return f"killed {len(killed)} leftover {plural} still running after the command exited: {named}{more}"


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Also says when the process exits. `Process.wait()` waits for the output pipes to close as well,
    which a background child that keeps them open can put off forever."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class LocalExecution:
    """A local command in its own session, whose whole tree ends when it exits, is stopped, or the
    cockpit dies.

    On Linux the cockpit's direct child is the reaper (reaper.py), which spawns the command, reports
    its exit status on a status pipe and kills whatever outlives it, `setsid` escapees included.
    Elsewhere the command is the direct child: its process group is killed when it exits, but a
    process that left the group, or a cockpit killed with SIGKILL, leaves processes behind.
    """

    def __init__(self, argv: list[str], *, cwd: str | None, env: dict[str, str], on_line: OnLine) -> None:
        self.argv, self.cwd, self.env, self.on_line = argv, cwd, env, on_line
        self.proc: asyncio.subprocess.Process | None = None  # the reaper, or the command itself
        self.pgid: int | None = None  # the command's process group (= its pid)
        self.notes: list[str] = []  # for the journal: what had to be killed after the command exited
        self._exited: asyncio.Future[None] | None = None  # set when self.proc exits, pipes or not
        self._transport: asyncio.SubprocessTransport | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self._status: asyncio.StreamReader | None = None  # the reaper's reports
        self._status_pipe: asyncio.BaseTransport | None = None

    async def start(self) -> None:
        if self.cwd and not Path(self.cwd).is_dir():
            raise CommandError(f"working directory {self.cwd} does not exist")
        status_r = status_w = -1
        argv, env = self.argv, self.env
        if supervised():
            status_r, status_w = os.pipe()
            reaper = [sys.executable, "-I", "-S", str(REAPER), str(status_w), str(os.getpid())]
            argv = [*reaper, f"{KILL_GRACE_S:g}", "--", *argv]
            env = {**env, LC_CTYPE_VAR: env.get("LC_CTYPE", "")}
        try:
            await self._spawn(argv, env, (status_w,) if status_w >= 0 else ())
        except OSError as exc:
            if status_r >= 0:
                os.close(status_r)
            raise start_error(self.argv[0], exc) from None
        finally:
            if status_w >= 0:
                os.close(status_w)
        assert self.proc is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self.pgid = await self._supervised_start(status_r) if status_r >= 0 else self.proc.pid
        self._pumps = [
            asyncio.create_task(self._pump(self.proc.stdout, "stdout")),
            asyncio.create_task(self._pump(self.proc.stderr, "stderr")),
        ]

    async def _spawn(self, argv: list[str], env: dict[str, str], pass_fds: tuple[int, ...]) -> None:
        loop = asyncio.get_running_loop()
        protocol = _ExitProtocol(loop)
        self._transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *argv,
            cwd=self.cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        self.proc = asyncio.subprocess.Process(self._transport, protocol, loop)
        self._exited = protocol.exited

    async def _supervised_start(self, status_r: int) -> int:
        """Open the reaper's status pipe and wait for its first report: the command's pid, or why not."""
        reader = self._status = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        self._status_pipe, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(status_r, "rb", buffering=0)
        )
        first = await self._report()
        pid, errno = first.get("started"), first.get("error")
        if isinstance(pid, int):
            return pid
        code = await self._exit_code()
        if isinstance(errno, int):
            raise start_error(self.argv[0], OSError(errno, os.strerror(errno)))
        raise CommandError(f"could not start {self.argv[0]}: its supervisor exited (status {code})")

    async def _report(self) -> dict[str, object]:
        """The reaper's next report ({} once it has exited)."""
        assert self._status is not None
        line = await self._status.readline()
        try:
            message = json.loads(line) if line else {}
        except ValueError:
            message = {}
        return message if isinstance(message, dict) else {}

    async def _exit_code(self) -> int:
        assert self._exited is not None and self.proc is not None
        await asyncio.shield(self._exited)  # shared: a cancelled waiter must not cancel it for the others
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def _pump(self, reader: asyncio.StreamReader, stream: str) -> None:
        splitter = LineSplitter()
        while data := await reader.read(65536):
            for line in splitter.feed(data):
                self.on_line(stream, line)
        for line in splitter.close():
            self.on_line(stream, line)

    async def wait(self) -> int:
        """The command's exit status. Finished means its main process exited: what it left running was
        killed (and noted), and its output is drained for at most DRAIN_GRACE_S, not until EOF."""
        code = await (self._command_status() if self._status is not None else self._exit_code())
        _, pending = await asyncio.wait(self._pumps, timeout=DRAIN_GRACE_S)
        if pending:  # a process we could not kill (or, unsupervised, one outside the group) holds them
            self.notes.append("processes the command started kept its output open; stopped reading it")
            self._signal_group(signal.SIGKILL)
            for task in pending:
                task.cancel()
        if self._status is None:
            self._signal_group(signal.SIGKILL)  # nothing in its group outlives it
        return code

    async def _command_status(self) -> int:
        """Read the reaper's reports until it exits: leftovers it killed, the command's exit status."""
        status: int | None = None
        while message := await self._report():
            killed = message.get("leftovers")
            if isinstance(killed, list) and killed:
                self.notes.append(leftovers_note(killed))
            if isinstance(message.get("exit"), int):
                status = message["exit"]  # type: ignore[assignment]
        if status is None:
            self._signal_group(signal.SIGKILL)  # the supervisor is gone: end what it no longer can
            code = await self._exit_code()
            raise CommandError(f"the command's supervisor exited (status {code}) before the command")
        return status

    async def kill(self) -> None:
        """SIGTERM everything, SIGKILL what is left after the grace (the reaper does both for its tree)."""
        if self.proc is None or self._exited is None:
            return
        supervised = self._status is not None
        if not supervised:
            self._signal_group(signal.SIGTERM)
        elif self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        await asyncio.wait([self._exited, *self._pumps], timeout=KILL_GRACE_S + (1 if supervised else 0))
        if not supervised or self.proc.returncode is None:  # unsupervised, or the reaper did not answer
            self._signal_group(signal.SIGKILL)
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def close(self) -> None:
        for task in self._pumps:
            task.cancel()
        if self._status_pipe is not None:
            self._status_pipe.close()
        if self.proc is None or self._transport is None:
            return
        if self.proc.returncode is None:  # interrupted while starting: the reaper ends the tree
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
        else:
            self._transport.close()  # release the pipes, even if a process we could not kill holds them

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)


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
        return LocalExecution(argv, cwd=cwd, env=resolved.full, on_line=on_line), secrets
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
