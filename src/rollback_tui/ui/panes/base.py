"""What every pane shares: the render context, status glyphs and small text helpers.

Status never relies on colour alone: every status is a glyph *and* a word; colour only repeats it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook

# status → (glyph, word, tone); tone is one of ok / warn / fail / stale.
STATUS = {
    "ok": ("✓", "ok", "ok"),
    "passed": ("✓", "passed", "ok"),
    "degraded": ("!", "degraded", "warn"),
    "running": ("▶", "running", "warn"),
    "queued": ("·", "queued", "stale"),
    "down": ("✗", "down", "fail"),
    "timeout": ("✗", "timeout", "fail"),
    "failed": ("✗", "failed", "fail"),
    "timed_out": ("✗", "timed out", "fail"),
    "error": ("✗", "error", "fail"),
    "cancelled": ("!", "cancelled", "warn"),
    "junk": ("?", "junk", "fail"),
    "unknown": ("?", "waiting", "stale"),
    "stale": ("?", "stale", "stale"),
    "not_run": ("·", "not run", "stale"),
}

HIDDEN = "\u2039hidden\u203a"  # single angle quotes, so it cannot be mistaken for a value
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


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

    def tone(self, tone: str, *, bold: bool = False) -> Style:
        return Style(color=self.colors.get(tone), bold=bold)

    def status(self, status: str, *, pad: int = 0) -> Text:
        glyph, word, tone = STATUS.get(status, ("?", status, "stale"))
        return Text(f"{glyph} {word}".ljust(pad), style=self.tone(tone, bold=tone == "fail"))

    def url(self, replica: str, url: str) -> str:
        """A replica URL, unless share mode hides it."""
        if self.share and replica in self.sensitive_replicas:
            return HIDDEN
        return self.redact(url)


def make_redactor(base: Callable[[str], str], share: bool, patterns: Iterable[str]) -> Callable[[str], str]:
    """The engine's secret redactor; in share mode also the playbook's sensitive patterns."""
    compiled = [re.compile(p) for p in patterns] if share else []

    def redact(text: str) -> str:
        text = base(text)
        for pattern in compiled:
            text = pattern.sub(HIDDEN, text)
        return text

    return redact


def sparkline(values: Iterable[float], width: int, ceiling: float | None = None) -> str:
    """The last `width` values as unicode blocks, scaled 0..ceiling (shared across replicas)."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = max(ceiling or 0.0, max(tail), 1e-9)
    return "".join(SPARK_BLOCKS[min(7, int(v / top * 7.999))] for v in tail)


def short_image(image: str | None, width: int = 12) -> str:
    if not image:
        return "—"
    if ":" in image and image.split(":", 1)[0] in ("sha256", "sha512"):
        return image.split(":", 1)[1][:width]
    return image if len(image) <= width + 8 else image[: width + 7] + "…"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


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


class StaticPane(Pane):
    """A pane whose whole body is one renderable."""

    def compose(self) -> ComposeResult:
        yield Static(id=f"{self.id or 'pane'}-body", classes="pane-body")

    def show(self, renderable: RenderableType) -> None:
        self.query_one(".pane-body", Static).update(renderable)


def pending(feature: str, issue: int, key: str | None, view: View) -> Text:
    """The plain 'not built yet' line a pane shows instead of pretending."""
    text = Text()
    text.append("· ", style=view.tone("stale"))
    text.append(f"{feature} arrives with issue #{issue}.", style=view.tone("stale", bold=True))
    if key:
        text.append(f"\n  Press {key} to see why.", style=view.tone("stale"))
    return text
