"""Benchmark: time-to-detect and RTO of the automatic rollback on the embedded lab (targets, median of 5:
TTD <= 1 s, RTO <= 1 s on demo.yaml; through the Prometheus guardrail TTD <= 3 s with its 1 s scrape).

    .venv/bin/python bench/rto.py [--runs 5] [--windows demo,fixed,prom] [--rps R] [--error-rate 0.25]

Starts `Lab(load_playbook("playbooks/demo.yaml"))` once (real redis-server, three uvicorn replicas, the lab
balancer, and the lab's Prometheus when the binary is installed), then for each guardrail setting in
`--windows` runs `--runs` times:

* "demo": the playbook as shipped (`candidate-5xx` decided by its sequential test on every response);
* "fixed": a copy whose `candidate-5xx` is judged over fixed windows instead (detection: window,
  window_s 2: the rail the demo shipped before, kept to compare);
* a number: a copy whose `candidate-5xx` uses that window_s (its detection unchanged);
* "prom": a copy whose synthetic `candidate-5xx` is only P1, so that the Prometheus query
  `prom-candidate-5xx` is the P0 that detects the fault.

Each run:

1. a fresh Engine (own journal in a temp dir, `auto_rollback = True`, `engine.start()`: health, probes,
   routing) and synthetic traffic through the balancer (`engine.start_traffic`, the playbook's rate
   unless `--rps`);
2. wait until the guardrail window is full of clean traffic windows (blue-next served, no 5xx), then a
   random fraction of one traffic window (a real fault lands at any phase of the window clock);
3. inject the demo's controlled issue on blue-next (`lab.set_faults`: 25 % 5xx and +150 ms by default),
   noting the wall-clock time just before the call;
4. wait for RollbackVerified, then record
   * TTD from injection   = breach.ts - injection time (what the on-call engineer experiences),
   * TTD journaled        = breach.ts - breach.first_bad_ts (RollbackVerified.time_to_detect_s),
   * RTO journaled        = RollbackVerified.rto_s (confirm -> verified: a batch of verify_requests all
     answered by stable replicas);
5. restore: balancer selector back to {"app": "api"} (PUT /admin/selector), faults cleared, engine stopped.

Prints every run with the load average, then the medians against their targets; the last line is
`RESULT ttd_s=X rto_s=Y …` (the demo setting; other settings as ttd_<setting>_s, rto_<setting>_s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import add_fault_run_options, median, table

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.lab.supervisor import Lab
from rollback_tui.playbook.load import load_playbook
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine

DEMO = Path(__file__).resolve().parent.parent / "playbooks" / "demo.yaml"
GUARDRAIL = "candidate-5xx"
PROM_GUARDRAIL = "prom-candidate-5xx"
CANDIDATE = "blue-next"
TTD_TARGET_S = 1.0
PROM_TTD_TARGET_S = 3.0  # a 1 s scrape, a 1 s evaluation interval and a rate() over the query's window
RTO_TARGET_S = 1.0
FIXED_WINDOW_S = 2.0  # the "fixed" setting: the window the demo's rail was judged over before
RUN_HEADER: list[object] = [
    "run", "TTD from injection s", "TTD journaled s", "RTO s", "breach", "value", "evidence", "verified",
    "stable share", "verify reqs", "load 1m",
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
    evidence: str = "-"  # a sequential breach: errors/requests of its run
    load: float = 0.0  # 1-minute load average when the run ended

    def cells(self) -> list[object]:
        return [
            f"{self.ttd_injection_s:.2f}",
            fmt(self.ttd_journal_s),
            fmt(self.rto_s),
            self.breach,
            f"{self.value:.3f}",
            self.evidence,
            self.ok,
            f"{self.stable_share:.2f}",
            self.verify_requests,
            f"{self.load:.1f}",
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


def fixed_window(playbook: Playbook) -> Playbook:
    """A copy whose candidate-5xx is judged over fixed windows (FIXED_WINDOW_S), not sequentially."""
    data = playbook.model_dump(mode="python")
    for rail in data["guardrails"]:
        if rail["name"] == GUARDRAIL:
            rail["detection"], rail["window_s"] = None, FIXED_WINDOW_S
    return Playbook.model_validate(data)


def through_prometheus(playbook: Playbook) -> Playbook:
    """A copy in which the synthetic candidate-5xx is P1: the Prometheus guardrail is the P0 that trips."""
    data = playbook.model_dump(mode="python")
    for rail in data["guardrails"]:
        if rail["name"] == GUARDRAIL:
            rail["severity"] = "P1"
    return Playbook.model_validate(data)


@dataclass
class Setting:
    word: str  # as given in --windows
    name: str
    playbook: Playbook
    trigger: str  # the guardrail meant to detect the fault
    ttd_target_s: float


def settings_of(spec: str, lab: Lab) -> list[Setting]:
    out = []
    for word in spec.split(","):
        if word == "prom":
            if lab.prometheus is None:
                print(f"prom: skipped — {lab.prometheus_note or 'the playbook has no lab Prometheus'}\n")
                continue
            copy = through_prometheus(lab.playbook)
            name = f"demo.yaml copy, {GUARDRAIL} P1: {PROM_GUARDRAIL} (Prometheus) is the P0"
            out.append(Setting(word, name, copy, PROM_GUARDRAIL, PROM_TTD_TARGET_S))
        elif word == "demo":
            out.append(Setting(word, "demo.yaml", lab.playbook, GUARDRAIL, TTD_TARGET_S))
        elif word == "fixed":
            copy = fixed_window(lab.playbook)
            name = f"demo.yaml copy, {GUARDRAIL} over fixed {FIXED_WINDOW_S:g} s windows"
            out.append(Setting(word, name, copy, GUARDRAIL, TTD_TARGET_S))
        else:
            copy = with_window(lab.playbook, float(word))
            name = f"demo.yaml copy, {GUARDRAIL}.window_s={word}"
            out.append(Setting(word, name, copy, GUARDRAIL, TTD_TARGET_S))
    return out


def guardrail(playbook: Playbook, name: str = GUARDRAIL) -> tuple[float, float, float]:
    rail = next(g for g in playbook.guardrails if g.name == name)
    return rail.window_s, rail.threshold, rail.sustained_s


async def restore(lab: Lab) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.put(
            f"{lab.endpoints['balancer-admin']}/admin/selector", json={"selector": {"app": "api"}}
        )
        response.raise_for_status()
    await lab.set_faults(CANDIDATE, error_rate=0.0, latency_ms=0)
    # A Prometheus guardrail's rate still holds the fault until its window has passed: the next run's
    # engine would see it at once (a breach before its fault) and roll back again.
    queries = [g.window_s + 2 * g.interval_s for g in lab.playbook.guardrails if g.metric == "query"]
    await asyncio.sleep(max(queries, default=0.0))


async def wait_for(predicate, timeout_s: float, what: str) -> None:  # predicate: () -> bool
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.02)


async def one_run(
    lab: Lab, playbook: Playbook, work: Path, label: str, args: argparse.Namespace, trigger: str = GUARDRAIL
) -> Run:
    window_s, _, _ = guardrail(playbook, trigger)
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
        engine.start_traffic(rate_rps=args.rps or playbook.synthetic_rps, window_s=args.traffic_window)
        # The guardrail window must hold only clean traffic, as in a steady rehearsal.
        need = max(2, int(window_s / args.traffic_window + 0.999) + 1)
        await wait_for(lambda: len(clean) >= need or breaches, window_s + 30, f"{need} clean traffic windows")
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
        evidence="-" if breach.requests is None else f"{breach.errors}/{breach.requests}",
        load=os.getloadavg()[0],
    )


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-rto-"))
    try:
        return await _bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _bench(args: argparse.Namespace, work: Path) -> int:
    misses = 0
    async with Lab(load_playbook(DEMO), redis="server", log_dir=work / "lab-logs") as lab:
        print(
            f"lab: {lab.redis_kind}, balancer {lab.endpoints['balancer']}, replicas "
            f"{', '.join(r.name for r in lab.playbook.replicas)}; "
            f"{lab.prometheus_note or 'no Prometheus in the playbook'}"
        )
        action = next(a for a in lab.playbook.actions if a.name == "rollback-blue-next")
        rps = args.rps or lab.playbook.synthetic_rps
        print(
            f"traffic: {rps:g} req/s through the balancer, traffic window {args.traffic_window:g} s; "
            f"fault on {CANDIDATE}: error_rate {args.error_rate:g}, +{args.latency_ms} ms; rollback "
            f"verifies a batch of {action.verify_requests} requests all answered by stable replicas; "
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n"
        )
        result: list[str] = []
        summary: list[list[object]] = [
            [
                "setting",
                "P0 trigger",
                "window_s",
                "TTD inj. (med)",
                "TTD journal (med)",
                "RTO (med)",
                "load (med)",
                "TTD",
                "RTO",
            ]
        ]
        for number, setting in enumerate(settings_of(args.windows, lab), 1):
            playbook, trigger = setting.playbook, setting.trigger
            window_s, threshold, sustained = guardrail(playbook, trigger)
            print(
                f"== {setting.name}: {trigger} > {threshold:g} over {window_s:g} s "
                f"(sustained {sustained:g} s)"
            )
            rows: list[list[object]] = [RUN_HEADER]
            runs: list[Run] = []
            for i in range(1, args.runs + 1):
                run = await one_run(lab, playbook, work, f"{number}-{window_s:g}-{i}", args, trigger)
                runs.append(run)
                rows.append([i, *run.cells()])
            ttd = median([r.ttd_injection_s for r in runs])
            ttd_j = median([r.ttd_journal_s for r in runs if r.ttd_journal_s is not None])
            rto = median([r.rto_s for r in runs if r.rto_s is not None])
            print(table(rows))
            ttd_ok, rto_ok = ttd <= setting.ttd_target_s, rto <= RTO_TARGET_S
            misses += (not ttd_ok) + (not rto_ok)
            load = median([r.load for r in runs])
            print(
                f"median: TTD from injection {ttd:.2f} s, TTD journaled {ttd_j:.2f} s, RTO {rto:.2f} s "
                f"(guardrail window {window_s:g} s, traffic window {args.traffic_window:g} s; "
                f"load average {load:.1f})\n"
            )
            key = "" if setting.word == "demo" else f"_{setting.word}"
            result += [f"ttd{key}_s={ttd:.2f}", f"rto{key}_s={rto:.2f}", f"load{key}={load:.1f}"]
            summary.append(
                [
                    setting.word,
                    trigger,
                    f"{window_s:g}",
                    f"{ttd:.2f}",
                    f"{ttd_j:.2f}",
                    f"{rto:.2f}",
                    f"{load:.1f}",
                    f"{'PASS' if ttd_ok else 'MISS'} (<= {setting.ttd_target_s:g} s)",
                    f"{'PASS' if rto_ok else 'MISS'} (<= {RTO_TARGET_S:g} s)",
                ]
            )
        print(table(summary))
        print("RESULT " + " ".join(result))
    return 1 if misses and args.strict else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--windows", default="demo,fixed,prom", help="demo, fixed, window_s values, prom (comma-separated)"
    )
    add_fault_run_options(parser)  # --strict: a median that misses its target fails
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
