"""What every pane shares: the render context, status glyphs and small text helpers.

Status never relies on colour alone: every status is a glyph *and* a word; colour only repeats it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Static

from rollback_tui.core.read.readiness import ReadinessView
from rollback_tui.core.read.words import ms as ms  # the panes' `ms` is the report's (re-exported)
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook

# status → (glyph, word, tone); tone is one of ok / warn / fail / stale.
STATUS = {
    "ok": ("✓", "ok", "ok"),
    "passed": ("✓", "passed", "ok"),
    "degraded": ("!", "degraded", "warn"),
    "running": ("▶", "running", "warn"),
    "queued": ("…", "queued", "stale"),
    "down": ("✗", "down", "fail"),
    "timeout": ("✗", "timeout", "fail"),
    "failed": ("✗", "failed", "fail"),
    "timed_out": ("✗", "timed out", "fail"),
    "error": ("?", "can't run", "warn"),  # a gate that could not run: unknown, not failed
    "cancelled": ("!", "cancelled", "warn"),
    "interrupted": ("!", "interrupted", "warn"),
    "junk": ("?", "junk", "fail"),
    "unknown": ("?", "waiting", "stale"),
    "unobserved": ("?", "unknown", "warn"),  # sampled, but it could not look (the error says why)
    "stale": ("?", "stale", "stale"),
    "not_run": ("·", "not run", "stale"),
    # Runbook steps and items (core/read/steps.py): what the journal records about them.
    "partial": ("◐", "partial", "warn"),
    "manual": ("·", "manual", "stale"),
    "no_record": ("·", "no record", "stale"),
    "skipped": ("-", "skipped", "stale"),
    "needs_input": ("!", "needs input", "warn"),
}

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
LABEL_MARGIN = 6  # a border label's edge keeps its corner, a line and a blank on each side: "╭─ Title ─╮"
HIDDEN = "\u2039hidden\u203a"  # single angle quotes, so it cannot be mistaken for a value
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Activity:
    """What the operator started and is still running (the panes show spinners and elapsed time)."""

    gates_queued: frozenset[str] = frozenset()
    gates_requested_at: float | None = None
    fanout_since: float | None = None
    traffic_since: float | None = None
    traffic_rps: float | None = None
    rollback_since: float | None = None
    frame: int = 0  # spinner frame; advances with the clock while something runs

    @property
    def spinner(self) -> str:
        return SPINNER[self.frame % len(SPINNER)]


@dataclass
class View:
    """Everything a pane needs besides the state: how to colour, redact and tell the time."""

    colors: dict[str, str] = field(default_factory=dict)  # tone → colour
    redact: Callable[[str], str] = lambda s: s
    share: bool = False
    now: float = 0.0
    features: frozenset[str] = frozenset()
    sensitive_replicas: frozenset[str] = frozenset()
    stale_after_s: float = 10.0
    activity: Activity = field(default_factory=Activity)
    compact: bool = False  # small terminal: panes drop their least useful lines
    read_only: bool = False  # a viewer's copy (`watch`): it has no operator keys, so no key hints
    writer_gone: bool = False  # a viewer's copy of a session no cockpit writes: `now` is its last event
    # command id → its key, for the commands this screen offers (ui/commands.py offered_keys): a pane names
    # a key in a hint only through `key`, so a hint never advertises a key the playbook does not have.
    keys: dict[str, str] = field(default_factory=dict)

    mono: bool = False  # NO_COLOR: tones become weight (bold for fail/warn, dim for stale), never grey

    def tone(self, tone: str, *, bold: bool = False) -> Style:
        if self.mono:
            return Style(bold=bold or tone in ("fail", "warn"), dim=tone == "stale" and not bold)
        return Style(color=self.colors.get(tone), bold=bold)

    def key(self, command: str) -> str | None:
        """The key of an offered command (`f` for "fanout"), or None when it is not offered here."""
        return self.keys.get(command)

    def status(self, status: str, *, pad: int = 0) -> Text:
        glyph, word, tone = STATUS.get(status, ("?", status, "stale"))
        return Text(f"{glyph} {word}".ljust(pad), style=self.tone(tone, bold=tone == "fail"))

    def url(self, replica: str, url: str) -> str:
        """A replica URL, unless share mode hides it."""
        if self.share and replica in self.sensitive_replicas:
            return HIDDEN
        return self.redact(url)


def hinted(words: str, *hints: str) -> list[str]:
    """A border label's forms: `words` with its key hints, then with fewer, then alone — the state stays,
    the hints give way (`Pane.fitting`)."""
    return [" · ".join((words, *hints[:n])) for n in range(len(hints), -1, -1)]


def make_redactor(base: Callable[[str], str], share: bool, patterns: Iterable[str]) -> Callable[[str], str]:
    """The engine's secret redactor; in share mode also the playbook's sensitive patterns."""
    compiled = [re.compile(p) for p in patterns] if share else []

    def redact(text: str) -> str:
        text = base(text)
        for pattern in compiled:
            text = pattern.sub(HIDDEN, text)
        return text

    return redact


def cannot_run(state: SessionState) -> Callable[[str, str], str | None]:
    """(item kind, name) → `cannot run: binary gh missing (not on PATH)` for what the journaled readiness
    check says cannot run from here, else None — for every item while no check was journaled (unchecked
    is not "ready", so nothing is claimed either way)."""
    if state.readiness is None:
        return lambda item, name: None
    return ReadinessView(state.readiness).why


def blocked_mark(why: str, view: View) -> Text:
    """`✗ cannot run: binary gh missing (not on PATH)`, redacted, in the failing tone."""
    return Text(f"✗ {view.redact(why)}", style=view.tone("fail", bold=True))


def sparkline(values: Iterable[float], width: int, ceiling: float | None = None) -> str:
    """The last `width` values as unicode blocks, scaled 0..ceiling (shared across replicas)."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = max(ceiling or 0.0, max(tail), 1e-9)
    return "".join(SPARK_BLOCKS[min(7, int(v / top * 7.999))] for v in tail)


def clock(ts: float | None, millis: bool = False) -> str:
    if not ts:
        return "--:--:--"
    text = time.strftime("%H:%M:%S", time.localtime(ts))
    return f"{text}.{int(ts * 1000) % 1000:03d}" if millis else text


def short_image(image: str | None, width: int = 12) -> str:
    if not image:
        return "—"
    if ":" in image and image.split(":", 1)[0] in ("sha256", "sha512"):
        return image.split(":", 1)[1][:width]
    return image if len(image) <= width + 8 else image[: width + 7] + "…"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Pane(Widget):
    """A bordered cockpit pane that renders itself from SessionState (never does I/O)."""

    DEFAULT_CLASSES = "pane"
    ALLOW_MAXIMIZE = True  # `z` zooms the focused pane
    TITLE = ""

    def on_mount(self) -> None:
        self.border_title = self.TITLE

    def on_resize(self) -> None:
        # Layout decisions (columns shown, rows of log) depend on size: repaint on the next tick.
        mark = getattr(self.app, "mark_dirty", None)
        if mark is not None and self.id:
            mark({self.id})

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        raise NotImplementedError

    def fitting(self, *forms: str) -> str:
        """The first of a border label's `forms` (the fullest first) that the border shows whole, else the
        shortest, which the border cuts. Not laid out yet: the fullest (the first resize repaints it)."""
        width = self.outer_size.width
        if not width:
            return forms[0]
        return next((form for form in forms if cell_len(form) <= width - LABEL_MARGIN), forms[-1])


class StaticPane(Pane, can_focus=True):
    """A pane whose whole body is one renderable (focusable, so Tab reaches it and `z` zooms it)."""

    # A pane whose size is set by the layout (not by its content) repaints without a relayout: at
    # 160x45 a relayout of the whole screen costs tens of ms, far too much for 15 repaints a second.
    FIXED_SIZE = True

    def compose(self) -> ComposeResult:
        yield Static(id=f"{self.id or 'pane'}-body", classes="pane-body")

    def show(self, renderable: RenderableType, *, layout: bool | None = None) -> None:
        try:
            body = self.query_one(".pane-body", Static)
        except NoMatches:  # unmounting (quit): nothing to paint into
            return
        body.update(renderable, layout=not self.FIXED_SIZE if layout is None else layout)


def pending(feature: str, issue: int, key: str | None, view: View) -> Text:
    """The plain 'not built yet' line a pane shows instead of pretending."""
    text = Text()
    text.append("· ", style=view.tone("stale"))
    text.append(f"{feature} arrives with issue #{issue}.", style=view.tone("stale", bold=True))
    if key:
        text.append(f"\n  Press {key} to see why.", style=view.tone("stale"))
    return text
