"""One-shot checks for scripts: `check health|fanout|traffic|ready PLAYBOOK [--json]`, exit 0 only on pass."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

import click

from rollback_tui.cli.common import Output, load_or_exit, session_redactor

if TYPE_CHECKING:
    from rollback_tui.core import events as ev


@click.group()
def check() -> None:
    """One-shot checks for scripts (JSON out, exit 0 only on pass)."""


@check.command("health")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def check_health(playbook_path: str, as_json: bool) -> None:
    """Sample every replica's health once."""
    from rollback_tui.probes.health import HealthProbe

    playbook = load_or_exit(playbook_path)
    out = Output(session_redactor(playbook))
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

    playbook = load_or_exit(playbook_path)
    out = Output(session_redactor(playbook))
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


@check.command("traffic")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--seconds", type=float, default=5.0, show_default=True, help="How long to send traffic.")
@click.option("--rps", type=float, help="Requests per second (default: the playbook's rate).")
def check_traffic(playbook_path: str, as_json: bool, seconds: float, rps: float | None) -> None:
    """Send bounded synthetic traffic through the balancer; per-replica share, 5xx, p95, guardrails."""
    from rollback_tui.core import events as ev
    from rollback_tui.core.guardrails import GuardrailEvaluator
    from rollback_tui.core.read.guardrails import breach_text
    from rollback_tui.core.read.traffic import TrafficTotals
    from rollback_tui.probes.traffic import TrafficGenerator, percentile

    playbook = load_or_exit(playbook_path)
    rps = rps or playbook.synthetic_rps
    out = Output(session_redactor(playbook))
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
    assert playbook.load_balancer is not None  # the generator refused a playbook without one
    totals = TrafficTotals.of(f"{seconds:g} s run", windows)  # what the cockpit and the report add up
    total = totals.requests
    p95s = [w.p95_ms for w in windows if w.p95_ms is not None]
    active = [b for b in breaches if isinstance(b, ev.GuardrailBreach)]
    result = {
        # A request no replica answered is a failure of the service, whatever the guardrails say.
        "passed": total > 0 and not active and not totals.unattributed,
        "requests": total,
        "transport_errors": totals.transport_errors,
        "share": {r: round(n / total, 4) for r, n in sorted(totals.served.items())} if total else {},
        "errors_5xx": totals.errors,
        "unattributed": totals.unattributed,
        "p95_ms_max": totals.p95_max_ms,
        "p95_ms_median": percentile(p95s, 0.5),
        "ws_disconnects": totals.ws_disconnects,
        "idempotency_collisions": totals.idempotency_collisions,
        "breaches": [b.model_dump(exclude={"kind", "n"}) for b in active],
    }
    if as_json:
        out.json(json.dumps(result, indent=2))
    else:
        out.line(f"{'✓' if result['passed'] else '✗'} {total} requests through {playbook.load_balancer.url}")
        out.line(f"  {totals.text()}")
        if total:
            out.line(f"  {totals.split_text(r.name for r in playbook.replicas)}")
        for reason, n in sorted(totals.unattributed.items()):
            out.line(f"  ✗ {n} of {total} requests failed: {reason}")
        for b in active:
            out.line(f"  ! {b.severity} guardrail {b.guardrail} breached: {breach_text(b)}")
    sys.exit(0 if result["passed"] else 1)


@check.command("ready")
@click.argument("playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--timeout", "timeout_s", type=float, default=3.0, show_default=True, help="Per lookup (s).")
def check_ready(playbook_path: str, as_json: bool, timeout_s: float) -> None:
    """What every item needs from here (env vars, binaries, SSH hosts, kube context, host names) and
    whether each is present / resolvable / reachable; exit 0 only if everything is."""
    from rollback_tui.core.read.readiness import ReadinessView
    from rollback_tui.probes.readiness import check_readiness

    playbook = load_or_exit(playbook_path)
    out = Output(session_redactor(playbook))
    out.capture_logs()
    checked = asyncio.run(check_readiness(playbook, timeout_s=timeout_s))
    view = ReadinessView(checked)
    if as_json:
        out.json(json.dumps(view.as_dict(), indent=2))
    else:
        print_readiness(checked, "text", out)
    sys.exit(0 if view.ready else 1)


def print_readiness(checked: ev.ReadinessChecked, fmt: str, out: Output) -> None:
    """The readiness table (text); nothing in jsonl, whose log carries the event itself."""
    from rollback_tui.core.read.readiness import ReadinessView

    if fmt == "text":
        for line in ReadinessView(checked).table_lines():
            out.line(line)
