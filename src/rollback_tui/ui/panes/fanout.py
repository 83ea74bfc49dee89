"""Fanout: the verdict in plain words, the session states, and both sessions' frames side by side.

One row per event id (in order of first arrival) with what session A and session B each received:
sequence number, receive time and latency, so a frame one session missed is a visible hole. Only the
newest rows that fit are built (the state keeps a bounded deque), so floods cost one cheap render
per refresh tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rollback_tui.core import events as ev
from rollback_tui.core.state import SessionState, TapFrame
from rollback_tui.core.text import one_line
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View, clock, hinted, ms, pending

Frame = ev.FanoutFrame | TapFrame  # a session's frame, or one the Redis tap saw

SESSION_STATE = {
    "open": ("✓", "ok"),
    "connecting": ("…", "warn"),
    "reconnecting": ("↻", "warn"),
    "dropped": ("✗", "fail"),
    "closed": ("·", "stale"),
}
WIDE_LOG = 74  # from this content width on, each session gets seq, receive time and latency columns
NARROW_LOG = 44  # below this width the receive-time column goes


@dataclass
class EventRow:
    event_id: str
    first_ts: float
    by_session: dict[str, Frame] = field(default_factory=dict)


def rows_for_run(frames: list[Frame], run: str | None, limit: int) -> tuple[list[EventRow], int]:
    """The newest `limit` event rows of one run (scanning from the newest frame), and the run's total."""
    rows: dict[str, EventRow] = {}
    for frame in reversed(frames):
        if run is not None and frame.run != run:
            continue
        row = rows.get(frame.event_id)
        if row is None:
            if len(rows) >= limit:
                continue
            row = rows[frame.event_id] = EventRow(frame.event_id, frame.received_at)
        row.first_ts = min(row.first_ts, frame.received_at)
        # A replayed copy does not hide the live frame (both are interesting, the live one first).
        if frame.session not in row.by_session or row.by_session[frame.session].replay:
            row.by_session[frame.session] = frame
    ordered = sorted(rows.values(), key=lambda r: r.first_ts)
    return ordered, len(rows)


def verdict_lines(result: ev.FanoutResult, view: View) -> list[Text]:
    ok = result.passed
    word = "" if view.compact else "FANOUT "
    head = Text(
        f"✓ {word}PASSED" if ok else f"✗ {word}FAILED",
        style=view.tone("ok" if ok else "fail", bold=True),
    )
    head.append(f" · {result.phase.replace('_', ' ')}", style="bold")
    if result.cross_latency_ms is not None:
        head.append(f" · cross-replica ≤ {ms(result.cross_latency_ms)}")
    lines = [head]
    facts = Text("  ")
    sessions = [s for s in result.received if s != "tap"]
    got_all = all(set(result.sent) <= set(result.received.get(s, [])) for s in sessions)
    if result.sent:
        facts.append(f"{len(result.sent)} sent · {'all delivered ✓' if got_all else 'some lost ✗'}")
    for label, value in (("order", result.ordering_ok), ("replay", result.replay_ok)):
        if value is not None:
            facts.append(" · ")
            facts.append(
                f"{label} {'✓' if value else '✗'}", style="" if value else view.tone("fail", bold=True)
            )
    if facts.plain.strip():
        lines.append(facts)
    for reason in result.reasons:
        line = Text(f"  ✗ {view.redact(reason)}", style=view.tone("fail"))
        lines.append(line)
    return lines


class FanoutPane(StaticPane):
    TITLE = "Fanout · two sessions"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        fanout = state.fanout
        checking = view.activity.fanout_since
        self.border_title = self.fitting(self.TITLE, "Fanout")
        parts: list[RenderableType] = []
        if checking is not None:
            parts.append(
                Text(
                    f"{view.activity.spinner} checking… {max(0.0, view.now - checking):.1f}s"
                    " — two sessions, same thread, different replicas",
                    style=view.tone("warn", bold=True),
                    no_wrap=True,
                    overflow="ellipsis",
                )
            )
        elif not fanout.frames_total and not fanout.results:
            key = view.key("fanout")  # None when this playbook (or a viewer) has no fanout key
            if "fanout" not in view.features:
                parts.append(pending("Fanout verification", 4, key, view))
            elif playbook.realtime is None:
                parts.append(Text("No realtime section in this playbook: no fanout to check.", style="bold"))
            else:
                hint = f" — press {key} to run the two-session check" if key else ""
                parts.append(Text(f"No fanout check yet{hint}.", style="bold"))
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
            self.border_subtitle = f"{key} runs the check" if key else ""
            self.show(Group(*parts))
            return

        last = fanout.last_result
        run = fanout.frames[-1].run if fanout.frames else (last.run if last else None)
        if last is not None and checking is None:
            lines = verdict_lines(last, view)
            if view.compact:
                lines = lines[:1] + [r for r in lines[1:] if "✗" in r.plain][:2]
                for line in lines:
                    line.no_wrap, line.overflow = True, "ellipsis"
            parts.extend(lines)
        sessions = self._sessions(fanout, run, view)
        if sessions is not None:
            parts.append(sessions)
        used = sum(1 + len(p.plain) // max(20, self.content_size.width) for p in parts if isinstance(p, Text))
        room = max(2, self.content_size.height - used - 1)
        parts.append(self._log(list(fanout.frames), run, last, room, view))
        said = (
            f"{'checking… · ' if checking is not None else ''}{fanout.frames_total} frames · "
            f"{len(fanout.results)} check{'s' if len(fanout.results) != 1 else ''}"
        )
        again = [f"{key} runs again"] if (key := view.key("fanout")) else []
        self.border_subtitle = self.fitting(*hinted(said, *again))
        self.show(Group(*parts))

    def _sessions(self, fanout: object, run: str | None, view: View) -> Text | None:
        sessions = [s for s in getattr(fanout, "sessions", {}).values() if run is None or s.run == run]
        if not sessions:
            return None
        text = Text()
        for s in sorted(sessions, key=lambda s: s.session):
            glyph, tone = SESSION_STATE.get(s.state, ("?", "stale"))
            if text:
                text.append("  ")
            text.append(f"{s.session} {view.redact(s.replica)} ", style="bold")
            text.append(f"{glyph} {s.state}", style=view.tone(tone, bold=tone == "fail"))
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    def _log(
        self,
        frames: list[Frame],
        run: str | None,
        last: ev.FanoutResult | None,
        room: int,
        view: View,
    ) -> Table:
        rows, _ = rows_for_run(frames, run, room)
        finished = last is not None and last.run == run
        replicas: dict[str, str] = {f.session: f.replica for f in frames[-200:] if f.run == run}
        wide = self.content_size.width >= WIDE_LOG
        table = Table(box=None, padding=(0, 1, 0, 0), header_style="bold", expand=True, pad_edge=False)
        if wide:
            table.add_column("Event", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
            for s in ("A", "B"):
                who = view.redact(replicas.get(s, ""))
                table.add_column(f"{s} seq", justify="right", no_wrap=True)
                table.add_column(f"{s} {one_line(who, 10)} received", no_wrap=True, min_width=12)
                table.add_column("latency", justify="right", no_wrap=True)
        else:
            if self.content_size.width >= NARROW_LOG:
                table.add_column("Received", no_wrap=True, min_width=8)
            table.add_column("Event", no_wrap=True, overflow="ellipsis", ratio=1, min_width=6)
            roomy = self.content_size.width >= NARROW_LOG
            for s in ("A", "B"):
                who = view.redact(replicas.get(s, ""))
                table.add_column(f"{s} {one_line(who, 9)}".rstrip() if roomy else s, no_wrap=True)
        table.add_column("tap", no_wrap=True, justify="center")
        for row in rows:
            cells: list[Text | str] = []
            if not wide and self.content_size.width >= NARROW_LOG:
                cells.append(clock(row.first_ts))
            cells.append(view.redact(row.event_id))
            for s in ("A", "B"):
                frame = row.by_session.get(s)
                if frame is None:
                    hole = (
                        Text("✗ none", style=view.tone("fail", bold=True))
                        if finished
                        else Text("…", style="dim")
                    )
                    cells.extend([hole, "", ""] if wide else [hole])
                    continue
                seq = "—" if frame.seq is None else str(frame.seq)
                mark = " ↺" if frame.replay else ""
                if wide:
                    cells.extend([seq + mark, clock(frame.received_at, millis=True), ms(frame.latency_ms)])
                else:
                    latency = "" if frame.latency_ms is None else f" {frame.latency_ms:.0f}ms"
                    cells.append(f"#{seq}{mark}{latency}")
            cells.append(
                Text("✓", style=view.tone("ok")) if "tap" in row.by_session else Text("·", style="dim")
            )
            table.add_row(*cells)
        return table
