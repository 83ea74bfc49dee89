"""The verdict bar (top), the latest notice and the status bar (bottom)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.text import Text
from textual.widgets import Static

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import HIDDEN, View, duration
from rollback_tui.ui.verdict import verdict

LEVEL_TONES = ("ok", "warn", "fail", "stale")
NOTICE_GLYPH = {"info": ("·", "stale"), "warning": ("!", "warn"), "error": ("✗", "fail")}


class VerdictBar(Static):
    """The overall verdict, big enough to read across a screen share."""

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        v = verdict(state, view.now, view.stale_after_s)
        for tone in LEVEL_TONES:
            self.set_class(tone == v.level, f"-{tone}")
        word = " ".join(v.word) if view.share else v.word
        text = Text(f" {v.glyph} {word} ", style="bold")
        if v.reasons and v.level != "ok":
            shown = v.reasons[:4]
            more = f" (+{len(v.reasons) - 4} more)" if len(v.reasons) > 4 else ""
            text.append(" " + " · ".join(view.redact(r) for r in shown) + more)
        elif v.level == "ok":
            text.append(" every replica healthy · prefixes and transport agree")
        text.no_wrap, text.overflow = True, "ellipsis"
        self.update(text)


class NoticeLine(Static):
    """The most recent notice, so a dead feed is visible without opening the notice log."""

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        if not state.notices:
            self.update(Text(" no notices", style=view.tone("stale")))
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
        self.update(text)


def short_path(path: Path, share: bool) -> str:
    """Journal path with $HOME as ~; in share mode only the file name (paths leak user names)."""
    if share:
        return f"{HIDDEN}/{path.name}"
    text = str(path)
    home = os.path.expanduser("~")
    return "~" + text[len(home) :] if home not in ("", "/") and text.startswith(home + os.sep) else text


class StatusBar(Static):
    def __init__(self, journal_path: Path, operator: str, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.journal_path = journal_path
        self.operator = operator

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        text = Text(" ")
        if state.started is not None:
            started = state.started.ts
            end = state.ended.ts if state.ended is not None else view.now
            text.append(f"session {duration(end - started)}", style="bold")
            text.append(f" since {time.strftime('%H:%M:%S %Z', time.localtime(started))}")
        else:
            text.append("session not started", style="bold")
        text.append("  │  ")
        text.append(playbook.name, style="bold")
        text.append(f" · {playbook.environment}  │  operator {view.redact(self.operator)}  │  ")
        verified = state.traffic.rollback_verified
        if verified is not None:
            text.append(
                f"TTD {duration(verified.time_to_detect_s)} · RTO {duration(verified.rto_s)}", style="bold"
            )
        else:
            text.append("TTD — · RTO —")
        text.append("  │  journal ")
        text.append(view.redact(short_path(self.journal_path, view.share)))
        text.no_wrap, text.overflow = True, "ellipsis"
        self.update(text)
