"""Helpers for the watch and mirror tests: comparing folds, and running a real headless rehearsal."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from rollback_tui.core import events as ev
from rollback_tui.core.resume import fold_journal
from rollback_tui.core.state import SessionState

REPO = Path(__file__).resolve().parent.parent


def state_digest(state: SessionState) -> dict[str, Any]:
    """Everything a fold holds, comparable with ==: two folds of the same events digest alike. (The fanout
    frame log is the only part without value equality: its frames are compared as a list.)"""
    out = {f.name: getattr(state, f.name) for f in fields(state) if f.name != "fanout"}
    fanout = state.fanout
    out["fanout"] = (list(fanout.frames), fanout.frames_total, fanout.sessions, fanout.results)
    return out


def ended_journal(source: Path, path: Path, reason: str = "rehearsal finished") -> Path:
    """`source` (a recorded journal) with its session ended a second after its last event, at `path`."""
    state, _ = fold_journal(source)
    ended = ev.SessionEnded(reason=reason, ts=(state.last_ts or 0) + 1, n=state.last_n + 1)
    path.write_bytes(source.read_bytes() + ended.model_dump_json().encode() + b"\n")
    return path


def start_rehearsal(journal: Path, tmp: Path, *extra: str, watch_s: str = "3") -> subprocess.Popen[str]:
    """`rollback-tui rehearse playbooks/demo.yaml --headless` on the embedded lab, in the background."""
    env = {**os.environ, "ROLLBACK_TUI_DATA_DIR": str(tmp / "data")}
    argv = [sys.executable, "-m", "rollback_tui", "rehearse", "playbooks/demo.yaml", "--headless"]
    argv += ["--journal", str(journal), "--watch", watch_s, "--tick", "no-pr15-blockers=none open", *extra]
    return subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


# A writer in a process of its own: it opens the journal the way the cockpit does (a new Journal filled with a
# recorded session's events, or `resume`), says "writing", then holds it open until it is killed.
_HOLD = """
import sys
from pathlib import Path
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.resume import resume_session

path, source = Path(sys.argv[1]), sys.argv[2]
if source == "--resume":
    journal = resume_session(path, operator="bob")[0]
else:
    journal = Journal(path)
    for event in read_journal(Path(source)).events:
        journal.append(event)
journal.flush(fsync=True)
print("writing", flush=True)
sys.stdin.read()
"""


def start_writer(journal: Path, source: Path | str) -> subprocess.Popen[str]:
    """A process holding `journal` as its writer: filled from the recorded `source`, or "--resume"d. It has
    written everything once this returns; it holds the journal until killed (or its stdin closes)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(journal), str(source)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "writing":
        proc.kill()
        raise AssertionError(f"the writer did not start: {proc.communicate()[1][-2000:]}")
    return proc


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def journal_holds(journal: Path, needle: bytes) -> bool:
    try:
        return needle in journal.read_bytes()
    except FileNotFoundError:
        return False


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


class RedisProcess:
    """A redis-server of a test's own (no persistence), which the test may kill, pause and start again on
    the same port — what a Redis restarted mid-session looks like to the mirror."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        from conftest import require_redis_server
        from rollback_tui.lab.proc import free_port

        self.binary = require_redis_server()
        self.port = free_port()
        self.data_dir = data_dir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        from rollback_tui.lab.bus import redis_server_argv
        from rollback_tui.lab.proc import die_with_parent_hook

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*redis_server_argv(self.binary, self.port, self.data_dir), *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent_hook(),
        )
        wait_for(self.answers, 10, f"redis-server on port {self.port}")
        return self

    def answers(self) -> bool:
        """It replies to PING (with PONG, or with NOAUTH when it wants a password)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64)[:1] in (b"+", b"-")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()
