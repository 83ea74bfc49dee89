"""Benchmark: time-to-detect and RTO of the automatic rollback on the embedded lab (targets, median of 5:
TTD <= 2 s, RTO <= 3 s).

    /tmp/venv/bin/python bench/rto.py [--runs 5] [--windows demo,10] [--rps 50] [--error-rate 0.25]

Starts `Lab(load_playbook("playbooks/demo.yaml"))` once (real redis-server, three uvicorn replicas, the lab
balancer), then for each guardrail setting in `--windows` ("demo" = the playbook as shipped, a number =
a copy of it whose `candidate-5xx` guardrail uses that window_s; nothing else changes) runs `--runs`
times:

1. a fresh Engine (own journal in a temp dir, `auto_rollback = True`, `engine.start()`: health, probes,
   routing) and synthetic traffic through the balancer (`engine.start_traffic`);
2. wait until the guardrail window is full of clean traffic windows (blue-next served, no 5xx), then a
   random fraction of one traffic window (a real fault lands at any phase of the window clock);
3. inject the demo's controlled issue on blue-next (`lab.set_faults`: 25 % 5xx and +150 ms by default),
   noting the wall-clock time just before the call;
4. wait for RollbackVerified, then record
   * TTD from injection   = breach.ts - injection time (what the on-call engineer experiences),
   * TTD journaled        = breach.ts - breach.first_bad_ts (RollbackVerified.time_to_detect_s),
   * RTO journaled        = RollbackVerified.rto_s (confirm -> verified 100 % stable);
5. restore: balancer selector back to {"app": "api"} (PUT /admin/selector), faults cleared, engine stopped.

Prints every run, then the medians beside the guardrail window, the traffic window (how often metrics are
evaluated), the rate and the fault used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import median, table

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.lab.supervisor import Lab
from rollback_tui.playbook.load import load_playbook
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine

DEMO = Path(__file__).resolve().parent.parent / "playbooks" / "demo.yaml"
GUARDRAIL = "candidate-5xx"
CANDIDATE = "blue-next"
TTD_TARGET_S = 2.0
RTO_TARGET_S = 3.0
RUN_HEADER: list[object] = [
    "run", "TTD from injection s", "TTD journaled s", "RTO s", "breach", "value", "verified", "stable share",
    "verify reqs",
]  # fmt: skip


@dataclass
class Run:
    ttd_injection_s: float
    ttd_journal_s: float | None
    rto_s: float | None
    breach: str
    value: float
    ok: bool
    stable_share: float
    verify_requests: int

    def cells(self) -> list[object]:
        return [
            f"{self.ttd_injection_s:.2f}",
            fmt(self.ttd_journal_s),
            fmt(self.rto_s),
            self.breach,
            f"{self.value:.3f}",
            self.ok,
            f"{self.stable_share:.2f}",
            self.verify_requests,
        ]


def with_window(playbook: Playbook, window_s: float | None) -> Playbook:
    """The playbook, or a copy whose candidate-5xx guardrail uses `window_s`."""
    if window_s is None:
        return playbook
    data = playbook.model_dump(mode="python")
    for rail in data["guardrails"]:
        if rail["name"] == GUARDRAIL:
            rail["window_s"] = window_s
    return Playbook.model_validate(data)


def guardrail(playbook: Playbook) -> tuple[float, float, float]:
    rail = next(g for g in playbook.guardrails if g.name == GUARDRAIL)
    return rail.window_s, rail.threshold, rail.sustained_s


async def restore(lab: Lab) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.put(
            f"{lab.endpoints['balancer-admin']}/admin/selector", json={"selector": {"app": "api"}}
        )
        response.raise_for_status()
    await lab.set_faults(CANDIDATE, error_rate=0.0, latency_ms=0)


async def wait_for(predicate, timeout_s: float, what: str) -> None:  # predicate: () -> bool
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def one_run(lab: Lab, playbook: Playbook, work: Path, label: str, args: argparse.Namespace) -> Run:
    window_s, _, _ = guardrail(playbook)
    journal = Journal(work / f"rto-{label}.jsonl")
    engine = Engine(playbook, journal, operator="bench")
    engine.auto_rollback = True
    clean: list[ev.TrafficWindow] = []
    breaches: list[ev.GuardrailBreach] = []
    injected_at = 0.0

    def watch(event: ev.Event) -> None:
        if isinstance(event, ev.TrafficWindow) and not injected_at:
            served = event.per_replica.get(CANDIDATE, 0)
            clean[:] = [*clean, event] if served and not event.errors_5xx else []
        elif isinstance(event, ev.GuardrailBreach) and event.severity == "P0":
            breaches.append(event)

    engine.subscribe(watch)
    await engine.start()
    try:
        engine.start_traffic(rate_rps=args.rps, window_s=args.traffic_window)
        # The guardrail window must hold only clean traffic, as in a steady rehearsal.
        need = max(2, int(window_s / args.traffic_window + 0.999) + 1)
        await wait_for(lambda: len(clean) >= need, window_s + 30, f"{need} clean traffic windows")
        if breaches:
            raise RuntimeError(f"a P0 guardrail breached before the fault: {breaches[0].guardrail}")
        # A real fault lands at any point of a traffic window, not just after one closed: random phase.
        await asyncio.sleep(random.uniform(0, args.traffic_window))
        injected_at = time.time()
        await lab.set_faults(CANDIDATE, error_rate=args.error_rate, latency_ms=args.latency_ms)
        await wait_for(
            lambda: engine.state.traffic.rollback_verified is not None, 60, "the rollback to be verified"
        )
    finally:
        await engine.stop("bench run done")
        await restore(lab)
    events = read_journal(journal.path).events
    verified = next(e for e in events if isinstance(e, ev.RollbackVerified))
    breach = next(e for e in events if isinstance(e, ev.GuardrailBreach) and e.severity == "P0")
    return Run(
        ttd_injection_s=breach.ts - injected_at,
        ttd_journal_s=verified.time_to_detect_s,
        rto_s=verified.rto_s,
        breach=breach.guardrail,
        value=breach.value,
        ok=verified.ok,
        stable_share=verified.stable_share,
        verify_requests=verified.requests,
    )


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-rto-"))
    settings: list[float | None] = [None if w == "demo" else float(w) for w in args.windows.split(",")]
    try:
        return await _bench(args, work, settings)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _bench(args: argparse.Namespace, work: Path, settings: list[float | None]) -> int:
    misses = 0
    async with Lab(load_playbook(DEMO), redis="server", log_dir=work / "lab-logs") as lab:
        print(
            f"lab: {lab.redis_kind}, balancer {lab.endpoints['balancer']}, replicas "
            f"{', '.join(r.name for r in lab.playbook.replicas)}"
        )
        action = next(a for a in lab.playbook.actions if a.name == "rollback-blue-next")
        print(
            f"traffic: {args.rps:g} req/s through the balancer, traffic window (metrics poll) "
            f"{args.traffic_window:g} s; fault on {CANDIDATE}: error_rate {args.error_rate:g}, "
            f"+{args.latency_ms} ms; rollback verifies {action.verify_requests} consecutive stable "
            "responses\n"
        )
        summary: list[list[object]] = [
            ["playbook", "window_s", "TTD inj. (med)", "TTD journal (med)", "RTO (med)", "TTD<=2s", "RTO<=3s"]
        ]
        for setting, window in enumerate(settings, 1):
            playbook = with_window(lab.playbook, window)
            window_s, threshold, sustained = guardrail(playbook)
            name = "demo.yaml" if window is None else f"demo.yaml copy, {GUARDRAIL}.window_s={window:g}"
            print(f"== {name}: {GUARDRAIL} > {threshold:g} over {window_s:g} s (sustained {sustained:g} s)")
            rows: list[list[object]] = [RUN_HEADER]
            runs: list[Run] = []
            for i in range(1, args.runs + 1):
                run = await one_run(lab, playbook, work, f"{setting}-{window_s:g}-{i}", args)
                runs.append(run)
                rows.append([i, *run.cells()])
            ttd = median([r.ttd_injection_s for r in runs])
            ttd_j = median([r.ttd_journal_s for r in runs if r.ttd_journal_s is not None])
            rto = median([r.rto_s for r in runs if r.rto_s is not None])
            print(table(rows))
            ttd_ok, rto_ok = ttd <= TTD_TARGET_S, rto <= RTO_TARGET_S
            misses += (not ttd_ok) + (not rto_ok)
            print(
                f"median: TTD from injection {ttd:.2f} s, TTD journaled {ttd_j:.2f} s, RTO {rto:.2f} s "
                f"(guardrail window {window_s:g} s, traffic window {args.traffic_window:g} s)\n"
            )
            summary.append(
                [
                    name.split(",")[0] if window is None else "copy",
                    f"{window_s:g}",
                    f"{ttd:.2f}",
                    f"{ttd_j:.2f}",
                    f"{rto:.2f}",
                    "PASS" if ttd_ok else "MISS",
                    "PASS" if rto_ok else "MISS",
                ]
            )
        print(table(summary))
    return 1 if misses and args.strict else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--windows", default="demo,10", help="'demo' and/or window_s values, comma-separated")
    parser.add_argument("--rps", type=float, default=50.0, help="synthetic requests/s (headless default)")
    parser.add_argument("--traffic-window", type=float, default=1.0, help="seconds per TrafficWindow")
    parser.add_argument("--error-rate", type=float, default=0.25, help="5xx share injected on blue-next")
    parser.add_argument("--latency-ms", type=int, default=150, help="latency added on blue-next")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a median misses its target")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
