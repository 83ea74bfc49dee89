"""UI messages and the map from event kinds to the panes they dirty.

The engine publishes every event; the UI only marks panes dirty and repaints them in batches,
so a flood of fanout frames costs one repaint per tick, not one per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

ALL_PANES = frozenset(
    {"verdict", "health", "fanout", "traffic", "gates", "checklist", "steps", "notice", "status"}
    | {"presenter", "watch"}  # the presenter board (when shown) and a viewer's follow line
)

PANES_FOR_KIND: dict[str, frozenset[str]] = {
    "session_started": ALL_PANES,
    "session_resumed": ALL_PANES,
    "session_ended": frozenset({"status"}),
    "notice": frozenset({"notice"}),
    "step_entered": frozenset({"steps"}),
    "operator_action": frozenset(),  # only in the event log, which repaints itself
    "action_confirmed": frozenset(),  # likewise
    "step_item_started": frozenset({"steps"}),
    "step_item_finished": frozenset({"steps"}),
    "action_started": frozenset({"steps"}),
    "action_finished": frozenset({"steps"}),
    "flags_read": frozenset({"steps"}),
    "dead_letters_inspected": frozenset({"steps", "traffic"}),
    "incident_recorded": frozenset({"status"}),
    "readiness_checked": frozenset({"steps", "gates", "status"}),  # what cannot run from here, and why
    "health_sample": frozenset({"health", "verdict"}),
    "fact_captured": frozenset({"steps", "checklist"}),
    "probe_result": frozenset({"traffic", "steps"}),
    "fanout_frame": frozenset({"fanout"}),
    "fanout_tap_batch": frozenset({"fanout"}),
    "fanout_session": frozenset({"fanout"}),
    "fanout_result": frozenset({"fanout", "verdict", "steps", "checklist"}),
    "traffic_window": frozenset({"traffic", "steps"}),
    "selector_state": frozenset({"traffic"}),
    # A breach carries its time to detect, which the status bar shows (TTD) until a rollback is verified.
    "guardrail_breach": frozenset({"traffic", "verdict", "steps", "status"}),
    "guardrail_recovered": frozenset({"traffic", "verdict", "steps", "status"}),
    "guardrail_status": frozenset({"traffic", "checklist"}),  # unknown / observed: the rules read it
    "metric_sample": frozenset({"traffic", "steps"}),  # a guardrail's query value (its reading)
    # Every rollback stage changes the headline and the status bar, not only the traffic pane.
    **dict.fromkeys(
        [
            "rollback_requested",
            "rollback_applying",
            "rollback_applied",
            "rollback_verified",
            "rollback_failed",
            "rollback_cancelled",
        ],
        frozenset({"traffic", "steps", "status", "verdict", "checklist"}),
    ),
    "gate_started": frozenset({"gates", "steps"}),
    "gate_output": frozenset({"gates"}),
    "gate_finished": frozenset({"gates", "steps", "verdict", "checklist"}),
    "checklist_ticked": frozenset({"checklist"}),
    "export_written": frozenset({"checklist", "steps"}),
}


def panes_for(kind: str) -> frozenset[str]:
    return PANES_FOR_KIND.get(kind, frozenset())


@dataclass
class StateChanged(Message):
    """Some panes need a repaint; queued copies collapse into one (used when no refresh timer runs)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StateChanged)
