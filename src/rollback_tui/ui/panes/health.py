"""Replica health: one row per replica plus a banner for the disagreements that break fanout."""

from __future__ import annotations

from collections import Counter

from rich.console import Group
from rich.table import Table
from rich.text import Text

from rollback_tui.core.state import ReplicaState, SessionState
from rollback_tui.core.verdict import prefix_mismatch_text, replica_status
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View, ms, short_image, sparkline

WIDE = 130  # from this content width on, show the URL and last-error columns


def ordered_replicas(state: SessionState, playbook: Playbook) -> list[ReplicaState]:
    names = [r.name for r in playbook.replicas]
    names += [n for n in state.replicas if n not in names]
    return [state.replicas.get(n) or ReplicaState(name=n, role=_role(playbook, n)) for n in names]


def _role(playbook: Playbook, name: str) -> str:
    return next((r.role for r in playbook.replicas if r.name == name), "?")


class HealthPane(StaticPane):
    TITLE = "Replica health"
    FIXED_SIZE = False  # its height follows the replica rows and banner lines

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._shape: tuple[int, int, bool] = (-1, -1, False)

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        replicas = ordered_replicas(state, playbook)
        wide = self.content_size.width >= WIDE
        statuses = {r.name: replica_status(r, view.now, view.stale_after_s) for r in replicas}
        banner = self._banner(state, playbook, view)
        # Relayout only when the number of lines (or the columns) changed, not on every sample.
        shape = (len(replicas), len(banner), wide)
        table = self._table(replicas, statuses, state, view, wide)
        self.show(Group(table, *banner), layout=shape != self._shape)
        self._shape = shape
        counts = Counter(statuses.values())
        parts = [f"{n} {word}" for word, n in sorted(counts.items(), key=lambda kv: kv[0] != "ok")]
        self.border_subtitle = (
            f"{len(replicas)} replica{'s' if len(replicas) != 1 else ''} · {' · '.join(parts)}"
            f" · every {playbook.health_interval_s:g}s"
        )

    def _table(
        self,
        replicas: list[ReplicaState],
        statuses: dict[str, str],
        state: SessionState,
        view: View,
        wide: bool,
    ) -> Table:
        table = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="bold", expand=wide)
        table.add_column("Status", width=10, no_wrap=True)
        table.add_column("Replica", no_wrap=True, min_width=8)
        table.add_column("Role", no_wrap=True)
        table.add_column("Latency", justify="right", no_wrap=True, min_width=7)
        table.add_column("Trend", width=16 if wide else 10, no_wrap=True)
        table.add_column("Image", no_wrap=True, max_width=14)
        table.add_column("Commit", no_wrap=True, max_width=9)
        table.add_column("Prefix", no_wrap=True)
        table.add_column("Transport", no_wrap=True)
        if wide:
            table.add_column("URL", no_wrap=True, overflow="ellipsis", ratio=1)
            table.add_column("Last error", no_wrap=True, overflow="ellipsis", ratio=1)

        ceiling = max((max(r.latencies) for r in replicas if r.latencies), default=None)
        majority = Counter(state.prefixes.values()).most_common(1)
        usual_prefix = majority[0][0] if majority else None
        for r in replicas:
            status = statuses[r.name]
            fail = view.tone("fail", bold=True)
            if r.channel_prefix is None:
                prefix = Text("—", style=view.tone("stale"))
            elif state.prefix_mismatch and r.channel_prefix != usual_prefix:
                prefix = Text(f"✗ {r.channel_prefix}", style=fail)
            else:
                prefix = Text(r.channel_prefix)
            if r.name not in state.transport_mismatch:
                transport = Text(r.transport or "—", style=view.tone("stale") if r.transport is None else "")
            else:
                transport = Text(f"✗ {r.transport}", style=fail)
            role = Text(r.role, style=view.tone("warn") if r.role == "candidate" else "")
            latency_style = view.tone("stale") if status in ("stale", "down", "timeout") else ""
            row = [
                view.status(status),
                Text(r.name, style="bold"),
                role,
                Text(ms(r.latency_ms), style=latency_style),
                Text(sparkline(r.latencies, 16 if wide else 10, ceiling), style=view.tone("ok")),
                Text(view.redact(short_image(r.image))),
                Text(view.redact(r.commit or "—")[:9]),
                prefix,
                transport,
            ]
            if wide:
                row.append(Text(view.url(r.name, r.url) or "—", style=view.tone("stale")))
                row.append(Text(view.redact(r.error or ""), style=view.tone("fail") if r.error else ""))
            table.add_row(*row)
        return table

    def _banner(self, state: SessionState, playbook: Playbook, view: View) -> list[Text]:
        """The disagreements and failures, each on its own line, worst first."""
        fail, warn = view.tone("fail", bold=True), view.tone("warn", bold=True)
        lines: list[Text] = []
        mismatch = prefix_mismatch_text(state)
        if mismatch:
            lines.append(Text(f"✗ channel prefix mismatch: {mismatch}", style=fail))
        elif playbook.realtime and state.prefixes:
            expected = playbook.realtime.channel_prefix
            seen = next(iter(state.prefixes.values()))
            if seen != expected:
                lines.append(
                    Text(f"! replicas agree on {seen} but the playbook expects {expected}", style=warn)
                )
        for name in state.transport_mismatch:
            transport = state.replicas[name].transport
            lines.append(
                Text(
                    f"✗ {name} uses transport {transport}: its events never reach the other replicas",
                    style=fail,
                )
            )
        unknown: list[Text] = []  # after the failures: worst first
        for r in ordered_replicas(state, playbook):
            status = replica_status(r, view.now, view.stale_after_s)
            if status in ("down", "timeout", "junk"):
                lines.append(Text(f"✗ {r.name} {status}: {view.redact(r.error or 'no detail')}", style=fail))
            elif status == "unobserved":
                unknown.append(Text(f"? {r.name} unknown: {view.redact(r.error or 'no detail')}", style=warn))
            elif status == "stale":
                age = view.now - (r.last_ts or view.now)
                lines.append(Text(f"? {r.name}: no sample for {age:.0f}s — health feed stalled?", style=warn))
        sampled = state.replicas and all(r.samples for r in state.replicas.values())
        if not lines and not unknown and sampled and state.realtime_reported:
            lines.append(Text("✓ all replicas agree on prefix and transport", style=view.tone("ok")))
        lines += unknown
        if view.compact and len(lines) > 2:
            # Small terminal: the worst line, then how many more (the verdict bar names them too).
            extra = Text(f"  … and {len(lines) - 1} more problems", style=warn)
            lines = [lines[0], extra]
        if lines and not view.compact:
            lines.insert(0, Text(""))
        return lines
