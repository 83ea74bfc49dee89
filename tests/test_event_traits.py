"""Event kinds declare their traits on their classes; every kind is folded or explicitly not, and has a
one-line description or is explicitly off the timeline (issue 13)."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pytest

from rollback_tui.core import events as ev
from rollback_tui.core.read.timeline import DESCRIBERS, describe, glyph
from rollback_tui.core.state import _HANDLERS
from rollback_tui.ui.messages import PANES_FOR_KIND

KINDS = {ev.kind_of(cls): cls for cls in ev.EVENT_CLASSES}


def _value(tp: Any) -> Any:
    """A value of type `tp` good enough to build an event (the first option of a union or a Literal)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return typing.get_args(tp)[0]
    if origin in (typing.Union, types.UnionType):
        return _value(next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin in (list, tuple):
        return []
    if origin is dict:
        return {}
    return {str: "x", float: 1.0, int: 1, bool: False}.get(tp, 1)  # False: a failed probe is an event


def example(cls: type[ev.Event]) -> ev.Event:
    """An event of this class with every required field set (validated, so it is a real event)."""
    fields = {n: _value(f.annotation) for n, f in cls.model_fields.items() if f.is_required()}
    return cls(**fields)


def test_every_kind_of_the_union_is_a_class_with_its_own_kind() -> None:
    assert len(KINDS) == len(ev.EVENT_CLASSES) == len(typing.get_args(typing.get_args(ev.AnyEvent)[0]))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_is_folded_or_explicitly_not(kind: str) -> None:
    cls = KINDS[kind]
    handled = kind in _HANDLERS
    assert cls.folded == handled, f"{cls.__name__}: folded={cls.folded} but SessionState handler={handled}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_describer_or_is_explicitly_off_the_timeline(kind: str) -> None:
    cls = KINDS[kind]
    assert cls.timeline == (cls in DESCRIBERS), f"{cls.__name__}: timeline={cls.timeline}"
    event = example(cls)
    text = describe(event)
    if not cls.timeline:
        assert text is None
    else:
        assert text and text.strip() == text and "\n" not in text, text  # one line
        assert len(glyph(event)) == 1


def test_a_probe_that_answered_is_a_measurement_not_a_timeline_line() -> None:
    assert describe(ev.ProbeResult(probe="dead-letters", ok=True, value=3)) is None
    failed = ev.ProbeResult(probe="dead-letters", ok=False, error="HTTP 503")
    assert describe(failed) == "Probe dead-letters FAILED: HTTP 503"


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
