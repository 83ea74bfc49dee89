"""Which operator features the engine implements, so panes never pretend.

The engine declares them in `Engine.features`; a feature missing there is shown as not available
with the issue that delivers it.
"""

from __future__ import annotations

from typing import Any

# feature → (engine method, issue that delivers it)
FEATURES: dict[str, tuple[str, int]] = {
    "fanout": ("run_fanout_check", 4),
    "traffic": ("start_traffic", 5),
    "rollback": ("rollback", 5),
    "gates": ("run_gates", 6),
    "checklist": ("tick", 8),
    "export": ("export", 8),
}


def engine_features(engine: Any) -> frozenset[str]:
    return frozenset(getattr(engine, "features", ()))
