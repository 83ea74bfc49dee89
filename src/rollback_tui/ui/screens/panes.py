"""The panes over a session's state, laid out: the read side shared by the cockpit and `watch`.

Verdict bar on top, health full width, five panes below, notice line, status bar and footer; the presenter
board (`p`) replaces the verdict bar and health with large text and hides the panes the playbook has nothing
for. Views only (zoom, help, notices, presenter, a gate's detail): the operator's actions live on the
cockpit screen (ui/screens/cockpit.py), which a `watch` viewer does not have.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.commands import FOCUS_PANES, help_bindings, not_offered
from rollback_tui.ui.panes.base import Activity, View
from rollback_tui.ui.panes.checklist import ChecklistPane
from rollback_tui.ui.panes.fanout import FanoutPane
from rollback_tui.ui.panes.gates import GatesPane
from rollback_tui.ui.panes.health import HealthPane
from rollback_tui.ui.panes.presenter import PresenterBoard, has_rollback
from rollback_tui.ui.panes.status import NoticeLine, StatusBar, VerdictBar
from rollback_tui.ui.panes.steps import StepsPane
from rollback_tui.ui.panes.traffic import TrafficPane
from rollback_tui.ui.screens.event_log import EventLogScreen
from rollback_tui.ui.screens.gate_detail import GateDetail
from rollback_tui.ui.screens.help import HelpScreen
from rollback_tui.ui.screens.notices import NoticesScreen
from rollback_tui.ui.screens.readiness import ReadinessScreen, Recheck

if TYPE_CHECKING:
    from rollback_tui.ui.app import PanesApp

log = logging.getLogger(__name__)

WIDE_AT = 160  # terminal columns from which the wide layout is used
COMPACT_BELOW = (120, 36)  # width, height under which panes drop their least useful lines
SHORT_BELOW = 40  # rows under which the presenter board shows no panes under it
LOWER_PANES = ("fanout", "traffic", "steps", "gates", "checklist")
# The board shows what these panes show (verdict, rollback and breaches, checklist, TTD/RTO): it repaints
# with them.
PRESENTER_READS = frozenset({"verdict", "traffic", "checklist", "status"})


def is_compact(size: Size) -> bool:
    return size.width < COMPACT_BELOW[0] or size.height < COMPACT_BELOW[1]


def layout_classes(size: Size) -> dict[str, bool]:
    """The lower grid's classes for a terminal size: which are on. (`-short`: too short for panes under the
    presenter board, which then has the screen to itself.)"""
    return {"-wide": size.width >= WIDE_AT, "-compact": is_compact(size), "-short": size.height < SHORT_BELOW}


def applies(pane: str, playbook: Playbook) -> bool:
    """Whether the playbook gives `pane` anything to show (the presenter layout hides the others)."""
    if pane == "fanout":
        return playbook.realtime is not None
    if pane == "traffic":
        return playbook.load_balancer is not None or bool(playbook.guardrails) or has_rollback(playbook)
    if pane == "gates":
        return bool(playbook.gates)
    if pane == "checklist":
        return bool(playbook.checklist or playbook.exit_criteria)
    return True


class PanesScreen(Screen[None]):
    """The panes and the views over them; subclasses bring their own key bindings (ui/commands.py)."""

    if TYPE_CHECKING:
        app: PanesApp

    def __init__(
        self, journal_path: Path, operator: str | None, playbook: Playbook, *, share: bool, present: bool
    ) -> None:
        super().__init__()
        self.journal_path = journal_path
        self.operator = operator
        self.playbook = playbook
        self.share = share
        self.presenting = present
        self.panes: dict[str, Any] = {}

    # --- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        p = self.panes = {
            "verdict": VerdictBar(id="verdict", classes="share" if self.share else ""),
            "presenter": PresenterBoard(id="presenter"),
            "health": HealthPane(id="health"),
            "fanout": FanoutPane(id="fanout"),
            "traffic": TrafficPane(id="traffic"),
            "steps": StepsPane(id="steps"),
            "gates": GatesPane(id="gates"),
            "checklist": ChecklistPane(id="checklist"),
            "notice": NoticeLine(id="notice"),
            "status": StatusBar(self.journal_path, self.operator, id="status"),
        }
        self.set_class(self.presenting, "-present")
        yield p["verdict"]
        with Container(id="body"):
            yield p["presenter"]
            yield p["health"]
            # The starting size's classes, so the first layout is already the right one.
            classes = " ".join(name for name, wanted in layout_classes(self.app.size).items() if wanted)
            if not applies("fanout", self.playbook):  # the Runbook takes its room (app.tcss)
                classes += " -no-fanout"
            with Container(id="lower", classes=classes):
                for name in LOWER_PANES:
                    p[name].set_class(not applies(name, self.playbook), "-not-applicable")
                    yield p[name]
        yield from self.extra_lines()
        yield p["notice"]
        yield p["status"]
        # The palette's keys are in `?`; the footer's room is for the operator's keys (`q Quit` at 100
        # columns): no ctrl+p docked at the footer's right end.
        yield Footer(show_command_palette=False)

    def extra_lines(self) -> ComposeResult:
        """One-line widgets above the notice line (a viewer's follow status); they register in `panes`."""
        yield from ()

    def on_mount(self) -> None:
        self.app.cockpit_mounted()

    def fit(self, size: Size) -> None:
        """Follow the terminal's size. Layout classes live on the containers they affect (a class on the
        screen would restyle every node); unchanged classes cost no restyle."""
        for lower in self.query("#lower"):
            for name, wanted in layout_classes(size).items():
                lower.set_class(wanted, name)

    def paint(self, names: list[str], state: SessionState, playbook: Playbook, view: View) -> None:
        if self.presenting and PRESENTER_READS.intersection(names):
            names = [*names, "presenter"]
        for name in names:
            widget = self.panes.get(name)
            if widget is None or not widget.is_mounted or not widget.display:
                continue
            try:
                widget.refresh_from(state, playbook, view)
            except Exception:  # a pane bug must not take the screen down
                log.exception("pane %s failed to render", name)

    def activity(self, live: bool) -> Activity:
        """What the operator started and is still running: nothing, on a screen without operator keys."""
        return Activity()

    # --- views ----------------------------------------------------------------------------------------

    def action_present(self) -> None:
        """The presenter layout for the call (p again returns to the panes)."""
        self.presenting = not self.presenting
        self.set_class(self.presenting, "-present")
        self.app.mark_dirty({"presenter", "verdict", "health", *LOWER_PANES})

    def action_zoom(self) -> None:
        """Zoom the focused pane to the whole screen (z again, or Esc, restores)."""
        if self.maximized is not None:
            self.minimize()
            return
        focused = self.focused
        pane = next(
            (w for w in (focused, *(focused.ancestors if focused else ())) if w in self.panes.values()), None
        )
        target = pane or self.panes.get("fanout")
        if target is not None:
            self.maximize(target, container=False)

    def watch_maximized(self, previous: Widget | None, maximized: Widget | None) -> None:
        """Zoomed or restored (z, Esc): a real terminal's relayout does not always send the pane a Resize
        (Pilot's does), and a pane lays itself out for its size (columns, wrapping, rows) only when painted:
        repaint the one that changed size once the new layout is in."""
        changed = {w.id for w in (previous, maximized) if w is not None and w in self.panes.values()}
        if changed:
            self.call_after_refresh(self.app.mark_dirty, changed)

    def action_focus_pane(self, name: str) -> None:
        """1 to 6: focus a pane (its list or table, where it has one), as Tab would reach it; while one is
        zoomed, zoom this one instead."""
        pane = self.panes[name]
        if not all(node.display for node in pane.ancestors_with_self if isinstance(node, Widget)):
            title = next(title for pane_id, title, _ in FOCUS_PANES if pane_id == name)
            self.notify(f"This layout does not show the {title} pane.", timeout=3)
            return
        if self.maximized is not None and self.maximized is not pane:
            self.maximize(pane, container=False)
        target = next((w for w in self.focus_chain if w is pane or pane in w.ancestors), None)
        if target is not None:
            self.set_focus(target)  # now, not after the keys queued behind it: `4` then `z` zooms the Runbook

    def action_help(self) -> None:
        # Built once and kept installed: reopening it costs a paint, not a compose.
        if not self.app.is_screen_installed("help"):
            watch, supports = self.app.read_only, self.app.supports
            missing = [] if watch else [(c.label, c.keys[0], why) for c, why in not_offered(supports)]
            entries = help_bindings(watch, supports)
            self.app.install_screen(HelpScreen(entries, missing, read_only=watch), "help")
        self.app.push_screen("help")

    def action_notices(self) -> None:
        self.app.push_screen(NoticesScreen(list(self.app.state.notices), self.app.redact))

    def action_event_log(self) -> None:
        self.app.push_screen(EventLogScreen(lambda: self.app.state, self.app.view))

    def action_readiness(self) -> None:
        self.app.push_screen(ReadinessScreen(lambda: self.app.state, self.app.view, self.readiness_recheck()))

    def readiness_recheck(self) -> Recheck | None:
        """How to check readiness again (journaled): only a screen with the engine has one."""
        return None

    @on(GatesPane.Opened)
    def _open_gate(self, message: GatesPane.Opened) -> None:
        name = message.gate
        self.app.push_screen(GateDetail(name, lambda: self.app.state.gates.get(name), self.app.view))
