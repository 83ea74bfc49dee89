"""What cannot run from here, and why: the journaled readiness check (probes/readiness.py) in words.

`check ready`, the headless log before a rehearsal, the cockpit's readiness screen, the timeline and the
report format this one view, so they name the same items with the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollback_tui.core import events as ev
from rollback_tui.core.text import one_line

WHY_MAX = 160  # characters of one reason in a table row (the journal keeps it whole)
LISTED = 3  # items named on the timeline line


def need_text(n: ev.NeedStatus) -> str:
    """`binary gh missing`, `probe dead-letters not ready`."""
    return f"{n.target if n.need == 'item' else f'{n.need} {n.target}'} {n.status}"


def blocker_text(item: ev.ItemReadiness) -> str:
    """Why an item cannot run: `binary gh missing (not on PATH); env GITHUB_REPOSITORY missing (…)`;
    an item it runs through is only named (its own line says why)."""
    failing = [n for n in item.needs if not n.ok]
    return "; ".join(need_text(n) + ("" if n.need == "item" or not n.why else f" ({n.why})") for n in failing)


@dataclass(frozen=True)
class ReadinessRow:
    item: str  # `gate smoke` on an item's first row, "" on the rows after
    ready: bool  # the item's
    need: str  # `binary node`; `—` for an item that needs nothing from here
    status: str
    ok: bool
    why: str

    @property
    def glyph(self) -> str:
        return ("✓" if self.ready else "✗") if self.item else " "


class ReadinessView:
    def __init__(self, checked: ev.ReadinessChecked) -> None:
        self.checked = checked
        self.items = checked.items
        self.not_ready = [i for i in self.items if not i.ready]

    @property
    def ready(self) -> bool:
        return not self.not_ready

    @property
    def headline(self) -> str:
        """`✓ all 12 items can run from ops-1` / `✗ 5 of 12 items cannot run from ops-1`."""
        where = f"from {self.checked.host}"
        if self.ready:
            return f"✓ all {len(self.items)} items can run {where}"
        return f"✗ {len(self.not_ready)} of {len(self.items)} items cannot run {where}"

    def why(self, item: str, name: str) -> str | None:
        """`cannot run: binary gh missing (not on PATH)` for an item that is not ready, else None."""
        found = next((i for i in self.not_ready if i.item == item and i.name == name), None)
        return None if found is None else f"cannot run: {blocker_text(found)}"

    def rows(self) -> list[ReadinessRow]:
        rows = []
        for item in self.items:
            label = item.label
            if not item.needs:
                rows.append(ReadinessRow(label, True, "—", "ready", True, "needs nothing from here"))
            for n in item.needs:
                need = n.target if n.need == "item" else f"{n.need.replace('_', ' ')} {n.target}"
                rows.append(ReadinessRow(label, item.ready, need, n.status, n.ok, one_line(n.why, WHY_MAX)))
                label = ""
        return rows

    def table_lines(self) -> list[str]:
        """The table: item → need → status → why, columns aligned, the headline last."""
        rows = self.rows()
        widths = [max([len(h), *(len(getattr(r, f)) for r in rows)]) for h, f in _COLUMNS]
        widths = [min(w, 48) for w in widths]
        lines = ["  " + "  ".join(h.ljust(w) for (h, _), w in zip(_COLUMNS, widths, strict=True)) + "  why"]
        for r in rows:
            cells = "  ".join(getattr(r, f).ljust(w) for (_, f), w in zip(_COLUMNS, widths, strict=True))
            lines.append(f"{r.glyph} {cells}  {r.why}".rstrip())
        return [*lines, self.headline]

    def timeline_text(self) -> str:
        """One line: `Readiness from ops-1: 7 of 12 items ready; cannot run: gate smoke (…), … and 3 more`."""
        ready = len(self.items) - len(self.not_ready)
        text = f"Readiness from {self.checked.host}: {ready} of {len(self.items)} items ready"
        if self.ready:
            return text
        named = [f"{i.label} ({one_line(blocker_text(i), WHY_MAX)})" for i in self.not_ready[:LISTED]]
        more = len(self.not_ready) - LISTED
        return f"{text}; cannot run: " + ", ".join(named) + (f" and {more} more" if more > 0 else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "host": self.checked.host,
            "items_ready": len(self.items) - len(self.not_ready),
            "items": [
                {
                    "item": i.item,
                    "name": i.name,
                    "ready": i.ready,
                    "why": None if i.ready else blocker_text(i),
                    "needs": [n.model_dump() for n in i.needs],
                }
                for i in self.items
            ],
        }


_COLUMNS = (("item", "item"), ("need", "need"), ("status", "status"))
