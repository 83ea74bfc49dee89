"""Remote gates over real SSH: asyncssh's own server in-process, and OpenSSH sshd when installed.

Both servers run the requested command as a real subprocess in its own session, like sshd, and
neither kills it when the channel closes — so these tests prove the runner itself leaves no remote
process behind on timeout or cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from conftest import live_processes
from rollback_tui.actions.gates import GateRunner
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.redact import Redactor
from rollback_tui.exec.supervise import run_capture
from rollback_tui.lab.proc import free_port
from rollback_tui.playbook.model import CommandSpec, Playbook
from test_gates_local import SPLICE_BAIT, assert_expanded_by_the_shell, script_reading

SSHD = "/usr/sbin/sshd"


def live_with_cmdline(needle: str) -> list[int]:
    return live_processes(lambda cmdline: cmdline.strip() == needle)


def write_key(key: asyncssh.SSHKey, path: Path) -> Path:
    key.write_private_key(str(path))
    path.chmod(0o600)
    return path


@dataclass
class Server:
    port: int
    host_key: asyncssh.SSHKey
    key_file: Path
    known_hosts: Path
    children: list[int]  # in-process server only: PIDs it spawned, for teardown hygiene

    def host(self, **kw: object) -> dict:
        return {
            "name": "box",
            "host": "127.0.0.1",
            "port": self.port,
            "user": os.environ.get("USER") or "root",
            "key_file": str(self.key_file),
            "use_agent": False,
            "known_hosts": str(self.known_hosts),
            "connect_timeout_s": 5,
            **kw,
        }


def known_hosts_line(port: int, key: asyncssh.SSHKey) -> str:
    return f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n"


def playbook(host: dict, *gates: dict) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "t",
            "title": "t",
            "replicas": [{"name": "a", "url": "http://127.0.0.1:1", "role": "stable"}],
            "hosts": [host],
            "gates": [{"title": g["name"], "where": "box", **g} for g in gates],
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
        }
    )


class Session:
    def __init__(self, tmp_path: Path, book: Playbook, env: dict[str, str] | None = None) -> None:
        self.path = tmp_path / "journal.jsonl"
        self.journal = Journal(self.path, Redactor())
        self.events: list[ev.Event] = []
        self.runner = GateRunner(book, self.emit, artefact_dir=tmp_path / "art", env=env or dict(os.environ))

    def emit(self, event: ev.Event) -> ev.Event:
        event = self.journal.append(event)
        self.events.append(event)
        return event

    def lines(self, gate: str) -> list[str]:
        return [e.line for e in self.events if isinstance(e, ev.GateOutput) and e.gate == gate]


# --- asyncssh's own server, in-process -------------------------------------------------------------


@pytest.fixture
async def ssh_server(tmp_path: Path) -> AsyncIterator[Server]:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    children: list[int] = []
    handlers: set[asyncio.Task[None]] = set()

    async def run_command(process: asyncssh.SSHServerProcess) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        env = {**os.environ, **{str(k): str(v) for k, v in process.env.items()}}
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            process.command or "",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # as sshd does: the shell leads its own session and group
            env=env,
        )
        children.append(proc.pid)

        async def pump(reader: asyncio.StreamReader, writer: asyncssh.SSHWriter) -> None:
            while data := await reader.read(65536):
                with contextlib.suppress(Exception):
                    writer.write(data)

        await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))  # type: ignore[arg-type]
        code = await proc.wait()
        with contextlib.suppress(Exception):
            process.exit(code if code >= 0 else 128 - code)

    server = await asyncssh.create_server(
        asyncssh.SSHServer,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(client_key.export_public_key().decode()),
        process_factory=run_command,
        encoding=None,
    )
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(port, host_key))
    yield Server(port, host_key, write_key(client_key, tmp_path / "id_client"), known, children)
    server.close()
    await server.wait_closed()
    for pid in children:  # hygiene only: assertions about leftovers happen inside the tests
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for task in handlers:
        task.cancel()


async def test_remote_pass_fail_and_streamed_output(tmp_path: Path, ssh_server: Server) -> None:
    book = playbook(
        ssh_server.host(),
        {"name": "ok", "argv": ["sh", "-c", "echo first; sleep 0.8; echo second >&2"]},
        {"name": "bad", "argv": ["sh", "-c", "echo nope; exit 4"]},
        {"name": "spaces", "argv": ["printf", "%s|", "a b", "it's"], "cwd": "/tmp"},
    )
    s = Session(tmp_path, book)
    ok = await s.runner.run("ok")
    assert ok.outcome == "passed" and ok.exit_code == 0
    assert s.lines("ok") == ["first", "second"]  # the PID prologue is not output
    first = next(e for e in s.events if isinstance(e, ev.GateOutput) and e.line == "first")
    assert ok.ts - first.ts > 0.5  # streamed while the command was still running

    bad = await s.runner.run("bad")
    assert bad.outcome == "failed" and bad.exit_code == 4 and s.lines("bad") == ["nope"]

    spaces = await s.runner.run("spaces")  # shlex.join keeps argv boundaries and quotes intact
    assert spaces.outcome == "passed" and s.lines("spaces") == ["a b|it's|"]
    started = [e for e in read_journal(s.path).events if isinstance(e, ev.GateStarted)]
    assert {e.where for e in started} == {"box"}


async def test_remote_env_travels_as_ssh_env_not_argv(tmp_path: Path, ssh_server: Server) -> None:
    gate = {"name": "env", "argv": ["sh", "-c", 'echo "v=$GATE_VALUE"'], "env": {"GATE_VALUE": "${RTUI_V}"}}
    s = Session(tmp_path, playbook(ssh_server.host(), gate), env={**os.environ, "RTUI_V": "hello-env"})
    finished = await s.runner.run("env")
    assert finished.outcome == "passed"
    assert s.lines("env") == ["v=***"]  # the value arrived, and being a ${VAR} value it is masked


async def test_remote_timeout_kills_the_remote_process_group(tmp_path: Path, ssh_server: Server) -> None:
    script = "sleep 3271 & exec sleep 3272"
    s = Session(
        tmp_path, playbook(ssh_server.host(), {"name": "hang", "argv": ["sh", "-c", script], "timeout_s": 1})
    )
    t0 = time.monotonic()
    finished = await s.runner.run("hang")
    assert finished.outcome == "timed_out", finished
    assert time.monotonic() - t0 < 8
    assert live_with_cmdline("sleep 3271") == [] and live_with_cmdline("sleep 3272") == []


async def test_remote_command_ending_at_its_timeout_is_what_it_was(
    tmp_path: Path, ssh_server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # A command that ends as its timeout fires: kill() ran the kill script on a process the host had
    # already reaped (its bare-PID fallback could then hit another process that got the number) and the
    # gate read "timed_out" with exit 0 and its whole output, though nothing was stopped. Now a command
    # that ended on its own is reported as it ended, one that was stopped as timed out.
    book = playbook(ssh_server.host())
    durations = [0.9 + i * 0.005 for i in range(40)]  # around the 1 s limit, all at once: jitter

    async def one(duration: float) -> tuple[str, int | None, str]:
        spec = CommandSpec(argv=["sh", "-c", f"sleep {duration:.3f}; echo done"], where="box", timeout_s=1)
        result = await run_capture(spec, book)
        return result.outcome, result.exit_code, result.stdout

    with caplog.at_level(logging.WARNING):
        results = await asyncio.gather(*(one(d) for d in durations))
    for duration, (outcome, code, stdout) in zip(durations, results, strict=True):
        ended = (outcome, code, stdout) == ("passed", 0, "done")
        stopped = outcome == "timed_out" and code not in (0, None) and stdout == ""
        assert ended or stopped, (duration, outcome, code, stdout)
    assert [r.getMessage() for r in caplog.records] == []


async def test_remote_command_that_ended_leaving_a_process_behind_is_what_it_was(
    tmp_path: Path, ssh_server: Server
) -> None:
    # The command ends at once; a process it started holds its output open until the limit, when it is
    # killed with the command's group. The gate ran to its end (exit 0): not a timeout, and the kill of
    # what it left behind is said (locally the reaper notes the same).
    gate = {"name": "bg", "argv": ["sh", "-c", "sleep 3301 & echo done"], "timeout_s": 1}
    s = Session(tmp_path, playbook(ssh_server.host(), gate))
    finished = await s.runner.run("bg")
    assert (finished.outcome, finished.exit_code) == ("passed", 0), finished
    done, note = s.lines("bg")
    assert done == "done" and note.startswith("[rollback-tui] killed what the command left running on box")
    assert live_with_cmdline("sleep 3301") == []


async def test_remote_cancel_kills_the_remote_command(tmp_path: Path, ssh_server: Server) -> None:
    s = Session(
        tmp_path,
        playbook(ssh_server.host(), {"name": "slow", "argv": ["sh", "-c", "echo up; exec sleep 3281"]}),
    )
    task = asyncio.create_task(s.runner.run("slow"))
    for _ in range(100):
        if s.lines("slow"):
            break
        await asyncio.sleep(0.05)
    assert live_with_cmdline("sleep 3281") != []  # really running remotely before the cancel
    assert s.runner.cancel("slow")
    finished = await asyncio.wait_for(task, 15)
    assert finished.outcome == "cancelled"
    assert live_with_cmdline("sleep 3281") == []


async def test_unknown_host_key_is_refused(tmp_path: Path, ssh_server: Server) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "other_known_hosts"
    known.write_text(f"192.0.2.1 {other.export_public_key().decode()}")
    marker = tmp_path / "ran"
    book = playbook(ssh_server.host(known_hosts=str(known)), {"name": "g", "argv": ["touch", str(marker)]})
    s = Session(tmp_path, book)
    finished = await s.runner.run("g")
    assert finished.outcome == "error"
    assert finished.error == (
        f"host key for 127.0.0.1:{ssh_server.port} is not in {known} — refusing (add it, or set host_key_pin)"
    )
    assert not marker.exists()


async def test_changed_host_key_is_refused(tmp_path: Path, ssh_server: Server) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    known = tmp_path / "stale_known_hosts"
    known.write_text(known_hosts_line(ssh_server.port, impostor))
    marker = tmp_path / "ran"
    book = playbook(ssh_server.host(known_hosts=str(known)), {"name": "g", "argv": ["touch", str(marker)]})
    s = Session(tmp_path, book)
    finished = await s.runner.run("g")
    assert finished.outcome == "error"
    assert finished.error == f"host key for 127.0.0.1:{ssh_server.port} does not match {known} — refusing"
    assert not marker.exists()
    s.journal.close()
    assert "does not match" in s.path.read_text()


async def test_missing_known_hosts_file_is_refused(tmp_path: Path, ssh_server: Server) -> None:
    book = playbook(ssh_server.host(known_hosts=str(tmp_path / "absent")), {"name": "g", "argv": ["true"]})
    finished = await Session(tmp_path, book).runner.run("g")
    assert finished.outcome == "error" and "not found — refusing" in (finished.error or "")


async def test_pinned_host_key_accepted_wrong_pin_refused(tmp_path: Path, ssh_server: Server) -> None:
    pin = ssh_server.host_key.get_fingerprint("sha256")
    assert pin.startswith("SHA256:")
    absent = str(tmp_path / "absent")  # the pin replaces known_hosts entirely
    good = playbook(
        ssh_server.host(host_key_pin=pin, known_hosts=absent), {"name": "g", "argv": ["echo", "pinned"]}
    )
    s = Session(tmp_path / "good", good)
    finished = await s.runner.run("g")
    assert finished.outcome == "passed" and s.lines("g") == ["pinned"]

    wrong_pin = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    bad = playbook(
        ssh_server.host(host_key_pin=wrong_pin, known_hosts=absent), {"name": "g", "argv": ["true"]}
    )
    finished = await Session(tmp_path / "bad", bad).runner.run("g")
    assert finished.outcome == "error"
    assert f"does not match the pinned {wrong_pin} — refusing" in (finished.error or "")


async def test_auth_failure_and_unreachable_host_are_clear_errors(tmp_path: Path, ssh_server: Server) -> None:
    stranger = write_key(asyncssh.generate_private_key("ssh-ed25519"), tmp_path / "id_stranger")
    book = playbook(ssh_server.host(key_file=str(stranger)), {"name": "g", "argv": ["true"]})
    finished = await Session(tmp_path / "a", book).runner.run("g")
    assert finished.outcome == "error" and "authentication as" in (finished.error or "")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    book = playbook(ssh_server.host(port=closed_port), {"name": "g", "argv": ["true"]})
    finished = await Session(tmp_path / "b", book).runner.run("g")
    assert finished.outcome == "error" and f"127.0.0.1:{closed_port} failed" in (finished.error or "")


async def test_run_capture_over_ssh(ssh_server: Server) -> None:
    book = playbook(ssh_server.host())
    result = await run_capture(CommandSpec(argv=["echo", "commit abc123"], where="box"), book)
    assert (result.outcome, result.exit_code, result.stdout) == ("passed", 0, "commit abc123")


# --- real OpenSSH sshd ------------------------------------------------------------------------------


@pytest.fixture
def openssh(tmp_path: Path) -> Iterator[Server]:
    if not Path(SSHD).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SSHD} is missing on CI: .ci/run must install openssh-server")
        pytest.skip(f"{SSHD} not installed")
    if not Path("/run/sshd").is_dir():  # sshd's privilege-separation directory
        if os.geteuid() != 0:
            pytest.skip("/run/sshd missing and not root")
        Path("/run/sshd").mkdir(mode=0o755)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    host_key_file = write_key(host_key, tmp_path / "ssh_host_ed25519_key")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(client_key.export_public_key().decode())
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key_file}",
                f"PidFile {tmp_path / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "AcceptEnv GATE_*",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {proc.stderr.read() if proc.stderr else ''}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                pytest.fail("sshd did not start listening")
            time.sleep(0.05)
        known = tmp_path / "known_hosts"
        known.write_text(known_hosts_line(port, host_key))
        yield Server(port, host_key, write_key(client_key, tmp_path / "id_client"), known, [])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


async def test_openssh_gate_runs_streams_and_passes_env(tmp_path: Path, openssh: Server) -> None:
    gate = {
        "name": "sshd",
        "argv": ["sh", "-c", 'echo "hello from $(id -un)"; echo "g=$GATE_MODE"; exit 0'],
        "env": {"GATE_MODE": "rehearsal"},
    }
    s = Session(tmp_path, playbook(openssh.host(), gate))
    finished = await s.runner.run("sshd")
    assert finished.outcome == "passed", finished
    assert s.lines("sshd") == [f"hello from {openssh.host()['user']}", "g=rehearsal"]


async def test_openssh_refuses_a_changed_host_key(tmp_path: Path, openssh: Server) -> None:
    known = tmp_path / "stale"
    known.write_text(known_hosts_line(openssh.port, asyncssh.generate_private_key("ssh-ed25519")))
    book = playbook(openssh.host(known_hosts=str(known)), {"name": "g", "argv": ["true"]})
    finished = await Session(tmp_path, book).runner.run("g")
    assert finished.outcome == "error" and "does not match" in (finished.error or "")


async def test_openssh_timeout_leaves_no_remote_process(tmp_path: Path, openssh: Server) -> None:
    gate = {"name": "hang", "argv": ["sh", "-c", "sleep 3291 & exec sleep 3292"], "timeout_s": 1}
    s = Session(tmp_path, playbook(openssh.host(), gate))
    finished = await s.runner.run("hang")
    assert finished.outcome == "timed_out", finished
    try:
        for _ in range(20):  # sshd reaps asynchronously; allow a moment
            if not live_with_cmdline("sleep 3291") and not live_with_cmdline("sleep 3292"):
                break
            await asyncio.sleep(0.1)
        assert live_with_cmdline("sleep 3291") == [] and live_with_cmdline("sleep 3292") == []
    finally:  # if the runner failed, do not leave the sleeps behind for the rest of the suite
        for pid in live_with_cmdline("sleep 3291") + live_with_cmdline("sleep 3292"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


async def test_openssh_a_secret_in_a_shell_script_travels_as_ssh_env_never_in_the_command(
    tmp_path: Path, openssh: Server
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    gate = {"name": "tok", "argv": ["sh", "-c", script_reading("GATE_TOKEN")], "cwd": str(work)}
    s = Session(tmp_path, playbook(openssh.host(), gate), env={**os.environ, "GATE_TOKEN": SPLICE_BAIT})
    finished = await s.runner.run("tok")
    assert finished.outcome == "passed", finished
    assert_expanded_by_the_shell(work, "GATE_TOKEN")  # by the remote shell, from its SSH environment


async def test_openssh_a_script_variable_the_server_does_not_accept_is_an_error(
    tmp_path: Path, openssh: Server
) -> None:
    # sshd_config accepts GATE_* only: RTUI_TOKEN is dropped, and the script must not run without it.
    gate = {"name": "tok", "argv": ["sh", "-c", 'touch started; echo "${RTUI_TOKEN}"'], "cwd": str(tmp_path)}
    s = Session(tmp_path, playbook(openssh.host(), gate), env={**os.environ, "RTUI_TOKEN": "v"})
    finished = await s.runner.run("tok")
    assert finished.outcome == "error", finished
    assert finished.error == (
        "environment variable RTUI_TOKEN did not reach box: its SSH server must accept it "
        "(sshd_config: AcceptEnv RTUI_TOKEN)"
    )
    assert not (tmp_path / "started").exists()
