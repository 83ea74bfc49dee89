"""Event kinds declare their traits on their classes; every kind is folded or explicitly not (issue 13)."""

from __future__ import annotations

import typing

import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.state import _HANDLERS
from rollback_tui.ui.messages import PANES_FOR_KIND

KINDS = {ev.kind_of(cls): cls for cls in ev.EVENT_CLASSES}


def test_every_kind_of_the_union_is_a_class_with_its_own_kind() -> None:
    assert len(KINDS) == len(ev.EVENT_CLASSES) == len(typing.get_args(typing.get_args(ev.AnyEvent)[0]))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_folded_or_explicitly_not(kind: str) -> None:
    cls = KINDS[kind]
    handled = kind in _HANDLERS
    assert cls.folded == handled, f"{cls.__name__}: folded={cls.folded} but SessionState handler={handled}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_folded_kind_names_the_panes_it_repaints(kind: str) -> None:
    """A folded kind changes what a pane shows: the cockpit must know which panes (possibly none)."""
    assert KINDS[kind].folded == (kind in PANES_FOR_KIND), kind


def test_the_kind_sets_are_derived_from_the_classes() -> None:
    for name, trait in (("DURABLE", "durable"), ("HIGH_RATE", "high_rate"), ("EVIDENCE", "evidence"),
                        ("TIMELINE", "timeline"), ("FOLDED", "folded")):  # fmt: skip
        assert getattr(ev, name) == {k for k, cls in KINDS.items() if getattr(cls, trait)}, name
    # Operator intents and outcomes are fsync'd before they are acknowledged; floods are batched, never
    # fsync'd one by one and never one timeline line each.
    assert {"operator_action", "checklist_ticked", "gate_finished", "rollback_requested"} <= ev.DURABLE
    assert {k for k in KINDS if k.startswith("rollback_")} <= ev.DURABLE
    assert not ev.HIGH_RATE & (ev.DURABLE | ev.TIMELINE)
    assert ev.EVIDENCE <= ev.FOLDED  # a checklist rule reads the state: only what is folded can change it


def test_a_trait_is_a_class_attribute_not_a_journaled_field() -> None:
    event = ev.GateFinished(gate="g", run="r", outcome="passed", duration_s=1.0)
    assert event.durable and event.timeline and "durable" not in event.model_dump()
    assert ev.parse_event(event.model_dump_json()) == event
