"""The verdict bar (top), the latest notice and the status bar (bottom)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from rollback_tui.core.read.guardrails import breach_time_to_detect_s
from rollback_tui.core.read.incident import incident_fields
from rollback_tui.core.read.readiness import ReadinessView
from rollback_tui.core.read.words import secs
from rollback_tui.core.state import SessionState
from rollback_tui.core.verdict import verdict
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import HIDDEN, View, duration

LEVEL_TONES = ("ok", "warn", "fail", "stale")
NOTICE_GLYPH = {"info": ("·", "stale"), "warning": ("!", "warn"), "error": ("✗", "fail")}


class VerdictBar(Static):
    """The overall verdict, big enough to read across a screen share."""

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        v = verdict(state, view.now, view.stale_after_s)
        for tone in LEVEL_TONES:
            self.set_class(tone == v.tone, f"-{tone}")
        word = " ".join(v.word) if view.share else v.word
        text = Text(f" {v.glyph} {word} ", style="bold")
        if view.writer_gone:  # a viewer's copy no cockpit writes: a rollback "verifying" is not under way now
            text.append("as of the last event ·", style=view.tone("stale", bold=True))
        if v.reasons and v.level not in ("ok", "mitigated"):
            shown = v.reasons[:4]
            more = f" (+{len(v.reasons) - 4} more)" if len(v.reasons) > 4 else ""
            text.append(" " + " · ".join(view.redact(r) for r in shown) + more)
        elif v.summary:
            text.append(" " + view.redact(v.summary))
        text.no_wrap, text.overflow = True, "ellipsis"
        self.update(text, layout=False)


class NoticeLine(Static):
    """The most recent notice, so a dead feed is visible without opening the notice log."""

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        if not state.notices:
            self.update(Text(" no notices", style=view.tone("stale")), layout=False)
            return
        last = state.notices[-1]
        glyph, tone = NOTICE_GLYPH.get(last.level, ("·", "stale"))
        text = Text(
            f" {glyph} {time.strftime('%H:%M:%S', time.localtime(last.ts))} ",
            style=view.tone(tone, bold=True),
        )
        text.append(f"{last.source}: ", style="bold")
        text.append(view.redact(last.message))
        if len(state.notices) > 1:
            text.append(f"  ({len(state.notices)} notices — n to list)", style=view.tone("stale"))
        text.no_wrap, text.overflow = True, "ellipsis"
        self.update(text, layout=False)


def short_path(path: Path, share: bool) -> str:
    """Journal path with $HOME as ~; in share mode only the file name (paths leak user names)."""
    if share:
        return f"{HIDDEN}/{path.name}"
    text = str(path)
    home = os.path.expanduser("~")
    return "~" + text[len(home) :] if home not in ("", "/") and text.startswith(home + os.sep) else text


class StatusBar(Static):
    def __init__(self, journal_path: Path, operator: str | None, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.journal_path = journal_path
        self.operator = operator  # None: a viewer's, the session's own operator (from its start)

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        width = self.size.width or (self.app.size.width if self.is_attached else 200) or 200
        operator = self.operator or (state.started.operator if state.started else "?")
        self.update(status_text(state, playbook, view, self.journal_path, operator, width), layout=False)


@dataclass(frozen=True)
class Segment:
    """A part of the status bar: the lowest priority gives way first when the bar is too narrow — to its
    `shorter` form when it has one (a path to its file name), else out."""

    priority: int
    text: Text
    shorter: Segment | None = None


def middle_cut(value: str, width: int) -> str:
    """`https://app.incident.io/…/incidents/INC-4711`: a long value's start and end, its middle cut."""
    if len(value) <= width:
        return value
    tail = (width - 1) // 2
    return f"{value[: width - 1 - tail]}…{value[-tail:]}"


def short_id(value: str, width: int) -> str:
    """An incident URL's last path segment (`INC-4711`: usually the incident's id), else `value` cut in the
    middle."""
    if "://" in value:
        last = value.split("?", 1)[0].split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if last and "://" not in last and len(last) <= width:
            return last
    return middle_cut(value, width)


def incident_segments(state: SessionState, view: View) -> list[Segment]:
    """`incident INC-42`, `commander bob`, `scribe carol`: what --incident/--commander/--scribe journaled.
    Which incident stays longest (its URL gives way to its id first), then who commands, then who writes."""
    segments = []
    for label, value in incident_fields(state.incident):
        value = view.redact(value)
        if label == "incident":
            short = Segment(70, Text("incident ").append(short_id(value, 24), style="bold"))
            full = Text("incident ").append(middle_cut(value, 48), style="bold")
            segments.append(Segment(45, full, short) if full.plain != short.text.plain else short)
        elif label == "commander":  # "IC", the incident call's word for them, when room is short
            who = middle_cut(value, 20)
            segments.append(Segment(60, Text(f"commander {who}"), Segment(60, Text(f"IC {who}"))))
        else:
            segments.append(Segment(35, Text(f"{label} {middle_cut(value, 20)}")))
    return segments


def readiness_segment(state: SessionState, view: View) -> list[Segment]:
    """`✗ 3 cannot run (y)` after the journaled readiness check (`✓ ready`, the first to give way);
    nothing before one, which is not "ready"."""
    if state.readiness is None:
        return []
    model = ReadinessView(state.readiness)
    if model.ready:
        return [Segment(10, Text("✓ ready", style=view.tone("ok")))]
    key = view.key("readiness")
    text = Text(f"✗ {len(model.not_ready)} cannot run", style=view.tone("fail", bold=True))
    if key:
        text.append(f" ({key})")
    return [Segment(55, text)]


def status_text(
    state: SessionState, playbook: Playbook, view: View, journal: Path, operator: str, width: int
) -> Text:
    """Session clock, playbook, environment, TTD/RTO, operator and journal — least useful dropped first."""
    if state.started is not None:
        end = state.ended.ts if state.ended is not None else view.now
        clock_part = Text(f"session {duration(end - state.started.ts)}", style="bold")
        if state.ended is None and view.writer_gone:
            clock_part.append(" (to the last event)")  # a clock that stopped says so: nothing after it
        since = time.strftime("%H:%M:%S %Z", time.localtime(state.started.ts))
    else:
        clock_part, since = Text("session not started", style="bold"), ""
    rollback = state.traffic.rollback
    verified = rollback.verified
    if verified is not None:
        rto = Text(
            f"TTD {secs(verified.time_to_detect_s)} · RTO {secs(verified.rto_s)}"
            f" · TTM {secs(verified.time_to_mitigate_s)}",
            style="bold",
        )
    else:
        # A journaled breach already carries its time to detect; the RTO waits for a verified rollback.
        ttd = breach_time_to_detect_s(state)
        rto = Text(f"TTD {secs(ttd)} · " if ttd is not None or rollback.stage == "none" else "")
        if rollback.stage != "none":
            tone = "fail" if rollback.stage == "failed" else "warn"
            rto.append(f"rollback {rollback.stage}", style=view.tone(tone, bold=True))
        else:
            rto.append("RTO —")
    where = Text(playbook.name, style="bold")
    where.append(f" · {playbook.environment}")
    path = view.redact(short_path(journal, view.share))
    chosen = [
        Segment(90, clock_part),
        *([Segment(30, Text(f"since {since}"))] if since else []),
        Segment(80, where),
        Segment(90, rto),
        *readiness_segment(state, view),
        *incident_segments(state, view),
        Segment(20, Text(f"operator {view.redact(operator)}")),
        # The full journal path gives way to its file name before anything more useful goes.
        Segment(33, Text(f"journal {path}"), Segment(40, Text(f"journal {Path(path).name}"))),
    ]

    def assemble(parts: list[Segment]) -> Text:
        out = Text(" ")
        for i, part in enumerate(parts):
            if i:
                out.append("  │  " if width >= 120 else " │ ")
            out.append_text(part.text)
        return out

    while len(assemble(chosen).plain) > width and len(chosen) > 1:
        index = min(range(len(chosen)), key=lambda i: chosen[i].priority)
        lowest = chosen[index]
        if lowest.shorter is not None and lowest.shorter.text.plain != lowest.text.plain:
            chosen[index] = lowest.shorter
        else:
            chosen.pop(index)
    text = assemble(chosen)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text
