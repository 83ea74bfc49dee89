"""End to end: `rollback-tui demo` in a real terminal (tmux), driven by keys, read back with capture-pane.

Starts the console script from this venv with a private data dir on its own tmux server, waits for the
three lab replicas to show ok, runs the fanout check with `f`, quits with `q`, and checks that the
cockpit and every lab child it started (replicas, balancer, Redis) are gone.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import pid_alive, require_binary


def require_tmux() -> str:
    return require_binary("tmux")


def descendants(root: int) -> dict[int, str]:
    """Every live process under `root` (by /proc parent links) → its command line."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        commands[int(entry.name)] = cmdline
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in found:
                found[child] = commands[child]
                frontier.append(child)
    return found


class Terminal:
    def __init__(self, tmux: str, socket: str, session: str) -> None:
        self.tmux, self.socket, self.session = tmux, socket, session

    def run(self, *args: str) -> str:
        return subprocess.run(
            [self.tmux, "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        ).stdout

    def start(self, width: int, height: int, command: str) -> None:
        """A detached session of this size running `command`. The server's default size is set to it as
        well: with no client attached, tmux 3.3 falls back to default-size (80x24) when it recalculates
        window sizes (when another session is created, say), resize-window or not."""
        size = ("-x", str(width), "-y", str(height))
        self.run(
            "new-session",
            "-d",
            "-s",
            self.session,
            *size,
            command,
            ";",
            "set",
            "-g",
            "default-size",
            f"{width}x{height}",
        )
        self.run("resize-window", "-t", self.session, *size)  # some tmux ignore new-session's -x/-y

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def wait(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        size = self.run("display-message", "-p", "-t", self.session, "#{window_width}x#{window_height}")
        size = size.strip()
        raise AssertionError(f"timed out waiting for {what}; the screen ({size}):\n{screen}")


def test_demo_in_tmux_fanout_then_quit_leaves_no_processes(terminal: Terminal, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "rollback-tui"
    assert script.exists(), f"console script missing: {script}"
    env = {
        "ROLLBACK_TUI_DATA_DIR": str(tmp_path / "data"),
        "ROLLBACK_TUI_CONFIG_DIR": str(tmp_path / "config"),
        "TERM": "xterm-256color",
    }
    command = "exec env -u COLUMNS -u LINES " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command += f" {shlex.quote(str(script))} demo"
    terminal.start(160, 45, command)
    pid = int(terminal.run("display-message", "-p", "-t", "cockpit", "#{pane_pid}").strip())

    def replicas_ok(screen: str) -> bool:
        rows = [line for line in screen.splitlines() if "✓ ok" in line]
        return all(any(f" {name} " in row for row in rows) for name in ("stable-a", "stable-b", "blue-next"))

    terminal.wait(replicas_ok, 45, "three replicas ok")
    children = descendants(pid)
    lab = {p: c for p, c in children.items() if "rollback_tui.lab" in c}
    assert len(lab) >= 4, children  # three replicas and the balancer (Redis may be embedded)

    terminal.keys("f")
    screen = terminal.wait(lambda s: "FANOUT PASSED" in s or "FANOUT FAILED" in s, 30, "the fanout verdict")
    assert "✓ FANOUT PASSED" in screen, screen

    terminal.keys("q")  # the exit criteria are open: the cockpit asks first
    terminal.wait(lambda s: "Quit anyway (y)" in s and "Still running" in s, 10, "the quit question")
    terminal.keys("y")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (pid_alive(pid) or any(pid_alive(p) for p in children)):
        time.sleep(0.2)
    assert not pid_alive(pid), "the cockpit did not exit on q"
    left = {p: c for p, c in children.items() if pid_alive(p)}
    assert not left, f"orphans left behind: {left}"
    journals = list((tmp_path / "data" / "journals").glob("*.jsonl"))
    assert journals and '"kind":"fanout_result"' in journals[0].read_text().replace(" ", "")
