"""The cockpit app: wiring between the engine and the cockpit screen.

`PanesApp` is the read side the cockpit and `watch` (ui/watch.py) share: a session's state and playbook
painted into the panes, themes, and the repaint scheduler (ui/repaint.py), which repaints dirty panes in
batches. `CockpitApp` adds the engine: it publishes events on the app's asyncio loop and the subscriber only
marks panes dirty. The cockpit screen (ui/screens/cockpit.py) adds the operator's keys to the panes
(ui/screens/panes.py); the command table (ui/commands.py) generates the bindings, the palette and the help.
The UI never does I/O: actions are engine coroutines run in workers, and every failure becomes a
notification (and, if unexpected, a journaled notice), never a crash.

The CLI starts `CockpitApp(opener=…)`: its first frame is the loading screen (ui/loading.py), painted before
the playbook is validated and before the panes, the engine or pydantic are imported; the session and its
panes follow on the same app. Tests and benches hand it a ready engine instead (`CockpitApp(engine)`).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual.app import App
from textual.events import Resize
from textual.screen import ModalScreen, Screen

from rollback_tui.ui import theme_store
from rollback_tui.ui.commands import CockpitCommands, Command, bindings, invoke, offered_keys, supported
from rollback_tui.ui.features import engine_features
from rollback_tui.ui.loading import LoadingScreen, NotOpened, SessionOpener
from rollback_tui.ui.messages import ALL_PANES, StateChanged, panes_for
from rollback_tui.ui.repaint import RepaintScheduler
from rollback_tui.ui.themes import VARIABLE_DEFAULTS, load_themes

# The rest is imported once a session is there (in a thread while the loading screen is up, for `open`):
# the first frame needs none of it (ui/loading.py; tests/test_startup.py).
if TYPE_CHECKING:
    from rollback_tui.core.events import Event, OperatorAction
    from rollback_tui.core.state import SessionState
    from rollback_tui.playbook.model import Playbook
    from rollback_tui.session.engine import Engine
    from rollback_tui.ui.panes.base import View
    from rollback_tui.ui.screens.cockpit import CockpitScreen
    from rollback_tui.ui.screens.panes import PanesScreen

log = logging.getLogger(__name__)

TONE_VARIABLES = {"ok": "status-ok", "warn": "status-warn", "fail": "status-fail", "stale": "status-stale"}
# The one-line bars: what they say shows through a dialog's backdrop (the session clock, the verdict, the
# latest notice, a viewer's follow line), and repainting them under it re-blends a few lines, not the screen.
BARS = frozenset({"verdict", "notice", "status", "watch"})
BARS_BEHIND_DIALOG_S = 1.0  # how often the bars repaint behind a dialog (the clock's second)


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


class PanesApp(App[None]):
    """The panes over one session's state and playbook: the read side (no engine, no actions).

    Subclasses set `self.cockpit` (the screen with the panes) and `state`, and start what feeds the state
    in `start_feeds`; whatever changes the state calls `mark_dirty` with the panes it changes.
    """

    CSS_PATH = "app.tcss"
    TITLE = "rollback-tui"
    COMMANDS = {CockpitCommands}
    read_only = False  # a viewer's app: views only, no operator keys (ui/commands.py)
    # Set by show_session, before the panes' screen is shown (on construction, or once a cockpit opened).
    cockpit: PanesScreen
    playbook: Playbook
    supports: frozenset[str]  # what the playbook has: the commands offered follow it
    keys: dict[str, str]  # command id → its key, for the commands offered: what the panes' hints may name
    redact: Callable[[str], str]

    def __init__(self, *, theme: str | None, share: bool, live: bool) -> None:
        super().__init__()
        self.share = share
        self.live = live
        self.has_session = False
        self._cockpit_mounted = False
        self._bars_behind_dialog_at = 0.0
        self._crash: Exception | None = None  # the unexpected error that ends the app, for _fatal_error
        self._startup_warnings: list[str] = []
        for t in load_themes().values():
            self.register_theme(t)
        self.repaint = RepaintScheduler(self._paint, live=live, post=self.post_message, hold=self._hold)
        # Before mount, so the stylesheet is parsed once, with the right theme.
        self._apply_theme(theme_store.starting(theme, live=live))

    def _handle_exception(self, error: Exception) -> None:
        self._crash = error
        super()._handle_exception(error)

    def _fatal_error(self) -> None:
        """An unexpected error ends the app. Textual would print its traceback with every frame's locals,
        and a resolved secret or an environment can be one of them: the frames only, redacted (and logged)."""
        import traceback

        from rich.text import Text

        crash = self._crash
        text = "".join(traceback.format_exception(crash)) if crash is not None else traceback.format_exc()
        redact: Callable[[str], str] = getattr(self, "redact", str)
        text = redact(text)
        log.error("the cockpit stopped on an unexpected error:\n%s", text)
        self.bell()
        self._exit_renderables.append(Text(text))
        self._close_messages_no_wait()

    def show_session(
        self,
        playbook: Playbook,
        redact_base: Callable[[str], str],
        features: frozenset[str],
        screen: PanesScreen,
    ) -> None:
        """What the panes paint with, and the screen holding them."""
        from rollback_tui.core.verdict import stale_after_s
        from rollback_tui.ui.panes.base import make_redactor

        self.playbook = playbook
        self.supports = supported(playbook)
        self.keys = offered_keys(self.read_only, self.supports)  # and the key hints the panes give
        self.redact = make_redactor(redact_base, self.share, playbook.sensitive_patterns)
        self._sensitive = frozenset(r.name for r in playbook.replicas if r.sensitive)
        self._features = features
        self._stale_after = stale_after_s(playbook)
        self.sub_title = playbook.title
        self.cockpit = screen
        self.has_session = True

    @property
    def state(self) -> SessionState:
        raise NotImplementedError

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def get_default_screen(self) -> Screen[Any]:
        return self.cockpit

    # --- lifecycle ------------------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, lambda _theme: self.mark_dirty(ALL_PANES))
        for warning in self._startup_warnings:
            self.notify(warning, severity="warning", timeout=8)
        if self.has_session:
            self.begin()

    def begin(self) -> None:
        """The session is there: feed the state, repaint. The screen composes on its own task, maybe after
        this: what needs its panes waits for cockpit_mounted()."""
        self.wire()
        self.repaint.start(self)
        if self.live:
            # Clock and staleness move with time, not only with events.
            self.set_interval(1.0, lambda: self.mark_dirty({"status", "verdict", "health"}))

    def wire(self) -> None:
        """Connect what feeds the state (on mount, before the first paint)."""

    def cockpit_mounted(self) -> None:
        """The panes are mounted: paint them before the screen's first layout (a second one costs more)."""
        self._cockpit_mounted = True
        self.repaint.flush()
        if self.live:
            # Feeds start once the first frame is on screen (their HTTP clients cost ~0.1 s to build).
            self.call_after_refresh(self.start_feeds)

    async def start_feeds(self) -> None:
        """Start what keeps the state moving (after the first frame)."""

    def on_resize(self, event: Resize) -> None:
        # The event's size: this handler runs before App.size follows it (a terminal grown from 100x30 to
        # 160x45 kept the small layout: the presenter board alone, the space under it blank).
        if self.has_session:
            self.cockpit.fit(event.size)
        self.mark_dirty(ALL_PANES)

    @property
    def compact(self) -> bool:
        from rollback_tui.ui.screens.panes import is_compact

        return is_compact(self.size)

    # --- dirty panes → repaint ------------------------------------------------------------------------

    def mark_dirty(self, panes: Iterable[str]) -> None:
        """Ask for these panes to be repainted on the next refresh."""
        self.repaint.mark(panes)

    def on_state_changed(self, _message: StateChanged) -> None:
        self.repaint.flush()

    def _hold(self) -> frozenset[str]:
        """The panes that wait (they stay dirty): all of them before they are mounted (or once the screens
        are gone, quitting); while a dialog is open, all of them but the bars once a second — the clock
        moves — since each repaint behind a dialog re-blends the dimmed backdrop: at 15 a second under a
        fanout storm that put the dialog's own key → paint p99 over 50 ms."""
        stack = self.screen_stack
        if not (self._cockpit_mounted and stack):
            return ALL_PANES
        if not (self.live and isinstance(stack[-1], ModalScreen)):
            return frozenset()
        now = time.monotonic()
        if now - self._bars_behind_dialog_at < BARS_BEHIND_DIALOG_S:
            return ALL_PANES
        self._bars_behind_dialog_at = now
        return ALL_PANES - BARS

    def _paint(self, names: list[str]) -> None:
        self.cockpit.paint(names, self.state, self.playbook, self.view())

    def now(self) -> float:
        """The panes' clock: now, live; a replay's time stands still at the journal's end, the moment the
        report describes too."""
        from rollback_tui.core.read import session_now

        return time.time() if self.live else session_now(self.state)

    def view(self) -> View:
        from rollback_tui.ui.panes.base import View

        theme_vars = {**VARIABLE_DEFAULTS, **self.current_theme.variables}
        return View(
            colors={tone: theme_vars[var] for tone, var in TONE_VARIABLES.items()},
            redact=self.redact,
            share=self.share,
            now=self.now(),
            features=self._features,
            sensitive_replicas=self._sensitive,
            stale_after_s=self._stale_after,
            activity=self.cockpit.activity(self.live),
            mono=self.no_color,
            compact=self.compact,
            read_only=self.read_only,
            keys=self.keys,
        )

    # --- commands and themes ----------------------------------------------------------------------

    def run_command(self, command: Command) -> Any:
        """Run a command chosen in the palette on the node its bindings live on."""
        nodes = {"app": self, "screen": self.cockpit, "steps": self.cockpit.panes.get("steps")}
        return invoke(nodes[command.scope], command.action)

    def _apply_theme(self, name: str) -> None:
        chosen, warning = theme_store.resolve(name, self.available_themes)
        if warning:
            self._startup_warnings.append(warning)
        self.theme = chosen

    def set_theme(self, name: str) -> None:
        self.theme = name
        if self.live:
            theme_store.remember(name)

    def action_cycle_theme(self) -> None:
        nxt = theme_store.following(self.theme, self.available_themes)
        self.set_theme(nxt)
        self.notify(f"Theme: {nxt}", timeout=2)


def import_cockpit() -> None:
    """The cockpit screen's modules: panes, dialogs, the engine, the playbook model (~0.1 s)."""
    importlib.import_module("rollback_tui.ui.screens.cockpit")


class CockpitApp(PanesApp):
    BINDINGS = bindings("app")
    cockpit: CockpitScreen
    engine: Engine
    loading: LoadingScreen  # the first screen, when opened by an opener

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        opener: SessionOpener | None = None,
        theme: str | None = None,
        share: bool = False,
        live: bool = True,
        export_on_quit: bool = False,
        present: bool = False,
    ) -> None:
        """On a running engine, or on an opener that starts one after the first frame (ui/loading.py)."""
        if (engine is None) == (opener is None):
            raise TypeError("CockpitApp takes an engine or an opener")
        super().__init__(theme=theme, share=share, live=live)
        self.export_on_quit = export_on_quit
        self.exported_on_quit: list[Path] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self._present = present
        self._opener = opener
        self.not_opened: NotOpened | None = None  # why the opener failed (the CLI prints it, exits with it)
        if engine is not None:
            self._show_engine(engine)

    @property
    def state(self) -> SessionState:
        return self.engine.state

    def _show_engine(self, engine: Engine) -> None:
        from rollback_tui.ui.screens.cockpit import CockpitScreen

        self.engine = engine
        screen = CockpitScreen(engine, share=self.share, present=self._present)
        self.show_session(engine.playbook, engine.journal.redact, engine_features(engine), screen)

    # --- opening (ui/loading.py) --------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        if self.has_session:
            return self.cockpit
        assert self._opener is not None
        self.loading = LoadingScreen(self._opener.source)
        return self.loading

    async def on_mount(self) -> None:
        await super().on_mount()
        if not self.has_session:  # once the loading screen is on the terminal
            self.call_after_refresh(lambda: self.run_worker(self._open(), name="open", group="open"))

    async def _open(self) -> None:
        """Validate, import the panes, start the session, show it; or show why it could not open."""
        assert self._opener is not None
        opener, loading = self._opener, self.loading
        try:
            loading.say("validating the playbook")
            await asyncio.to_thread(opener.validate)  # nothing is journaled or started before this returns
            loading.say("loading the cockpit")
            await asyncio.to_thread(import_cockpit)
            engine = await opener.start(loading.say)
        except NotOpened as failure:
            self.not_opened = failure
            loading.fail(failure)
            return
        self._show_engine(engine)
        self.begin()
        # On top of the loading screen, which stays under it unseen (Textual cannot switch away from an
        # app's first screen).
        await self.push_screen(self.cockpit)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the session opens, the app's keys that need it (the palette) wait for it.
        return self.has_session or action in ("quit", "cycle_theme")

    # --- lifecycle ------------------------------------------------------------------------------

    def wire(self) -> None:
        self._unsubscribe = self.engine.subscribe(self._on_event)
        if hasattr(self.engine, "screenshot"):  # exports include an SVG of what the operator sees
            self.engine.screenshot = self.screenshot_without_toasts
        if self.live:
            from rollback_tui.ui.screens.cockpit import ACTIVITY_HZ

            self.set_interval(1 / ACTIVITY_HZ, self.cockpit.tick_activity)

    async def start_feeds(self) -> None:
        if self._stopping:
            return
        tune_gc()
        try:
            await self.engine.start()
        except Exception as exc:  # a broken feed is shown, never fatal
            self.report_failure("start", exc)

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.has_session and getattr(self.engine, "screenshot", None) == self.screenshot_without_toasts:
            self.engine.screenshot = None

    # --- events → dirty panes → repaint -----------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Engine subscriber (runs on this loop): mark panes dirty, nothing else."""
        self.mark_dirty(panes_for(event.kind))
        if event.kind == "operator_action":
            self.cockpit.operator_acted(cast("OperatorAction", event))
        if event.kind == "notice" and self.live and getattr(event, "level", "") == "error":
            self.notify(self.redact(getattr(event, "message", "")), severity="error", title="notice")

    # --- running engine actions -------------------------------------------------------------------

    def run_playbook_action(self, name: str) -> None:
        """A playbook action chosen in the palette: through its confirmation, as `a` would run it."""
        self.cockpit.run_playbook_action(name)

    def run_step_named(self, name: str) -> None:
        """A runbook step chosen in the palette: its items in order, as Enter on it in the pane."""
        self.cockpit.run_step(name)

    async def perform(self, label: str, call: Callable[[], Any]) -> Any:
        """Await an engine action; its failures become notifications, never a crash."""
        from rollback_tui.session.engine import NotAvailable

        try:
            result = call()
            if inspect.isawaitable(result):
                result = await result
        except NotAvailable as exc:
            self.not_available(f"{label}: not available", exc)
        except Exception as exc:
            self.report_failure(label, exc)
        else:
            self._done(label, result)
            return result
        return None

    def launch(self, label: str, call: Callable[[], Any]) -> None:
        """One-off engine actions (tick, export) in a worker."""
        self.run_worker(self.perform(label, call), name=label, group="actions")

    def busy(self, group: str) -> bool:
        return any(w.group == group and not w.is_finished for w in self.workers)

    def not_available(self, title: str, exc: Exception) -> None:
        self.notify(self.redact(str(exc)), title=title, severity="warning", timeout=6)

    def report_failure(self, label: str, exc: BaseException) -> None:
        message = f"{label} failed: {type(exc).__name__}: {exc}"
        log.error(message)
        self.notify(self.redact(message), title=label, severity="error", timeout=10)
        try:
            self.engine.notice("ui", message, "error")
        except Exception:  # journal closed while quitting
            log.exception("could not journal the failure of %s", label)

    def _done(self, label: str, result: object) -> None:
        """A short outcome toast; the panes show the detail."""
        from rollback_tui.core import events as ev
        from rollback_tui.core.read.words import pct

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
            message = f"{'✓' if result.ok else '✗'} rollback verified: {pct(result.stable_share)} on stable"
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
            self.notify(self.redact(message), title=label, severity=severity, timeout=6)  # type: ignore[arg-type]

    async def action_quit(self) -> None:
        """q, ctrl+c, ctrl+q: on a dialog, close it (as Esc would); on the cockpit, quit — asking first when
        something runs or the exit criteria are unmet, so no single key loses the session."""
        if self._stopping:
            return
        if not self.has_session:  # still opening, or it failed: nothing runs yet, nothing to ask
            self._stopping = True
            if self.not_opened is None:
                self.not_opened = NotOpened("Quit before the session opened: nothing was journaled.", 1)
            self.exit(return_code=self.not_opened.status)
            return
        if isinstance(self.screen, ModalScreen):
            await close_dialog(self.screen)
            return
        concerns = self.cockpit.quit_concerns()
        if not concerns.any:
            await self.stop_and_exit()
            return

        async def answered(leave: bool | None) -> None:
            if not leave:
                return
            self.engine.quit_anyway(
                running=concerns.running, verdict=concerns.verdict_line, missing=concerns.exit.missing
            )
            await self.stop_and_exit()

        from rollback_tui.ui.screens.quit import QuitDialog

        self.push_screen(QuitDialog(concerns, exports=self.export_on_quit), callback=answered)

    async def stop_and_exit(self) -> None:
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

    def screenshot_without_toasts(self) -> str:
        """The SVG an export carries: the screen as the operator sees it, minus the passing toasts."""
        racks = [rack for rack in self.screen.query("#textual-toastrack") if rack.display]
        for rack in racks:
            rack.display = False
        if racks:
            self.screen._refresh_layout()  # reflow now: the export cannot wait for the next frame
        try:
            return self.export_screenshot()
        finally:
            for rack in racks:
                rack.display = True
            if racks:
                self.screen.refresh(layout=True)


async def close_dialog(screen: Screen[Any]) -> None:
    """Do what Esc does on a dialog, so a declined confirmation is journaled as declined."""
    for action in ("cancel", "escape"):  # our dialogs' Esc; the command palette's
        if hasattr(screen, f"action_{action}") or hasattr(screen, f"_action_{action}"):
            await screen.run_action(action)
            return
    screen.dismiss(None)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("engine stop failed")
