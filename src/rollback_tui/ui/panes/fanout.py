"""Fanout log: the two stream sessions, their frames as they arrive, and the last verdict."""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View, ms, pending

SESSION_TONE = {
    "open": "ok",
    "connecting": "warn",
    "reconnecting": "warn",
    "dropped": "fail",
    "closed": "stale",
}


def clock(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "--:--:--"


class FanoutPane(StaticPane):
    TITLE = "Fanout · two sessions"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        fanout = state.fanout
        parts: list[RenderableType] = []
        if not fanout.frames_total and not fanout.results:
            if "fanout" not in view.features:
                parts.append(pending("Fanout verification", 4, "f", view))
            else:
                parts.append(Text("No fanout check yet — press f to run the two-session check.", style="dim"))
            if playbook.realtime:
                rt = playbook.realtime
                parts.append(
                    Text(
                        f"\nWill open two {rt.fanout.stream_kind} sessions on different replicas, "
                        f"same thread, expect prefix {rt.channel_prefix} "
                        f"on transport {rt.transport_expected}.",
                        style=view.tone("stale"),
                    )
                )
            self.border_subtitle = ""
            self.show(Group(*parts))
            return

        last = fanout.last_result
        if last is not None:
            glyph, word, tone = ("✓", "PASSED", "ok") if last.passed else ("✗", "FAILED", "fail")
            line = Text(f"{glyph} {word} ", style=view.tone(tone, bold=True))
            line.append(f"{last.phase.replace('_', ' ')} · cross-replica {ms(last.cross_latency_ms)}")
            for label, ok in (("ordering", last.ordering_ok), ("replay", last.replay_ok)):
                if ok is not None:
                    line.append(f" · {label} {'✓' if ok else '✗'}")
            parts.append(line)
            for reason in last.reasons[:3]:
                parts.append(Text(f"  ✗ {view.redact(reason)}", style=view.tone("fail")))
        sessions = Text()
        for name, s in sorted(fanout.sessions.items()):
            sessions.append(f"{name}@{s.replica} ", style="bold")
            sessions.append(f"{s.state}  ", style=view.tone(SESSION_TONE.get(s.state, "stale")))
        if sessions:
            parts.append(sessions)

        room = max(3, self.content_size.height - len(parts) - 1)
        table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold", expand=True)
        table.add_column("Received", no_wrap=True, min_width=8)
        table.add_column("S", no_wrap=True)
        table.add_column("Seq", justify="right", no_wrap=True)
        table.add_column("Event", no_wrap=True, overflow="ellipsis", ratio=1)
        table.add_column("Latency", justify="right", no_wrap=True, min_width=7)
        for f in list(fanout.frames)[-room:]:
            table.add_row(
                clock(f.received_at),
                f.session,
                "—" if f.seq is None else str(f.seq),
                view.redact(f.event_id)[:14] + (" ↺" if f.replay else ""),
                ms(f.latency_ms),
            )
        parts.append(table)
        self.border_subtitle = f"{fanout.frames_total} frames · {len(fanout.results)} checks"
        self.show(Group(*parts))
