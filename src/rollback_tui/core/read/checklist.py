"""The checklist counts: one definition for the pane, the headless verdict and the report."""

from __future__ import annotations

from dataclasses import dataclass

from rollback_tui.core.checklist import ChecklistReport, ItemStatus


@dataclass(frozen=True)
class ChecklistCounts:
    items_checked: int
    items: int
    criteria_checked: int
    criteria: int

    @classmethod
    def of(cls, report: ChecklistReport) -> ChecklistCounts:
        return cls(
            sum(s.checked for s in report.items),
            len(report.items),
            sum(s.checked for s in report.exit_criteria),
            len(report.exit_criteria),
        )

    @property
    def text(self) -> str:
        """`evidence 4/5 · exit criteria 1/2` — evidence items and exit criteria counted apart."""
        exit_criteria = f"{self.criteria_checked}/{self.criteria}"
        return f"evidence {self.items_checked}/{self.items} · exit criteria {exit_criteria}"

    def as_dict(self) -> dict[str, int]:
        return {
            "items_checked": self.items_checked,
            "items": self.items,
            "exit_criteria_checked": self.criteria_checked,
            "exit_criteria": self.criteria,
        }


def rule_holds(status: ItemStatus) -> bool | None:
    """Whether the item's rule holds now — also for an item ticked or unticked by hand, whose tick says
    what the operator decided and this what the journal shows; None for a manual item (it has no rule)."""
    return None if status.rule == "manual" else status.rule_holds


def how(status: ItemStatus) -> str:
    """Who decides the tick: `manual`, `auto` (the rule) or, ticked by hand over a rule, `overridden by
    hand, rule holds` / `overridden by hand, rule does not hold`."""
    holds = rule_holds(status)
    if holds is None:
        return "manual"
    if status.auto:
        return "auto"
    return f"overridden by hand, rule {'holds' if holds else 'does not hold'}"
