"""Benchmark: no false alarms on a busy host, and the real fault still detected fast (targets: 0 P0/P1
breaches in the clean phase; time to detect the demo fault <= 2 s, median of 5, with the host still busy).

    .venv/bin/python bench/false_alarms.py [--minutes 10] [--runs 5] [--hogs N]

Starts `Lab(load_playbook("playbooks/demo.yaml"))` (real redis-server, three replicas, the lab balancer and,
when installed, the lab's Prometheus with the demo's Prometheus guardrails), then:

1. a CPU hog: `--hogs` busy-looping processes (default: one per core), each stopping itself after the
   bench's own time budget and dying with this process; no network at all (everything is loopback);
2. clean phase: one Engine (own journal, `auto_rollback` off) with every feed of the demo (health, dead
   letters, Prometheus queries, synthetic traffic at the playbook's rate) for `--minutes`, no fault:
   every P0 and P1 breach journaled is a false alarm;
3. fault phase, the hog still running: `--runs` times the demo fault on blue-next (25 % 5xx, +150 ms)
   through bench/rto.py's run (fresh engine, auto-rollback, restore): time to detect from injection.

Prints the false alarms one by one (guardrail, value, threshold, when), the per-run TTDs, both against their
targets; the last line is `RESULT false_alarms=N ttd_s=X`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import add_fault_run_options, median, table
from rto import DEMO, Run, one_run

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal
from rollback_tui.lab.proc import die_with_parent_hook
from rollback_tui.lab.supervisor import Lab
from rollback_tui.playbook.load import load_playbook
from rollback_tui.session.engine import Engine

FALSE_ALARM_TARGET = 0
TTD_TARGET_S = 2.0
HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def start_hogs(count: int, seconds: float) -> list[subprocess.Popen]:
    """Busy loops that end on their own after `seconds` (and with this process, whatever happens)."""
    argv = [sys.executable, "-c", HOG.format(seconds=seconds)]
    return [subprocess.Popen(argv, preexec_fn=die_with_parent_hook()) for _ in range(count)]


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.terminate()
    for hog in hogs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            hog.wait(5)


async def clean_phase(lab: Lab, work: Path, minutes: float) -> tuple[list[ev.GuardrailBreach], Engine]:
    engine = Engine(lab.playbook, Journal(work / "clean.jsonl"), operator="bench")
    alarms: list[ev.GuardrailBreach] = []
    engine.subscribe(lambda e: alarms.append(e) if isinstance(e, ev.GuardrailBreach) else None)
    await engine.start()
    try:
        engine.start_traffic(max_duration_s=minutes * 60 + 60, max_requests=10_000_000)
        await asyncio.sleep(minutes * 60)
    finally:
        await engine.stop("clean phase done")
    return alarms, engine


async def bench(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-false-alarms-"))
    hogs: list[subprocess.Popen] = []
    try:
        async with Lab(load_playbook(DEMO), redis="server", log_dir=work / "lab-logs") as lab:
            rails = lab.playbook.guardrails
            print(
                f"lab: {lab.redis_kind}; {lab.prometheus_note or 'no Prometheus'}; "
                f"{len(rails)} guardrails ({sum(g.metric == 'query' for g in rails)} read Prometheus); "
                f"synthetic traffic {lab.playbook.synthetic_rps:g} req/s"
            )
            budget = args.minutes * 60 + args.runs * 60 + 60  # the hog never outlives the bench
            hogs = start_hogs(args.hogs, budget)
            print(f"CPU hog: {args.hogs} busy loops on {os.cpu_count()} cores, at most {budget:.0f} s\n")
            started = time.time()
            alarms, engine = await clean_phase(lab, work, args.minutes)
            print(f"== clean phase: {args.minutes:g} min, no fault, host saturated")
            windows = engine.state.counts["traffic_window"]
            samples = engine.state.counts["metric_sample"]
            print(f"{windows} traffic windows, {samples} Prometheus evaluations, {len(alarms)} breaches")
            if alarms:
                rows: list[list[object]] = [
                    ["t s", "severity", "guardrail", "value", "threshold", "window s"]
                ]
                for a in alarms:
                    rows.append(
                        [f"{a.ts - started:.0f}", a.severity, a.guardrail, a.value, a.threshold, a.window_s]
                    )
                print(table(rows))
            print(f"false alarms: {len(alarms)} (target {FALSE_ALARM_TARGET})\n")

            print(f"== fault phase: the demo fault on blue-next, {args.runs} runs, host still saturated")
            runs: list[Run] = []
            late_alarms = 0
            for i in range(1, args.runs + 1):
                try:
                    runs.append(await one_run(lab, lab.playbook, work, f"fault-{i}", args))
                except RuntimeError as exc:  # a P0 before the fault: a false alarm too, and no timing
                    print(f"run {i}: {exc}")
                    late_alarms += 1
                    continue
                print(f"run {i}: TTD from injection {runs[-1].ttd_injection_s:.2f} s via {runs[-1].breach}")
            ttd = median([r.ttd_injection_s for r in runs])
            print(f"TTD median {ttd:.2f} s (target <= {TTD_TARGET_S:g} s)\n")
    finally:
        stop_hogs(hogs)
        shutil.rmtree(work, ignore_errors=True)
    false_alarms = len(alarms) + late_alarms
    ok = false_alarms <= FALSE_ALARM_TARGET and ttd <= TTD_TARGET_S
    print(f"false alarms {'PASS' if false_alarms <= FALSE_ALARM_TARGET else 'MISS'}, "
          f"TTD {'PASS' if ttd <= TTD_TARGET_S else 'MISS'}")  # fmt: skip
    print(f"RESULT false_alarms={false_alarms} ttd_s={ttd:.2f}")
    return 1 if args.strict and not ok else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the clean phase")
    parser.add_argument("--runs", type=int, default=5, help="fault injections timed after the clean phase")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy-looping processes")
    add_fault_run_options(parser)  # --rps: of the fault phase
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
