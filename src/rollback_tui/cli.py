"""Command line: `rollback-tui demo | open | lab | validate | schema | check`."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from rollback_tui import __version__, settings
from rollback_tui.playbook.model import Playbook

log = logging.getLogger("rollback_tui")


def _load(path: str | Path) -> Playbook:
    """Load a playbook or exit 2 with every located error (no traceback)."""
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    try:
        return load_playbook(path)
    except PlaybookError as err:
        click.echo(str(err), err=True)
        sys.exit(2)


def _setup_logging(verbose: bool) -> None:
    # The TUI owns the terminal: library logs go to a file next to the journals, never to stderr.
    log_dir = settings.data_dir()
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        filename=log_dir / "rollback-tui.log",
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _open_journal(playbook: Playbook, journal: str | None):  # -> Journal
    from rollback_tui.core.engine import default_journal_path
    from rollback_tui.core.journal import Journal
    from rollback_tui.core.redact import Redactor
    from rollback_tui.playbook.load import referenced_env_vars

    path = Path(journal) if journal else default_journal_path(playbook, settings.journal_dir())
    return Journal(path, Redactor.from_env(referenced_env_vars(playbook)))


async def _run_cockpit(playbook: Playbook, playbook_path: str, opts: dict[str, Any]) -> Path:
    from rollback_tui.core.engine import Engine
    from rollback_tui.ui.app import CockpitApp

    journal = _open_journal(playbook, opts.get("journal"))
    engine = Engine(playbook, journal, playbook_path=playbook_path, operator=opts.get("operator"))
    app = CockpitApp(engine, theme=opts.get("theme"), share=bool(opts.get("share")))
    try:
        await app.run_async()
    finally:
        await engine.stop("quit")
    return journal.path


cockpit_options = [
    click.option(
        "--journal", type=click.Path(dir_okay=False), help="Journal file (default: per-user data dir)."
    ),
    click.option("--operator", help="Name recorded with operator actions (default: $USER)."),
    click.option("--theme", help="rollback-dark, rollback-high-contrast or rollback-light."),
    click.option(
        "--share", is_flag=True, help="Screen-share mode: redact sensitive values, enlarge verdict."
    ),
    click.option("-v", "--verbose", is_flag=True, help="Debug logging to the log file."),
]


def with_cockpit_options(fn):
    for option in reversed(cockpit_options):
        fn = option(fn)
    return fn


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollback-tui")
def main() -> None:
    """A terminal cockpit for rollback rehearsals and real rollbacks."""


@main.command()
@click.option(
    "--playbook",
    "playbook_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Lab playbook (default: the bundled playbooks/demo.yaml).",
)
@click.option(
    "--redis",
    type=click.Choice(["auto", "server", "embedded"]),
    default="auto",
    help="Lab Redis: redis-server if installed (auto), or the embedded fallback.",
)
@with_cockpit_options
def demo(playbook_path: str | None, redis: str, verbose: bool, **opts: Any) -> None:
    """Start the embedded staging lab and open the cockpit on it."""
    from rollback_tui.lab.supervisor import Lab
    from rollback_tui.playbook.load import bundled_playbook

    _setup_logging(verbose)
    path = Path(playbook_path) if playbook_path else bundled_playbook("demo")
    playbook = _load(path)

    async def run() -> Path:
        lab = Lab(playbook, redis=redis)  # type: ignore[arg-type]
        click.echo(f"Starting the lab for {playbook.name} …", err=True)
        try:
            await lab.start()
            return await _run_cockpit(lab.playbook, str(path), opts)
        finally:
            await lab.stop()

    journal = asyncio.run(run())
    click.echo(f"Lab stopped. Journal: {journal}")


@main.command("open")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@with_cockpit_options
def open_(playbook_path: str, verbose: bool, **opts: Any) -> None:
    """Open the cockpit on a playbook's real deployment."""
    _setup_logging(verbose)
    playbook = _load(playbook_path)
    journal = asyncio.run(_run_cockpit(playbook, playbook_path, opts))
    click.echo(f"Journal: {journal}")


@main.command()
@click.option("--playbook", "playbook_path", type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--redis", type=click.Choice(["auto", "server", "embedded"]), default="auto")
def lab(playbook_path: str | None, redis: str) -> None:
    """Run the embedded staging lab until Ctrl-C (replicas, balancer, Redis)."""
    from rollback_tui.lab.supervisor import run_lab_forever
    from rollback_tui.playbook.load import bundled_playbook

    playbook = _load(Path(playbook_path) if playbook_path else bundled_playbook("demo"))
    try:
        asyncio.run(run_lab_forever(playbook, redis=redis))
    except KeyboardInterrupt:
        click.echo("\nLab stopped.", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate playbooks; every error is reported as file:line:column: field: message."""
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    failed = 0
    for file in files:
        try:
            pb = load_playbook(file)
        except PlaybookError as err:
            failed += 1
            click.echo(str(err), err=True)
            continue
        click.echo(
            f"{file}: ok — {pb.name}: {len(pb.replicas)} replicas, {len(pb.steps)} steps, "
            f"{len(pb.gates)} gates, {len(pb.guardrails)} guardrails, {len(pb.checklist)} checklist items"
        )
    sys.exit(1 if failed else 0)


@main.command()
def schema() -> None:
    """Print the playbook JSON Schema (for editor completion)."""
    from rollback_tui.playbook.load import playbook_schema

    click.echo(json.dumps(playbook_schema(), indent=2))


@main.group()
def check() -> None:
    """One-shot checks for scripts (JSON out, exit 0 only on pass)."""


@check.command("health")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def check_health(playbook_path: str, as_json: bool) -> None:
    """Sample every replica's health once."""
    from rollback_tui.probes.health import HealthProbe

    playbook = _load(playbook_path)
    samples = asyncio.run(HealthProbe(playbook, lambda e: e).once())
    prefixes = {s.channel_prefix for s in samples if s.channel_prefix is not None}
    passed = all(s.status == "ok" for s in samples) and len(prefixes) <= 1
    if as_json:
        out = {
            "passed": passed,
            "prefix_mismatch": len(prefixes) > 1,
            "replicas": [s.model_dump(exclude={"kind", "n"}) for s in samples],
        }
        click.echo(json.dumps(out, indent=2))
    else:
        for s in samples:
            lat = f"{s.latency_ms:7.1f} ms" if s.latency_ms is not None else "      — "
            click.echo(
                f"{s.replica:<16} {s.status:<9} {lat}  {s.commit or '-':<10} "
                f"{s.channel_prefix or '-':<12} {s.error or ''}"
            )
        if len(prefixes) > 1:
            click.echo(f"✗ channel prefix mismatch: {sorted(prefixes)}")
    sys.exit(0 if passed else 1)


@check.command("fanout")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--replicas", nargs=2, default=None, help="The two replicas to open sessions on.")
@click.option("--no-tap", is_flag=True, help="Do not tap Redis (PSUBSCRIBE) during the check.")
def check_fanout(playbook_path: str, as_json: bool, replicas: tuple[str, str] | None, no_tap: bool) -> None:
    """Two stream sessions on two replicas, same thread: delivery, ordering, catch-up replay."""
    from rollback_tui.probes.fanout import FanoutVerifier

    playbook = _load(playbook_path)
    try:
        verifier = FanoutVerifier(
            playbook, lambda e: e, replicas=replicas or None, tap=False if no_tap else None
        )
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    result = asyncio.run(verifier.run())
    if as_json:
        click.echo(result.model_dump_json(indent=2, exclude={"kind", "n"}))
    else:
        verdict = "✓ fanout verified" if result.passed else "✗ fanout check failed"
        click.echo(f"{verdict} on thread {result.thread_id} ({' ↔ '.join(r.name for r in verifier.pair)})")
        if result.cross_latency_ms is not None:
            click.echo(f"  cross-replica latency (max): {result.cross_latency_ms:.1f} ms")
        for reason in result.reasons:
            click.echo(f"  - {reason}")
    sys.exit(0 if result.passed else 1)
