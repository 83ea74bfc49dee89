"""End to end (issue 14): the production rollback run from the cockpit in a real terminal (tmux), against
stand-in `railway`, `gh`, `git`, `npm`, `npx` and `node` first on PATH and a stand-in production API
(tests/standins.py) — real processes, real HTTP, keys typed into the terminal.

The operator captures the last known good commit, redeploys web, api and worker, relaxes the one optional
flag while the protected ones are verified unchanged, inspects and replays the dead letters and runs the
validation gates — each change through its typed confirmation — then exports, and the report says all of it.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import holds_secret
from rollback_tui.core import events as ev
from rollback_tui.core.journal import read_journal
from standins import (
    DATABASE_URL,
    LAST_GOOD,
    RAILWAY_TOKEN,
    ProductionApi,
    StandIns,
    api_server,
    production_playbook,
)
from test_e2e_tmux import Terminal
from test_production_rehearsal import changing_calls

pytestmark = pytest.mark.integration


@pytest.fixture
def api() -> Iterator[ProductionApi]:
    yield from api_server()


class Session:
    """The cockpit in tmux, read back from its screen and its journal."""

    def __init__(self, terminal: Terminal, journal: Path) -> None:
        self.terminal = terminal
        self.journal = journal

    def events(self) -> list[ev.Event]:
        return read_journal(self.journal).events if self.journal.exists() else []

    def wait_journal(self, predicate: Callable[[list[ev.Event]], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events()):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; the screen:\n{self.terminal.screen()}")

    def wait_screen(self, text: str, timeout: float = 20) -> str:
        return self.terminal.wait(lambda s: text in s, timeout, repr(text))

    def type(self, text: str, *then: str) -> None:
        self.terminal.run("send-keys", "-t", "cockpit", "-l", text)
        if then:
            self.terminal.keys(*then)

    def palette(self, entry: str) -> None:
        """Run a command palette entry by its title."""
        self.terminal.keys(":")
        self.wait_screen("Search for commands")
        self.type(entry)
        self.wait_screen(entry)
        self.terminal.keys("Enter")

    def confirm(self, name: str, *shows: str) -> str:
        """Type an action's name into its confirmation once it shows its prompt and `shows` in one capture
        (tmux can be caught mid-frame: the prompt drawn, the preview or the rows below it not yet); returns
        the preview the operator saw."""
        wanted = (f"Type {name} to confirm", *shows)
        shown = self.terminal.wait(lambda s: all(w in s for w in wanted), 30, repr(wanted))
        self.type(name, "Enter")
        return shown

    def answer(self, step: str, item: int, note: str) -> None:
        """Answer a manual task's prompt (its title names the step and item: the pane shows the text too)."""
        self.wait_screen(f"Manual task — step {step}, item {item}", 30)
        self.type(note, "Enter")

    def step_done(self, step: str, items: int, timeout: float = 60) -> None:
        def finished(events: list[ev.Event]) -> bool:
            done = {e.index for e in events if e.kind == "step_item_finished" and e.step == step}
            return len(done) >= items

        self.wait_journal(finished, timeout, f"step {step}'s {items} items")


def test_the_production_rollback_from_the_cockpit_in_tmux(
    terminal: Terminal, tmp_path: Path, api: ProductionApi
) -> None:
    standins = StandIns(tmp_path / "standins", api.url)
    playbook = production_playbook(tmp_path / "production.yaml", api.url)
    journal = tmp_path / "session.jsonl"
    project = tmp_path / "project"
    project.mkdir()
    env = standins.env(
        ROLLBACK_TUI_DATA_DIR=str(tmp_path / "data"),
        ROLLBACK_TUI_CONFIG_DIR=str(tmp_path / "config"),
        TERM="xterm-256color",
    )
    script = Path(sys.executable).parent / "rollback-tui"
    # Not COLUMNS/LINES: an xdist worker has them (80x24), and exported after `env -u` they sized the
    # cockpit 80x24 inside the 160x45 window (its confirmation then scrolled the preview out of sight).
    exports = " ".join(
        f"{k}={shlex.quote(v)}" for k, v in env.items() if k.isidentifier() and k not in ("COLUMNS", "LINES")
    )
    command = (
        f"cd {shlex.quote(str(project))} && exec env -u COLUMNS -u LINES {exports} {shlex.quote(str(script))}"
    )
    command += f" open {shlex.quote(str(playbook))} --journal {shlex.quote(str(journal))} --operator alice"
    terminal.start(160, 45, command)
    session = Session(terminal, journal)

    def footer(screen: str) -> str:
        return next((line for line in reversed(screen.splitlines()) if line.strip()), "")

    # The production playbook offers what it has: no fanout, traffic or selector rollback keys.
    shown = footer(terminal.wait(lambda s: "Actions" in footer(s), 45, "the footer"))
    assert "Fanout" not in shown and "Rollback" not in shown, shown

    session.palette("Run step 1: identify-last-known-good")
    session.step_done("identify-last-known-good", 5)

    session.palette("Run step 2: roll-back-code")
    session.confirm("redeploy-last-known-good", f"{{commit}} is {LAST_GOOD}", "railway up --project")
    session.answer("roll-back-code", 2, "no migration in this release")
    session.step_done("roll-back-code", 3, timeout=120)

    session.palette("Run step 3: stabilise-runtime-flags")
    session.answer("stabilise-runtime-flags", 1, "checked in the railway variables")
    session.step_done("stabilise-runtime-flags", 2)
    session.palette("Run action: stabilise-flags")  # the optional change, as the operator's choice
    flags = ("S3_STARTUP_CHECK_STRICT true → false", "CSRF_PROTECTION true (must stay on)")
    session.confirm("stabilise-flags", *flags)
    session.wait_journal(
        lambda es: any(e.kind == "action_finished" and e.action == "stabilise-flags" for e in es),
        60,
        "the flag change",
    )

    session.palette("Run step 4: queue-recovery")
    session.answer("queue-recovery", 3, "poison payload filtered")
    session.confirm("replay-dead-letters")
    session.step_done("queue-recovery", 7, timeout=120)

    session.palette("Run step 6: validate")
    session.answer("validate", 3, "all four by hand")
    session.step_done("validate", 4, timeout=120)

    terminal.keys("e")
    session.wait_journal(lambda es: any(e.kind == "export_written" for e in es), 60, "the export")
    terminal.keys("q")  # the exit criteria are not all met: the cockpit asks, and says the verdict
    session.wait_screen("Quit anyway (y)")
    terminal.keys("y")
    session.wait_journal(lambda es: any(e.kind == "session_ended" for e in es), 30, "the session's end")

    calls = changing_calls(standins)
    services = [c[c.index("--service") + 1] for c in calls if c[:2] == ["railway", "up"]]
    assert services == ["web", "api", "worker"], calls
    assert ["git", "worktree", "add", "--force", "--detach", ".rollback/last-known-good", LAST_GOOD] in calls
    flag_sets = [c for c in calls if "--set" in c]
    assert [c[-1] for c in flag_sets] == ["S3_STARTUP_CHECK_STRICT=false"], flag_sets
    assert ["npm", "run", "ops:replay-dead-letters", "--", "--from-source-payload"] in calls
    assert api.commit == LAST_GOOD and api.dead_letter_count == 0
    state = standins.read_state()
    assert all(
        state["variables"][f] == "true" for f in ("AUTH_REQUIRED", "SESSION_COOKIE_SECURE", "CSRF_PROTECTION")
    )

    events = read_journal(journal).events
    confirmed = [(e.action, e.actor, e.via) for e in events if e.kind == "action_confirmed"]
    assert confirmed == [
        ("redeploy-last-known-good", "alice", "typed"),
        ("stabilise-flags", "alice", "typed"),
        ("replay-dead-letters", "alice", "typed"),
    ]
    notes = [e.note for e in events if e.kind == "step_item_finished" and e.note]
    assert "no migration in this release" in notes and "all four by hand" in notes
    directory = Path(next(e.directory for e in events if e.kind == "export_written"))
    report = (directory / "report.md").read_text()
    for service in ("web", "api", "worker"):
        assert f"Action redeploy-last-known-good ({service}) passed" in report
        assert state["deployments"][service][-1] in report  # the new deployment ids, as facts
    assert LAST_GOOD in report and "S3_STARTUP_CHECK_STRICT" in report
    assert "replay-dead-letters" in report and "Gate smoke passed" in report
    for text in (journal.read_text(), report):
        assert not holds_secret(text, RAILWAY_TOKEN) and not holds_secret(text, DATABASE_URL)
