"""The cockpit commands: `demo` (lab + cockpit), `open` (a real deployment), `resume` (after a kill), and
`lab` (only the lab). Each runs one SessionRuntime around the Textual app.

The cockpit paints its first frame before the playbook is validated (ui/loading.py): this module imports
nothing heavy at its top (tests/test_startup.py), and an Opening does the validation and the session's
start on the app's behalf, once that frame is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

from rollback_tui.cli.common import (
    INCIDENT_KEYS,
    INCIDENT_OPTIONS,
    Output,
    load_or_exit,
    open_journal,
    session_redactor,
    setup_logging,
)
from rollback_tui.cli.watch import mirror_option
from rollback_tui.ui.loading import NotOpened

if TYPE_CHECKING:
    from rollback_tui.core.journal import Journal
    from rollback_tui.core.state import SessionState
    from rollback_tui.playbook.model import Playbook
    from rollback_tui.session.engine import Engine
    from rollback_tui.session.runtime import LabHandle, SessionRuntime

RedisMode = Literal["auto", "server", "embedded"]
COCKPIT_OPTIONS = [
    click.option(
        "--journal", type=click.Path(dir_okay=False), help="Journal file (default: per-user data dir)."
    ),
    click.option("--operator", help="Name recorded with operator actions (default: $USER)."),
    click.option("--theme", help="rollback-dark, rollback-high-contrast or rollback-light."),
    click.option(
        "--share", is_flag=True, help="Screen-share mode: redact sensitive values, enlarge verdict."
    ),
    click.option("-v", "--verbose", is_flag=True, help="Debug logging to the log file."),
    click.option("--no-export", is_flag=True, help="Do not export the evidence automatically on quit."),
    mirror_option,
    *INCIDENT_OPTIONS,
]
LAB_PLAYBOOK = click.option(
    "--playbook",
    "playbook_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Lab playbook (default: the bundled playbooks/demo.yaml).",
)
LAB_REDIS = click.option(
    "--redis",
    type=click.Choice(["auto", "server", "embedded"]),
    default="auto",
    help="Lab Redis: redis-server if installed (auto), or the embedded fallback.",
)


def with_cockpit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(COCKPIT_OPTIONS):
        fn = option(fn)
    return fn


class Opening:
    """Opens the session for the cockpit once its first frame is up (a SessionOpener, ui/loading.py).

    `validate` (in a thread) loads the playbook at `path` (or the bundled one called `bundled`), unless the
    command already has it; `start` starts the lab if there is one, then enters the SessionRuntime (journal,
    engine) on the app's loop. The runtime is left through `stack` after the app has exited (run_cockpit).
    """

    def __init__(
        self,
        path: str | None,
        opts: dict[str, Any],
        *,
        bundled: str = "demo",
        playbook: Playbook | None = None,
        lab: Callable[[Playbook], LabHandle] | None = None,
        journal: Journal | None = None,
        state: SessionState | None = None,
        lab_notice: str = "embedded lab up",
    ) -> None:
        self.path = path
        self.bundled = bundled
        self.source = path or f"the bundled {bundled} playbook"
        self.opts = opts
        self.playbook = playbook
        self.make_lab = lab
        self.journal = journal
        self.state = state
        self.lab_notice = lab_notice
        self.runtime: SessionRuntime | None = None  # once the session has started
        self.stack = contextlib.AsyncExitStack()

    def validate(self) -> None:
        if self.playbook is not None:
            return
        from rollback_tui.playbook.load import PlaybookError, bundled_playbook, load_playbook

        try:
            self.path = self.path or str(bundled_playbook(self.bundled))
            self.playbook = load_playbook(self.path)
        except PlaybookError as err:  # every located error: file, line, field
            raise NotOpened(Output().redact(str(err)), 2) from None

    async def start(self, say: Callable[[str], None]) -> Engine:
        from rollback_tui.session.runtime import JournalUnavailable, SessionRuntime

        playbook, path, opts = self.playbook, self.path, self.opts
        assert playbook is not None and path is not None, "validate first"
        lab = self.make_lab(playbook) if self.make_lab is not None else None
        say(f"starting the lab for {playbook.name}" if lab is not None else "opening the journal")
        runtime = SessionRuntime(
            playbook,
            path,
            journal=self.journal or (lambda pb: open_journal(pb, opts.get("journal"))),
            state=self.state,
            operator=opts.get("operator"),
            lab=lab,
            lab_notice=self.lab_notice,
            export_on_exit=not opts.get("no_export"),
            mirror=opts.get("mirror"),
            incident={key: opts.get(key) for key in INCIDENT_KEYS},
        )
        lab_errors: tuple[type[Exception], ...] = ()
        if lab is not None:  # the lab's module only then: it is heavy to import
            from rollback_tui.lab.supervisor import LabError

            lab_errors = (LabError,)
        try:
            engine = await self.stack.enter_async_context(runtime)
        except JournalUnavailable as exc:
            raise NotOpened(session_redactor(playbook)(str(exc)), 2) from None
        except lab_errors as exc:
            message = f"error: the lab did not start: {exc}"
            raise NotOpened(session_redactor(playbook)(message), 2) from None
        self.runtime = runtime
        say("showing the panes")
        return engine


async def run_cockpit(opening: Opening) -> tuple[Path, Output, int]:
    """The cockpit, on a session it opens itself after its first frame; the evidence is exported on the
    way out unless told not. Returns the journal, its Output and the app's exit status; raises NotOpened
    when the session never opened."""
    from rollback_tui.ui.app import CockpitApp

    opts = opening.opts
    export_on_quit = not opts.get("no_export")
    async with opening.stack:  # leaves the runtime (if it was entered) after the app
        app = CockpitApp(
            opener=opening,
            theme=opts.get("theme"),
            share=bool(opts.get("share")),
            export_on_quit=export_on_quit,
        )
        try:
            await app.run_async()
        finally:
            # The app exports with its screenshot when it quits normally; otherwise the runtime does.
            if opening.runtime is not None:
                opening.runtime.exported = app.exported_on_quit
    runtime = opening.runtime
    if runtime is None:  # told (a bad playbook, a quit), or the app crashed (Textual printed why)
        raise app.not_opened or NotOpened("error: the cockpit stopped before the session opened", 1)
    assert runtime.journal is not None
    out, path = Output(runtime.journal.redact), runtime.journal.path
    if runtime.export_error:
        retry = f"run `rollback-tui export {path}`"
        out.line(f"Automatic export failed ({runtime.export_error}); {retry}", err=True)
    if runtime.exported:
        out.line(f"Evidence exported to {runtime.exported[0].parent}", err=True)
    return path, out, app.return_code or 0


def cockpit(opening: Opening, farewell: str = "Journal:") -> None:
    """Run the cockpit, then name its journal and exit with the app's status; if the session never
    opened, say why on stderr and exit with that status."""
    try:
        journal, out, status = asyncio.run(run_cockpit(opening))
    except NotOpened as failure:
        Output().line(str(failure), err=True)
        sys.exit(failure.status)
    out.line(f"{farewell} {journal}")
    if status:
        sys.exit(status)


@click.command()
@LAB_PLAYBOOK
@LAB_REDIS
@with_cockpit_options
def demo(playbook_path: str | None, redis: RedisMode, verbose: bool, **opts: Any) -> None:
    """Start the embedded staging lab and open the cockpit on it."""

    def start_lab(playbook: Playbook) -> LabHandle:
        from rollback_tui.lab.supervisor import Lab

        return Lab(playbook, redis=redis)

    setup_logging(verbose)
    cockpit(Opening(playbook_path, opts, lab=start_lab), "Lab stopped. Journal:")


@click.command("open")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@with_cockpit_options
def open_(playbook_path: str, verbose: bool, **opts: Any) -> None:
    """Open the cockpit on a playbook's real deployment."""
    setup_logging(verbose)
    cockpit(Opening(playbook_path, opts))


@click.command()
@click.argument("journal_path", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--playbook",
    "playbook_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Playbook (default: the one recorded when the session started).",
)
@click.option(
    "--lab/--no-lab",
    "use_lab",
    default=None,
    help="Start the embedded lab again (default: if the playbook has lab sections).",
)
@with_cockpit_options
def resume(
    journal_path: str, playbook_path: str | None, use_lab: bool | None, verbose: bool, **opts: Any
) -> None:
    """Reopen a session after the cockpit was killed: rebuild it from the journal and carry on appending."""
    from rollback_tui.core.resume import ResumeError, first_event, resume_session

    setup_logging(verbose)
    started = first_event(Path(journal_path))
    recorded = playbook_path or getattr(started, "playbook", "")
    if not recorded or not Path(recorded).exists():
        Output().line(f"error: playbook {recorded or '(none recorded)'} not found; pass --playbook", err=True)
        sys.exit(2)
    playbook = load_or_exit(recorded)
    out = Output(session_redactor(playbook))
    try:
        journal, state, result = resume_session(Path(journal_path), out.redact, operator=opts.get("operator"))
    except ResumeError as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)
    for warning in result.warnings:
        out.line(f"warning: {warning}", err=True)
    if use_lab is None:
        use_lab = any(r.lab is not None for r in playbook.replicas)
    out.line(f"Resumed {result.recovered} events from {journal_path}", err=True)
    start_lab = None
    if use_lab:
        from rollback_tui.lab.supervisor import Lab

        start_lab = Lab
    notice = "embedded lab started again for the resumed session"
    opening = Opening(
        recorded, opts, playbook=playbook, lab=start_lab, journal=journal, state=state, lab_notice=notice
    )
    cockpit(opening)


@click.command("lab")
@LAB_PLAYBOOK
@LAB_REDIS
def lab_(playbook_path: str | None, redis: RedisMode) -> None:
    """Run the embedded staging lab until Ctrl-C (replicas, balancer, Redis)."""
    from rollback_tui.lab.supervisor import run_lab_forever
    from rollback_tui.playbook.load import bundled_playbook

    playbook = load_or_exit(Path(playbook_path) if playbook_path else bundled_playbook("demo"))
    try:
        asyncio.run(run_lab_forever(playbook, redis=redis))
    except KeyboardInterrupt:
        Output().line("\nLab stopped.", err=True)
