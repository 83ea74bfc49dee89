"""The presenter board: what the incident call needs to read, in large text (`p`, `--present`).

The verdict, the rollback's state, the active breach, time to detect / mitigate, RTO and the checklist's
x/y — each a tile with a small label, the value in the large font (ui/bigtext.py) when it fits its tile,
and one line of detail. Tiles the playbook has nothing for are left out (no load balancer: no rollback,
no RTO; no guardrails: no breach; no checklist: no x/y). The values and their formats are the read model's
(core/read), the panes' and the report's, so the board, the panes and the report agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.table import Table
from rich.text import Text

from rollback_tui.core.checklist import evaluate
from rollback_tui.core.read.checklist import ChecklistCounts
from rollback_tui.core.read.guardrails import breach_text, breach_time_to_detect_s, standings
from rollback_tui.core.read.words import pct, secs
from rollback_tui.core.state import SessionState
from rollback_tui.core.verdict import verdict
from rollback_tui.playbook.model import Playbook, SelectorRemoval
from rollback_tui.ui import bigtext
from rollback_tui.ui.panes.base import StaticPane, View

STAGE_TONE = {
    "none": "stale",
    "requested": "warn",
    "applying": "warn",
    "applied": "warn",
    "verified": "ok",
    "failed": "fail",
    "cancelled": "warn",
}


@dataclass
class Tile:
    label: str
    value: str
    tone: str
    detail: str = ""


def has_rollback(playbook: Playbook) -> bool:
    return playbook.load_balancer is not None and any(
        isinstance(a, SelectorRemoval) for a in playbook.actions
    )


def tiles(state: SessionState, playbook: Playbook, view: View) -> tuple[Tile, list[list[Tile]]]:
    """The verdict tile and the rows of the others, leaving out what the playbook has nothing for."""
    v = verdict(state, view.now, view.stale_after_s)
    reasons = v.reasons if v.level not in ("ok", "mitigated") else ([v.summary] if v.summary else [])
    head = Tile(f"VERDICT {v.glyph}", v.word, v.tone, " · ".join(reasons))
    first: list[Tile] = []
    timings: list[Tile] = []
    rollback = state.traffic.rollback
    if has_rollback(playbook):
        detail = rollback.words
        if rollback.stage == "verified" and rollback.verified is not None:
            detail = (
                f"{', '.join(rollback.replicas) or '?'} out · {pct(rollback.verified.stable_share)} on stable"
            )
        first.append(
            Tile(
                "ROLLBACK",
                rollback.stage.upper() if rollback.stage != "none" else "NOT RUN",
                STAGE_TONE.get(rollback.stage, "stale"),
                detail,
            )
        )
    if playbook.guardrails:
        active = standings(state)
        if active:
            top = active[0]
            more = f" (+{len(active) - 1} more)" if len(active) > 1 else ""
            tone, text = ("fail", breach_text(top.breach)) if top.held else ("stale", top.when)
            first.append(Tile("ACTIVE BREACH", top.name, tone, text + more))
        else:
            first.append(
                Tile("ACTIVE BREACH", "NONE", "ok", f"{len(playbook.guardrails)} guardrails watched")
            )
    if has_rollback(playbook):
        verified = rollback.verified
        # A journaled breach already carries its time to detect (an upper bound: the status bar's figure).
        detect = verified.time_to_detect_s if verified else breach_time_to_detect_s(state)
        for label, value, caption, waiting in (
            ("TIME TO DETECT", detect, "seconds, at most", "once a guardrail breaches"),
            ("TIME TO MITIGATE", verified.time_to_mitigate_s if verified else None, "seconds, at most",
             "after a verified rollback"),
            ("RTO", verified.rto_s if verified else None, "seconds", "after a verified rollback"),
        ):  # fmt: skip
            timings.append(
                Tile(
                    label,
                    secs(value).removesuffix(" s"),
                    "plain" if value is not None else "stale",
                    caption if value is not None else waiting,
                )
            )
    counts = ChecklistCounts.of(evaluate(playbook, state))  # the pane's and the report's counts
    if counts.items:
        criteria = f"evidence items · exit criteria {counts.criteria_checked}/{counts.criteria}"
        timings.append(_count_tile("CHECKLIST", counts.items_checked, counts.items, criteria))
    elif counts.criteria:
        timings.append(_count_tile("EXIT CRITERIA", counts.criteria_checked, counts.criteria, "holding"))
    return head, [row for row in (first, timings) if row]


def _count_tile(label: str, done: int, total: int, detail: str) -> Tile:
    return Tile(label, f"{done}/{total}", "ok" if done == total else "warn", detail)


class PresenterBoard(StaticPane, can_focus=False):
    TITLE = "Presenter"
    FIXED_SIZE = False  # its height follows its rows of tiles

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        head, rows = tiles(state, playbook, view)
        room = max(20, self.content_size.width or (self.app.size.width - 4))
        parts: list[Table | Text] = [self._row([head], room, view)]
        parts += [self._row(row, room, view) for row in rows]
        self.border_title = f"{view.redact(playbook.title)} · {playbook.environment}"
        self.show(Group(*parts), layout=True)

    def _row(self, row: list[Tile], room: int, view: View) -> Table:
        grid = Table.grid(expand=True, padding=(0, 2))
        for _ in row:
            grid.add_column(ratio=1)
        cell = max(8, (room - 2 * (len(row) - 1)) // len(row))
        grid.add_row(*(self._tile(tile, cell, view) for tile in row))
        return grid

    @staticmethod
    def _tile(tile: Tile, room: int, view: View) -> Text:
        text = Text(tile.label + "\n", style=view.tone("stale", bold=True))
        value = view.redact(tile.value)
        scale = bigtext.fit(value, room)
        style = view.tone(tile.tone, bold=True)
        if scale is None:  # too long for large letters in this tile: bold, on the same three rows
            text.append(value + "\n\n\n", style=style)
        else:
            text.append("\n".join(bigtext.render(value, scale)) + "\n", style=style)
        detail = Text(view.redact(tile.detail) or " ", style=view.tone("stale"))
        detail.truncate(room, overflow="ellipsis")
        text.append_text(detail)
        text.no_wrap = True
        return text
