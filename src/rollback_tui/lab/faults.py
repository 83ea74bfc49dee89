"""Runtime fault injection for a lab replica: error rate, latency, websocket drops, dead letters,
transport and channel-prefix overrides. Updated while the replica runs via `POST /_lab/faults`."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Transport = Literal["redis", "memory"]


class FaultError(ValueError):
    """A fault update that makes no sense (unknown key, out-of-range value)."""


def _rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise FaultError(f"{key} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _count(key: str, value: Any, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= upper:
        raise FaultError(f"{key} must be an integer between 0 and {upper}, got {value!r}")
    return value


def _transport(key: str, value: Any) -> Transport:
    if value not in ("redis", "memory"):
        raise FaultError(f"{key} must be 'redis' or 'memory', got {value!r}")
    return value


def _prefix(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise FaultError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{key} must be true or false, got {value!r}")
    return value


_CHECKS = {
    "error_rate": _rate,
    "latency_ms": lambda k, v: _count(k, v, 60_000),
    "ws_drop_rate": _rate,
    "dead_letters": lambda k, v: _count(k, v, 1_000_000),
    "transport": _transport,
    "channel_prefix": _prefix,
    "health_errors": _flag,
}


@dataclass
class Faults:
    """The replica's current fault settings. `transport`/`channel_prefix` are its realtime config."""

    transport: Transport = "redis"
    channel_prefix: str = "chat:rt:"
    error_rate: float = 0.0
    latency_ms: int = 0
    ws_drop_rate: float = 0.0
    dead_letters: int = 0
    health_errors: bool = False  # error_rate also applies to /healthz

    def update(self, changes: dict[str, Any]) -> None:
        """Apply a partial update atomically: either every key is valid and applied, or none is."""
        if not isinstance(changes, dict):
            raise FaultError("expected a JSON object of fault settings")
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise FaultError(f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(_CHECKS)}")
        checked = {key: _CHECKS[key](key, value) for key, value in changes.items()}
        for key, value in checked.items():
            setattr(self, key, value)

    @property
    def degrading(self) -> bool:
        """Faults that make the replica report `degraded` (config overrides stay silent, like in prod)."""
        return self.error_rate > 0 or self.latency_ms > 0 or self.ws_drop_rate > 0

    def roll_error(self) -> bool:
        return self.error_rate > 0 and random.random() < self.error_rate

    def roll_drop(self) -> bool:
        return self.ws_drop_rate > 0 and random.random() < self.ws_drop_rate

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def dead_letter_items(count: int, replica: str, limit: int = 50) -> list[dict[str, Any]]:
    """Synthetic dead letters, newest first, at most `limit` of them."""
    return [
        {
            "id": f"dl-{replica}-{n:06d}",
            "queue": "chat.fanout",
            "replica": replica,
            "reason": "handler timeout after 3 attempts",
        }
        for n in range(count, max(count - limit, 0), -1)
    ]
