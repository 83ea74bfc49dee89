"""User settings and per-user locations (journals, exports, remembered theme)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from platformdirs import user_config_path, user_data_path

APP = "rollback-tui"


def data_dir() -> Path:
    return Path(os.environ.get("ROLLBACK_TUI_DATA_DIR") or user_data_path(APP))


def journal_dir() -> Path:
    return data_dir() / "journals"


def export_dir() -> Path:
    return data_dir() / "exports"


def settings_path() -> Path:
    return Path(os.environ.get("ROLLBACK_TUI_CONFIG_DIR") or user_config_path(APP)) / "settings.json"


@dataclass
class Settings:
    theme: str = "rollback-dark"
    operator: str | None = None

    @classmethod
    def load(cls) -> Settings:
        try:
            raw = json.loads(settings_path().read_text())
        except (OSError, ValueError):
            return cls()
        known = (
            {k: v for k, v in raw.items() if k in cls.__dataclass_fields__} if isinstance(raw, dict) else {}
        )
        return cls(**known)

    def save(self) -> None:
        path = settings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)
