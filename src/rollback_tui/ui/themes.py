"""Cockpit themes: TOML files in `themes/` become Textual `Theme` objects.

Each file holds the Theme fields (name, primary, background, dark, …) and a `[variables]` table
with the app tokens the panes and `app.tcss` use: status-ok, status-warn, status-fail,
status-stale, pane-border, pane-border-focus, verdict-fg.
"""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from textual.theme import Theme

DEFAULT_THEME = "rollback-dark"
THEME_ORDER = ("rollback-dark", "rollback-high-contrast", "rollback-light")
REQUIRED_VARIABLES = ("status-ok", "status-warn", "status-fail", "status-stale")

# Fallbacks so a theme file that omits a token (or a third-party theme) still renders.
VARIABLE_DEFAULTS = {
    "status-ok": "#3FB950",
    "status-warn": "#E3B341",
    "status-fail": "#FF5F57",
    "status-stale": "#8B949E",
    "pane-border": "#4B5563",
    "pane-border-focus": "#5AA9E6",
    "verdict-fg": "#000000",
}

_THEME_FIELDS = {f.name for f in fields(Theme)}


class ThemeFileError(ValueError):
    pass


def themes_dirs() -> list[Path]:
    """Source checkout `themes/` first, then the copy bundled into the wheel."""
    package = Path(__file__).resolve().parent.parent
    return [package.parent.parent / "themes", package / "_data" / "themes"]


def load_theme_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ThemeFileError(f"{path}: {exc}") from exc
    unknown = set(data) - _THEME_FIELDS
    if unknown:
        raise ThemeFileError(f"{path}: unknown theme keys {sorted(unknown)}")
    if "name" not in data or "primary" not in data:
        raise ThemeFileError(f"{path}: a theme needs at least name and primary")
    variables = {str(k): str(v) for k, v in dict(data.get("variables", {})).items()}
    missing = [v for v in REQUIRED_VARIABLES if v not in variables]
    if missing:
        raise ThemeFileError(f"{path}: [variables] is missing {', '.join(missing)}")
    data["variables"] = {**VARIABLE_DEFAULTS, **variables}
    return Theme(**data)


def load_themes(dirs: list[Path] | None = None) -> dict[str, Theme]:
    """All themes from the first theme directory that exists, keyed by name."""
    for directory in dirs or themes_dirs():
        if directory.is_dir():
            themes = [load_theme_file(p) for p in sorted(directory.glob("*.toml"))]
            if themes:
                return {t.name: t for t in themes}
    return {}
