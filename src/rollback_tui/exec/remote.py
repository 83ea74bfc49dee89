"""Remote commands over SSH (asyncssh), with strict host-key checking.

* The host key must be in known_hosts (the host's file, default ~/.ssh/known_hosts) or match an
  explicit `host_key_pin: SHA256:…`; an unknown or changed key is refused with a clear message.
* The command runs without a pty, built with `shlex.join(argv)`. A one-line prologue reports the
  remote shell's PID (sshd makes it a session and process-group leader) before `exec`-ing the
  command, so a cancel or timeout can kill the whole remote process group through a second
  channel — closing the channel alone would leave e.g. a `sleep` running on the host. A command
  that has already ended is not signalled: the host has reaped it, and its number may be another's.
* Environment values travel as SSH `env` requests (the server must `AcceptEnv` them), never on
  the command line where `ps` on the host would show them. The variables a shell script's `${VAR}`
  needs are checked on arrival by the prologue: one the server dropped is an error naming it, not a
  script that silently expands it to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from rollback_tui.exec.commands import CommandError, LineSplitter, OnLine
from rollback_tui.playbook.model import SshHost

PGID_MARKER = "__rollback_tui_pgid__="  # the shell leads its own process group (sshd: a session)
PID_MARKER = "__rollback_tui_pid__="  # it does not (a server that does not setsid): only it can be signalled
ENDED = "ended"  # what the kill script prints when the command had already ended on its own
LEFTOVERS = "leftovers"  # … and left processes running in its group (killed with the group)
UNSET_MARKER = "__rollback_tui_unset__="
KILL_GRACE_S = 2.0

# Runs on the host with T = -PGID (the group) or PID (the shell alone). First it freezes T with STOP,
# so the command (the shell, which exec'd it) can no longer end while the script looks: once the leader
# shows as stopped it had not ended; gone or a zombie, it had ended on its own — and a group still
# living without it is what it left running. Then TERM, CONT (a stopped handler runs only once
# continued), KILL what is left after the grace. Nothing is signalled once T is gone: its number is free
# for another process; while the group lives, its leader's PID cannot be reused. POSIX sh; /proc (Linux)
# tells the states, elsewhere a living leader counts as not ended; dash's kill has no `--`.
_KILL_SCRIPT = """\
T={target}; P={pid}
kill -0 $T 2>/dev/null || {{ echo {ended}; exit 0; }}
kill -STOP $T 2>/dev/null
state() {{ s=; read -r s 2>/dev/null </proc/$P/stat; s=${{s##*) }}; s=${{s%% *}}; }}
i=0; state
while [ $i -lt 50 ] && [ -n "$s" ] && [ "$s" != T ] && [ "$s" != t ] && [ "$s" != Z ]; do
  sleep 0.01; i=$((i+1)); state
done
if [ -z "$s" ] && ! kill -0 $P 2>/dev/null; then
  kill -0 $T 2>/dev/null || {{ echo {ended}; exit 0; }}
  echo {ended} {leftovers}
elif [ "$s" = Z ]; then
  echo {ended}
fi
kill -TERM $T 2>/dev/null; kill -CONT $T 2>/dev/null; i=0
while [ $i -lt {rounds} ] && kill -0 $T 2>/dev/null; do sleep 0.1; i=$((i+1)); done
kill -KILL $T 2>/dev/null; exit 0
"""


def _address(host: SshHost) -> str:
    return f"{host.host}:{host.port}"


def _normalise_fingerprint(fp: str) -> str:
    return fp.strip().rstrip("=")


class _PinnedHostClient(asyncssh.SSHClient):
    """Accepts exactly the host key whose SHA256 fingerprint is pinned."""

    def __init__(self, pin: str) -> None:
        self.pin = _normalise_fingerprint(pin)
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.seen = key.get_fingerprint("sha256")
        return _normalise_fingerprint(self.seen) == self.pin


def _host_key_refusal(host: SshHost, known_hosts: Path) -> str:
    """Tell an unknown key from a changed one (a possible man in the middle)."""
    try:
        matched = asyncssh.read_known_hosts(str(known_hosts)).match(host.host, host.host, host.port)
    except (OSError, ValueError):
        matched = None
    if matched is not None and matched[0]:
        return f"host key for {_address(host)} does not match {known_hosts} — refusing"
    return f"host key for {_address(host)} is not in {known_hosts} — refusing (add it, or set host_key_pin)"


async def connect(host: SshHost) -> asyncssh.SSHClientConnection:
    """Open a verified connection or raise CommandError with a message fit for the operator."""
    pinned: _PinnedHostClient | None = None
    known_hosts_path = Path(host.known_hosts or "~/.ssh/known_hosts").expanduser()
    options: dict[str, object] = {
        "port": host.port,
        "username": host.user,
        "connect_timeout": host.connect_timeout_s,
        "config": None,  # the playbook is the only configuration
    }
    if host.host_key_pin:
        pinned = _PinnedHostClient(host.host_key_pin)
        options["known_hosts"] = ([], [], [])  # trust nothing by list; the pin decides
        options["client_factory"] = lambda: pinned
    elif not known_hosts_path.is_file():
        raise CommandError(
            f"known_hosts file {known_hosts_path} not found — refusing to connect to {_address(host)} "
            "without a verified host key (add the key there, or set host_key_pin)"
        )
    else:
        options["known_hosts"] = str(known_hosts_path)
    if host.key_file:
        key_path = Path(host.key_file).expanduser()
        if not key_path.is_file():
            raise CommandError(f"SSH key file {key_path} not found (host {host.name})")
        options["client_keys"] = [str(key_path)]
    if not host.use_agent:
        options["agent_path"] = None
    try:
        async with asyncio.timeout(host.connect_timeout_s + 5):
            return await asyncssh.connect(host.host, **options)
    except asyncssh.HostKeyNotVerifiable:
        if pinned is not None:
            raise CommandError(
                f"host key for {_address(host)} ({pinned.seen}) does not match the pinned "
                f"{host.host_key_pin} — refusing"
            ) from None
        raise CommandError(_host_key_refusal(host, known_hosts_path)) from None
    except asyncssh.PermissionDenied:
        how = "key file" if host.key_file else "agent/default keys"
        raise CommandError(f"SSH authentication as {host.user}@{_address(host)} failed ({how})") from None
    except TimeoutError:
        limit = host.connect_timeout_s
        raise CommandError(f"SSH connect to {_address(host)} timed out after {limit:g} s") from None
    except (OSError, asyncssh.Error, ValueError) as exc:
        raise CommandError(f"SSH connect to {_address(host)} failed: {exc}") from None


def remote_command(argv: list[str], cwd: str | None = None, required_env: Sequence[str] = ()) -> str:
    """The exec request: report our PID (the group leader), check the required variables arrived,
    optionally cd, then exec the argv. (`required_env` are `${VAR}` names: `[A-Z_][A-Z0-9_]*`.)"""
    # `kill -0 -$$` finds a process group numbered like this shell only if the shell leads it.
    parts = [f"if kill -0 -$$ 2>/dev/null; then echo {PGID_MARKER}$$; else echo {PID_MARKER}$$; fi >&2"]
    parts += [
        f'[ "${{{name}+set}}" = set ] || {{ echo {UNSET_MARKER}{name} >&2; exit 125; }}'
        for name in required_env
    ]
    if cwd:
        parts.append(f"cd -- {shlex.quote(cwd)} || exit 127")
    parts.append(f"exec {shlex.join(argv)}")
    return "; ".join(parts)


class RemoteExecution:
    """One command on an SshHost: streamed output, killable as a process group."""

    def __init__(
        self,
        host: SshHost,
        argv: list[str],
        *,
        cwd: str | None,
        env: dict[str, str],
        on_line: OnLine,
        required_env: Sequence[str] = (),
    ) -> None:
        self.host, self.argv, self.cwd, self.env, self.on_line = host, argv, cwd, env, on_line
        self.required_env = required_env  # names the command's shell reads: they must arrive
        self.unset: str | None = None  # one of them the server did not accept
        self.pgid: int | None = None  # the remote shell's PID (the command, once exec'd)
        self.leads_group = True  # … which leads its own process group: the kill takes the whole group
        self._conn: asyncssh.SSHClientConnection | None = None
        self._process: asyncssh.SSHClientProcess[bytes] | None = None
        self._pumps: list[asyncio.Task[None]] = []
        self.kill_error: str | None = None
        self.notes: list[str] = []  # for the journal: what the kill found besides the command

    async def start(self) -> None:
        self._conn = await connect(self.host)
        try:
            self._process = await self._conn.create_process(
                remote_command(self.argv, self.cwd, self.required_env),
                env=self.env or (),
                encoding=None,
                term_type=None,
            )
        except (asyncssh.Error, OSError) as exc:
            await self.close()
            raise CommandError(f"could not start the command on {self.host.name}: {exc}") from None
        with contextlib.suppress(asyncssh.Error, OSError):
            self._process.stdin.write_eof()
        self._pumps = [
            asyncio.create_task(self._pump(self._process.stdout, "stdout")),
            asyncio.create_task(self._pump(self._process.stderr, "stderr")),
        ]

    async def _pump(self, reader: asyncssh.SSHReader[bytes], stream: str) -> None:
        splitter = LineSplitter()
        first = stream == "stderr"
        while True:
            try:
                data = await reader.read(65536)
            except (asyncssh.Error, OSError):
                break
            if not data:
                break
            for line in splitter.feed(data):
                if first and line.startswith((PGID_MARKER, PID_MARKER)):
                    first = False
                    self.leads_group = line.startswith(PGID_MARKER)
                    digits = line.split("=", 1)[1].strip()
                    self.pgid = int(digits) if digits.isdigit() else None
                    continue
                first = False
                if stream == "stderr" and self.unset is None and line.startswith(UNSET_MARKER):
                    self.unset = line[len(UNSET_MARKER) :].strip()
                    continue
                self.on_line(stream, line)
        for line in splitter.close():
            self.on_line(stream, line)

    async def wait(self) -> int:
        assert self._process is not None
        await self._process.wait(check=False)
        await asyncio.gather(*self._pumps, return_exceptions=True)
        code = self._process.returncode
        if self.unset is not None:
            raise CommandError(
                f"environment variable {self.unset} did not reach {self.host.name}: its SSH server must "
                f"accept it (sshd_config: AcceptEnv {self.unset})"
            )
        if code is None:
            raise CommandError(f"connection to {_address(self.host)} lost before the command finished")
        return code

    async def kill(self) -> bool:
        """Kill the remote group via a second channel (what the command left in it too), then close.
        False when the command had already ended on its own: its exit status is in, or the host found
        it gone (a timeout and the command's end can cross)."""
        process, conn = self._process, self._conn
        if process is None or conn is None:
            return False
        ended = process.returncode is not None
        if self.pgid is not None and self.pgid > 1:
            ended = await self._kill_remote(conn, self.pgid) or ended
        elif not ended:
            with contextlib.suppress(asyncssh.Error, OSError):
                process.send_signal("TERM")  # a server may honour it (OpenSSH ≥ 7.9): the best we can do
            self.kill_error = "remote process id unknown; closed the channel only"
        process.close()
        return not ended

    async def _kill_remote(self, conn: asyncssh.SSHClientConnection, pid: int) -> bool:
        """Run the kill script on the host; True when it found that the command had already ended."""
        target = f"-{pid}" if self.leads_group else str(pid)
        rounds = int(KILL_GRACE_S / 0.1)
        script = _KILL_SCRIPT.format(target=target, pid=pid, ended=ENDED, leftovers=LEFTOVERS, rounds=rounds)
        try:
            result = await conn.run(script, check=False, timeout=KILL_GRACE_S + 8)
        except (asyncssh.Error, OSError, TimeoutError) as exc:
            what = "process group" if self.leads_group else "process"
            self.kill_error = f"could not confirm the remote {what} {pid} was killed: {exc}"
            return False
        said = str(result.stdout or "").split()
        if LEFTOVERS in said:
            self.notes.append(
                f"killed what the command left running on {self.host.name} (its process group {pid}) "
                "after the command itself exited"
            )
        return ENDED in said

    async def close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.wait_closed(), 5)
            self._conn = None
