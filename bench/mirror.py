"""Benchmark: 20 viewers on one mirrored session at the fanout ingest bench's rate (target: the session's
ingest rate with the mirror and 20 watchers >= 0.9x the same run without them; every watcher ends with
the full journal).

    .venv/bin/python bench/mirror.py [--n 200000] [--watchers 20] [--reps 3]

Each run is a run of bench/fanout_ingest.py's consumer in backlog mode: a child process with a real Engine
and Journal taps `PSUBSCRIBE chat:rt:*` on a throwaway redis-server, is paused (SIGSTOP) while a publisher
sends N frames, then drains them; its ingest rate is N over the time from its first tap batch to its last
(journal written). Three configurations, interleaved in each repetition:

* alone — no mirror (the baseline);
* mirror — with `--mirror` to a second redis-server (session/mirror.py: the journal file tailed and
  XADDed in batches, off the engine's hot path), nobody watching;
* mirror+watchers — the same, with W watcher processes following the stream from before the session
  starts, each the real `watch redis://…` fold without its UI (StreamFollower + LineFold). A watcher stops
  when it has folded the session's end, and reports a digest of every line it folded.

A watcher ends complete when it holds every journal line (same n, same bytes) and its fold's last n is the
journal's. On this 2-core box the watchers and the mirror's Redis run as idle-class processes (SCHED_IDLE:
they get the CPU only when nothing else wants it): they stand in for other machines (viewers on the call,
the team's Redis), so the ratio measures what mirroring and being watched cost the session itself, not
what 21 more busy processes on its own two cores would (`--no-idle` runs them at normal priority, to show
that too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import median, redis_call, table
from fanout_ingest import count_journal, run_publisher, start_redis, wait_subscribed, wait_unsubscribed

TARGET_RATIO = 0.9
CONFIGS = ("alone", "mirror", "mirror+watchers")


# --- a watcher (child process) -----------------------------------------------------------------------


def digest(lines: dict[int, bytes]) -> str:
    """One digest of a set of journal lines: their n and bytes, in n order."""
    h = hashlib.sha256()
    for n in sorted(lines):
        h.update(b"%d:" % n + hashlib.sha1(lines[n]).digest())
    return h.hexdigest()


async def watch(url: str, timeout_s: float) -> dict[str, object]:
    from rollback_tui.core.follow import LineFold, line_n
    from rollback_tui.session.mirror import MirrorTarget, StreamFollower

    fold = LineFold()
    seen: dict[int, bytes] = {}
    feed = fold.feed

    def feed_and_note(data: bytes, where: str = "") -> set[str]:  # the lines, as the fold received them
        for raw in data.split(b"\n")[:-1]:
            n = line_n(raw)
            if n is not None:
                seen[n] = raw
        return feed(data, where)

    fold.feed = feed_and_note  # type: ignore[method-assign]
    ended = asyncio.Event()
    follower = StreamFollower(MirrorTarget.parse(url, session_required=True), fold, block_ms=500)
    started = time.monotonic()
    task = asyncio.create_task(follower.run(lambda kinds: "session_ended" in kinds and ended.set()))
    with contextlib.suppress(TimeoutError):  # reported as not ended, and most likely incomplete
        await asyncio.wait_for(ended.wait(), timeout_s)
    task.cancel()
    return {
        "lines": len(seen),
        "last_n": fold.state.last_n,
        "folded": fold.lines,
        "digest": digest(seen),
        "seconds": round(time.monotonic() - started, 2),
        "ended": ended.is_set(),
    }


def start_watchers(count: int, url: str, timeout_s: float, idle: bool) -> list[subprocess.Popen[str]]:
    argv = [sys.executable, __file__, "_watch", "--url", url, "--timeout", str(timeout_s)]
    return [
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_idle if idle else None,
        )
        for _ in range(count)
    ]


def _idle(pid: int = 0) -> None:
    """The idle scheduling class: CPU only when no other process wants it (another machine, in effect)."""
    os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))


# --- one run of the session ---------------------------------------------------------------------------


def run_session(port: int, n: int, batch: int, journal: Path, mirror: str | None) -> dict[str, float]:
    """fanout_ingest's consumer in backlog mode, optionally mirrored; its ingest rate (frames/s)."""
    fanout = Path(__file__).with_name("fanout_ingest.py")
    argv = [
        sys.executable,
        str(fanout),
        "_consume",
        "--port",
        str(port),
        "--n",
        str(n),
        "--journal",
        str(journal),
    ]
    argv += ["--mirror", mirror] if mirror else []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_subscribed(port, proc)
        proc.send_signal(signal.SIGSTOP)
        run_publisher(port, n, batch)
        proc.send_signal(signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"the session failed:\n{stderr.decode()[-2000:]}")
        result = json.loads(stdout)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
        wait_unsubscribed(port)
    if result["count"] != n or count_journal(journal) != n:
        raise RuntimeError(f"the session ingested {result['count']} of {n} frames")
    if mirror and not result["mirrored"]:
        raise RuntimeError("the mirror did not catch up with the journal")
    return {"rate": (n - 1) / (result["last"] - result["first"]), "seconds": result["last"] - result["first"]}


def journal_lines(journal: Path) -> dict[int, bytes]:
    from rollback_tui.core.follow import line_n

    return {line_n(raw): raw for raw in journal.read_bytes().split(b"\n")[:-1]}  # type: ignore[misc]


def collect(watchers: list[subprocess.Popen[str]], journal: Path, timeout_s: float) -> list[bool]:
    """Whether each watcher ended with the full journal (every line, same bytes; the fold's last n)."""
    lines = journal_lines(journal)
    want = {"lines": len(lines), "last_n": max(lines), "digest": digest(lines)}
    complete = []
    for proc in watchers:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
            got = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
            complete.append(False)
            continue
        complete.append(all(got[k] == v for k, v in want.items()))
    return complete


# --- the orchestrator -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="frames per run (default 200000)")
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the three configurations")
    parser.add_argument("--batch", type=int, default=1000, help="PUBLISH commands per pipeline write")
    parser.add_argument("--watch-timeout", type=float, default=600.0, help="seconds a watcher may take")
    parser.add_argument(
        "--no-idle",
        dest="idle",
        action="store_false",
        help="watchers and the mirror's Redis at normal priority",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-mirror-"))
    (work / "source").mkdir()
    (work / "mirror").mkdir()
    source, port, kind = start_redis(work / "source")
    target, mirror_port, _ = start_redis(work / "mirror")
    if args.idle:
        _idle(target.pid)  # the team's Redis: another machine, in effect
    where = "idle class" if args.idle else "normal priority"
    mirror_url = f"redis://127.0.0.1:{mirror_port}/0"
    rates: dict[str, list[float]] = {c: [] for c in CONFIGS}
    complete: list[int] = []
    rows: list[list[object]] = [["rep", "configuration", "frames/s", "seconds", "watchers complete"]]
    try:
        redis_call(port, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0")
        print(f"{kind}: source on 127.0.0.1:{port}, mirror on 127.0.0.1:{mirror_port} ({where})")
        print(
            f"{args.n:,} frames per run (backlog mode), {args.watchers} watchers ({where}), {args.reps} reps"
        )
        print()
        for rep in range(1, args.reps + 1):
            order = CONFIGS if rep % 2 else tuple(reversed(CONFIGS))  # no configuration always first
            for config in order:
                journal = work / f"{config.replace('+', '-')}-{rep}.jsonl"
                mirror = mirror_url if config != "alone" else None
                watchers = []
                if config == "mirror+watchers":
                    url = f"{mirror_url}/{journal.stem}"
                    watchers = start_watchers(args.watchers, url, args.watch_timeout, args.idle)
                    time.sleep(1.0)  # they are following (an empty stream) before the session starts
                result = run_session(port, args.n, args.batch, journal, mirror)
                done = ""
                if watchers:
                    ok = collect(watchers, journal, args.watch_timeout)
                    complete.append(sum(ok))
                    done = f"{sum(ok)}/{len(ok)}"
                rates[config].append(result["rate"])
                rows.append([rep, config, f"{result['rate']:,.0f}", f"{result['seconds']:.2f}", done])
                journal.unlink()
                if mirror:
                    redis_call(mirror_port, "DEL", f"rollback-tui:mirror:{journal.stem}")
        print(table(rows))
        alone = median(rates["alone"])
        ratios = {c: median(rates[c]) / alone for c in CONFIGS[1:]}
        print(f"\nmedian frames/s: alone {alone:,.0f}, " + ", ".join(
            f"{c} {median(rates[c]):,.0f} ({ratios[c]:.2f}x)" for c in CONFIGS[1:]
        ))  # fmt: skip
        worst = min(complete) if complete else 0
        ratio = ratios["mirror+watchers"]
        verdict = "PASS" if ratio >= TARGET_RATIO and worst == args.watchers else "MISS"
        print(f"{verdict}: target ratio >= {TARGET_RATIO}x with every watcher complete")
        print(f"RESULT ratio={ratio:.2f} complete={worst}/{args.watchers}")
    finally:
        for proc in (source, target):
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def child_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_watch"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(watch(args.url, args.timeout))))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main()
    else:
        main()
