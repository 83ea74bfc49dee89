"""Pilot tests for the cockpit: panes render the state, keys drive actions, the modal guards rollback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console
from textual.app import App
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.screen import Screen
from textual.widgets import DataTable, OptionList, Static

from conftest import build_lab_playbook, encodings, holds_secret
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.words import hms
from rollback_tui.core.redact import MASK, Redactor
from rollback_tui.core.resume import resume_session
from rollback_tui.core.text import command_line
from rollback_tui.playbook.load import load_playbook
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes.health import HealthProbe
from rollback_tui.session.engine import Engine, NotAvailable
from rollback_tui.session.runbook import Runbook
from rollback_tui.settings import settings_path
from rollback_tui.ui import theme_store
from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.commands import COMMANDS
from rollback_tui.ui.features import engine_features
from rollback_tui.ui.panes.base import HIDDEN
from rollback_tui.ui.panes.steps import step_title
from rollback_tui.ui.screens.actions import ActionsScreen
from rollback_tui.ui.screens.confirm import ConfirmAction, ConfirmRollback
from rollback_tui.ui.screens.gate_detail import GateDetail
from rollback_tui.ui.screens.help import HelpScreen
from rollback_tui.ui.screens.notices import NoticesScreen
from rollback_tui.ui.screens.reason import ReasonPrompt
from rollback_tui.ui.themes import (
    DEFAULT_THEME,
    REQUIRED_VARIABLES,
    THEME_ORDER,
    ThemeFileError,
    load_theme_file,
    load_themes,
)
from support.http import JsonHandler
from support.wait import until
from test_ui_support import demo_playbook, replay_engine

SIZE = (120, 40)
PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"


def plain(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=max(40, widget.content_size.width or 200), file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.file.getvalue()  # type: ignore[attr-defined]


def pane_text(app: CockpitApp, pane: str) -> str:
    return plain(app.query_one(f"#{pane} .pane-body", Static))


def gate_rows(app: CockpitApp) -> list[str]:
    """The gates table, one plain string per row."""
    table = app.query_one("#gates-table", DataTable)
    return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def flat(text: str) -> str:
    """Whitespace-normalised, so wrapping at a pane edge does not matter."""
    return " ".join(text.split())


def journal_actions(engine: Engine) -> list[str]:
    engine.journal.flush()
    return [e.action for e in read_journal(engine.journal.path).events if isinstance(e, ev.OperatorAction)]


def journal_events(engine: Engine) -> list[ev.Event]:
    engine.journal.flush()
    return read_journal(engine.journal.path).events


def notifications(app: CockpitApp) -> list[str]:
    return [n.message for n in app._notifications]


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl")


async def test_health_pane_shows_three_replicas_and_mismatch(engine: Engine) -> None:
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        health = pane_text(app, "health")
        # Table rows read "<glyph> <word> <replica> <role> …"; banner lines do not.
        rows = [
            line
            for line in health.splitlines()
            if line.split()[2:3] in (["stable-a"], ["stable-b"], ["blue-next"])
        ]
        assert [r.split()[2] for r in rows] == ["stable-a", "stable-b", "blue-next"]
        assert any("✗ down" in r and "stable-b" in r for r in rows)
        assert any("✓ ok" in r and "blue-next" in r and "candidate" in r for r in rows)
        assert "✗ channel prefix mismatch: stable-a/stable-b chat:rt: ≠ blue-next chat:rt2:" in health
        assert "✗ stable-b down: ConnectError" in health
        verdict = plain(app.query_one("#verdict", Static))
        assert "✗ FAILING" in verdict and "channel prefix mismatch" in verdict
        # Panes whose features are not built say so instead of pretending; built ones don't claim otherwise.
        features = engine_features(engine)
        assert ("arrives with issue #4" in flat(pane_text(app, "fanout"))) == ("fanout" not in features)
        assert ("arrives with issue #6" in flat(pane_text(app, "gates"))) == ("gates" not in features)


class PlaceholderEngine(Engine):
    features = frozenset({"gates", "traffic", "rollback"})  # fanout not built in this engine

    async def run_fanout_check(self, *args: object, **kw: object) -> None:  # type: ignore[override]
        raise NotAvailable("The two-session fanout check arrives with the fanout issue (#4).")


async def test_placeholder_features_are_announced(tmp_path: Path) -> None:
    engine = PlaceholderEngine(demo_playbook(), Journal(tmp_path / "j.jsonl"), operator="alice")
    features = engine_features(engine)
    assert "fanout" not in features and "gates" in features
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "Fanout verification arrives with issue #4. Press f to see why." in flat(
            pane_text(app, "fanout")
        )
        assert "arrives" not in pane_text(app, "gates")


async def test_new_events_repaint_and_floods_coalesce(engine: Engine) -> None:
    repaints: list[object] = []
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE, message_hook=lambda m: repaints.append(m)) as pilot:
        await pilot.pause()
        repaints.clear()
        # The candidate switches to the memory transport, then 2,000 samples arrive in one burst.
        for i in range(2000):
            engine.emit(
                ev.HealthSample(
                    replica="blue-next",
                    status="ok",
                    latency_ms=20 + i % 7,
                    channel_prefix="chat:rt:",
                    transport="memory",
                )
            )
        engine.emit(ev.HealthSample(replica="stable-b", status="ok", latency_ms=9, channel_prefix="chat:rt:"))
        await pilot.pause()
        health = pane_text(app, "health")
        assert "channel prefix mismatch" not in health
        assert "✗ blue-next uses transport memory" in health
        assert "✗ memory" in health
        state_changes = [m for m in repaints if type(m).__name__ == "StateChanged"]
        assert 1 <= len(state_changes) <= 3, len(state_changes)


async def test_rollback_modal_escape_cancels_and_journals(engine: Engine) -> None:
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmRollback)
        what = plain(app.screen.query_one("#confirm-what", Static))
        assert "blue-next" in what and "app=chat" in what and "Keeps serving" in what
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmRollback)
        cancelled = [e for e in journal_events(engine) if isinstance(e, ev.RollbackCancelled)]
        assert [(e.action, e.actor) for e in cancelled] == [("remove-blue-next", engine.operator)]
        assert engine.state.traffic.rollback.stage == "cancelled"
        assert engine.state.traffic.rollback_requested is None
        assert any("nothing changed" in n for n in notifications(app))


async def test_rollback_modal_wrong_name_does_not_confirm(engine: Engine) -> None:
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await pilot.press(*"blue-nex", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmRollback)
        assert "is not 'blue-next'" in plain(app.screen.query_one("#confirm-error", Static))
        assert app.screen.query_one("#confirm").disabled
        assert journal_actions(engine) == []
        # Typing the replica-set name confirms and hands over to the engine (whose balancer is unreachable
        # here, so the rollback fails — and the failure is shown, not raised).
        await pilot.press("t", "enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmRollback)
        assert engine.state.traffic.rollback_requested is not None
        assert engine.state.traffic.rollback_requested.confirmed_text == "blue-next"
        assert any("ollback" in n for n in notifications(app)), notifications(app)
        # The failure stays on screen after the toast: the stage is state, not a notification.
        app.clear_notifications()
        app.mark_dirty({"traffic", "verdict"})
        await pilot.pause(0.2)
        assert "ROLLBACK FAILED" in flat(pane_text(app, "traffic"))
        assert "rollback failed" in plain(app.query_one("#verdict", Static))
        assert app.is_running


async def palette_lines(app: CockpitApp, pilot) -> list[str]:
    """Open the command palette with `:` and read what it offers ("title\nline (key)")."""
    await pilot.press("colon")
    await app.workers.wait_for_complete()
    await pilot.pause()
    assert isinstance(app.screen, CommandPalette)
    shown = app.screen.query_one(CommandList)
    return [str(shown.get_option_at_index(i).prompt) for i in range(shown.option_count)]


async def test_every_key_is_in_the_palette_and_in_help_and_nothing_else_is(engine: Engine) -> None:
    """One command table: the keys the cockpit binds, the palette's entries and the help's lines agree."""
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.cockpit.panes["steps"].focus()  # the Runbook pane's own commands are bound while it has focus
        await pilot.pause()
        active = app.screen.active_bindings
        textual_own = {b.key for b in Binding.make_bindings([*App.BINDINGS, *Screen.BINDINGS])}
        navigation = {"up", "down"}  # the Runbook pane's list keys, as any list's
        assert {key for key, a in active.items() if a.binding.id is None} <= textual_own | navigation
        bound = {key: a.binding for key, a in active.items() if a.binding.id is not None}
        assert {b.action for b in bound.values()} == {c.action for c in COMMANDS}

        lines = await palette_lines(app, pilot)
        titles = {line.split("\n")[0]: line for line in lines}
        for key, binding in bound.items():
            if binding.action == "command_palette":
                continue  # the palette does not list itself
            if binding.action == "run_step":  # the palette lists every step instead
                steps = enumerate(engine.playbook.steps, 1)
                assert all(f"Run step {i}: {step.name}" in titles for i, step in steps)
                continue
            command = next(c for c in COMMANDS if c.id == binding.id)
            assert command.palette is not None and command.palette[0] in titles, key
            first = command.keys[0]
            assert titles[command.palette[0]].endswith(f"({first.display or first.key})")
        palette_actions = {c.palette[0]: c.action for c in COMMANDS if c.palette}
        for title in titles:
            if not title.startswith(("Theme: ", "Run action: ", "Run step ")):
                assert palette_actions[title] in {b.action for b in bound.values()}, title
        assert [a.name for a in engine.playbook.actions] == [
            t.removeprefix("Run action: ") for t in titles if t.startswith("Run action: ")
        ]
        await pilot.press("escape")

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = flat("\n".join(plain(s) for s in app.screen.query(Static)))
        for binding in bound.values():
            assert binding.tooltip in text
        for entry in app.screen.entries:  # the help's lines are bound keys (ctrl+p is Textual's own)
            assert entry.key in bound or entry.key == app.COMMAND_PALETTE_BINDING, entry.key
            assert app.get_key_display(entry) in text
        assert "✗" in text and "glyph" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_palette_runs_screen_commands_with_their_parameters(engine: Engine) -> None:
    steps = [s.name for s in engine.playbook.steps]
    start = steps.index(engine.state.step) if engine.state.step in steps else -1
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await palette_lines(app, pilot)
        await pilot.press(*"Next step")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.screen is app.cockpit
        assert engine.state.step == steps[start + 1]


async def test_overriding_an_automatic_item_asks_why_and_journals_it(tmp_path: Path) -> None:
    """An automatic item (gate_passed) is ticked by hand only with a reason; Esc journals nothing."""
    engine = Engine(demo_playbook(), Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        app.cockpit.panes["checklist"].focus()
        await pilot.pause()
        assert app.cockpit.panes["checklist"].highlighted_item() == "gates-ok"
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ReasonPrompt)
        await pilot.press("escape")
        await pilot.pause()
        assert not any(isinstance(e, ev.ChecklistTicked) for e in journal_events(engine))
        await pilot.press("t")
        await pilot.pause()
        await pilot.press("enter")  # an empty reason is not accepted
        assert isinstance(app.screen, ReasonPrompt)
        await pilot.press(*"gate run by hand in staging", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
    ticks = [e for e in journal_events(engine) if isinstance(e, ev.ChecklistTicked)]
    assert [(t.item, t.checked, t.actor, t.note) for t in ticks] == [
        ("gates-ok", True, "alice", "gate run by hand in staging")
    ]


def test_the_engine_refuses_a_typo_and_an_override_without_reason(tmp_path: Path) -> None:
    engine = Engine(demo_playbook(), Journal(tmp_path / "j.jsonl"), operator="alice")
    with pytest.raises(NotAvailable, match="No checklist item or exit criterion named 'gates-okk'"):
        engine.tick("gates-okk")
    with pytest.raises(NotAvailable, match="overriding it needs a reason"):
        engine.tick("gates-ok", False)
    assert not engine.state.counts["checklist_ticked"]


async def test_keys_a_playbook_does_not_support_are_not_offered(tmp_path: Path) -> None:
    """The reproducer: the production playbook's footer advertised `f Fanout  s Traffic  r Rollback`, which
    only answered "not available"; its redeploy and flag actions were in neither `a` nor the palette."""
    playbook = load_playbook(PLAYBOOKS / "production-rollback.yaml")
    engine = Engine(playbook, Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        footer = {a.binding.description for a in app.screen.active_bindings.values() if a.binding.show}
        assert {"Gates", "Cancel", "Actions", "Export", "Log", "Help", "Quit"} <= footer, footer
        assert not footer & {"Fanout", "Traffic", "Rollback"}, footer
        for key in ("f", "s", "r"):
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is app.cockpit and not notifications(app), key
        assert journal_actions(engine) == []
        await pilot.press("question_mark")
        shown = flat("\n".join(plain(s) for s in app.screen.query(Static)))
        assert "Not in this playbook" in shown
        assert "Fanout: the playbook has no realtime section" in shown
        assert "Traffic: the playbook has no load balancer" in shown
        assert "Rollback: the playbook has no selector_removal action" in shown
        assert "Roll back: remove the candidate" not in shown.lower()
        await pilot.press("escape")
        titles = [line.split("\n")[0] for line in await palette_lines(app, pilot)]
        assert not {"Roll back", "Run fanout check", "Start / stop synthetic traffic"} & set(titles)
        for name in ("redeploy-last-known-good", "stabilise-flags", "replay-dead-letters"):
            assert f"Run action: {name}" in titles
        assert "Run step 1: identify-last-known-good" in titles and "Run step 7: incident-follow-up" in titles
        await pilot.press("escape")
        await pilot.press("e")  # what every playbook has still works
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.state.exports and app.is_running


@pytest.mark.parametrize(("name", "offered"), [("production-rollback", False), ("demo", True)])
async def test_pane_hints_name_only_the_keys_the_playbook_offers(
    tmp_path: Path, name: str, offered: bool
) -> None:
    """The reproducer: with no fanout, load balancer or selector removal (their keys gone from the footer),
    the fanout pane still said "press f to run the two-session check" and the traffic pane "s traffic ·
    r rollback". Hints come from the command table, as the keys do."""
    playbook = load_playbook(PLAYBOOKS / f"{name}.yaml")
    engine = Engine(playbook, Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        footer = {a.binding.key for a in app.screen.active_bindings.values() if a.binding.show}
        assert {"f", "s", "r"} <= footer if offered else not footer & {"f", "s", "r"}, footer
        fanout, traffic = (flat(pane_text(app, pane)) for pane in ("fanout", "traffic"))
        titles = " ".join(str(app.cockpit.panes[pane].border_subtitle) for pane in ("fanout", "traffic"))
        hints = {
            "press f to run the two-session check": fanout,
            "f runs the check": titles,
            "· s traffic · r rollback": titles,
            "s sends synthetic traffic": traffic,
            "s starts it": traffic,
            "r rolls back:": traffic,
        }
        assert {hint: hint in shown for hint, shown in hints.items()} == dict.fromkeys(hints, offered)
        if not offered:  # no fanout pane at all: the Runbook takes its room (test_ui_friction.py)
            assert not app.cockpit.panes["fanout"].display


async def test_the_status_bar_names_the_incident_and_who_runs_it(tmp_path: Path) -> None:
    """--incident, --commander and --scribe were journaled and headed the report, but the screen shared on
    the call did not say which incident it was or who ran it."""
    playbook = load_playbook(PLAYBOOKS / "production-rollback.yaml")
    engine = Engine(playbook, Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()
    engine.record_incident("https://app.incident.io/acme/incidents/INC-4711", "carol", "dave")
    url = "https://app.incident.io/acme/incidents/INC-4711"
    for size, shown in (
        ((200, 50), f"incident {url} │ commander carol │ scribe dave │ journal j.jsonl"),
        ((100, 30), "incident INC-4711 │ IC carol"),  # the URL gives way to its id, the scribe goes first
    ):
        app = CockpitApp(engine, live=False)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            status = flat(plain(app.query_one("#status", Static)))
            assert shown in status, (size, status)
            assert status.startswith("session 00:00 │ production-rollback · production │"), status


async def test_the_palette_puts_the_operators_commands_before_the_themes(engine: Engine) -> None:
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [line.split("\n")[0] for line in await palette_lines(app, pilot)]
    assert titles.index("Roll back") < 5 and titles[:2] == ["Run gates", "Run fanout check"]
    assert [t for t in titles if t.startswith("Theme: ")] == titles[-3:]  # themes last


class ExplodingEngine(Engine):
    async def run_gates(self, names: list[str] | None = None) -> None:
        raise RuntimeError("gate runner lost its marbles")


async def test_unexpected_action_error_is_shown_and_journaled(tmp_path: Path) -> None:
    engine = ExplodingEngine(demo_playbook(), Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert any("lost its marbles" in n for n in notifications(app))
        assert app.is_running
    notices = [e for e in engine.state.notices if e.level == "error"]
    assert notices and "RuntimeError: gate runner lost its marbles" in notices[-1].message


async def test_share_mode_hides_sensitive_urls_and_paths(engine: Engine, tmp_path: Path) -> None:
    other = replay_engine("three-replicas.jsonl", tmp_path / "plain.jsonl")
    for eng, share in ((engine, True), (other, False)):
        app = CockpitApp(eng, live=False, share=share)
        async with app.run_test(size=(200, 50)) as pilot:
            await pilot.pause()
            health = pane_text(app, "health")
            status = plain(app.query_one("#status", Static))
            assert "http://127.0.0.1:18081" in health  # not sensitive: shown either way
            if share:
                assert "blue-next.internal.example" not in health and HIDDEN in health
                assert str(tmp_path) not in status and "session.jsonl" in status
                assert "F A I L I N G" in plain(app.query_one("#verdict", Static))
            else:
                assert "http://blue-next.internal.example:18083" in health


async def test_encoded_forms_of_a_secret_are_masked_in_the_journal_and_on_the_share_screen(
    tmp_path: Path,
) -> None:
    secret = "p@ss/w0rd+?~ zed"
    engine = Engine(demo_playbook(), Journal(tmp_path / "j.jsonl", Redactor([secret])), operator="alice")
    forms = encodings(secret)
    for name, form in forms.items():
        engine.notice("probe", f"{name}: {form}", "warning")
    # The state keeps what was observed; the journal line and the screen are what get redacted.
    assert all(holds_secret(n.message, secret) for n in engine.state.notices)
    engine.journal.flush()
    journal = engine.journal.path.read_text()
    assert journal.count(MASK) >= len(forms) and not holds_secret(journal, secret)
    app = CockpitApp(engine, live=False, share=True)
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, NoticesScreen)
        shown = plain(app.screen.query_one(Static))
    assert all(f"{name}: " in shown for name in forms)  # every notice is listed
    assert not holds_secret(shown, secret)


async def test_theme_cycles_and_quit_stops_engine(engine: Engine) -> None:
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "rollback-dark"
        await pilot.press("T")
        assert app.theme == "rollback-high-contrast"
        await pilot.press("T", "T")
        assert app.theme == "rollback-dark"
        assert not settings_path().exists()  # a replay leaves the operator's settings alone
        await pilot.press("q", "y")  # the exit criteria are open: q asks, y quits
        await pilot.pause()
    assert ended_on_disk(engine)  # the app stops the feeds; the CLI closes the journal after its export
    kinds = [e.kind for e in read_journal(engine.journal.path).events]
    assert kinds[-1] == "session_ended"


async def test_unknown_theme_falls_back_with_a_warning(engine: Engine) -> None:
    app = CockpitApp(engine, theme="no-such-theme", live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.theme == "rollback-dark"
        assert any("Unknown theme 'no-such-theme'" in n for n in notifications(app))


def test_the_theme_choice_is_remembered_for_live_sessions_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert theme_store.starting(None, live=True) == DEFAULT_THEME  # nothing remembered yet
    theme_store.remember("rollback-light")
    assert json.loads(settings_path().read_text())["theme"] == "rollback-light"
    assert theme_store.starting(None, live=True) == "rollback-light"
    assert theme_store.starting(None, live=False) == DEFAULT_THEME  # a replay does not read it
    assert theme_store.starting("rollback-high-contrast", live=True) == "rollback-high-contrast"
    order = list(THEME_ORDER)
    assert [theme_store.following(name, order) for name in order] == [*order[1:], order[0]]
    assert theme_store.following("textual-dark", [*order, "textual-dark"]) == order[0]
    assert theme_store.resolve("nope", order) == (
        DEFAULT_THEME,
        f"Unknown theme 'nope'; using {DEFAULT_THEME}.",
    )
    # A settings location that cannot be written costs a log line, not the session.
    (tmp_path / "not-a-dir").write_text("")
    monkeypatch.setenv("ROLLBACK_TUI_CONFIG_DIR", str(tmp_path / "not-a-dir"))
    theme_store.remember("rollback-dark")


def test_theme_files_load_with_status_variables(tmp_path: Path) -> None:
    themes = load_themes()
    assert {"rollback-dark", "rollback-high-contrast", "rollback-light"} <= set(themes)
    assert themes["rollback-light"].dark is False
    for theme in themes.values():
        assert all(theme.variables.get(v, "").startswith("#") for v in REQUIRED_VARIABLES)
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nprimary = "#000000"\n[variables]\nstatus-ok = "#00ff00"\n')
    with pytest.raises(ThemeFileError, match="status-warn"):
        load_theme_file(broken)
    broken.write_text('name = "x"\nprimary = "#000"\ncolour = "red"\n')
    with pytest.raises(ThemeFileError, match="unknown theme keys"):
        load_theme_file(broken)


# --- live: real HTTP replicas, the real health probe, the refresh timer --------------------------


class _Healthz(JsonHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "status": "ok",
                "replica": "stable-a",
                "image": "sha256:abc123def456",
                "commit": "9c1e2ab",
                "realtime": {"transport": "redis", "channel_prefix": "chat:rt:"},
            }
        ).encode()
        self.send_json(body, 200)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_live_app_polls_real_replicas(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        playbook = Playbook.model_validate(
            {
                **demo_playbook().model_dump(exclude={"replicas", "load_balancer"}),
                "health_interval_s": 0.2,
                "health_timeout_s": 0.5,
                "replicas": [
                    {"name": "stable-a", "url": f"http://127.0.0.1:{server.server_port}", "role": "stable"},
                    {"name": "stable-b", "url": f"http://127.0.0.1:{_closed_port()}", "role": "stable"},
                ],
            }
        )
        engine = Engine(playbook, Journal(tmp_path / "live.jsonl"), operator="alice")
        app = CockpitApp(engine, theme="rollback-dark", live=True)
        async with app.run_test(size=SIZE) as pilot:
            deadline = time.monotonic() + 10
            health = ""
            while time.monotonic() < deadline:
                await pilot.pause(0.1)
                health = pane_text(app, "health")
                if "✓ ok" in health and "✗ down" in health:
                    break
            assert "✓ ok" in health and "abc123def456" in health, health
            assert "✗ down" in health and "stable-b" in health, health
            await pilot.press("q", "y")  # the exit criteria are open: q asks, y quits
            await pilot.pause()
        assert ended_on_disk(engine)  # the app stops the feeds; the CLI closes the journal after its export
        kinds = [e.kind for e in read_journal(engine.journal.path).events]
        assert kinds[0] == "session_started" and "health_sample" in kinds and kinds[-1] == "session_ended"
    finally:
        server.shutdown()
        server.server_close()


async def test_panes_render_every_feature_from_a_recorded_journal(tmp_path: Path) -> None:
    engine = replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        fanout = flat(pane_text(app, "fanout"))
        assert "✓ FANOUT PASSED · after rollback" in fanout
        assert "5 sent · all delivered ✓ · order ✓ · replay ✓" in fanout
        # Side by side: the second run's five events, B's last three caught up by replay (↺).
        assert all(f"evt-f2-00{i}" in fanout for i in range(1, 6)) and "evt-f1" not in fanout
        assert fanout.count("↺") == 3
        rows = gate_rows(app)
        assert "✓ passed" in rows[0] and "release gates: PASS" in rows[0], rows
        assert "✗ failed" in rows[1] and "exit 101" in rows[1] and "cargo test -p gotong-api" in rows[1]
        assert "surreal pinned 3.0.0" in pane_text(app, "gates")  # the highlighted gate's tail
        traffic = flat(pane_text(app, "traffic"))
        assert "✗ BREACH P0 candidate-5xx 50.0% > 2.0%" in traffic
        assert "blue-next out" in traffic and "stable-a 45 · stable-b 40" in traffic
        assert "⟲ rollback requested 12:00:34 by alice" in traffic.replace("  ", " ")
        assert "✓ ROLLBACK VERIFIED · RTO 2.1 s · TTD 3 s" in traffic
        steps = pane_text(app, "steps")
        assert "▶ 5. Verify the rollback" in steps and "Now: 5. Verify the rollback" in steps
        assert "TTD 3 s · RTO 2.1 s" in plain(app.query_one("#status", Static))
        verdict = plain(app.query_one("#verdict", Static))
        assert "P0 candidate-5xx" in verdict and "gate api-tests failed" in verdict


@pytest.mark.parametrize("size", [(160, 45), (100, 30)])  # full list, and the compact one that folds "ok"s
async def test_a_guardrail_over_its_threshold_but_not_yet_sustained_is_not_ok(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    data = demo_playbook().model_dump(by_alias=True, exclude_unset=True)
    p95 = {"name": "p95-latency", "title": "p95", "metric": "p95_latency_ms", "threshold": 250}
    data["guardrails"].append({**p95, "sustained_s": 5})
    engine = Engine(Playbook.model_validate(data), Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()
    per_replica = {"stable-a": 20, "stable-b": 20}
    engine.emit(ev.TrafficWindow(window_s=1, requests=40, per_replica=per_replica, p95_ms=400.0))
    assert not engine.state.traffic.breaches  # p95-latency must hold 5 s before it is a breach
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        traffic = flat(pane_text(app, "traffic"))
        assert "! over p95-latency 400 ms > 250 ms" in traffic, traffic
        assert "✓ ok p95-latency" not in traffic


async def test_requests_no_replica_answered_show_as_failures_in_words(tmp_path: Path) -> None:
    engine = Engine(demo_playbook(), Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()
    engine.emit(ev.TrafficWindow(window_s=1, requests=50, per_replica={"stable-a": 20, "blue-next": 10},
                                 unattributed={"no replica identified (HTTP 502)": 20}))  # fmt: skip
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        traffic = flat(pane_text(app, "traffic"))
        assert "✗ 20/50 failed: no replica identified (HTTP 502)" in traffic, traffic


async def test_dead_letter_growth_is_shown_from_the_probe_history(tmp_path: Path) -> None:
    data = demo_playbook().model_dump(by_alias=True, exclude_unset=True)
    data["probes"] = [{"name": "dead-letters", "url": "http://127.0.0.1:9/dl", "json_path": "count"}]
    rail = {"name": "dl-growth", "title": "dead letters", "metric": "dead_letters_growth", "threshold": 10}
    data["guardrails"].append({**rail, "window_s": 60, "probe": "dead-letters"})
    engine = Engine(Playbook.model_validate(data), Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()
    now = time.time()
    for ts, count in ((now - 20, 4), (now - 10, 7), (now - 1, 9)):
        engine.emit(ev.ProbeResult(ts=ts, probe="dead-letters", ok=True, value=count))
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert "✓ ok dl-growth 5 ≤ 10" in flat(pane_text(app, "traffic"))  # 9 - 4 within the window


async def _nobody(_: object) -> None:
    return None


@pytest.mark.parametrize("size", [(160, 45), (100, 30)])
async def test_what_cannot_be_observed_is_shown_as_unknown_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    monkeypatch.delenv("RTUI_UNSET_OPS_TOKEN", raising=False)
    data = demo_playbook().model_dump(by_alias=True, exclude_unset=True)
    data["replicas"][0]["url"] = "http://stable-a.rollback-tui.invalid:8080"
    token = {"Authorization": "Bearer ${RTUI_UNSET_OPS_TOKEN}"}
    data["probes"] = [
        {"name": "dead-letters", "url": "http://127.0.0.1:9/dl", "json_path": "count", "headers": token}
    ]
    rail = {"name": "dl-growth", "title": "dead letters", "metric": "dead_letters_growth", "threshold": 10}
    data["guardrails"].append({**rail, "window_s": 60, "probe": "dead-letters"})
    data["steps"].insert(0, {"name": "dlq", "title": "Dead letters", "do": [{"probe": "dead-letters"}]})
    book = Playbook.model_validate(data)
    engine = Engine(book, Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()
    await Runbook(engine, ask=_nobody, confirm=_nobody).run_step(
        "dlq"
    )  # the step's item, as the runner runs it
    await HealthProbe(book, engine.emit).once()
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        traffic = flat(pane_text(app, "traffic"))
        # The window is said as in the report; the reason gets lines of its own.
        assert "? unknown dl-growth ≤ 10 over 60 s" in traffic, traffic
        assert "↳ probe dead-letters: environment" in traffic, traffic
        assert "? waiting dl-growth" not in traffic
        health = flat(pane_text(app, "health"))
        assert "? unknown" in health and "stable-a" in health
        assert "? unknown probe: dead-letters" in flat(pane_text(app, "steps"))
        if size[0] >= 160:
            assert "environment variable RTUI_UNSET_OPS_TOKEN is not set" in traffic
            assert "? stable-a unknown: host name does not resolve from here" in health
        await pilot.press("n")
        await pilot.pause()
        shown = plain(app.screen.query_one("#notices-dialog Static", Static))
        assert "probe dead-letters unknown (could not observe)" in flat(shown)
        assert "replica stable-a health unknown (could not observe)" in flat(shown)


def test_one_line_commands_never_show_a_script_body() -> None:
    script = "import json, sys, urllib.request\nreplicas = {}\nprint('x')"
    assert command_line(["python3", "-c", script]) == "python3 -c import json, sys, urllib.request…"
    assert command_line(["just", "release-gates-surreal"], 12) == "just releas…"
    assert command_line(["just", "gates"]) == "just gates"


def test_runbook_titles_are_not_numbered_twice() -> None:
    assert step_title("1. Capture baseline evidence") == "Capture baseline evidence"
    assert step_title("Step 3: Introduce controlled issue") == "Introduce controlled issue"
    assert step_title("10) Clean up") == "Clean up"
    assert step_title("Route 10-20 % to blue-next") == "Route 10-20 % to blue-next"


async def test_small_terminal_keeps_status_and_now_visible(tmp_path: Path) -> None:
    engine = replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        status = plain(app.query_one("#status", Static))
        assert "TTD 3 s · RTO 2.1 s" in status and "…" not in status, status
        assert len(status.rstrip("\n")) <= 100
        steps = pane_text(app, "steps")
        assert "Now: 5. Verify the" in steps and "1. 1." not in steps


async def test_zoom_shows_one_pane_and_escape_restores(engine: Engine) -> None:
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#fanout").focus()
        await pilot.press("z")
        assert app.screen.maximized is app.query_one("#fanout")
        await pilot.press("escape")
        assert app.screen.maximized is None


# --- against the real lab: real replicas, balancer, Redis, gates as subprocesses -----------------


def cockpit_lab_playbook() -> Playbook:
    py = sys.executable
    return build_lab_playbook(
        gates=[
            {
                "name": "quick-pass",
                "title": "Quick passing gate",
                "argv": [py, "-c", "print('checking replicas')\nprint('gate ok')"],
                "timeout_s": 20,
            },
            {
                "name": "quick-fail",
                "title": "Quick failing gate",
                "argv": [py, "-c", "import sys\nprint('boom')\nsys.exit(3)"],
                "timeout_s": 20,
            },
        ],
        actions=[
            {
                "kind": "selector_removal",
                "name": "remove-blue-next",
                "title": "Remove blue-next from the selector",
                "replica_set": "blue-next",
                "remove_replicas": ["blue-next"],
                "verify_requests": 40,
                "rto_budget_s": 20,
            }
        ],
        guardrails=[
            {
                "name": "candidate-5xx",
                "title": "5xx on blue-next",
                "metric": "http_5xx_rate",
                "threshold": 0.05,
                "scope": "candidate",
            },
        ],
    )


async def wait_for(pilot, predicate, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("lab_playbook", [cockpit_lab_playbook()], indirect=True)
async def test_lab_keys_run_fanout_gates_and_traffic(lab, tmp_path: Path) -> None:
    engine = Engine(lab.playbook, Journal(tmp_path / "lab.jsonl"), operator="alice")
    app = CockpitApp(engine, live=True, theme="rollback-dark")
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: pane_text(app, "health").count("✓ ok") == 3, what="three replicas ok")
        await pilot.press("f")
        await wait_for(pilot, lambda: "FANOUT PASSED" in pane_text(app, "fanout"), what="the fanout verdict")
        fanout = flat(pane_text(app, "fanout"))
        result = engine.state.fanout.last_result
        assert result is not None and result.passed and result.sent
        assert all(eid[:8] in fanout for eid in result.sent[-3:])

        await pilot.press("g")
        await wait_for(
            pilot,
            lambda: {g.status for g in engine.state.gates.values()} == {"passed", "failed"},
            what="both gates finished",
        )
        await pilot.pause(0.3)
        gates = app.query_one("#gates-table")
        rows = gate_rows(app)
        assert "✓ passed" in rows[0] and "gate ok" in rows[0], rows
        assert "✗ failed" in rows[1] and "boom" in rows[1], rows
        assert all("\n" not in row for row in rows)
        gates.focus()
        await pilot.press("down", "enter")
        assert isinstance(app.screen, GateDetail)
        detail = plain(app.screen.query_one("#gate-detail", Static))
        artefact = engine.state.gates["quick-fail"].history[-1].artefact
        assert "boom" in detail and "exit 3" in detail and artefact and Path(artefact).exists()
        await pilot.press("escape")

        await pilot.press("s")
        await wait_for(pilot, lambda: engine.state.traffic.windows, 10, "a traffic window")
        await pilot.pause(0.3)
        traffic = flat(pane_text(app, "traffic"))
        assert "● synthetic traffic running" in traffic and "blue-next" in traffic
        # 20 rps at a 10 % weight: the 5xx rate is judged once 10 blue-next requests are in its window.
        await wait_for(
            pilot, lambda: "✓ ok candidate-5xx" in flat(pane_text(app, "traffic")), 12, "a 5xx verdict"
        )
        await pilot.press("s")
        await wait_for(pilot, lambda: not engine.running("traffic"), 5, "traffic stopped")
        await pilot.press("q", "y")  # the exit criteria are open: q asks, y quits
        await pilot.pause()
    actions = journal_actions(engine)
    assert actions[:3] == ["run_fanout_check", "run_gates", "start_traffic"] and "stop_traffic" in actions


@pytest.mark.parametrize("lab_playbook", [cockpit_lab_playbook()], indirect=True)
async def test_lab_rollback_modal_cancel_then_confirm(lab, tmp_path: Path) -> None:
    engine = Engine(lab.playbook, Journal(tmp_path / "lab.jsonl"), operator="alice")
    app = CockpitApp(engine, live=True)
    async with app.run_test(size=(160, 45)) as pilot:
        before = await engine.read_routing()
        assert "blue-next" in before.backends
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmRollback)
        await pilot.press(*"blue-ne")  # half typed, then Esc: nothing may change
        await pilot.press("escape")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmRollback)
        untouched = await engine.read_routing()
        assert untouched.backends == before.backends and untouched.selector == before.selector
        assert engine.state.traffic.rollback_requested is None

        await pilot.press("r")
        await pilot.press(*"blue-next", "enter")
        await wait_for(
            pilot, lambda: "ROLLBACK VERIFIED" in pane_text(app, "traffic"), 30, "the rollback verified"
        )
        traffic = flat(pane_text(app, "traffic"))
        assert "✓ selector changed via lab → stable-a, stable-b" in traffic
        after = await engine.read_routing()
        assert "blue-next" not in after.backends
        assert "RTO" in plain(app.query_one("#status", Static))
        await pilot.press("q", "y")  # the exit criteria are open: q asks, y quits
        await pilot.pause()
    kinds = [e.kind for e in journal_events(engine)]
    assert kinds.index("rollback_cancelled") < kinds.index("rollback_requested")


def ended_on_disk(engine: Engine) -> bool:
    """The session's end is journaled and flushed to disk (the journal itself may stay open)."""
    import json

    last = engine.journal.path.read_text().splitlines()[-1]
    return engine.state.ended is not None and json.loads(last)["kind"] == "session_ended"


async def test_brackets_move_the_runbook_tracker_and_journal_who(engine: Engine) -> None:
    steps = [s.name for s in engine.playbook.steps]
    start = steps.index(engine.state.step) if engine.state.step in steps else -1
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right_square_bracket")
        await app.workers.wait_for_complete()
        assert engine.state.step == steps[start + 1]
        await pilot.press("right_square_bracket")
        await app.workers.wait_for_complete()
        await pilot.press("left_square_bracket")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert engine.state.step == steps[start + 1]
        assert "Now: " in pane_text(app, "steps")
    entered = [e for e in read_journal(engine.journal.path).events if e.kind == "step_entered"]
    assert [e.step for e in entered][-3:] == [steps[start + 1], steps[start + 2], steps[start + 1]]
    assert entered[-1].actor == engine.operator


async def test_actions_key_runs_a_playbook_command_action_and_journals_it(tmp_path: Path) -> None:
    marker = tmp_path / "fault-injected"
    book = demo_playbook().model_copy(deep=True)
    doc = book.model_dump()
    doc["actions"] = [
        {
            "kind": "command",
            "name": "inject",
            "title": "Inject a lab fault",
            "command": {"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"]},
        },
        {
            "kind": "command",
            "name": "wipe",
            "title": "Destructive thing",
            "destructive": True,
            "command": {"argv": [sys.executable, "-c", "raise SystemExit(3)"]},
        },
    ]
    book = type(book).model_validate(doc)
    engine = Engine(book, Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ActionsScreen)
        await pilot.press("enter")  # the first action: not destructive, runs at once
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert marker.exists()
        await pilot.press("a", "down", "enter")  # the destructive one asks for its name
        await pilot.pause()
        await pilot.press("w", "i", "p", "enter")  # wrong name: nothing runs
        await pilot.pause()
        assert isinstance(app.screen, ConfirmAction)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.cockpit
    events = read_journal(engine.journal.path).events
    assert [e.action for e in events if e.kind == "action_started"] == ["inject"]
    assert [(e.action, e.outcome) for e in events if e.kind == "action_finished"] == [("inject", "passed")]


def action_marks(app: CockpitApp) -> dict[str, str]:
    """The open `a` list: action name → the lines under its title and kind (its last run, cannot run)."""
    options = app.screen.query_one(OptionList)
    found = {}
    for i in range(options.option_count):
        option = options.get_option_at_index(i)
        lines = option.prompt.plain.splitlines()[2:]  # type: ignore[union-attr]
        found[str(option.id)] = " | ".join(line.strip() for line in lines)
    return found


async def test_the_actions_list_shows_each_actions_last_run_from_the_journal(tmp_path: Path) -> None:
    # The `a` list showed every action alike, run or not: after a resume nobody could tell that `break`
    # had failed and `inject` had run, nor, in the cockpit, that `slow` was still running.
    doc = demo_playbook().model_dump()
    py = sys.executable
    doc["actions"] = [
        {"kind": "command", "name": name, "title": name, "command": {"argv": [py, "-c", code]}}
        for name, code in (
            ("inject", "pass"),
            ("break", "raise SystemExit(3)"),
            ("slow", "import time; time.sleep(60)"),
            ("never", "pass"),
        )
    ]
    book = Playbook.model_validate(doc)
    path = tmp_path / "j.jsonl"
    engine = Engine(book, Journal(path), operator="alice")
    engine.start_session()
    assert await engine.run_action("inject") == "passed"
    assert await engine.run_action("break") == "failed"
    slow = asyncio.create_task(engine.run_action("slow"))
    await until(lambda: "slow" in engine.state.actions, "slow to start")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ActionsScreen)
        started = engine.state.actions["slow"].whole.started_ts  # type: ignore[union-attr]
        assert action_marks(app)["slow"] == f"… running since {hms(started)} by alice"
        await pilot.press("escape")
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    engine.journal.close()

    journal, state, _ = resume_session(path, operator="bob")  # as `rollback-tui resume` rebuilds it
    finished = {e.action: e for e in read_journal(path).events if isinstance(e, ev.ActionFinished)}
    resumed = Engine(book, journal, operator="bob", state=state)
    app = CockpitApp(resumed, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        marks = action_marks(app)
    resumed.journal.close()
    assert marks["inject"] == f"✓ ran {hms(finished['inject'].ts)} by alice"
    assert marks["break"] == f"✗ failed {hms(finished['break'].ts)} by alice — {finished['break'].error}"
    assert marks["slow"] == f"⊘ cancelled {hms(finished['slow'].ts)} by alice — cancelled before it finished"
    assert marks["never"] == ""  # never ran: nothing claimed


async def test_an_action_the_cockpit_died_running_reads_when_it_was_last_seen_not_the_resume_time(
    tmp_path: Path,
) -> None:
    # After a kill -9 mid-action and `resume`, the list read '? interrupted <the resume's time>': the run
    # seemed to have ended then. It says when the journal last saw the cockpit instead.
    doc = demo_playbook().model_dump()
    command = {"argv": [sys.executable, "-c", "import time; time.sleep(60)"]}
    doc["actions"] = [{"kind": "command", "name": "slow", "title": "slow", "command": command}]
    book = Playbook.model_validate(doc)
    path = tmp_path / "j.jsonl"
    engine = Engine(book, Journal(path), operator="alice")
    engine.start_session()
    slow = asyncio.create_task(engine.run_action("slow"))
    await until(lambda: "slow" in engine.state.actions, "slow to start")
    engine.journal.close()  # the cockpit dies: nothing more reaches its journal
    last_seen = read_journal(path).events[-1].ts
    slow.cancel()
    with contextlib.suppress(BaseException):
        await slow
    await asyncio.sleep(1.1)  # the resume comes later, in another second
    journal, state, _ = resume_session(path, operator="bob")
    app = CockpitApp(Engine(book, journal, operator="bob", state=state), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        mark = action_marks(app)["slow"]
    journal.close()
    assert mark.startswith("? interrupted by alice — ") and f"(last seen {hms(last_seen)})" in mark, mark


async def test_the_actions_list_shows_the_rollbacks_last_stage_from_a_recorded_session(
    tmp_path: Path,
) -> None:
    engine = replay_engine("rehearsal-full.jsonl", tmp_path / "j.jsonl")  # as `watch` folds it
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert action_marks(app)["remove-blue-next"] == "✓ verified 12:00:36Z by alice"


async def test_a_query_guardrail_row_shows_its_value_window_evaluation_time_and_baseline(
    tmp_path: Path,
) -> None:
    from rollback_tui.playbook.load import bundled_playbook, load_playbook

    engine = Engine(load_playbook(bundled_playbook("demo")), Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()
    at = time.time()
    engine.emit(
        ev.MetricSample(ts=at, guardrail="prom-candidate-5xx", server="lab-prometheus", query="q", window_s=3,
                        value=0.01, samples=30)
    )  # fmt: skip
    engine.emit(
        ev.MetricSample(ts=at, guardrail="prom-p95-latency", server="lab-prometheus", query="q", window_s=10,
                        value=240.0, samples=50, baseline=110.0, baseline_samples=200)
    )  # fmt: skip
    down = {"value": "Prometheus lab-prometheus: connection refused or unreachable"}
    engine.emit(
        ev.MetricSample(ts=at, guardrail="prom-idempotency-collisions", server="lab-prometheus", query="q",
                        window_s=10, errors=down)
    )  # fmt: skip
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 60)) as pilot:
        app.query_one("#traffic").focus()
        await pilot.press("z")  # zoomed: the whole row fits
        await pilot.pause()
        traffic = flat(pane_text(app, "traffic"))
        stamp = time.strftime("%H:%M:%S", time.localtime(at))
        assert f"✓ ok prom-candidate-5xx 1.0% ≤ 5.0% over 3 s · evaluated {stamp}" in traffic, traffic
        # Over the ratio, not yet held its 5 s: both sides shown, never "ok".
        times = "\N{MULTIPLICATION SIGN}"
        assert (
            f"! over prom-p95-latency {times}2.18 > {times}2.00 over 10 s · breach if held 5 s"
            f" · candidate 240 ms vs stable 110 ms · evaluated {stamp}"
        ) in traffic
        assert (
            f"? unknown prom-idempotency-collisions ≤ 0 over 10 s · no verdict · evaluated {stamp}" in traffic
        )
        assert "↳ Prometheus lab-prometheus: connection refused or unreachable" in traffic


async def test_an_unexpected_error_prints_its_traceback_without_locals_and_redacted(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Textual ends the app on an unexpected error with a traceback of every frame's locals: a resolved
    secret in a local (a token, an environment) went to the terminal. The frames are printed without their
    locals, through the session's redactor."""
    secret = "s3cr3t-crash-Value-77"
    app = CockpitApp(replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl"), live=False)

    def crash() -> None:
        token = secret  # a local holding a secret, as a runner's environment would
        raise RuntimeError(f"the engine fell over (token {token})")

    with pytest.raises(RuntimeError):
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            redact = app.redact
            app.redact = lambda text: redact(text).replace(secret, "•••")  # the session knows this secret
            app.call_later(crash)
            await pilot.pause()
    printed = "".join(capfd.readouterr())
    assert "RuntimeError: the engine fell over (token " in printed, printed
    assert secret not in printed and "locals" not in printed, printed
