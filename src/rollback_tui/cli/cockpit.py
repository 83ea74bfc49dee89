"""The cockpit commands: `demo` (lab + cockpit), `open` (a real deployment), `resume` (after a kill), and
`lab` (only the lab). Each runs one SessionRuntime around the Textual app."""

from __future__ import annotations

import asyncio
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
from rollback_tui.playbook.model import Playbook

if TYPE_CHECKING:
    from rollback_tui.core.journal import Journal
    from rollback_tui.core.state import SessionState
    from rollback_tui.session.runtime import LabHandle

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


async def run_cockpit(
    playbook: Playbook,
    playbook_path: str,
    opts: dict[str, Any],
    *,
    journal: Journal | None = None,
    state: SessionState | None = None,
    lab: LabHandle | None = None,
    lab_notice: str = "embedded lab up",
) -> Path:
    """The cockpit inside one session runtime; the evidence is exported on the way out unless told not."""
    from rollback_tui.session.runtime import SessionRuntime
    from rollback_tui.ui.app import CockpitApp

    export_on_quit = not opts.get("no_export")
    runtime = SessionRuntime(
        playbook,
        playbook_path,
        journal=journal or (lambda pb: open_journal(pb, opts.get("journal"))),
        state=state,
        operator=opts.get("operator"),
        lab=lab,
        lab_notice=lab_notice,
        export_on_exit=export_on_quit,
        mirror=opts.get("mirror"),
        incident={key: opts.get(key) for key in INCIDENT_KEYS},
    )
    async with runtime as engine:
        app = CockpitApp(
            engine, theme=opts.get("theme"), share=bool(opts.get("share")), export_on_quit=export_on_quit
        )
        try:
            await app.run_async()
        finally:
            # The app exports with its screenshot when it quits normally; otherwise the runtime does.
            runtime.exported = app.exported_on_quit
    assert runtime.journal is not None
    out, path = Output(runtime.journal.redact), runtime.journal.path
    if runtime.export_error:
        retry = f"run `rollback-tui export {path}`"
        out.line(f"Automatic export failed ({runtime.export_error}); {retry}", err=True)
    if runtime.exported:
        out.line(f"Evidence exported to {runtime.exported[0].parent}", err=True)
    return path


@click.command()
@LAB_PLAYBOOK
@LAB_REDIS
@with_cockpit_options
def demo(playbook_path: str | None, redis: RedisMode, verbose: bool, **opts: Any) -> None:
    """Start the embedded staging lab and open the cockpit on it."""
    from rollback_tui.lab.supervisor import Lab, LabError
    from rollback_tui.playbook.load import bundled_playbook

    setup_logging(verbose)
    path = Path(playbook_path) if playbook_path else bundled_playbook("demo")
    playbook = load_or_exit(path)
    out = Output(session_redactor(playbook))
    out.line(f"Starting the lab for {playbook.name} …", err=True)
    lab = Lab(playbook, redis=redis)
    try:
        journal = asyncio.run(run_cockpit(playbook, str(path), opts, lab=lab))
    except LabError as exc:
        out.line(f"error: the lab did not start: {exc}", err=True)
        sys.exit(2)
    out.line(f"Lab stopped. Journal: {journal}")


@click.command("open")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@with_cockpit_options
def open_(playbook_path: str, verbose: bool, **opts: Any) -> None:
    """Open the cockpit on a playbook's real deployment."""
    setup_logging(verbose)
    playbook = load_or_exit(playbook_path)
    journal = asyncio.run(run_cockpit(playbook, playbook_path, opts))
    Output(session_redactor(playbook)).line(f"Journal: {journal}")


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
    lab = None
    if use_lab:
        from rollback_tui.lab.supervisor import Lab

        lab = Lab(playbook)
    notice = "embedded lab started again for the resumed session"
    asyncio.run(
        run_cockpit(playbook, recorded, opts, journal=journal, state=state, lab=lab, lab_notice=notice)
    )
    out.line(f"Journal: {journal_path}")


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
