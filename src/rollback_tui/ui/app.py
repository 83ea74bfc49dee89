"""The cockpit: one Textual App rendering the engine's SessionState in six panes.

The engine publishes events on the app's asyncio loop; the subscriber only records which panes
are dirty. Live, a timer repaints dirty panes at most REFRESH_HZ times a second (coalescing
floods); in replay/snapshot mode (live=False) a replaceable StateChanged message does the same
without timers. The UI never does I/O: actions are engine coroutines run in workers, and every
failure becomes a notification (and, if unexpected, a journaled notice), never a crash.
"""

from __future__ import annotations

import gc
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from rollback_tui.core import events as ev
from rollback_tui.core.events import Event
from rollback_tui.playbook.model import CommandAction, SelectorRemoval
from rollback_tui.session.engine import Engine, NotAvailable
from rollback_tui.ui.features import engine_features
from rollback_tui.ui.messages import ALL_PANES, StateChanged, panes_for
from rollback_tui.ui.panes.base import Activity, View, make_redactor
from rollback_tui.ui.panes.checklist import ChecklistPane
from rollback_tui.ui.panes.fanout import FanoutPane
from rollback_tui.ui.panes.gates import GatesPane
from rollback_tui.ui.panes.health import HealthPane
from rollback_tui.ui.panes.status import NoticeLine, StatusBar, VerdictBar
from rollback_tui.ui.panes.steps import StepsPane
from rollback_tui.ui.panes.traffic import TrafficPane
from rollback_tui.ui.screens.actions import ActionsScreen
from rollback_tui.ui.screens.confirm import ConfirmRollback
from rollback_tui.ui.screens.gate_detail import GateDetail
from rollback_tui.ui.screens.help import HelpScreen
from rollback_tui.ui.screens.notices import NoticesScreen
from rollback_tui.ui.screens.reason import ReasonPrompt
from rollback_tui.ui.themes import DEFAULT_THEME, THEME_ORDER, VARIABLE_DEFAULTS, load_themes

log = logging.getLogger(__name__)

REFRESH_HZ = 15
ACTIVITY_HZ = 8  # spinners and elapsed times while something runs
WIDE_AT = 160  # terminal columns from which the wide layout is used
COMPACT_BELOW = (120, 36)  # width, height under which panes drop their least useful lines
TONE_VARIABLES = {"ok": "status-ok", "warn": "status-warn", "fail": "status-fail", "stale": "status-stale"}
# Operator actions that make no sense while a modal dialog is open.
MAIN_SCREEN_ACTIONS = {
    "run_gates",
    "fanout",
    "rollback",
    "traffic",
    "cancel_gates",
    "tick",
    "export",
    "notices",
    "help",
    "zoom",
    "step",
    "actions",
}


def tune_gc() -> None:
    """Keep garbage-collection pauses out of key presses under floods of events.

    Everything alive once the cockpit is up (Textual's DOM, styles, the playbook) moves to the permanent
    generation, so full collections only walk what came later; a larger first threshold collects the
    short-lived event objects in fewer, cheaper passes. Measured by bench/ui_storm.py: p99 key→paint
    drops from ~130 ms to ~45 ms while 10,000 fanout events/s flow.
    """
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, gen2)


def available_theme_names() -> list[str]:
    """Theme names --theme accepts (the CLI can offer them as choices)."""
    return list(load_themes())


class CockpitApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "rollback-tui"

    BINDINGS = [
        Binding("g", "run_gates", "Gates", tooltip="Run the playbook's release gates"),
        Binding("f", "fanout", "Fanout", tooltip="Run the two-session cross-replica fanout check"),
        Binding(
            "s",
            "traffic",
            "Traffic",
            tooltip="Start / stop synthetic canary traffic through the balancer",
        ),
        Binding(
            "r",
            "rollback",
            "Rollback",
            tooltip="Roll back: remove the candidate from the selector (confirms)",
        ),
        Binding("c", "cancel_gates", "Cancel", tooltip="Cancel the running gates"),
        Binding("t", "tick", "Tick", tooltip="Tick / untick the highlighted checklist item"),
        Binding("space", "tick", "Tick", show=False, tooltip="Tick / untick the highlighted checklist item"),
        Binding("e", "export", "Export", tooltip="Export the evidence (Markdown report + JSON bundle)"),
        Binding("a", "actions", "Actions", tooltip="Run one of the playbook's command actions (lab faults…)"),
        Binding(
            "right_square_bracket",
            "step(1)",
            "Next step",
            key_display="]",
            show=False,
            tooltip="Move the runbook tracker to the next step (journaled)",
        ),
        Binding(
            "left_square_bracket",
            "step(-1)",
            "Previous step",
            key_display="[",
            show=False,
            tooltip="Move the runbook tracker back a step (journaled)",
        ),
        Binding("n", "notices", "Notices", show=False, tooltip="Show every notice (feed failures, errors)"),
        Binding(
            "z",
            "zoom",
            "Zoom",
            show=False,
            tooltip="Zoom the focused pane (Tab moves focus; z again restores)",
        ),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="This help"),
        Binding(
            "colon", "command_palette", "Commands", show=False, key_display=":", tooltip="Command palette"
        ),
        Binding("T", "cycle_theme", "Theme", show=False, tooltip="Cycle theme: dark → high contrast → light"),
        Binding("q", "quit", "Quit", tooltip="Quit (stops the feeds, closes the journal)"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, tooltip="Quit"),
    ]

    def __init__(
        self,
        engine: Engine,
        *,
        theme: str | None = None,
        share: bool = False,
        live: bool = True,
        export_on_quit: bool = False,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.share = share
        self.live = live
        self.export_on_quit = export_on_quit
        self.exported_on_quit: list[Path] | None = None
        self._dirty: set[str] = set(ALL_PANES)
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self._panes: dict[str, Any] = {}
        self._startup_warnings: list[str] = []
        self._themes = load_themes()
        for t in self._themes.values():
            self.register_theme(t)
        self._requested_theme = theme or (self._remembered_theme() if live else None) or DEFAULT_THEME
        pb = engine.playbook
        self._redact = make_redactor(engine.journal.redact, share, pb.sensitive_patterns)
        self._sensitive = frozenset(r.name for r in pb.replicas if r.sensitive)
        self._features = engine_features(engine)
        self._stale_after = max(5.0, 3 * pb.health_interval_s + pb.health_timeout_s)
        # What the operator started and is still running (spinners, elapsed times).
        self._gates_queued: frozenset[str] = frozenset()
        self._gates_requested_at: float | None = None
        self._fanout_since: float | None = None
        self._traffic_since: float | None = None
        self._traffic_rps: float | None = None
        self._rollback_since: float | None = None
        self.sub_title = pb.title
        # Before mount, so the stylesheet is parsed once, with the right theme.
        self._apply_theme(self._requested_theme)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    # --- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        p = self._panes = {
            "verdict": VerdictBar(id="verdict", classes="share" if self.share else ""),
            "health": HealthPane(id="health"),
            "fanout": FanoutPane(id="fanout"),
            "traffic": TrafficPane(id="traffic"),
            "steps": StepsPane(id="steps"),
            "gates": GatesPane(id="gates"),
            "checklist": ChecklistPane(id="checklist"),
            "notice": NoticeLine(id="notice"),
            "status": StatusBar(self.engine.journal.path, self.engine.operator, id="status"),
        }
        yield p["verdict"]
        with Container(id="body"):
            yield p["health"]
            with Container(id="lower", classes=" ".join(self._layout_classes())):
                for name in ("fanout", "traffic", "steps", "gates", "checklist"):
                    yield p[name]
        yield p["notice"]
        yield p["status"]
        yield Footer()

    async def on_mount(self) -> None:
        self._unsubscribe = self.engine.subscribe(self._on_event)
        if hasattr(self.engine, "screenshot"):  # exports include an SVG of what the operator sees
            self.engine.screenshot = self.export_screenshot
        self.theme_changed_signal.subscribe(self, lambda _theme: self._mark(ALL_PANES))
        if self.live:
            self.set_interval(1 / REFRESH_HZ, self._repaint)
            # Clock and staleness move with time, not only with events.
            self.set_interval(1.0, lambda: self._mark({"status", "verdict", "health"}))
            self.set_interval(1 / ACTIVITY_HZ, self._tick_activity)
            # Feeds start once the first frame is on screen (their HTTP clients cost ~0.1 s to build).
            self.call_after_refresh(self._start_feeds)
        self._repaint()
        for warning in self._startup_warnings:
            self.notify(warning, severity="warning", timeout=8)

    async def _start_feeds(self) -> None:
        if self._stopping:
            return
        tune_gc()
        try:
            await self.engine.start()
        except Exception as exc:  # a broken feed is shown, never fatal
            self._report_failure("start", exc)

    def on_resize(self) -> None:
        # Layout classes live on the containers they affect: a class on the App would restyle every node.
        # compose() already set them for the starting size: unchanged classes cost no restyle.
        lower = self.query("#lower")
        if lower:
            wide, compact = self.size.width >= WIDE_AT, self.compact
            lower.first().set_class(wide, "-wide").set_class(compact, "-compact")
        self._mark(ALL_PANES)

    def _layout_classes(self) -> list[str]:
        wanted = {"-wide": self.size.width >= WIDE_AT, "-compact": self.compact}
        return [name for name, on in wanted.items() if on]

    @property
    def compact(self) -> bool:
        return self.size.width < COMPACT_BELOW[0] or self.size.height < COMPACT_BELOW[1]

    def activity(self) -> Activity:
        running = self._fanout_since or self._traffic_since or self._rollback_since or self._gates_queued
        return Activity(
            gates_queued=self._gates_queued,
            gates_requested_at=self._gates_requested_at,
            fanout_since=self._fanout_since,
            traffic_since=self._traffic_since,
            traffic_rps=self._traffic_rps,
            rollback_since=self._rollback_since,
            frame=int(time.monotonic() * ACTIVITY_HZ) if running and self.live else 0,
        )

    def _tick_activity(self) -> None:
        """While something runs, keep its spinner and elapsed time moving (and notice traffic ending)."""
        if self._traffic_since is not None and not self.engine.running("traffic"):
            self._traffic_since = None
            self._mark({"traffic"})
        if self._gates_queued or any(g.status == "running" for g in self.engine.state.gates.values()):
            self._mark({"gates"})
        if self._fanout_since is not None:
            self._mark({"fanout"})
        if self._traffic_since is not None or self._rollback_since is not None:
            self._mark({"traffic"})

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if getattr(self.engine, "screenshot", None) == self.export_screenshot:
            self.engine.screenshot = None

    # --- events → dirty panes → repaint -----------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Engine subscriber (runs on this loop): mark panes dirty, nothing else."""
        self._mark(panes_for(event.kind))
        if event.kind == "notice" and self.live and getattr(event, "level", "") == "error":
            self.notify(self._redact(getattr(event, "message", "")), severity="error", title="notice")

    def mark_dirty(self, panes: Iterable[str]) -> None:
        """Ask for these panes to be repainted on the next refresh tick."""
        self._mark(panes)

    def _mark(self, panes: Iterable[str]) -> None:
        before = bool(self._dirty)
        self._dirty.update(panes)
        if not self.live and self._dirty and not before:
            self.post_message(StateChanged())

    def on_state_changed(self, _message: StateChanged) -> None:
        self._repaint()

    def view(self) -> View:
        state = self.engine.state
        # Replay: time stands still at the journal's last event.
        replay_now = state.ended.ts if state.ended else (state.last_ts or 0.0)
        now = time.time() if self.live else replay_now
        theme_vars = {**VARIABLE_DEFAULTS, **self.current_theme.variables}
        return View(
            colors={tone: theme_vars[var] for tone, var in TONE_VARIABLES.items()},
            redact=self._redact,
            share=self.share,
            now=now,
            features=self._features,
            sensitive_replicas=self._sensitive,
            stale_after_s=self._stale_after,
            activity=self.activity(),
            mono=self.no_color,
            compact=self.compact,
        )

    def _repaint(self) -> None:
        if not self._dirty or not self._panes:
            return
        if self.live and isinstance(self.screen, ModalScreen):
            # A dialog is open: the panes behind it wait (they stay dirty) instead of re-blending the
            # whole dimmed background 15 times a second under a flood.
            return
        dirty, self._dirty = self._dirty, set()
        view = self.view()
        state, playbook = self.engine.state, self.engine.playbook
        for name in sorted(dirty):
            widget = self._panes.get(name)
            if widget is None or not widget.is_mounted:
                continue
            try:
                widget.refresh_from(state, playbook, view)
            except Exception:  # a pane bug must not take the cockpit down
                log.exception("pane %s failed to render", name)

    # --- themes -----------------------------------------------------------------------------------

    def _remembered_theme(self) -> str | None:
        from rollback_tui.settings import Settings

        return Settings.load().theme

    def _apply_theme(self, name: str) -> None:
        if name not in self.available_themes:
            self._startup_warnings.append(f"Unknown theme {name!r}; using {DEFAULT_THEME}.")
            name = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = name

    def action_cycle_theme(self) -> None:
        order = [n for n in THEME_ORDER if n in self.available_themes] or list(self.available_themes)
        nxt = order[(order.index(self.theme) + 1) % len(order)] if self.theme in order else order[0]
        self.theme = nxt
        self.notify(f"Theme: {nxt}", timeout=2)
        if self.live:
            self._remember_theme(nxt)

    def _remember_theme(self, name: str) -> None:
        from rollback_tui.settings import Settings

        try:
            settings = Settings.load()
            settings.theme = name
            settings.save()
        except OSError as exc:
            log.warning("could not remember theme: %s", exc)

    # --- operator actions -------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MAIN_SCREEN_ACTIONS and isinstance(self.screen, ModalScreen))

    async def _perform(self, label: str, call: Callable[[], Any]) -> Any:
        """Await an engine action; its failures become notifications, never a crash."""
        try:
            result = call()
            if inspect.isawaitable(result):
                result = await result
        except NotAvailable as exc:
            self.notify(
                self._redact(str(exc)), title=f"{label}: not available", severity="warning", timeout=6
            )
        except Exception as exc:
            self._report_failure(label, exc)
        else:
            self._done(label, result)
            return result
        return None

    def _run(self, label: str, call: Callable[[], Any]) -> None:
        """One-off engine actions (tick, export) in a worker."""
        self.run_worker(self._perform(label, call), name=label, group="actions")

    def _busy(self, group: str) -> bool:
        return any(w.group == group and not w.is_finished for w in self.workers)

    def _report_failure(self, label: str, exc: BaseException) -> None:
        message = f"{label} failed: {type(exc).__name__}: {exc}"
        log.error(message)
        self.notify(self._redact(message), title=label, severity="error", timeout=10)
        try:
            self.engine.notice("ui", message, "error")
        except Exception:  # journal closed while quitting
            log.exception("could not journal the failure of %s", label)

    def _done(self, label: str, result: object) -> None:
        """A short outcome toast; the panes show the detail."""
        message, severity = None, "information"
        if isinstance(result, list) and result and isinstance(result[0], ev.GateFinished):
            failed = [g.gate for g in result if g.outcome != "passed"]
            message = f"✗ gates failed: {', '.join(failed)}" if failed else f"✓ {len(result)} gates passed"
            severity = "error" if failed else "information"
        elif isinstance(result, ev.FanoutResult):
            message = (
                "✓ fanout check passed"
                if result.passed
                else f"✗ fanout check failed: {'; '.join(result.reasons[:2])}"
            )
            severity = "information" if result.passed else "error"
        elif isinstance(result, ev.RollbackVerified):
            message = f"{'✓' if result.ok else '✗'} rollback verified: {result.stable_share:.0%} on stable"
            severity = "information" if result.ok else "error"
        elif isinstance(result, ev.ChecklistTicked):
            message = f"{'☑ ticked' if result.checked else '☐ unticked'}: {result.item}"
        elif isinstance(result, str) and label in {a.name for a in self.engine.playbook.actions}:
            message = f"{'✓' if result == 'passed' else '✗'} {label}: {result}"
            severity = "information" if result == "passed" else "error"
        elif label == "export" and isinstance(result, list):
            where = result[0].parent if result else "?"
            message = f"Exported {len(result)} files to {where}"
        if message:
            self.notify(self._redact(message), title=label, severity=severity, timeout=6)  # type: ignore[arg-type]

    # Gates ----------------------------------------------------------------------------------------

    def action_run_gates(self) -> None:
        if self._busy("gates"):
            self.notify("Gates are already running — c cancels them.", severity="warning", timeout=4)
            return
        self.run_gates_worker()

    @work(exclusive=True, group="gates", exit_on_error=False)
    async def run_gates_worker(self, names: list[str] | None = None) -> None:
        self._gates_queued = frozenset(names or [g.name for g in self.engine.playbook.gates])
        self._gates_requested_at = time.time()
        self._mark({"gates"})
        try:
            await self._perform("gates", lambda: self.engine.run_gates(names))
        finally:
            self._gates_queued, self._gates_requested_at = frozenset(), None
            self._mark({"gates", "steps"})

    def action_cancel_gates(self) -> None:
        running = [g.name for g in self.engine.state.gates.values() if g.status == "running"]
        queued = bool(self._gates_queued)
        cancelled = [name for name in running if self._cancel_gate(name)]
        if queued:  # the queued ones must not start after the running one is cancelled
            self.workers.cancel_group(self, "gates")
        if cancelled or queued:
            self.notify(f"Cancelling {', '.join(cancelled) or 'queued gates'}…", timeout=3)
        else:
            self.notify("No gates are running.", timeout=3)

    def _cancel_gate(self, name: str) -> bool:
        try:
            return self.engine.cancel_gate(name)
        except Exception as exc:
            self._report_failure("cancel", exc)
            return False

    @on(GatesPane.Opened)
    def _open_gate(self, message: GatesPane.Opened) -> None:
        name = message.gate
        self.push_screen(GateDetail(name, lambda: self.engine.state.gates.get(name), self.view))

    # Fanout ---------------------------------------------------------------------------------------

    def action_fanout(self) -> None:
        if self._busy("fanout"):
            self.notify("A fanout check is already running.", timeout=3)
            return
        self.fanout_worker()

    @work(exclusive=True, group="fanout", exit_on_error=False)
    async def fanout_worker(self) -> None:
        self._fanout_since = time.time()
        self._mark({"fanout"})
        try:
            await self._perform("fanout check", self.engine.run_fanout_check)
        finally:
            self._fanout_since = None
            self._mark({"fanout", "verdict", "steps"})

    # Traffic --------------------------------------------------------------------------------------

    def action_traffic(self) -> None:
        """Start synthetic canary traffic through the balancer, or stop it."""
        try:
            if self.engine.stop_traffic():
                self._traffic_since = None
                self.notify("Synthetic traffic stopped.", timeout=3)
            else:
                rps = self.engine.start_traffic()
                self._traffic_since, self._traffic_rps = time.time(), rps
                self.notify(f"Synthetic traffic started: {rps:g} rps through the balancer.", timeout=3)
        except NotAvailable as exc:
            self.notify(self._redact(str(exc)), title="traffic: not available", severity="warning", timeout=6)
        except Exception as exc:
            self._report_failure("traffic", exc)
        self._mark({"traffic"})

    # Rollback -------------------------------------------------------------------------------------

    @work(exclusive=True, group="rollback", exit_on_error=False)
    async def rollback_worker(self, action: str, typed: str) -> None:
        self._rollback_since = time.time()
        self._mark({"traffic"})
        try:
            await self._perform("rollback", lambda: self.engine.rollback(action, typed))
        finally:
            self._rollback_since = None
            self._mark({"traffic", "steps", "status"})

    def action_zoom(self) -> None:
        """Zoom the focused pane to the whole screen (z again, or Esc, restores)."""
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
            return
        focused = screen.focused
        pane = next(
            (w for w in (focused, *(focused.ancestors if focused else ())) if w in self._panes.values()), None
        )
        target = pane or self._panes.get("fanout")
        if target is not None:
            screen.maximize(target, container=False)

    def action_export(self) -> None:
        self._run("export", self.engine.export)

    def action_tick(self) -> None:
        item = self._panes["checklist"].highlighted_item()
        if item is None:
            self.notify("Highlight a checklist item first (↑/↓).", severity="warning", timeout=3)
            return
        status = self.engine.checklist().get(item)
        checked = not (status.checked if status else False)
        if status is None or status.rule == "manual":
            self._run("tick", lambda: self.engine.tick(item, checked, ""))
            return
        verb = "Tick" if checked else "Untick"
        question = f"{verb} '{status.text}' by hand? Its evidence decides it automatically ({status.rule})."

        def answered(reason: str | None) -> None:
            if reason is not None:
                self._run("tick", lambda: self.engine.tick(item, checked, reason))

        self.push_screen(ReasonPrompt(question), callback=answered)

    def action_actions(self) -> None:
        actions = [a for a in self.engine.playbook.actions if isinstance(a, CommandAction)]
        if not actions:
            self.notify("This playbook has no command actions.", severity="warning", timeout=3)
            return

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                name, typed = answer
                self._run(name, lambda: self.engine.run_action(name, confirmed_text=typed or None))

        self.push_screen(ActionsScreen(actions), callback=chosen)

    def action_step(self, offset: int) -> None:
        step = self.engine.step_after(offset)
        if step is None:
            self.notify("No step that way.", severity="warning", timeout=2)
            return
        self._run("step", lambda: self.engine.enter_step(step))

    def selector_removal(self) -> SelectorRemoval | None:
        return next((a for a in self.engine.playbook.actions if isinstance(a, SelectorRemoval)), None)

    def action_rollback(self) -> None:
        """Ask for the typed confirmation; the engine journals the request, or the operator's decline."""
        try:
            removal = self.engine.rollback_action()
        except NotAvailable as exc:
            self.notify(self._redact(str(exc)), title="rollback", severity="warning", timeout=6)
            return

        def answered(typed: str | None) -> None:
            if typed is None:
                try:
                    self.engine.cancel_rollback(removal.name)
                except Exception as exc:
                    self._report_failure("rollback", exc)
                    return
                self.notify("Rollback declined; nothing changed.", timeout=3)
                return
            if self._busy("rollback"):
                self.notify("A rollback is already in progress.", severity="warning", timeout=4)
                return
            self.rollback_worker(removal.name, typed)

        self.push_screen(ConfirmRollback(removal, self.engine.playbook), callback=answered)

    def action_help(self) -> None:
        # Built once and kept installed: reopening it costs a paint, not a compose.
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.help_bindings()), "help")
        self.push_screen("help")

    def action_notices(self) -> None:
        self.push_screen(NoticesScreen(list(self.engine.state.notices), self._redact))

    def help_bindings(self) -> list[Binding]:
        """The app's bindings with their long descriptions (the help screen is generated from these)."""
        out = []
        for b in self.BINDINGS:
            assert isinstance(b, Binding)
            out.append(Binding(b.key, b.action, b.tooltip or b.description, key_display=b.key_display))
        out.append(Binding("ctrl+p", "command_palette", "Command palette"))
        return out

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        commands: list[tuple[str, str, Callable[[], Any]]] = [
            ("Run gates", "Run the playbook's release gates (g)", self.action_run_gates),
            ("Run fanout check", "Two stream sessions on two replicas, same thread (f)", self.action_fanout),
            (
                "Start / stop synthetic traffic",
                "Canary traffic through the balancer (s)",
                self.action_traffic,
            ),
            ("Cancel running gates", "Stop the gates that are running (c)", self.action_cancel_gates),
            ("Zoom pane", "Zoom the focused pane; z again restores (z)", self.action_zoom),
            (
                "Roll back",
                "Remove the candidate from the service selector — asks to confirm (r)",
                self.action_rollback,
            ),
            ("Tick checklist item", "Tick / untick the highlighted evidence item (t)", self.action_tick),
            ("Export evidence", "Write the Markdown report and JSON bundle (e)", self.action_export),
            ("Show notices", "Feed failures, warnings and action errors (n)", self.action_notices),
            ("Cycle theme", "dark → high contrast → light (T)", self.action_cycle_theme),
            ("Help", "Keys and status glyphs (?)", self.action_help),
        ]
        for title, help_text, callback in commands:
            yield SystemCommand(title, help_text, callback)
        for name in THEME_ORDER:
            if name in self.available_themes:
                yield SystemCommand(f"Theme: {name}", f"Switch to {name}", lambda n=name: self._set_theme(n))
        yield SystemCommand("Quit", "Stop the feeds, close the journal and exit (q)", self.action_quit)

    def _set_theme(self, name: str) -> None:
        self.theme = name
        if self.live:
            self._remember_theme(name)

    async def action_quit(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.notify("Stopping feeds…", timeout=2)
        # The journal stays open: whoever opened it (the CLI) closes it after the final export.
        await _quietly(self.engine.stop("quit", close=False))
        if self.export_on_quit:
            try:  # while the screen is still up, so the export carries its SVG
                self.exported_on_quit = await self.engine.export()
            except Exception:
                log.exception("export on quit failed")
        if not self.engine.journal.closed:
            self.engine.journal.flush(fsync=True)
        self.exit()


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("engine stop failed")
