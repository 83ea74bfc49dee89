"""Which theme the cockpit starts with, the order `T` cycles through, and remembering the operator's choice.

The choice is remembered in the user's settings (live sessions only: a replay must not change them).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from rollback_tui.ui.themes import DEFAULT_THEME, THEME_ORDER

log = logging.getLogger(__name__)


def remembered() -> str | None:
    # Imported on use: a replay never reads or writes the settings.
    from rollback_tui.settings import Settings

    return Settings.load().theme


def remember(name: str) -> None:
    """Save the theme for the next session; a settings file that cannot be written costs only a log line."""
    from rollback_tui.settings import Settings

    try:
        settings = Settings.load()
        settings.theme = name
        settings.save()
    except OSError as exc:
        log.warning("could not remember theme: %s", exc)


def starting(requested: str | None, *, live: bool) -> str:
    """--theme, else (live) the remembered theme, else the default."""
    return requested or (remembered() if live else None) or DEFAULT_THEME


def resolve(name: str, available: Collection[str]) -> tuple[str, str | None]:
    """The theme to apply for `name`, and a warning when it is not available."""
    if name in available:
        return name, None
    fallback = DEFAULT_THEME if DEFAULT_THEME in available else "textual-dark"
    return fallback, f"Unknown theme {name!r}; using {DEFAULT_THEME}."


def following(current: str, available: Collection[str]) -> str:
    """The theme after `current` in the cycle (the bundled themes in THEME_ORDER, else every theme)."""
    order = [n for n in THEME_ORDER if n in available] or list(available)
    return order[(order.index(current) + 1) % len(order)] if current in order else order[0]
