"""The cockpit's first frame comes before the heavy part, and stays honest about it.

`rollback-tui open|demo` paint a loading screen first (ui/loading.py), then validate the playbook and import
the panes, the engine and pydantic. This checks that what the first frame needs imports none of that (and
that `rollback-tui --help` does not either: the command table in cli/__init__.py lists every command
without importing it), and, on a real pseudo-terminal, that a playbook with errors is shown on that screen,
printed again on the terminal once the app has left it, and exits 2 with nothing journaled and no lab
started; and that quitting while the lab starts leaves nothing behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import DEMO_PLAYBOOK, pid_alive
from rollback_tui.cli import COMMANDS, load_command, short_help
from test_e2e_tmux import descendants

# What the first frame must not wait for: the playbook's validation, the session, the panes, the feeds.
HEAVY = (
    "pydantic",
    "yaml",
    "redis",
    "httpx",
    "asyncssh",
    "rollback_tui.playbook.model",
    "rollback_tui.playbook.load",
    "rollback_tui.session.engine",
    "rollback_tui.ui.panes",
    "rollback_tui.ui.screens",
)
# What `rollback-tui open` and `demo` import before their first frame.
FIRST_FRAME = [
    "rollback_tui.__main__",
    "rollback_tui.cli.cockpit",
    "rollback_tui.ui.app",
    "rollback_tui.ui.loading",
]


def run_and_list(code: str, prefixes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Run `code` in a fresh interpreter: what it printed, and the modules under `prefixes` it imported."""
    listing = f"sorted(m for m in sys.modules if m.startswith({prefixes!r}))"
    script = f"import json, sys\n{code}\nprint(json.dumps({listing}))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    *printed, modules = out.stdout.splitlines()
    return printed, json.loads(modules)


def test_what_the_first_frame_needs_imports_nothing_heavy() -> None:
    code = f"import importlib\nfor name in {FIRST_FRAME!r}: importlib.import_module(name)"
    assert run_and_list(code, HEAVY)[1] == []


def test_help_lists_every_command_without_importing_any() -> None:
    code = (
        "from rollback_tui.cli import main\n"
        "try:\n    main(['--help'], prog_name='rollback-tui')\nexcept SystemExit:\n    pass"
    )
    printed, loaded = run_and_list(code, (*HEAVY, "rollback_tui.cli."))
    assert loaded == []
    listed = dict(line.split(maxsplit=1) for line in printed[printed.index("Commands:") + 1 :])
    assert sorted(listed) == sorted(COMMANDS)
    for name, shown in listed.items():  # shortened to the terminal's width as click does
        assert COMMANDS[name][1].startswith(shown.removesuffix("...")), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_command_table_says_what_each_command_says(name: str) -> None:
    """The table's help is the command's own first sentence, so `--help` lists what each command says."""
    command = load_command(name)
    assert command.name == name
    assert short_help(name, 200) == command.get_short_help_str(200)


# --- on a real terminal ----------------------------------------------------------------------------

ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|[=>NOPMc78])")
LEAVE_ALT_SCREEN = b"\x1b[?1049l"


class Terminal:
    """`rollback-tui ARGS` on a pseudo-terminal of 120x35 (stdin, stdout, stderr: Textual draws on stderr)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        script = Path(sys.executable).with_name("rollback-tui")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: size its terminal before Textual asks for it
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 35, 120, 0, 0))
            os.execve(script, [str(script), *args], env)
        self.output = b""
        self.status: int | None = None

    def text(self) -> str:
        return ANSI.sub(b"", self.output).decode(errors="replace")

    def _read(self, timeout: float) -> bool:
        """Read what is there; False once the terminal is closed (the program exited)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return False
            if not chunk:
                return False
            self.output += chunk
        return True

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.text()):
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(
                    f"no {what} within {timeout} s; the terminal said:\n{self.text()[-2000:]}"
                )

    def keys(self, data: bytes) -> None:
        os.write(self.fd, data)

    def exit_status(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.1):
            pass
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.05)
        raise AssertionError(f"still running after {timeout} s:\n{self.text()[-2000:]}")

    def after_exit(self) -> str:
        """What was printed once the app had left the alternate screen."""
        return ANSI.sub(b"", self.output.rsplit(LEAVE_ALT_SCREEN, 1)[-1]).decode(errors="replace")

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "ROLLBACK_TUI_DATA_DIR": str(tmp_path / "data"),
        "ROLLBACK_TUI_CONFIG_DIR": str(tmp_path / "config"),
    }

    def start(*args: str) -> Terminal:
        opened.append(Terminal(list(args), env))
        return opened[-1]

    yield start
    for term in opened:
        term.close()


def nothing_journaled(tmp_path: Path) -> bool:
    journals = tmp_path / "data" / "journals"
    return not journals.exists() or not any(journals.iterdir())


@pytest.mark.parametrize("command", ["open", "demo"])
def test_a_bad_playbook_is_shown_on_the_first_screen_then_printed_and_exits_2(
    terminal: Callable[..., Terminal], tmp_path: Path, command: str
) -> None:
    bad = tmp_path / "bad.yaml"
    text = DEMO_PLAYBOOK.read_text().replace("role: candidate", "role: canary", 1)
    bad.write_text(text)
    line = text.splitlines().index("    role: canary") + 1
    located = f"{bad}:{line}:11: replicas[2].role:"
    term = terminal(*(["open", str(bad)] if command == "open" else ["demo", "--playbook", str(bad)]))

    # The loading screen names the playbook, then shows its errors and waits for a key.
    term.wait_for(lambda s: f"opening {bad}" in s, 20, "loading screen")
    term.wait_for(lambda s: located in s and "Press any key to exit" in s, 20, "error on the loading screen")
    assert pid_alive(term.pid) and descendants(term.pid) == {}, "a lab was started for an invalid playbook"
    assert nothing_journaled(tmp_path)

    term.keys(b"x")
    assert term.exit_status(10) == 2
    printed = term.after_exit()
    assert located in printed, printed
    assert nothing_journaled(tmp_path)


def test_quitting_while_the_lab_starts_leaves_nothing_behind(
    terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    term = terminal("demo")
    term.wait_for(lambda s: "starting the lab for demo" in s, 30, "the lab starting")
    deadline = time.monotonic() + 20
    while not (children := descendants(term.pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert children, "no lab process started"
    term.keys(b"q")  # still opening (the lab waits for its replicas): q quits without asking
    assert term.exit_status(30) == 1
    assert "Quit before the session opened: nothing was journaled." in term.after_exit()
    assert nothing_journaled(tmp_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_alive(p) for p in children):
        time.sleep(0.1)
    assert not [c for p, c in children.items() if pid_alive(p)], "lab processes left behind"


def test_a_journal_that_holds_a_session_is_refused_on_the_first_screen_and_nothing_is_left_running(
    terminal: Callable[..., Terminal], tmp_path: Path
) -> None:
    """`demo --journal FILE` on a journal that already holds a session crashed the cockpit with a traceback
    of its locals (the playbook, the redactor) after the lab had started — and left the lab to its fate.
    It is refused like a bad playbook: said on the loading screen, printed, exit 2, the lab stopped, the
    journal untouched. Headless says it in one line."""
    journal = tmp_path / "taken.jsonl"
    journal.write_bytes(b'{"kind":"session_started","n":1,"ts":1767268800.0,"playbook":"x"}\n')
    before = journal.read_bytes()
    term = terminal("demo", "--journal", str(journal))
    said = "error: cannot open the journal"
    term.wait_for(lambda s: said in s and "Press any key to exit" in s, 60, "the refusal on screen")
    assert descendants(term.pid) == {}, "the lab was left running"
    term.keys(b"x")
    assert term.exit_status(10) == 2
    printed = term.after_exit()
    assert f"{said}: {journal} already holds a session; use `rollback-tui resume`" in printed, printed
    assert "Traceback" not in printed and "locals" not in printed, printed
    assert journal.read_bytes() == before

    headless = subprocess.run(
        [sys.executable, "-m", "rollback_tui", "rehearse", "--headless", str(DEMO_PLAYBOOK), "--journal",
         str(journal)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env={**os.environ, "ROLLBACK_TUI_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert headless.returncode == 2, headless.stderr
    assert said in headless.stderr and "Traceback" not in headless.stderr, headless.stderr
    assert journal.read_bytes() == before
