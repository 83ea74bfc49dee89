"""A command run locally: its own session, under the reaper (Linux), output streamed line by line.

Everything it starts ends with it: when it exits (leftovers are killed and noted), on timeout or cancel
(SIGTERM, SIGKILL after a grace period), and when the cockpit dies, even by SIGKILL (see reaper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from rollback_tui.exec.commands import CommandError, LineSplitter, OnLine
from rollback_tui.exec.reaper import LC_CTYPE_VAR

KILL_GRACE_S = 2.0
DRAIN_GRACE_S = 0.5  # after the command exited: how long its output may still take to arrive
REAPER = Path(__file__).with_name("reaper.py")
LEFTOVERS_NAMED = 5


def supervised() -> bool:
    """Whether local commands run under the reaper (it needs Linux's prctl and /proc)."""
    return sys.platform.startswith("linux") and os.path.isdir("/proc/self") and REAPER.is_file()


def signal_unreaped(pid: int, sig: signal.Signals) -> bool:
    """Signal our child `pid` unless it has already exited; False then.

    Popen.send_signal (under asyncio's Process.send_signal/kill) polls first, and that waitpid reaps an
    exited child under asyncio's child watcher, which then warns "Unknown child process pid …, will
    report returncode 255" and loses the real status. WNOWAIT looks without reaping: the watcher still
    collects it. Until it does, the pid cannot be reused, so the kill cannot reach another process.
    """
    try:
        exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already collected
        return False
    if exited is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return True


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
        self.ended_on_its_own = False  # the reaper's exit report: no stop of ours ended the command

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
                self.ended_on_its_own = message.get("stopped") is not True
        # The status pipe closes when the reaper exits: let asyncio's child watcher collect it before
        # anything signals it. Popen.send_signal polls first, and that waitpid would reap the exited
        # reaper under the watcher thread ("Unknown child process pid …, will report returncode 255").
        code = await self._exit_code()
        if status is None:
            self._signal_group(signal.SIGKILL)  # the supervisor is gone: end what it no longer can
            raise CommandError(f"the command's supervisor exited (status {code}) before the command")
        return status

    async def kill(self) -> bool:
        """SIGTERM everything, SIGKILL what is left after the grace (the reaper does both for its tree).
        False when the command (or its reaper, which outlives it) had already exited on its own."""
        if self.proc is None or self._exited is None:
            return False
        ended = self.proc.returncode is not None
        supervised = self._status is not None
        if not supervised:
            self._signal_group(signal.SIGTERM)
        elif self.proc.returncode is None:
            signal_unreaped(self.proc.pid, signal.SIGTERM)
        await asyncio.wait([self._exited, *self._pumps], timeout=KILL_GRACE_S + (1 if supervised else 0))
        if not supervised or self.proc.returncode is None:  # unsupervised, or the reaper did not answer
            self._signal_group(signal.SIGKILL)
        if self.proc.returncode is None:
            signal_unreaped(self.proc.pid, signal.SIGKILL)
        return not ended

    async def close(self) -> None:
        for task in self._pumps:
            task.cancel()
        if self._status_pipe is not None:
            self._status_pipe.close()
        if self.proc is None or self._transport is None:
            return
        if self.proc.returncode is None:  # interrupted while starting: the reaper ends the tree
            signal_unreaped(self.proc.pid, signal.SIGTERM)
        else:
            self._transport.close()  # release the pipes, even if a process we could not kill holds them

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.pgid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)
