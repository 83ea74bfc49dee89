"""Traffic split: who serves the requests, the guardrails watching them, and the rollback."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import StaticPane, View, duration, ms, pending


def _bar(share: float, width: int) -> str:
    full = round(share * width)
    return "█" * full + "░" * (width - full)


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items()) or "—"


class TrafficPane(StaticPane):
    TITLE = "Traffic split · guardrails"

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        traffic = state.traffic
        parts: list[RenderableType] = []
        lb = playbook.load_balancer
        if traffic.selector is not None:
            sel = Text("selector ", style="bold")
            sel.append(_selector_text(traffic.selector.selector))
            sel.append(f"  ({traffic.selector.source})", style=view.tone("stale"))
            parts.append(sel)
        elif lb is not None:
            parts.append(
                Text(f"selector {_selector_text(lb.selector)}  (playbook, not read live)", style="dim")
            )

        window = traffic.last_window
        if window is not None:
            total = max(1, window.requests)
            table = Table(box=None, padding=(0, 1), pad_edge=False, show_header=False)
            table.add_column(no_wrap=True)
            table.add_column(no_wrap=True)
            table.add_column(justify="right", no_wrap=True)
            table.add_column(justify="right", no_wrap=True)
            for replica, count in sorted(window.per_replica.items()):
                errors = window.errors_5xx.get(replica, 0)
                table.add_row(
                    replica,
                    _bar(count / total, 12),
                    f"{count / total:4.0%}",
                    Text(f"{errors} 5xx", style=view.tone("fail") if errors else view.tone("stale")),
                )
            parts.append(table)
            parts.append(
                Text(
                    f"{window.requests} req/{window.window_s:g}s · p95 {ms(window.p95_ms)} · "
                    f"ws drops {window.ws_disconnects} · idem. collisions {window.idempotency_collisions}"
                )
            )
        elif "traffic" not in view.features:
            parts.append(pending("Traffic split", 5, None, view))
        else:
            parts.append(Text("No traffic window yet.", style="dim"))

        for breach in traffic.breaches.values():
            tone = "fail" if breach.severity == "P0" else "warn"
            parts.append(
                Text(
                    f"✗ {breach.severity} {breach.guardrail}: "
                    f"{breach.metric} {breach.value:g} > {breach.threshold:g}",
                    style=view.tone(tone, bold=True),
                )
            )
        if not traffic.breaches and playbook.guardrails:
            watching = "watching" if traffic.windows else "not watched yet"
            parts.append(Text(f"{len(playbook.guardrails)} guardrails {watching}", style=view.tone("stale")))

        parts.extend(self._rollback(state, playbook, view))
        self.show(Group(*parts))

    def _rollback(self, state: SessionState, playbook: Playbook, view: View) -> list[Text]:
        t = state.traffic
        if t.rollback_verified is not None:
            v = t.rollback_verified
            tone = "ok" if v.ok else "fail"
            return [
                Text(
                    f"{'✓' if v.ok else '✗'} rollback verified: "
                    f"stable share {v.stable_share:.0%} of {v.requests}"
                    f" · TTD {duration(v.time_to_detect_s)} · RTO {duration(v.rto_s)}",
                    style=view.tone(tone, bold=True),
                )
            ]
        if t.rollback_applied is not None:
            a = t.rollback_applied
            if not a.ok:
                return [
                    Text(
                        f"✗ rollback failed: {view.redact(a.error or '')}", style=view.tone("fail", bold=True)
                    )
                ]
            return [
                Text(f"▶ rollback applied via {a.driver} — verifying…", style=view.tone("warn", bold=True))
            ]
        if t.rollback_requested is not None:
            return [Text(f"▶ rollback requested by {t.rollback_requested.actor}", style=view.tone("warn"))]
        removal = next((a for a in playbook.actions if a.kind == "selector_removal"), None)
        if removal is not None:
            return [
                Text(f"r: {removal.title} ({', '.join(removal.remove_replicas)})", style=view.tone("stale"))
            ]
        return []
