"""Benchmark: time to first frame of the demo cockpit (lab already up) vs a bare Textual app (target ≤ 1.5x).

    /tmp/venv/bin/python bench/startup.py [--runs 5] [--size 160x45]

Starts the embedded lab once (bundled demo playbook), then alternates, in the same process and event loop:
* bare — `App` whose screen holds one `Static`;
* cockpit — `CockpitApp` on a fresh `Engine` + `Journal` for the lab, live (feeds, refresh timers, theme
  files), exactly what `rollback-tui demo` opens.
Both are measured the same way: from constructing the App to its first painted frame (the first call
of `App._display`, which hands a frame to the driver), inside `App.run_test()`. One warm-up of each is
not counted (imports, CSS parse cache). Prints every run, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Static

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, table

from rollback_tui.core.engine import Engine
from rollback_tui.core.journal import Journal
from rollback_tui.lab.supervisor import Lab
from rollback_tui.playbook.load import bundled_playbook, load_playbook
from rollback_tui.ui.app import CockpitApp

TARGET = 1.5


class BareApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello")


async def first_frame(make: object, size: tuple[int, int]) -> tuple[float, App[None]]:
    """Seconds from constructing the App to its first painted frame (the first `App._display`)."""
    painted: list[float] = []
    started = time.perf_counter()
    app = make()  # type: ignore[operator]
    display = app._display

    def first_paint(screen: object, renderable: object) -> None:
        if not painted:
            painted.append(time.perf_counter() - started)
        display(screen, renderable)  # type: ignore[arg-type]

    app._display = first_paint  # type: ignore[method-assign]
    async with app.run_test(size=size) as pilot:
        while not painted:
            await asyncio.sleep(0.001)
        await pilot.pause(0.05)
    return painted[0], app


async def main(runs: int, size: tuple[int, int]) -> int:
    playbook = load_playbook(bundled_playbook("demo"))
    lab = Lab(playbook)
    await lab.start()
    rows: list[list[object]] = [["run", "bare (ms)", "cockpit (ms)", "ratio"]]
    bare_times: list[float] = []
    cockpit_times: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="rollback-bench-startup-") as tmp:
            engines: list[Engine] = []

            def cockpit() -> CockpitApp:
                journal = Journal(Path(tmp) / f"startup-{len(engines)}.jsonl")
                engine = Engine(lab.playbook, journal, playbook_path="demo.yaml", operator="bench")
                engines.append(engine)
                return CockpitApp(engine, theme="rollback-dark")

            for i in range(runs + 1):  # run 0 is the warm-up
                bare, _ = await first_frame(BareApp, size)
                full, _ = await first_frame(cockpit, size)
                await engines[-1].stop("bench")
                if i == 0:
                    continue
                bare_times.append(bare)
                cockpit_times.append(full)
                rows.append([i, f"{bare * 1000:.0f}", f"{full * 1000:.0f}", f"{full / bare:.2f}x"])
    finally:
        await lab.stop()
    ratio = median(cockpit_times) / median(bare_times)
    rows.append(
        ["median", f"{median(bare_times) * 1000:.0f}", f"{median(cockpit_times) * 1000:.0f}", f"{ratio:.2f}x"]
    )
    print(f"Time to first frame at {size[0]}x{size[1]}, lab up (Redis: {lab.redis_kind})\n")
    print(table(rows))
    verdict = "✓ within" if ratio <= TARGET else "✗ over"
    print(f"\n{verdict} target: cockpit / bare = {ratio:.2f}x (target ≤ {TARGET}x)")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="160x45")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    sys.exit(asyncio.run(main(args.runs, (width, height))))
