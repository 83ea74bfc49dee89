"""The verdict bar (top), the latest notice and the status bar (bottom)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

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


def status_text(
    state: SessionState, playbook: Playbook, view: View, journal: Path, operator: str, width: int
) -> Text:
    """Session clock, playbook, environment, TTD/RTO, operator and journal — least useful dropped first."""
    if state.started is not None:
        end = state.ended.ts if state.ended is not None else view.now
        clock_part = Text(f"session {duration(end - state.started.ts)}", style="bold")
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
    elif rollback.stage != "none":
        tone = "fail" if rollback.stage == "failed" else "warn"
        rto = Text(f"rollback {rollback.stage}", style=view.tone(tone, bold=True))
    else:
        rto = Text("TTD — · RTO —")
    where = Text(playbook.name, style="bold")
    where.append(f" · {playbook.environment}")
    path = view.redact(short_path(journal, view.share))
    # (priority, segment): the lowest priority goes first when the bar is too narrow; the full journal
    # path gives way to its file name before anything more useful goes.
    full_path = (5, Text(f"journal {path}"))
    short_name = (4, Text(f"journal {Path(path).name}"))
    chosen: list[tuple[int, Text]] = [
        (9, clock_part),
        *([(3, Text(f"since {since}"))] if since else []),
        (8, where),
        (9, rto),
        (2, Text(f"operator {view.redact(operator)}")),
        full_path,
    ]

    def assemble(parts: list[tuple[int, Text]]) -> Text:
        out = Text(" ")
        for i, (_, part) in enumerate(parts):
            if i:
                out.append("  │  " if width >= 120 else " │ ")
            out.append_text(part)
        return out

    while len(assemble(chosen).plain) > width and len(chosen) > 1:
        lowest = min(chosen, key=lambda seg: seg[0])
        index = chosen.index(lowest)
        if lowest is full_path and short_name[1].plain != full_path[1].plain:
            chosen[index] = short_name
        else:
            chosen.pop(index)
    text = assemble(chosen)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text
