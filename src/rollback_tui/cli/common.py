"""What every command family shares: the redacting Output (the only way the CLI prints), loading a
playbook or exiting with its located errors, the log file, the session journal.

Everything the CLI prints goes through `Output`, which redacts: stdout and stderr are evidence too (CI
keeps them), so they must not show what the journal masks.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rollback_tui import settings
from rollback_tui.core.redact import Redactor

if TYPE_CHECKING:  # imported where a session opens: `open` paints before pydantic is imported
    from rollback_tui.core.journal import Journal
    from rollback_tui.playbook.model import Playbook


class Output:
    """The only way the CLI prints (tests/test_cli.py holds it to that): every line through a
    Redactor — the session's own once there is a playbook, the very object its journal uses, so secrets
    a gate resolves later are masked here too."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redact = redactor if redactor is not None else Redactor.from_env()

    def line(self, text: str, *, err: bool = False) -> None:
        click.echo(self.redact(text), err=err)

    def json(self, serialized: str) -> None:
        """One serialized JSON document, redacted and still valid JSON."""
        click.echo(self.redact.json_line(serialized))

    def capture_logs(self) -> logging.Handler:
        """Warnings logged on a headless path (Python prints them to stderr) go through the redactor too."""
        handler = _OutputLogHandler(self)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        return handler


class _OutputLogHandler(logging.Handler):
    def __init__(self, out: Output) -> None:
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.line(self.format(record), err=True)


F = TypeVar("F", bound=Callable[..., Any])
INCIDENT_OPTIONS = [
    click.option("--incident", help="The incident this session serves: its ID or URL (journaled)."),
    click.option("--commander", help="The incident commander (journaled, in the report)."),
    click.option("--scribe", help="Who keeps the notes (journaled, in the report)."),
]
INCIDENT_KEYS = ("incident", "commander", "scribe")


def with_incident_options(fn: F) -> F:
    """`--incident`, `--commander`, `--scribe` (demo, open, resume, rehearse)."""
    for option in reversed(INCIDENT_OPTIONS):
        fn = option(fn)
    return fn


def session_redactor(playbook: Playbook) -> Redactor:
    """The values of the env vars the playbook references, and of any whose name looks secret."""
    from rollback_tui.playbook.load import referenced_env_vars

    return Redactor.from_env(referenced_env_vars(playbook))


def load_or_exit(path: str | Path) -> Playbook:
    """Load a playbook or exit 2 with every located error (no traceback)."""
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    try:
        return load_playbook(path)
    except PlaybookError as err:
        Output().line(str(err), err=True)
        sys.exit(2)


def setup_logging(verbose: bool) -> None:
    # The TUI owns the terminal: library logs go to a file next to the journals, never to stderr.
    log_dir = settings.data_dir()
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        filename=log_dir / "rollback-tui.log",
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def open_journal(playbook: Playbook, journal: str | None, redactor: Redactor | None = None) -> Journal:
    from rollback_tui.core.journal import Journal
    from rollback_tui.session.engine import default_journal_path

    path = Path(journal) if journal else default_journal_path(playbook, settings.journal_dir())
    return Journal(path, redactor or session_redactor(playbook))
