"""Readiness in the cockpit (issue 14 item 4, the cockpit's side): one key opens what the journaled check says
cannot run from here and why, `r` there checks again through the engine, and the Runbook pane, the gates
table and the actions list mark such an item before anyone presses Enter. The checks are real: a program
that is not on PATH, a variable that is not set."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest
from textual.widgets import OptionList, Static

from rollback_tui.core.follow import FileFollower
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.redact import Redactor
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine
from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.screens.actions import ActionsScreen
from rollback_tui.ui.screens.readiness import ReadinessScreen
from rollback_tui.ui.watch import WatchApp
from test_ui import flat, gate_rows, pane_text, plain, wait_for
from test_ui_support import demo_playbook

SIZE = (160, 45)
MISSING = "rollback-tui-test-no-such-binary"
UNSET = "ROLLBACK_TUI_TEST_UNSET_TOKEN"
TOOL = "ROLLBACK_TUI_TEST_TOOL"
SECRET = "s3cr3t-tools-4711"
WHY = f"binary {MISSING} missing (not on PATH)"


@pytest.fixture
def tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real program, reached through `${ROLLBACK_TUI_TEST_TOOL}`: its path (a secret) is what the check
    reports as present."""
    path = tmp_path / SECRET / "tool"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\nprint('ok')\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(TOOL, str(path))
    monkeypatch.delenv(UNSET, raising=False)
    assert not any((Path(d) / MISSING).exists() for d in os.environ["PATH"].split(os.pathsep))
    return path


def unready_playbook() -> Playbook:
    """The lab playbook whose first step's gates need a program that is not installed and a variable that
    is not set (and one that is all here), with an action that needs the missing program too."""
    doc = demo_playbook().model_dump()
    doc["gates"] = [
        {"name": "release-gates", "title": "Release gates", "argv": [MISSING, "release-gates-surreal"]},
        {"name": "api-tests", "title": "API tests", "argv": [sys.executable, "-c", "pass", f"${{{UNSET}}}"]},
        {"name": "tools", "title": "Our tool", "argv": [f"${{{TOOL}}}"]},
    ]
    doc["actions"].append(
        {"kind": "command", "name": "page-owner", "title": "Page the owner", "command": {"argv": [MISSING]}}
    )
    doc["steps"][0]["do"] = [{"gate": "release-gates"}, {"gate": "api-tests"}, {"gate": "tools"}]
    return Playbook.model_validate(doc)


def unready_engine(tmp_path: Path) -> Engine:
    journal = Journal(tmp_path / "j.jsonl", Redactor([SECRET]))
    return Engine(unready_playbook(), journal, operator="alice")


def readiness_text(app: CockpitApp) -> str:
    screen = app.screen
    assert isinstance(screen, ReadinessScreen)
    return "\n".join(plain(screen.query_one(f"#readiness-{part}", Static)) for part in ("head", "body"))


def item_lines(text: str, item: str) -> str:
    """The readiness table's lines for `item` (`✗ gate smoke`, then a line per need), flattened."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[1:] == item.split())
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip()[:1] in ("✓", "✗")), len(lines))
    return flat("\n".join(lines[start:end]))


async def test_y_opens_readiness_r_checks_again_through_the_journal_and_escape_closes(
    tmp_path: Path, tool: Path
) -> None:
    engine = unready_engine(tmp_path)
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "cannot run" not in pane_text(app, "steps")  # nothing checked: nothing claimed either way
        assert "ready" not in plain(app.query_one("#status", Static))
        await pilot.press("y")
        await pilot.pause()
        assert "No readiness check journaled yet" in readiness_text(app)

        await pilot.press("r")  # a new check, through the engine, journaled
        await wait_for(pilot, lambda: engine.state.readiness is not None, what="the readiness check")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = readiness_text(app)
        head = shown.splitlines()[0]
        assert head.startswith("✗ ") and "items cannot run from" in head, head
        # A check under a second reads in ms ("in 0.0 s" said nothing), one space around each separator.
        assert re.search(r" · checked \d\d:\d\d:\d\d in \d+(\.\d)? ms$", head) and "  " not in head, head
        lines = [line for line in shown.splitlines() if line.strip()]
        first = next(i for i, line in enumerate(lines) if line.split()[:1] == ["Item"]) + 1
        assert lines[first].lstrip().startswith("✗"), lines[first]  # what cannot run comes first
        release = item_lines(shown, "gate release-gates")
        assert release == f"✗ gate release-gates binary {MISSING} missing not on PATH", release
        api = item_lines(shown, "gate api-tests")
        assert f"env {UNSET} missing not set in this environment" in api, api
        tools = item_lines(shown, "gate tools")
        assert tools.startswith("✓ gate tools") and f"binary ${{{TOOL}}} present" in tools, tools
        assert SECRET not in shown and str(tool.parent) not in shown  # the program's path is a secret here

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.cockpit
        assert "2 cannot run (y)" in str(app.cockpit.panes["steps"].border_subtitle)  # the pane follows
    engine.journal.flush()
    kinds = [e.kind for e in read_journal(engine.journal.path).events]
    assert kinds.count("readiness_checked") == 1
    assert SECRET not in engine.journal.path.read_text()


async def test_the_runbook_gates_and_actions_mark_what_cannot_run_before_it_runs(
    tmp_path: Path, tool: Path
) -> None:
    engine = unready_engine(tmp_path)
    await engine.readiness()  # the session's check at its start, journaled
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "2 cannot run (y)" in str(app.cockpit.panes["steps"].border_subtitle)
        app.cockpit.panes["steps"].focus()
        await pilot.press("z")  # zoomed, the pane's lines are not cut at its edge
        await pilot.pause()
        steps = [flat(line) for line in pane_text(app, "steps").splitlines()]
        assert f"✗ cannot run gate: release-gates — {WHY}" in steps, steps
        api = f"✗ cannot run gate: api-tests — env {UNSET} missing (not set in this environment)"
        assert api in steps, steps
        assert "· not run gate: tools" in steps, steps  # all it needs is here: nothing said
        await pilot.press("z")
        await pilot.pause()
        release_row = next(row for row in gate_rows(app) if "Release gates" in row)
        assert release_row.startswith("✗ cannot run") and "binary rollback-tui-test-" in release_row
        tail = flat(plain(app.query_one("#gates-tail", Static)))  # the highlighted gate's reason, whole
        assert tail == f"release-gates: ✗ cannot run: {WHY}", tail
        assert "cannot run" not in next(row for row in gate_rows(app) if "Our tool" in row)
        status = plain(app.query_one("#status", Static))
        assert "cannot run (y)" in status, status

        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ActionsScreen)
        options = app.screen.query_one(OptionList)
        shown = [options.get_option_at_index(i) for i in range(options.option_count)]
        prompts = {str(o.id): flat(str(o.prompt)) for o in shown}
        assert prompts["page-owner"].endswith(f"✗ cannot run: {WHY}"), prompts["page-owner"]


async def test_a_runbook_check_is_marked_when_what_it_needs_cannot_run(tmp_path: Path, tool: Path) -> None:
    # `check: traffic` with the balancer unreachable, `check: guardrail_watch` whose only guardrail
    # judges a gate that cannot run: readiness folded them into their step only, so the Runbook pane
    # said "not run" with no mark where a gate or an action said "✗ cannot run".
    doc = unready_playbook().model_dump()
    doc["guardrails"] = [
        {"name": "gates-red", "title": "Gates red", "metric": "gate_failed", "gate": "release-gates",
         "threshold": 0}
    ]  # fmt: skip
    doc["checklist"] = [c for c in doc["checklist"] if c["rule"] != "gate_passed"]
    doc["steps"][0]["do"] = [{"check": "traffic"}, {"check": "guardrail_watch"}, {"check": "export"}]
    engine = Engine(Playbook.model_validate(doc), Journal(tmp_path / "j.jsonl"), operator="alice")
    await engine.readiness()  # the balancer is http://127.0.0.1:1: nothing listens there
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        app.cockpit.panes["steps"].focus()
        await pilot.press("z")
        await pilot.pause()
        steps = [flat(line) for line in pane_text(app, "steps").splitlines()]
        assert "✗ cannot run check: traffic — load_balancer lb not ready" in steps, steps
        watch = "· no record check: guardrail_watch — ✗ cannot run: guardrail gates-red not ready"
        assert watch in steps, steps
        assert "· not run check: export" in steps, steps  # needs nothing from here: nothing said
        assert "2 cannot run (y)" in str(app.cockpit.panes["steps"].border_subtitle)
        await pilot.press("z", "y")
        await pilot.pause()
        watch = item_lines(readiness_text(app), "check guardrail_watch")
        assert watch.startswith("✗ check guardrail_watch guardrail gates-red not ready"), watch
    engine.journal.close()


async def test_a_viewer_reads_the_journaled_readiness_and_cannot_check_again(
    tmp_path: Path, tool: Path
) -> None:
    engine = unready_engine(tmp_path)
    engine.start_session()
    await engine.readiness()
    engine.journal.flush()
    before = engine.journal.path.read_bytes()
    path = engine.journal.path
    app = WatchApp(FileFollower(path), unready_playbook(), source=str(path), journal_name=path.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.state.readiness is not None, what="the viewer's fold")
        await pilot.press("y")
        await pilot.pause()
        shown = readiness_text(app)
        release = item_lines(shown, "gate release-gates")
        assert release == f"✗ gate release-gates binary {MISSING} missing not on PATH", release
        assert "r checks again" not in str(app.screen.query_one("#readiness-dialog").border_title)
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.cockpit
    assert path.read_bytes() == before  # nothing a viewer does reaches the session
