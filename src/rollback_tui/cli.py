"""Command line: `rollback-tui demo | open | lab | validate | schema | check`.

Everything it prints goes through `Output`, which redacts: stdout and stderr are evidence too (CI keeps
them), so they must not show what the journal masks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from functools import partial
from pathlib import Path
from typing import Any

import click

from rollback_tui import __version__, settings
from rollback_tui.cli_watch import mirror_option, serve, watch
from rollback_tui.core.redact import Redactor
from rollback_tui.playbook.model import Playbook

log = logging.getLogger("rollback_tui")


class Output:
    """The only way this module prints (tests/test_cli.py holds it to that): every line through a
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


def _session_redactor(playbook: Playbook) -> Redactor:
    """The values of the env vars the playbook references, and of any whose name looks secret."""
    from rollback_tui.playbook.load import referenced_env_vars

    return Redactor.from_env(referenced_env_vars(playbook))


def _load(path: str | Path) -> Playbook:
    """Load a playbook or exit 2 with every located error (no traceback)."""
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    try:
        return load_playbook(path)
    except PlaybookError as err:
        Output().line(str(err), err=True)
        sys.exit(2)


def _absolute(path: str) -> str:
    """Playbook paths are journaled absolute, so `resume` and `export` find them from anywhere."""
    return str(Path(path).resolve()) if path else path


def _setup_logging(verbose: bool) -> None:
    # The TUI owns the terminal: library logs go to a file next to the journals, never to stderr.
    log_dir = settings.data_dir()
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logging.basicConfig(
        filename=log_dir / "rollback-tui.log",
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _open_journal(playbook: Playbook, journal: str | None, redactor: Redactor | None = None):  # -> Journal
    from rollback_tui.core.journal import Journal
    from rollback_tui.session.engine import default_journal_path

    path = Path(journal) if journal else default_journal_path(playbook, settings.journal_dir())
    return Journal(path, redactor or _session_redactor(playbook))


async def _run_cockpit(
    playbook: Playbook,
    playbook_path: str,
    opts: dict[str, Any],
    notices: tuple[str, ...] = (),
    *,
    resumed: tuple[Any, Any] | None = None,  # (journal, state) of a resumed session
) -> Path:
    from rollback_tui.session.engine import Engine
    from rollback_tui.session.mirror import start_mirror
    from rollback_tui.ui.app import CockpitApp

    journal, state = resumed if resumed else (_open_journal(playbook, opts.get("journal")), None)
    engine = Engine(
        playbook, journal, playbook_path=_absolute(playbook_path), operator=opts.get("operator"), state=state
    )
    start_mirror(engine, opts.get("mirror"))
    if notices:
        if engine.state.started is None:
            engine.start_session()
        for notice in notices:
            engine.notice("lab", notice)
    export_on_quit = not opts.get("no_export")
    app = CockpitApp(
        engine, theme=opts.get("theme"), share=bool(opts.get("share")), export_on_quit=export_on_quit
    )
    out = Output(journal.redact)
    try:
        await app.run_async()
    finally:
        await engine.stop("quit", close=False)
        paths = app.exported_on_quit
        if export_on_quit and paths is None and not journal.closed:
            # The app did not get to export (it crashed or was interrupted): export without the SVG.
            try:
                paths = await engine.export()
            except Exception as exc:  # the journal is intact; `rollback-tui export` can retry
                engine.notice("export", f"automatic export failed: {exc}", "error")
                out.line(
                    f"Automatic export failed ({exc}); run `rollback-tui export {journal.path}`", err=True
                )
        if paths:
            out.line(f"Evidence exported to {paths[0].parent}", err=True)
        journal.close()
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
    click.option("--no-export", is_flag=True, help="Do not export the evidence automatically on quit."),
    mirror_option,
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
    from rollback_tui.lab.supervisor import Lab, LabError
    from rollback_tui.playbook.load import bundled_playbook

    _setup_logging(verbose)
    path = Path(playbook_path) if playbook_path else bundled_playbook("demo")
    playbook = _load(path)
    out = Output(_session_redactor(playbook))

    async def run() -> Path:
        lab = Lab(playbook, redis=redis)  # type: ignore[arg-type]
        out.line(f"Starting the lab for {playbook.name} …", err=True)
        try:
            await lab.start()
            return await _run_cockpit(
                lab.playbook, str(path), opts, (f"embedded lab up · Redis: {lab.redis_kind}",)
            )
        finally:
            await lab.stop()

    try:
        journal = asyncio.run(run())
    except LabError as exc:
        out.line(f"error: the lab did not start: {exc}", err=True)
        sys.exit(2)
    out.line(f"Lab stopped. Journal: {journal}")


@main.command("open")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@with_cockpit_options
def open_(playbook_path: str, verbose: bool, **opts: Any) -> None:
    """Open the cockpit on a playbook's real deployment."""
    _setup_logging(verbose)
    playbook = _load(playbook_path)
    journal = asyncio.run(_run_cockpit(playbook, playbook_path, opts))
    Output(_session_redactor(playbook)).line(f"Journal: {journal}")


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
        Output().line("\nLab stopped.", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Validate playbooks; every error is reported as file:line:column: field: message."""
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    failed = 0
    out = Output()
    for file in files:
        try:
            pb = load_playbook(file)
        except PlaybookError as err:
            failed += 1
            out.line(str(err), err=True)
            continue
        out.line(
            f"{file}: ok — {pb.name}: {len(pb.replicas)} replicas, {len(pb.steps)} steps, "
            f"{len(pb.gates)} gates, {len(pb.guardrails)} guardrails, {len(pb.checklist)} checklist items"
        )
    sys.exit(1 if failed else 0)


@main.command()
def schema() -> None:
    """Print the playbook JSON Schema (for editor completion)."""
    from rollback_tui.playbook.load import playbook_schema

    Output().json(json.dumps(playbook_schema(), indent=2))


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
    out = Output(_session_redactor(playbook))
    out.capture_logs()
    samples = asyncio.run(HealthProbe(playbook, lambda e: e).once())
    prefixes = {s.channel_prefix for s in samples if s.channel_prefix is not None}
    passed = all(s.status == "ok" for s in samples) and len(prefixes) <= 1
    if as_json:
        doc = {
            "passed": passed,
            "prefix_mismatch": len(prefixes) > 1,
            "replicas": [s.model_dump(exclude={"kind", "n"}) for s in samples],
        }
        out.json(json.dumps(doc, indent=2))
    else:
        for s in samples:
            lat = f"{s.latency_ms:7.1f} ms" if s.latency_ms is not None else "      — "
            out.line(
                f"{s.replica:<16} {s.status:<9} {lat}  {s.commit or '-':<10} "
                f"{s.channel_prefix or '-':<12} {s.error or ''}"
            )
        if len(prefixes) > 1:
            out.line(f"✗ channel prefix mismatch: {sorted(prefixes)}")
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
    out = Output(_session_redactor(playbook))
    out.capture_logs()
    try:
        verifier = FanoutVerifier(
            playbook, lambda e: e, replicas=replicas or None, tap=False if no_tap else None
        )
    except ValueError as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)
    result = asyncio.run(verifier.run())
    if as_json:
        out.json(result.model_dump_json(indent=2, exclude={"kind", "n"}))
    else:
        verdict = "✓ fanout verified" if result.passed else "✗ fanout check failed"
        out.line(f"{verdict} on thread {result.thread_id} ({' ↔ '.join(r.name for r in verifier.pair)})")
        if result.cross_latency_ms is not None:
            out.line(f"  cross-replica latency (max): {result.cross_latency_ms:.1f} ms")
        for reason in result.reasons:
            out.line(f"  - {reason}")
    sys.exit(0 if result.passed else 1)


def _parse_injections(values: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """`blue-next:error_rate=0.5` → {"blue-next": {"error_rate": 0.5}} (numbers parsed, else strings)."""
    out: dict[str, dict[str, Any]] = {}
    for raw in values:
        replica, sep, assignment = raw.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and replica and key):
            raise click.BadParameter(f"{raw!r}: expected REPLICA:KEY=VALUE, e.g. blue-next:error_rate=0.5")
        try:  # numbers, true/false and null as JSON reads them; anything else is a string
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        if not isinstance(parsed, bool | int | float | None):
            parsed = value
        out.setdefault(replica, {})[key] = parsed
    return out


@main.command()
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--headless", is_flag=True, required=True, help="Run without the UI (required for now).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", help="Progress output."
)
@click.option("--export", "export_dir", type=click.Path(file_okay=False), help="Export the evidence here.")
@click.option("--journal", type=click.Path(dir_okay=False), help="Journal file (default: per-user data dir).")
@click.option("--operator", help="Name recorded with operator actions (default: $USER).")
@click.option(
    "--lab/--no-lab",
    "use_lab",
    default=None,
    help="Start the embedded lab (default: if the playbook has lab sections).",
)
@click.option("--inject", multiple=True, help="Lab fault before the run: REPLICA:KEY=VALUE (repeatable).")
@click.option("--tick", multiple=True, help="Tick a manual checklist item / exit criterion: NAME[=note].")
@click.option("--watch", "watch_s", type=float, default=20.0, show_default=True, help="Guardrail watch (s).")
@click.option(
    "--rollback", type=click.Choice(["on_breach", "always", "never"]), default="on_breach", show_default=True
)
@click.option("--allow-destructive", is_flag=True, help="Run redeploy/flag/destructive command actions too.")
@mirror_option
def rehearse(
    playbook_path: str,
    headless: bool,
    fmt: str,
    export_dir: str | None,
    journal: str | None,
    operator: str | None,
    use_lab: bool | None,
    inject: tuple[str, ...],
    tick: tuple[str, ...],
    watch_s: float,
    rollback: str,
    allow_destructive: bool,
    mirror: str | None,
) -> None:
    """Run the playbook's steps in order, headless; exit 0 only when the exit criteria hold."""
    from rollback_tui.session.rehearsal import RehearsalOptions

    playbook = _load(playbook_path)
    out = Output(_session_redactor(playbook))  # the journal's redactor too: stdout masks what it masks
    out.capture_logs()
    injections = _parse_injections(inject)
    _refuse_bad_ticks_and_faults(playbook, tick, injections, out)
    if use_lab is None:
        use_lab = any(r.lab is not None for r in playbook.replicas)
    if injections and not use_lab:
        raise click.BadParameter("--inject needs the embedded lab (--lab)")
    options = RehearsalOptions(watch_s=watch_s, rollback=rollback, allow_destructive=allow_destructive)
    if export_dir:
        _refuse_export_over_journal(playbook, journal, export_dir, out)
    from rollback_tui.lab.supervisor import LabError

    try:
        code = asyncio.run(
            _rehearse(
                playbook,
                playbook_path,
                options,
                fmt=fmt,
                export_dir=export_dir,
                journal=journal,
                operator=operator,
                use_lab=use_lab,
                injections=injections,
                ticks=tick,
                out=out,
                mirror=mirror,
            )
        )
    except LabError as exc:
        out.line(f"error: the lab did not start: {exc}", err=True)
        sys.exit(2)
    sys.exit(code)


def _refuse_bad_ticks_and_faults(
    playbook: Playbook, ticks: tuple[str, ...], injections: dict[str, dict[str, Any]], out: Output
) -> None:
    """Before the lab starts: a typo in --tick or --inject is an error, never journaled as evidence."""
    from rollback_tui.session.engine import tick_refusal

    problems = []
    for raw in ticks:
        name, _, note = raw.partition("=")
        if refusal := tick_refusal(playbook, name, note):
            problems.append(f"--tick: {refusal}")
    replicas = {r.name for r in playbook.replicas}
    problems += [f"--inject: no replica named {name!r}" for name in injections if name not in replicas]
    if problems:
        for problem in problems:
            out.line(f"error: {problem}", err=True)
        sys.exit(2)


def _refuse_export_over_journal(
    playbook: Playbook, journal: str | None, export_dir: str, out: Output
) -> None:
    """Before the rehearsal runs (minutes): an export into the journal's own directory is refused."""
    from rollback_tui.report.export import ExportError, check_export_target
    from rollback_tui.session.engine import default_journal_path

    path = Path(journal) if journal else default_journal_path(playbook, settings.journal_dir())
    try:
        check_export_target(path, Path(export_dir))
    except ExportError as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)


async def _rehearse(
    playbook: Playbook,
    playbook_path: str,
    options: Any,
    *,
    fmt: str,
    export_dir: str | None,
    journal: str | None,
    operator: str | None,
    use_lab: bool,
    injections: dict[str, dict[str, Any]],
    ticks: tuple[str, ...],
    out: Output,
    mirror: str | None = None,
) -> int:
    from rollback_tui.core.checklist import verdict
    from rollback_tui.session.engine import Engine, NotAvailable
    from rollback_tui.session.mirror import start_mirror
    from rollback_tui.session.rehearsal import Rehearsal

    lab = None
    if use_lab:
        from rollback_tui.lab.supervisor import Lab

        lab = Lab(playbook)
        await lab.start()
        playbook = lab.playbook
    engine = Engine(
        playbook,
        _open_journal(playbook, journal, out.redact),
        playbook_path=_absolute(playbook_path),
        operator=operator,
    )
    engine.subscribe(_progress_printer(fmt, out))
    start_mirror(engine, mirror)
    try:
        await engine.start()
        if lab is not None:
            engine.notice("lab", f"embedded lab up · Redis: {lab.redis_kind}")
            for replica, faults in injections.items():
                try:
                    await engine.inject_fault(replica, faults, partial(lab.set_faults, replica, **faults))
                except NotAvailable as exc:  # journaled as an error notice; nothing to rehearse without it
                    out.line(f"error: --inject {replica}: {exc}", err=True)
                    return 2
        for raw in ticks:
            name, _, note = raw.partition("=")
            engine.tick(name, True, note)
        await Rehearsal(engine, options).run()
        await engine.stop("rehearsal finished", close=False)
        export_error = await _export_rehearsal(engine, export_dir) if export_dir else None
        result = verdict(playbook, engine.state)
    finally:
        await engine.stop("rehearsal finished")
        if lab is not None:
            await lab.stop()
    summary = {
        "complete": result.complete,
        "missing": result.missing,
        "why": _failure_reasons(engine.state),
        "journal": str(engine.journal.path),
    }
    if fmt == "jsonl":
        out.json(json.dumps({"kind": "rehearsal_verdict", **summary}))
    else:
        out.line(
            ("✓ exit criteria hold" if result.complete else "✗ exit criteria not met")
            + f" — journal {engine.journal.path}"
        )
        for missing in result.missing:
            out.line(f"  - missing: {missing}")
        for why in summary["why"]:
            out.line(f"  - why: {why}")
    if export_error:
        out.line(f"error: export failed: {export_error}", err=True)
        return 2
    return 0 if result.complete else 1


async def _export_rehearsal(engine: Any, export_dir: str) -> str | None:
    """Export the evidence; the reason it could not be written (journaled too), else None."""
    from rollback_tui.report.export import ExportError

    try:
        await engine.export(Path(export_dir))
    except (ExportError, OSError) as exc:  # the journal is intact; `rollback-tui export` can retry
        engine.notice("export", f"export failed: {exc}", "error")
        return str(exc)
    return None


def _failure_reasons(state: Any) -> list[str]:
    """What went wrong, in the engine's own words: failed gates, failed fanout checks, open breaches."""
    reasons = [
        f"gate {g.name} could not run"
        if g.status == "error"
        else f"gate {g.name} {g.status} (exit {g.exit_code})"
        for g in state.gates.values()
        if g.status not in ("passed", "queued", "running")
    ]
    last = state.fanout.last_result
    if last is not None and not last.passed:
        reasons.extend(dict.fromkeys(last.reasons))
    reasons.extend(
        f"guardrail {b.guardrail} breached ({b.metric} {b.value} > {b.threshold})"
        for b in state.traffic.breaches.values()
    )
    rollback = state.traffic.rollback
    if rollback.stage in ("failed", "requested", "applying", "applied"):
        reasons.append(f"rollback {rollback.action} {rollback.words}")
    return reasons


_TEXT_KINDS = {
    "step_entered",
    "notice",
    "gate_started",
    "gate_finished",
    "fact_captured",
    "probe_result",
    "fanout_result",
    "guardrail_breach",
    "guardrail_recovered",
    "rollback_requested",
    "rollback_applying",
    "rollback_applied",
    "rollback_verified",
    "rollback_failed",
    "rollback_cancelled",
    "checklist_ticked",
    "operator_action",
    "export_written",
    "selector_state",
}


def _progress_printer(fmt: str, out: Output):  # -> Callable[[Event], None]
    import time as _time

    def jsonl(event: Any) -> None:
        out.json(event.model_dump_json())

    def text(event: Any) -> None:
        if event.kind not in _TEXT_KINDS:
            return
        clock = _time.strftime("%H:%M:%S", _time.gmtime(event.ts))
        out.line(f"{clock}Z {describe_event(event)}")

    return jsonl if fmt == "jsonl" else text


def describe_event(e: Any) -> str:
    """One readable line per event (headless progress log)."""
    k = e.kind
    if k == "step_entered":
        return f"▶ step {e.step}"
    if k == "notice":
        return f"{ {'info': '·', 'warning': '!', 'error': '✗'}[e.level] } {e.source}: {e.message}"
    if k == "gate_started":
        return f"  gate {e.gate} started ({e.where})"
    if k == "gate_finished":
        mark = "✓" if e.outcome == "passed" else "✗"
        return f"  {mark} gate {e.gate} {e.outcome} (exit {e.exit_code}, {e.duration_s:.1f} s)"
    if k == "fact_captured":
        agree = "" if e.agree is None else (" ✓ agree" if e.agree else " ✗ DISAGREE")
        error = f" ({e.error})" if e.error else ""
        return f"  fact {e.fact} [{e.phase}] = {e.values_text()}{agree}{error}"
    if k == "probe_result":
        word = {"ok": "ok", "failed": "FAIL", "unknown": "UNKNOWN"}[e.status]
        return f"  probe {e.probe}: {word} value={e.value}" + (f" ({e.error})" if e.error else "")
    if k == "fanout_result":
        mark = "✓" if e.passed else "✗"
        text = f"  {mark} fanout [{e.phase}] thread {e.thread_id}: {len(e.sent)} sent"
        if e.cross_latency_ms is not None:
            text += f", cross-replica ≤ {e.cross_latency_ms:.1f} ms"
        return text + "".join(f"\n      - {r}" for r in e.reasons)
    if k == "guardrail_breach":
        return f"! {e.severity} guardrail {e.guardrail} breached: {e.metric} {e.value} > {e.threshold}"
    if k == "guardrail_recovered":
        return f"  guardrail {e.guardrail} recovered ({e.value})"
    if k == "rollback_requested":
        return f"⟲ rollback {e.action} requested by {e.actor}: {e.reason}"
    if k == "rollback_applied":
        return (
            f"  rollback applied via {e.driver}: {e.before.get('selector')} → {e.after.get('selector')}"
            + (f" ✗ {e.error}" if e.error else "")
        )
    if k == "rollback_applying":
        return f"  rollback {e.action} applying via {e.driver}"
    if k == "rollback_verified":
        if not e.ok:
            return f"  ✗ rollback NOT verified: {e.error or f'{e.stable_share:.0%} stable'}"
        return (
            f"  ✓ rollback verified: {e.stable_share:.0%} stable over {e.requests} requests · "
            f"TTD {e.time_to_detect_s} s · RTO {e.rto_s} s · TTM {e.time_to_mitigate_s} s"
        )
    if k == "rollback_failed":
        return f"✗ rollback {e.action} FAILED while {e.stage}: {e.reason}"
    if k == "rollback_cancelled":
        return f"  rollback {e.action} declined by {e.actor}: {e.reason}"
    if k == "checklist_ticked":
        return f"  {'☑' if e.checked else '☐'} {e.item} ({'auto' if e.auto else e.actor}) {e.note}".rstrip()
    if k == "operator_action":
        return f"  {e.actor}: {e.action} {e.detail or ''}".rstrip()
    if k == "export_written":
        return f"  exported {len(e.files)} files to {e.directory}"
    if k == "selector_state":
        return f"  routing: selector {e.selector} → {', '.join(e.backends)}"
    return k


@check.command("traffic")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--seconds", type=float, default=5.0, show_default=True, help="How long to send traffic.")
@click.option("--rps", type=float, help="Requests per second (default: the playbook's rate).")
def check_traffic(playbook_path: str, as_json: bool, seconds: float, rps: float | None) -> None:
    """Send bounded synthetic traffic through the balancer; per-replica share, 5xx, p95, guardrails."""
    from collections import Counter

    from rollback_tui.core import events as ev
    from rollback_tui.core.guardrails import GuardrailEvaluator
    from rollback_tui.probes.traffic import TrafficGenerator, percentile

    playbook = _load(playbook_path)
    rps = rps or playbook.synthetic_rps
    out = Output(_session_redactor(playbook))
    out.capture_logs()
    windows: list[ev.TrafficWindow] = []
    guardrails = GuardrailEvaluator(playbook)
    breaches: list[ev.Event] = []

    def collect(event: ev.Event) -> ev.Event:
        if isinstance(event, ev.TrafficWindow):
            windows.append(event)
            breaches.extend(guardrails.observe(event))
        return event

    try:
        gen = TrafficGenerator(
            playbook, collect, rate_rps=rps, max_duration_s=seconds, max_requests=int(rps * seconds)
        )
    except ValueError as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)
    asyncio.run(gen.run())
    served: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    unattributed: Counter[str] = Counter()
    for w in windows:
        served.update(w.per_replica)
        errors.update(w.errors_5xx)
        unattributed.update(w.unattributed)
    total = sum(served.values()) + sum(unattributed.values())
    p95s = [w.p95_ms for w in windows if w.p95_ms is not None]
    active = [b for b in breaches if isinstance(b, ev.GuardrailBreach)]
    result = {
        # A request no replica answered is a failure of the service, whatever the guardrails say.
        "passed": total > 0 and not active and not unattributed,
        "requests": total,
        "transport_errors": sum(w.transport_errors for w in windows),
        "share": {r: round(n / total, 4) for r, n in sorted(served.items())} if total else {},
        "errors_5xx": errors,
        "unattributed": unattributed,
        "p95_ms_max": max(p95s) if p95s else None,
        "p95_ms_median": percentile(p95s, 0.5),
        "ws_disconnects": sum(w.ws_disconnects for w in windows),
        "idempotency_collisions": sum(w.idempotency_collisions for w in windows),
        "breaches": [b.model_dump(exclude={"kind", "n"}) for b in active],
    }
    if as_json:
        out.json(json.dumps(result, indent=2))
    else:
        out.line(f"{'✓' if result['passed'] else '✗'} {total} requests through {playbook.load_balancer.url}")
        for replica, share in result["share"].items():
            out.line(f"  {replica:<16} {share:6.1%}  5xx {errors.get(replica, 0)}")
        for reason, n in sorted(unattributed.items()):
            out.line(f"  ✗ {n} of {total} requests failed: {reason}")
        for b in active:
            out.line(f"  ! {b.severity} {b.guardrail}: {b.metric} {b.value} > {b.threshold}")
    sys.exit(0 if result["passed"] else 1)


@main.command()
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

    playbook = _load(playbook_path) if playbook_path else None
    out = Output(_session_redactor(playbook) if playbook else None)
    try:
        paths = export_session(Path(journal_path), Path(out_dir), playbook=playbook)
    except (ExportError, OSError) as exc:
        out.line(f"error: {exc}", err=True)
        sys.exit(2)
    for path in paths:
        out.line(str(path))


@main.command()
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

    _setup_logging(verbose)
    started = first_event(Path(journal_path))
    recorded = playbook_path or getattr(started, "playbook", "")
    if not recorded or not Path(recorded).exists():
        Output().line(f"error: playbook {recorded or '(none recorded)'} not found; pass --playbook", err=True)
        sys.exit(2)
    playbook = _load(recorded)
    out = Output(_session_redactor(playbook))
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

    async def run() -> None:
        if not use_lab:
            await _run_cockpit(playbook, recorded, opts, resumed=(journal, state))
            return
        from rollback_tui.lab.supervisor import Lab

        lab = Lab(playbook)
        try:
            await lab.start()
            notice = f"embedded lab started again for the resumed session · Redis: {lab.redis_kind}"
            await _run_cockpit(lab.playbook, recorded, opts, (notice,), resumed=(journal, state))
        finally:
            await lab.stop()

    asyncio.run(run())
    out.line(f"Journal: {journal_path}")


main.add_command(watch)
main.add_command(serve)
