"""Traffic: who serves the requests (split bar, 5xx, share trend), routing, guardrails, the rollback.

The split and the guardrail values come from the read model (core/read/): the split is over the window
the 5xx guardrail judges, and every rate says which window it is over — as in the report.
"""

from __future__ import annotations

import textwrap

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rollback_tui.core import events as ev
from rollback_tui.core.read.guardrails import GuardrailReading, readings, standings
from rollback_tui.core.read.traffic import TrafficTotals, recent_traffic, split_window_s
from rollback_tui.core.read.words import pct, secs
from rollback_tui.core.state import SessionState
from rollback_tui.core.text import weight_changes
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View, clock, duration, hinted, pending, sparkline

TREND = 12  # windows in the share sparkline
REASON_LINES = 3  # lines for why a guardrail is unknown (one when the pane is short of room)


def split_bar(share: float, width: int) -> str:
    full = round(max(0.0, min(1.0, share)) * width)
    return "█" * full + "░" * (width - full)


class TrafficPane(StaticPane):
    TITLE = "Traffic split · guardrails · rollback"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        traffic = state.traffic
        running, shorter = self._running_line(view, playbook, state)
        routing = self._routing(traffic.selector, playbook, view)
        totals = recent_traffic(state, view.now, split_window_s(playbook))
        split: list[RenderableType] = []
        summary: list[Text] = []
        split_rows = 1  # the pending or "no traffic" line
        if totals.requests:
            names = totals.replicas(r.name for r in playbook.replicas)
            split.append(self._split(state, names, totals, view))
            unattributed = self._unattributed(totals, view)
            split.extend(unattributed)
            split_rows = len(names) + len(unattributed)
            line = Text(totals.text(), style=view.tone("stale"))
            line.no_wrap, line.overflow = True, "ellipsis"
            summary.append(line)
        elif traffic.last_window is not None:
            split.append(Text(f"{totals.text()}{_sends(view)}.", style="dim"))
        elif "traffic" not in view.features:
            split.append(pending("Traffic split", 5, None, view))
        else:
            split.append(Text(f"No traffic window yet{_sends(view)}.", style="dim"))
        rails = self._guardrails(state, playbook, view, collapse=view.compact)
        rollback = self._rollback(state, playbook, view)
        # Fit the height: the rollback and the breaches matter most; ok guardrails, the request
        # summary and the running line give way first (the running state moves to the title).
        room = self.content_size.height or 100
        head = [running]

        def size() -> int:
            return len(head) + len(routing) + split_rows + len(summary) + len(rails) + len(rollback)

        if size() > room:
            rails = self._guardrails(state, playbook, view, collapse=True)
        if size() > room:
            summary = []
        if size() > room or view.compact:
            head = []
        if size() > room:
            rollback = rollback[-1:]
        if size() > room and traffic.breaches:  # the breaches stay; "N guardrails ok" goes
            rails = [r for r in rails if r.plain.startswith("✗")]
        if size() > room:
            routing = routing[-1:]  # the backends say more than the selector
        if head:
            self.border_title = self.fitting(self.TITLE, "Traffic · guardrails · rollback")
        else:  # the running line moves to the title: whole, in fewer words as the pane narrows
            states = (running.plain, *shorter)
            titles = [f"{name} · {words}" for words in states for name in ("Traffic split", "Traffic")]
            self.border_title = self.fitting(*titles)
        parts: list[RenderableType] = [*head, *routing, *split, *summary, *rails, *rollback]
        held = sum(s.held for s in standings(state))
        blind = len(traffic.breaches) - held  # breached, then unknown: not "clear", not "breached" either
        said = [f"{held} breach{'es' if held != 1 else ''}"] if held else []
        said += [f"{blind} unknown since breach"] if blind else []
        keys = [f"{key} {c}" for c in ("traffic", "rollback") if (key := view.key(c))]
        self.border_subtitle = self.fitting(*hinted(" · ".join(said) or "guardrails clear", *keys))
        self.show(Group(*parts))

    def _running_line(self, view: View, playbook: Playbook, state: SessionState) -> tuple[Text, list[str]]:
        """Whether synthetic traffic runs: the body's line, and shorter wordings for the title."""
        act = view.activity
        if view.read_only and playbook.load_balancer is not None:
            return _seen_line(state, view)
        if act.traffic_since is not None:
            text = Text(f"● synthetic traffic running {act.spinner}", style=view.tone("ok", bold=True))
            rps = f" · {act.traffic_rps:g} rps" if act.traffic_rps else ""
            took = f" · {duration(view.now - act.traffic_since)}"
            text.append(rps + took, style="bold")
            if key := view.key("traffic"):
                text.append(f" · {key} stops", style="bold")
            text.no_wrap, text.overflow = True, "ellipsis"
            return text, [f"● running{rps}{took}", f"● running{took}"]
        if playbook.load_balancer is None:
            text = Text("○ no load balancer in this playbook", style=view.tone("stale"))
            return text, ["○ no load balancer"]
        key = view.key("traffic")
        starts = f" · {key} starts it" if key else ""
        text = Text(f"○ no synthetic traffic{starts}", style=view.tone("stale", bold=True))
        return text, ["○ no synthetic traffic", "○ no traffic"]

    def _routing(self, selector: ev.SelectorState | None, playbook: Playbook, view: View) -> list[Text]:
        lb = playbook.load_balancer
        if selector is None:
            if lb is None:
                return []
            text = Text("selector ", style="bold")
            text.append(",".join(f"{k}={v}" for k, v in lb.selector.items()) or "—")
            text.append("  (playbook; balancer not read yet)", style=view.tone("stale"))
            return [text]
        text = Text("selector ", style="bold")
        text.append(",".join(f"{k}={v}" for k, v in selector.selector.items()) or "—")
        text.append(f"  ({selector.source})", style=view.tone("stale"))
        backends = Text("backends ", style="bold")
        backends.append(
            " · ".join(
                f"{view.redact(b)} {selector.weights[b]}" if b in selector.weights else view.redact(b)
                for b in selector.backends
            )
            or "none"
        )
        for line in (text, backends):
            line.no_wrap, line.overflow = True, "ellipsis"
        return [text, backends]

    def _split(self, state: SessionState, names: list[str], totals: TrafficTotals, view: View) -> Table:
        """Share and 5xx of each replica over the totals' window; the trend is per traffic window."""
        windows = list(state.traffic.windows)[-TREND:]
        backends = set(state.traffic.selector.backends) if state.traffic.selector else None
        width = self.content_size.width
        # The name (with " out"), the share and the 5xx count always show; the bar and the trend get the
        # room that is left (the bar first), one space between columns.
        bad_w = max(len(f"✗ {n} 5xx") for n in [0, *totals.errors.values()])
        fixed = max(len(view.redact(n)) for n in names) + 4 + 1 + len("100.0%") + 1 + bad_w
        trend_w = TREND if width >= fixed + 1 + 5 + 1 + TREND else 0
        bar_w = min(20, width - fixed - 1 - (trend_w + 1 if trend_w else 0))
        bar_w = bar_w if bar_w >= 3 else 0
        table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_header=False)
        table.add_column(no_wrap=True)
        if bar_w:
            table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        if trend_w:
            table.add_column(no_wrap=True)
        for name in names:
            errors = totals.errors.get(name, 0)
            share = totals.share(name)
            removed = backends is not None and name not in backends
            label = Text(view.redact(name), style="bold" if not removed else view.tone("stale"))
            if removed:
                label.append(" out", style=view.tone("stale"))
            bad = Text(
                f"✗ {errors} 5xx" if errors else "0 5xx",
                style=view.tone("fail", bold=True) if errors else view.tone("stale"),
            )
            trend = [w.per_replica.get(name, 0) / max(1, w.requests) for w in windows]
            cells: list[RenderableType] = [label]
            if bar_w:
                cells.append(Text(split_bar(share, bar_w), style=view.tone("warn" if errors else "ok")))
            cells += [pct(share), bad]
            if trend_w:
                cells.append(Text(sparkline(trend, trend_w, 1.0), style=view.tone("stale")))
            table.add_row(*cells)
        return table

    @staticmethod
    def _unattributed(totals: TrafficTotals, view: View) -> list[Text]:
        """Requests no replica answered, by reason, over the split's window: failures of the service."""
        lines = []
        for reason, count in sorted(totals.unattributed.items()):
            line = Text(f"✗ {count}/{totals.requests} failed: {reason}", style=view.tone("fail"))
            line.no_wrap, line.overflow = True, "ellipsis"
            lines.append(line)
        return lines

    def _guardrails(
        self, state: SessionState, playbook: Playbook, view: View, *, collapse: bool
    ) -> list[Text]:
        if not playbook.guardrails:
            return []
        lines: list[Text] = []
        ok = waiting = 0
        for reading in readings(playbook, state, view.now):
            # Over the threshold but not yet for `sustained_s`, or unknown, is shown, never folded into "ok".
            if collapse and reading.status in ("ok", "waiting"):
                ok += reading.status == "ok"
                waiting += reading.status == "waiting"
                continue
            lines.append(self._guardrail_line(reading, view))
            if reading.status == "unknown" and reading.why:  # the reason gets lines of its own: what to fix
                lines += self._reason(view.redact(reading.why), view, 1 if collapse else REASON_LINES)
        if ok or waiting:
            text = Text(f"✓ {ok} guardrail{'s' if ok != 1 else ''} ok", style=view.tone("ok"))
            if waiting:
                text.append(f" · ? {waiting} waiting for data", style=view.tone("stale"))
            lines.append(text)
        return lines

    def _reason(self, reason: str, view: View, most: int) -> list[Text]:
        """`↳ reason`, wrapped at the pane's width onto at most `most` lines (the last one cut with …)."""
        width = max(20, (self.content_size.width or 80) - 4)
        chunks = textwrap.wrap(reason, width) or [""]
        if len(chunks) > most:
            chunks = [*chunks[: most - 1], " ".join(chunks[most - 1 :])]
        lines = []
        for i, chunk in enumerate(chunks):
            line = Text(("  ↳ " if i == 0 else "    ") + chunk, style=view.tone("warn"))
            line.no_wrap, line.overflow = True, "ellipsis"
            lines.append(line)
        return lines

    @staticmethod
    def _guardrail_line(reading: GuardrailReading, view: View) -> Text:
        """`✗ BREACH P0 candidate-5xx 50.0% > 2.0% over 10 s` (the report's words, padded)."""
        status, rail = reading.status, reading.rail
        tone = {
            "breach": "fail" if rail.severity == "P0" else "warn",
            "unknown": "warn",
            "over": "warn",
            "ok": "ok",
        }.get(status, "stale")
        loud = status in ("breach", "unknown", "over")
        text = Text(f"{reading.glyph} {reading.label}".ljust(12), style=view.tone(tone, bold=loud))
        text.append(rail.name, style="bold" if loud else "")
        text.append(
            f" {reading.measure}",
            style=view.tone(tone, bold=status == "breach") if loud else view.tone("stale"),
        )
        if status == "over" and rail.sustained_s:
            text.append(f" · breach if held {rail.sustained_s:g} s", style=view.tone("stale"))
        if reading.against:  # judged against the baseline: both sides
            text.append(f" · {reading.against}", style=view.tone("stale"))
        if rail.metric == "query":  # a query: when it was last evaluated
            text.append(f" · evaluated {clock(reading.evaluated_at)}", style=view.tone("stale"))
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    def _rollback(self, state: SessionState, playbook: Playbook, view: View) -> list[Text]:
        """The rollback's stage, kept on screen until it changes (a failure never fades with a toast)."""
        t, status = state.traffic, state.traffic.rollback
        lines: list[Text] = []
        if status.stage == "cancelled":
            text = Text(f"⟲ rollback declined {clock(status.ended_ts)} by {view.redact(status.actor or '?')}")
            if status.failure:
                text.append(f" — {view.redact(status.failure)}")
            lines.append(text)
        elif status.stage != "none" and t.rollback_requested is not None:
            r = t.rollback_requested
            text = Text(f"⟲ rollback requested {clock(r.ts)} by {view.redact(r.actor)}", style="bold")
            if r.reason:
                text.append(f" — {view.redact(r.reason)}")
            lines.append(text)
        a = t.rollback_applied
        if status.after_rollback and a is not None:
            after = a.after.get("backends") if isinstance(a.after, dict) else None
            moved = weight_changes(a.before, a.after)
            if moved and a.before.get("selector") == a.after.get("selector"):  # a weight-based driver
                text = Text(f"✓ weights changed via {a.driver}: {moved}", style=view.tone("ok", bold=True))
            else:
                text = Text(f"✓ selector changed via {a.driver}", style=view.tone("ok", bold=True))
            if after:
                text.append(f" → {', '.join(view.redact(b) for b in after)}")
            lines.append(text)
        if status.stage == "failed":
            text = Text(
                f"✗ ROLLBACK FAILED — {view.redact(status.failure or '')}", style=view.tone("fail", bold=True)
            )
            lines.append(text)
        elif status.stage == "verified" and status.verified is not None:
            v = status.verified
            text = Text(f"✓ ROLLBACK VERIFIED · RTO {secs(v.rto_s)}", style=view.tone("ok", bold=True))
            text.append(f" · TTD {secs(v.time_to_detect_s)} · TTM {secs(v.time_to_mitigate_s)}")
            text.append(f" · {pct(v.stable_share)} stable of {v.requests} req")
            lines.append(text)
        elif status.in_progress:
            since = view.activity.rollback_since or status.requested_ts or view.now
            waited = max(0.0, view.now - since)
            lines.append(
                Text(
                    f"{view.activity.spinner} rollback {status.words}… {waited:.1f}s",
                    style=view.tone("warn", bold=True),
                )
            )
        if lines:
            if view.compact:
                lines = lines[-1:]
            for line in lines:
                line.no_wrap, line.overflow = True, "ellipsis"
            return lines
        removal = next((a for a in playbook.actions if a.kind == "selector_removal"), None)
        if removal is not None:
            key = view.key("rollback")
            return [
                Text(
                    f"{f'{key} rolls back' if key else 'rollback'}: {removal.title}"
                    f" ({', '.join(removal.remove_replicas)})",
                    style=view.tone("stale"),
                    no_wrap=True,
                    overflow="ellipsis",
                )
            ]
        return []


def _sends(view: View) -> str:
    key = view.key("traffic")
    return f" — {key} sends synthetic traffic" if key else ""


def _seen_line(state: SessionState, view: View) -> tuple[Text, list[str]]:
    """A viewer does not see the operator's keys, only the journal: traffic is what its windows show (the
    line, and shorter wordings for the title)."""
    last = state.traffic.last_window
    live = state.ended is None and not view.writer_gone  # no cockpit writes it: nothing flows now
    if last is not None and live and view.now - last.ts <= max(3.0, 3 * last.window_s):
        return Text("● synthetic traffic flowing", style=view.tone("ok", bold=True)), ["● traffic flowing"]
    seen = f"since {clock(last.ts)}" if last is not None else "seen"
    text = Text(f"○ no synthetic traffic {seen}", style=view.tone("stale", bold=True))
    return text, [f"○ no traffic {seen}", "○ no traffic"]
