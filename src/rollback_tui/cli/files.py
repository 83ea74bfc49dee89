"""The file commands: `validate` playbooks, print the `schema`, `export` a journal's evidence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rollback_tui.cli.common import Output, load_or_exit, session_redactor


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate playbooks; every error is reported as file:line:column: field: message."""
    from rollback_tui.playbook.load import LocatedError, PlaybookError, load_playbook

    failed = 0
    out = Output()
    for file in files:
        warnings: list[LocatedError] = []
        try:
            pb = load_playbook(file, warnings)
        except PlaybookError as err:
            failed += 1
            out.line(str(err), err=True)
            continue
        for warning in warnings:  # usable, but something would fail when it runs
            out.line(str(warning), err=True)
        out.line(
            f"{file}: ok — {pb.name}: {len(pb.replicas)} replicas, {len(pb.steps)} steps, "
            f"{len(pb.gates)} gates, {len(pb.guardrails)} guardrails, {len(pb.checklist)} checklist items"
        )
    sys.exit(1 if failed else 0)


@click.command()
def schema() -> None:
    """Print the playbook JSON Schema (for editor completion)."""
    from rollback_tui.playbook.load import playbook_schema

    Output().json(json.dumps(playbook_schema(), indent=2))


@click.command()
@click.argument("journal_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "out_dir", type=click.Path(file_okay=False), required=True, help="Output directory.")
@click.option(
    "--playbook",
    "playbook_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Playbook (default: the one recorded when the session started).",
)
def export(journal_path: str, out_dir: str, playbook_path: str | None) -> None:
    """Export a session journal: Markdown report, JSON bundle, journal copy and artefacts."""
    from rollback_tui.report.export import ExportError, export_session

    playbook = load_or_exit(playbook_path) if playbook_path else None
    out = Output(session_redactor(playbook) if playbook else None)
    try:
        paths = export_session(Path(journal_path), Path(out_dir), playbook=playbook)
    except (ExportError, OSError) as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)
    for path in paths:
        out.line(str(path))
