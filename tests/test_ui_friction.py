"""Pilot tests from an on-call engineer's first session with the cockpit (demo and production playbooks):
each one is a friction point met in tmux at 100x30 or 160x45 — a key that did nothing, a pane that said
the opposite of what was happening, text cut where it mattered — kept from coming back."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import pytest
from rich.cells import cell_len
from textual import events
from textual.command import CommandPalette
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from rollback_tui.core import events as ev
from rollback_tui.core.follow import FileFollower
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.incident import IncidentFold
from rollback_tui.core.read.summary import summarize
from rollback_tui.core.verdict import stale_after_s, verdict
from rollback_tui.playbook.load import load_playbook
from rollback_tui.playbook.model import Playbook
from rollback_tui.report.evidence import Evidence
from rollback_tui.session.engine import Engine
from rollback_tui.ui.app import CockpitApp
from rollback_tui.ui.panes.base import View
from rollback_tui.ui.panes.presenter import tiles
from rollback_tui.ui.screens.confirm import ConfirmAction
from rollback_tui.ui.screens.help import HelpScreen
from rollback_tui.ui.screens.reason import TextPrompt
from rollback_tui.ui.watch import WatchApp
from support.events import breach
from test_e2e_tmux import Terminal
from test_ui import PLAYBOOKS, _closed_port, flat, pane_text, plain, wait_for
from test_ui_support import JOURNALS, demo_playbook, replay_engine


async def test_ctrl_p_opens_the_command_palette_as_help_and_readme_say(tmp_path: Path) -> None:
    """`?` lists `: / ^p  Command palette`; ctrl+p did nothing, because binding `:` to the palette kept
    Textual from binding its own ctrl+p."""
    app = CockpitApp(replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl"), live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        # Bound, ctrl+p must not take the footer's right end (Textual docks it there) and push `q Quit` off.
        quit_key = next(k for k in app.screen.query(FooterKey) if k.key == "q")
        assert 0 < quit_key.region.right <= 100 and not app.screen.query(".-command-palette")
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
    journal = tmp_path / "watched.jsonl"
    journal.write_bytes((JOURNALS / "three-replicas.jsonl").read_bytes())
    viewer = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    async with viewer.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(viewer.screen, CommandPalette)


async def test_traffic_a_runbook_step_started_shows_as_running_and_s_stops_it(tmp_path: Path) -> None:
    """A step's `check: traffic` starts synthetic traffic through the engine: the Traffic pane kept saying
    "○ no synthetic traffic · s starts it" while the split filled up, and `s` — pressed to start it — stopped
    it. The pane follows the journaled start and stop, whoever asked for them."""
    engine = replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert "no synthetic traffic" in app.cockpit.panes["traffic"].border_title + pane_text(app, "traffic")
        engine.start_traffic(actor="runbook")  # as the runbook runner's `check: traffic` does
        await pilot.pause()
        shown = pane_text(app, "traffic")
        rate = f"{engine.playbook.synthetic_rps:g} rps"
        assert "synthetic traffic running" in shown and rate in shown, shown
        assert "synthetic traffic" in app.cockpit.running_work()[0]  # and quitting would say so
        await pilot.press("s")
        await pilot.pause()
        assert not engine.running("traffic")
        assert "no synthetic traffic" in pane_text(app, "traffic")


def gates_and_checklist(screen: str) -> list[str]:
    """The screen's rows from the Release gates pane's top border to its bottom one (scrollbar thumbs, which
    move by eighths of a row, left out)."""
    rows = [row.translate(str.maketrans("▁▂▃▄▅▆▇█", "        ")) for row in screen.splitlines()]
    top = next((i for i, row in enumerate(rows) if row.startswith("╭─ Release gates")), len(rows))
    bottom = next((i for i in range(top + 1, len(rows)) if rows[i].startswith("╰")), top)
    return rows[top : bottom + 1]


@pytest.mark.integration
def test_panes_zoomed_and_restored_repaint_at_their_own_size_in_a_real_terminal(
    terminal: Terminal, tmp_path: Path
) -> None:
    """`z` then `z` on the Release gates pane (and then the checklist) in tmux at 100x30: the restored
    panes kept the zoomed layout — the gates table's `Where` column that only fits at full width, checklist
    items on one line cut mid-word — until some event repainted them, because a real terminal's relayout
    sent them no Resize (Pilot's does). The same screen code serves the cockpit and `watch`."""
    journal = tmp_path / "session.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-full.jsonl").read_bytes())
    env = {
        "ROLLBACK_TUI_DATA_DIR": str(tmp_path / "data"),
        "ROLLBACK_TUI_CONFIG_DIR": str(tmp_path / "config"),
    }
    script = Path(sys.executable).parent / "rollback-tui"
    command = "exec env -u COLUMNS -u LINES TERM=xterm-256color "
    command += " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command += f" {shlex.quote(str(script))} watch {shlex.quote(str(journal))}"
    terminal.start(100, 30, command)
    terminal.wait(lambda s: "245 events" in s, 30, "the whole journal read")
    time.sleep(1)
    lower = gates_and_checklist(terminal.screen())
    assert lower and not any("Where" in line for line in lower), lower
    for pane in ("Release gates", "Evidence checklist"):
        for _ in range(8):  # Tab round the panes until `z` zooms this one
            terminal.keys("z")
            time.sleep(0.5)
            if terminal.screen().startswith(f"╭─ {pane}"):
                break
            terminal.keys("z", "Tab")
            time.sleep(0.3)
        terminal.wait(lambda s, p=pane: s.startswith(f"╭─ {p}"), 5, f"{pane} zoomed")
        terminal.keys("z")
        terminal.wait(lambda s: "Replica health" in s, 5, "the panes back")
        time.sleep(1)  # a stale pane stays stale: give a repaint every chance to happen
        restored = terminal.screen()
        assert gates_and_checklist(restored) == lower, f"{pane}:\n{restored}"


def scripted_playbook() -> Playbook:
    """One step: a manual fact, a gate whose argv carries a multi-line script, a gate after it."""
    py = sys.executable
    script = "import sys\nprint('second line of the script')\nsys.exit(0)"
    doc = demo_playbook().model_dump()
    doc["facts"] = [{"name": "migration-checksum", "title": "Migration checksum", "source": "manual"}]
    doc["gates"] = [
        {"name": "scripted", "title": "Scripted gate", "argv": [py, "-c", script]},
        {"name": "after", "title": "The gate after it", "argv": [py, "-c", "print('fine')"]},
    ]
    doc["steps"] = [
        {
            "name": "baseline",
            "title": "1. Capture baseline",
            "do": [{"fact": "migration-checksum"}, {"gate": "scripted"}, {"gate": "after"}],
        }
    ]
    doc["checklist"], doc["exit_criteria"] = [], []
    return Playbook.model_validate(doc)


async def test_the_runbook_shows_what_a_passed_item_captured_and_one_line_per_command(tmp_path: Path) -> None:
    """Zoomed on the Runbook after step 1 ran: `✓ passed  fact: last-known-good` never said which commit it
    recorded (the report does), and a gate's `python3 -c` script filled the pane line by line, pushing the
    items after it down and off."""
    engine = Engine(scripted_playbook(), Journal(tmp_path / "j.jsonl"), operator="alice")
    engine.start_session()  # as the cockpit's feeds do: the runner's own outcomes judge the items
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.cockpit.panes["steps"].focus()
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt), what="the fact's question")
        await pilot.press(*"sha256:abc", "enter")
        await app.workers.wait_for_complete()
        await pilot.press("z")
        await pilot.pause()
        text = pane_text(app, "steps")
        fact = next(line for line in text.splitlines() if "fact: migration-checksum" in line)
        assert "✓ passed" in fact and "sha256:abc" in fact, text
        assert "second line of the script" not in text and "import sys…" in text, text
        assert "gate: after" in text


async def test_the_runbook_says_step_1_above_not_steps_1_1(tmp_path: Path) -> None:
    """At 100x30 the Runbook lists a window of steps; with step 3 selected it read `✓ steps 1-1 above`."""
    app = CockpitApp(replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl"), live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        app.cockpit.panes["steps"].focus()
        await pilot.press("down", "down")
        await pilot.pause()
        text = pane_text(app, "steps")
        assert "Selected: 3." in text and "step 1 above" in text and "1-1" not in text, text


async def test_without_a_realtime_section_nothing_claims_prefixes_and_transport_agree(tmp_path: Path) -> None:
    """The production playbook has no realtime section and its api reports no channel prefix or transport:
    the verdict bar, the quit dialog and the report still said `every replica healthy · prefixes and
    transport agree`, and the health pane `✓ all replicas agree on prefix and transport` (of `1 replicas`)."""
    playbook = load_playbook(PLAYBOOKS / "production-rollback.yaml")
    engine = Engine(playbook, Journal(tmp_path / "j.jsonl"), operator="alice")
    now = time.time()
    for i in range(3):  # as the api's /health answers: a commit, nothing about realtime
        engine.state.apply(ev.HealthSample(ts=now - 3 + i, replica="api", status="ok", commit="3f2a9c1"))
    verdict_now = verdict(engine.state, now, stale_after_s(playbook))
    assert verdict_now.headline == "✓ HEALTHY — every replica healthy"
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        health = pane_text(app, "health")
        assert "agree" not in health and "prefix" not in health.split("\n", 1)[1], health
        assert app.cockpit.panes["health"].border_subtitle.startswith("1 replica · 1 ok")
        assert "prefixes" not in plain(app.query_one("#verdict", Static))


async def test_the_checklist_counts_fit_the_pane_at_100_columns(tmp_path: Path) -> None:
    """At 100x30 the checklist's count line read `evidence 4/5 · exit` — the exit criteria, what `q` asks
    about, cut off. It says both counts in the room it has."""
    app = CockpitApp(replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl"), live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        note = app.query_one("#checklist-note", Static)
        shown = plain(note).strip()
        assert "evidence 4/5" in shown and "exit 1/2" in shown and "\n" not in shown, shown
        assert len(shown) <= note.content_size.width, shown
    app = CockpitApp(replay_engine("rehearsal-full.jsonl", tmp_path / "wide.jsonl"), live=False)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert "evidence 4/5 · exit criteria 1/2" in plain(app.query_one("#checklist-note", Static))


async def test_without_realtime_the_runbook_takes_the_fanout_panes_room(tmp_path: Path) -> None:
    """The production rollback at 100x30: a third of the lower half said 'No realtime section in this
    playbook: no fanout to check' (and took a Tab stop) while the Runbook — the pane the whole production
    rollback is driven from — cut every step title at 30 columns ('1. Identify last known …')."""
    playbook = load_playbook(PLAYBOOKS / "production-rollback.yaml")
    engine = Engine(playbook, Journal(tmp_path / "j.jsonl"), operator="alice")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        panes = app.cockpit.panes
        assert not panes["fanout"].display or panes["fanout"].region.area == 0
        assert panes["steps"].region.width > panes["traffic"].region.width + 20
        steps = pane_text(app, "steps")
        assert "1. Identify last known good commit" in steps and "3. Stabilize runtime flags" in steps, steps
        focusable = {w.id for w in app.screen.focus_chain} | {
            w.parent.id for w in app.screen.focus_chain if w.parent
        }
        assert "fanout" not in focusable


async def test_the_status_bar_shows_the_time_to_detect_once_a_breach_is_journaled(tmp_path: Path) -> None:
    """The status bar said "TTD — · RTO —" while a breach was active: the breach carries its time to detect
    (an upper bound, from the start of the window that held the first bad sample). The bar, the timeline
    and the summary say the same number; RTO waits for a verified rollback."""
    engine = replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "TTD — · RTO —" in plain(app.query_one("#status", Static))
        engine.emit(breach(time.time(), bad_for_s=3.25))
        await wait_for(
            pilot,
            lambda: "TTD 3.25 s · RTO —" in plain(app.query_one("#status", Static)),
            what="the breach's time to detect in the status bar",
        )
        # The presenter layout's tile says the same bound (it waited for a verified rollback too).
        _, rows = tiles(engine.state, engine.playbook, View())
        detect = next(t for row in rows for t in row if t.label == "TIME TO DETECT")
        assert (detect.value, detect.detail) == ("3.25", "seconds, at most")
    events = read_journal(engine.journal.path).events
    assert any("time to detect within 3.25 s" in t.text for t in Evidence.from_events(events).timeline)
    fold = IncidentFold()
    for e in events:
        fold.observe(e)
    summary = summarize(engine.playbook, engine.state, incident=fold).incident
    assert summary is not None and "within 3.25 s of the first bad sample" in summary.text


async def test_the_redeploy_confirmation_fits_a_100x30_terminal_buttons_and_border_included(
    tmp_path: Path,
) -> None:
    """At 100x30 the redeploy's confirmation ran past the bottom of the screen: its border and buttons were
    off-screen. The preview scrolls inside the dialog instead; the prompt, input and buttons stay in view."""
    engine = Engine(load_playbook(PLAYBOOKS / "production-rollback.yaml"), Journal(tmp_path / "j.jsonl"))
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        engine.record_fact("last-known-good", "0123456789abcdef0123456789abcdef01234567")
        await pilot.press("a", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), what="the redeploy's preview")
        await pilot.pause()
        dialog = app.screen.query_one("#confirm-dialog")
        assert dialog.region.y >= 0 and dialog.region.bottom <= 30, dialog.region
        for part in ("#confirm-input", "#confirm", "#cancel"):
            region = app.screen.query_one(part).region
            assert region.height > 0 and region.bottom <= dialog.region.bottom - 1, (part, region)
        app.save_screenshot("confirm-100x30.svg", path=str(tmp_path))
        await pilot.press("escape")


async def test_the_export_toast_never_covers_the_quit_dialog_at_100x30(tmp_path: Path) -> None:
    """`e` then `q` at 100x30: the "Exported … files to …" toast lay over the quit dialog and its buttons.
    The dialog says where the evidence went (from the journaled export), so no toast sits on it."""
    from textual.widgets._toast import Toast

    from rollback_tui.ui.screens.quit import QuitDialog

    engine = replay_engine("three-replicas.jsonl", tmp_path / "session.jsonl")
    app = CockpitApp(engine, live=False)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await pilot.press("e")
        await wait_for(pilot, lambda: bool(app.screen.query(Toast)), what="the export's toast")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitDialog), what="the quit dialog")
        await pilot.pause()
        dialog = app.screen.query_one("#quit-dialog").region
        assert dialog.bottom <= 30 and app.screen.query_one("#leave").region.bottom < dialog.bottom
        toasts = [t.region for t in app.screen.query(Toast) if t.display and t.region.area]
        assert not [t for t in toasts if t.overlaps(dialog)], (dialog, toasts)
        beneath = [t for screen in app.screen_stack for t in screen.query(Toast)]
        assert not beneath, beneath  # nor through the backdrop, from the cockpit underneath
        folder = engine.state.exports[-1].directory
        assert "Evidence" in plain(app.screen.query_one("#quit-what", Static))
        assert Path(folder).name in flat(plain(app.screen.query_one("#quit-what", Static)))
        await pilot.pause(0.5)
        app.save_screenshot("quit-after-export-100x30.svg", path=str(tmp_path))
        await pilot.press("escape")


async def test_a_restored_checklist_rewraps_even_when_its_option_list_misses_the_resize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh-clone CI in tmux: the checklist zoomed and restored kept its zoomed lines, one line per item
    cut mid-word ('☐ Surreal guardrail scri'): OptionList caches each option's wrapped lines without their
    width and drops them only on a Resize, which a real terminal's relayout did not deliver that time (nor
    does a scrollbar appearing). Here every Resize is withheld: the items must still rewrap at the width."""
    from textual.widgets import OptionList

    app = CockpitApp(replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl"), live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        items = app.cockpit.panes["checklist"].option_list
        wrapped = items.virtual_size.height  # lines, the long items wrapped at the pane's width
        monkeypatch.setattr(OptionList, "_on_resize", lambda self: None)
        items.focus()
        await pilot.press("z")
        await pilot.pause()
        assert items.virtual_size.height < wrapped  # zoomed: the items fit on fewer lines
        await pilot.press("z")
        await pilot.pause()
        await pilot.pause()
        assert items.virtual_size.height == wrapped


async def test_gates_whose_titles_start_alike_are_told_apart_at_100_and_160_columns(tmp_path: Path) -> None:
    """The production rollback at 100x30: its two browser gates both read `Browser E2E…` in the gates
    table — which one failed could not be told. Cut titles that read alike give way to the gates' names
    (the names the tail, the toasts and the journal use), whole; at 160 columns the titles tell them apart."""
    playbook = load_playbook(PLAYBOOKS / "production-rollback.yaml")
    titles = {g.name: g.title for g in playbook.gates}
    for size, names in (((100, 30), True), ((160, 45), False)):
        engine = Engine(playbook, Journal(tmp_path / f"{size[0]}.jsonl"), operator="alice")
        app = CockpitApp(engine, live=False)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            table = app.query_one("#gates-table", DataTable)
            width = next(c.width for c in table.columns.values() if c.key == "gate")
            cells = {name: str(table.get_cell(name, "gate")) for name in titles}
            assert len(set(cells.values())) == len(cells), (size, cells)
            assert all(cell_len(cell) <= width for cell in cells.values()), (size, width, cells)
            for name, cell in cells.items():
                if names:
                    assert cell == name, (size, cells)
                else:
                    assert titles[name].startswith(cell.removesuffix("…")), (size, cells)


def border_labels(app: CockpitApp | WatchApp, pane: str) -> tuple[str, str]:
    widget = app.screen.query_one(f"#{pane}")
    return str(widget.border_title), str(widget.border_subtitle)


def fits_the_border(app: CockpitApp | WatchApp, pane: str) -> bool:
    """A border label is shown whole: the pane's width less its corners and the blanks around the label."""
    width = app.screen.query_one(f"#{pane}").outer_size.width
    return all(cell_len(label) <= width - 6 for label in border_labels(app, pane))


async def test_pane_titles_keep_their_state_words_at_100_columns(tmp_path: Path) -> None:
    """At 100x30 the Traffic pane's title read `Traffic split · ○ no synthet…` (watch) and `Traffic split ·
    ○ no load ba…` (the production cockpit), the Fanout pane's subtitle `30 frames · 2 checks · f run…`:
    cut where the state was. A narrow pane says the short form whole (`Traffic · ○ no traffic`), a key hint
    giving way before the state; a wide one keeps the full form."""
    journal = tmp_path / "watched.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-full.jsonl").read_bytes())
    viewer = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    async with viewer.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: viewer.state.last_n == 245, what="the whole journal followed")
        await pilot.pause()
        title = border_labels(viewer, "traffic")[0]
        # No cockpit writes this journal: nothing flows now, whatever its last traffic window showed
        # (its clock stands at the last event, which read '● traffic flowing').
        assert title.startswith("Traffic") and " · ○ no traffic" in title, title
        assert fits_the_border(viewer, "traffic") and fits_the_border(viewer, "fanout")

    cockpit = CockpitApp(replay_engine("rehearsal-full.jsonl", tmp_path / "session.jsonl"), live=False)
    async with cockpit.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for pane in ("fanout", "traffic"):
            assert fits_the_border(cockpit, pane), border_labels(cockpit, pane)
        assert border_labels(cockpit, "fanout")[1] == "30 frames · 2 checks"
        assert border_labels(cockpit, "traffic")[1].startswith("1 breach")
        cockpit.cockpit.engine.start_traffic(actor="runbook")
        await pilot.pause()
        title = border_labels(cockpit, "traffic")[0]
        assert title.startswith("Traffic · ● running · ") and fits_the_border(cockpit, "traffic"), title
        cockpit.cockpit.engine.stop_traffic()
    wide = CockpitApp(replay_engine("rehearsal-full.jsonl", tmp_path / "wide.jsonl"), live=False)
    async with wide.run_test(size=(160, 45)) as pilot:
        await pilot.pause()
        assert border_labels(wide, "traffic")[0] == "Traffic split · guardrails · rollback"
        assert border_labels(wide, "fanout") == (
            "Fanout · two sessions",
            "30 frames · 2 checks · f runs again",
        )

    production = Engine(load_playbook(PLAYBOOKS / "production-rollback.yaml"), Journal(tmp_path / "p.jsonl"))
    app = CockpitApp(production, live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert border_labels(app, "traffic")[0] == "Traffic · ○ no load balancer"
        assert fits_the_border(app, "traffic")


async def test_digits_focus_the_panes_the_runbook_among_them_in_the_cockpit_and_in_watch(
    tmp_path: Path,
) -> None:
    """No key led to the Runbook pane, which the production rollback is driven from: Tab cycled the panes,
    six stops deep. 1 to 6 focus the panes in screen order (health, fanout, traffic, runbook, gates,
    checklist), zoomed too; a pane the layout does not show has no key."""
    playbook = load_playbook(PLAYBOOKS / "production-rollback.yaml")
    app = CockpitApp(Engine(playbook, Journal(tmp_path / "p.jsonl"), operator="alice"), live=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        panes = app.cockpit.panes
        await pilot.press("4")
        assert app.screen.focused is panes["steps"]
        # From there its own keys work: Enter runs the selected step, R retries an item.
        assert {"run_step", "retry"} <= {a.binding.action for a in app.screen.active_bindings.values()}
        await pilot.press("5")
        assert isinstance(app.screen.focused, DataTable) and panes["gates"] in app.screen.focused.ancestors
        await pilot.press("2")  # no realtime section: no fanout pane, no key
        assert panes["gates"] in app.screen.focused.ancestors
        await pilot.press("3", "z")
        assert app.screen.maximized is panes["traffic"]
        await pilot.press("4")  # zoomed, a digit zooms that pane instead
        assert app.screen.maximized is panes["steps"] and app.screen.focused is panes["steps"]
        await pilot.press("z")
        for key in ("5", "z"):  # typed fast, as a terminal delivers them: in one read, no frame between
            app.post_message(events.Key(key, key))
        await pilot.pause()
        assert app.screen.maximized is panes["gates"]
        await pilot.press("z", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = flat("\n".join(plain(s) for s in app.screen.query(Static)))
        assert "Focus the Runbook pane" in text
        assert "Fanout pane: the playbook has no realtime section" in text
        await pilot.press("escape")

    journal = tmp_path / "watched.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-full.jsonl").read_bytes())
    viewer = WatchApp(FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name)
    async with viewer.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        panes = viewer.cockpit.panes
        for key, pane in (("4", "steps"), ("6", "checklist"), ("2", "fanout"), ("1", "health")):
            await pilot.press(key)
            focused = viewer.screen.focused
            assert focused is panes[pane] or panes[pane] in focused.ancestors, (key, focused)
        await pilot.press("p", "4")  # the presenter layout at 30 rows has no panes under its board
        assert "This layout does not show the Runbook pane." in [n.message for n in viewer._notifications]


async def changes(pilot, widget: Static) -> None:
    """Wait for what the widget shows to change (a clock: within a second or two)."""
    shown = plain(widget)
    await wait_for(pilot, lambda: plain(widget) != shown, 5, f"#{widget.id} to change")


async def test_the_session_clock_moves_while_a_dialog_is_open(tmp_path: Path) -> None:
    """With help, a confirmation or the event log open, the status bar's session clock — in plain view
    through the dimmed backdrop — stood still: the repaint held every pane while a dialog was up. The
    one-line bars (clock, verdict, notice) repaint behind it; the panes still wait for it to close."""
    playbook = Playbook.model_validate(
        {
            **demo_playbook().model_dump(exclude={"replicas", "load_balancer", "realtime"}),
            "health_interval_s": 30,
            "replicas": [{"name": "stable-a", "url": f"http://127.0.0.1:{_closed_port()}", "role": "stable"}],
        }
    )
    engine = Engine(playbook, Journal(tmp_path / "live.jsonl"), operator="alice")
    app = CockpitApp(engine, live=True)
    async with app.run_test(size=(100, 30)) as pilot:
        status = app.query_one("#status", Static)
        await wait_for(pilot, lambda: "session 00:0" in plain(status), what="the session clock")
        for dialog in ("question_mark", "l"):  # help, the event log
            await pilot.press(dialog)
            assert app.screen is not app.cockpit
            await changes(pilot, status)
            assert "health" in app.repaint.dirty  # the panes behind it still wait
            await pilot.press("escape")
        await pilot.press("q", "y")  # the exit criteria are open: q asks, y quits
        await pilot.pause()


async def test_a_terminal_grown_from_100x30_to_160x45_shows_the_panes_under_the_presenter_board(
    tmp_path: Path,
) -> None:
    """`watch --present` started at 100x30 (the board alone: too short for panes under it) and grown to
    160x45 kept the small layout — the space under the board blank — because the resize handler read the
    app's size before it followed the terminal. The layout follows the new size."""
    journal = tmp_path / "watched.jsonl"
    journal.write_bytes((JOURNALS / "rehearsal-full.jsonl").read_bytes())
    viewer = WatchApp(
        FileFollower(journal), demo_playbook(), source=str(journal), journal_name=journal.name, present=True
    )
    async with viewer.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: viewer.state.last_n == 245, what="the whole journal followed")
        lower = viewer.cockpit.query_one("#lower")
        assert not lower.display  # at 100x30 the board has the screen to itself
        await pilot.resize_terminal(160, 45)
        await pilot.pause()
        await pilot.pause()
        assert lower.display and lower.region.height > 0
        assert "FANOUT PASSED" in pane_text(viewer, "fanout")
