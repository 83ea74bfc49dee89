"""Benchmark: fanout frames per second the engine ingests from Redis pub/sub, journal on (target ≥ 0.5x
what `redis-cli psubscribe` reads from the same stream).

    .venv/bin/python bench/fanout_ingest.py [--n 200000] [--reps 3] [--mode backlog|live|both]

One run starts a real `redis-server` on a free loopback port (temp dir, `--save ''`) and compares two
consumers of `PSUBSCRIBE chat:rt:*`, one after the other, under the same publisher load:

* ours — a child process running `RedisTap(url, "chat:rt:*", engine.emit)` into an `Engine` with a real
  `Journal` (temp dir, batched writes, redaction with two known secrets; no UI). Every frame becomes a
  row of a FanoutTapBatch event (one per socket read): parsed, typed, redacted, journaled, folded into
  the session state. The journal is checked to hold exactly N frame rows at the end.
* redis-cli — `redis-cli -p PORT psubscribe 'chat:rt:*'` with stdout on a pipe that a thread drains with
  1 MiB reads and counts lines (redis-cli prints 3 lines for the subscription, then 4 per pmessage:
  "pmessage", pattern, channel, payload; the payloads are one-line JSON). Draining a pipe in 1 MiB
  reads costs far less than redis-cli's own formatting, so the pipe does not slow the baseline down.

The publisher is a separate process that pipelines N PUBLISH commands of the lab's frame JSON (type,
event_id, seq, thread_id, origin_replica, sent_at, text) over a raw socket, as fast as Redis accepts.
Throughput is measured from each consumer's first to its last message; the median of `--reps` is kept.

Modes:
* backlog (default) — the consumer is subscribed, then paused (SIGSTOP) while the publisher sends all N;
  on SIGCONT it drains the backlog. This measures the consumer alone: on a 2-core box a live run shares
  the CPUs between redis-server, the publisher and the consumer, and a fast consumer is then capped by
  the publisher.
* live — the consumer reads while the publisher publishes (what the cockpit sees during a burst).

Redis disconnects a pub/sub client whose output buffer passes 32 MiB (8 MiB for 60 s) by default. The
backlog of N frames is far larger than that, so the bench sets `client-output-buffer-limit pubsub 0 0 0`
(no limit) on its own throwaway server and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import median, redis_call, redis_int, resp_command, table

PATTERN = "chat:rt:*"
TARGET_RATIO = 0.5
REPLICAS = ("stable-a", "stable-b", "blue-next")
WORDS = ("rollback", "rehearsal", "fanout", "replica", "stream", "replay", "ordering", "thread", "message")


# --- the publisher (child process) --------------------------------------------------------------------


def make_frames(n: int, threads: int = 64) -> list[tuple[str, str]]:
    """(channel, payload) pairs exactly as a lab replica publishes them (replica.py create_event)."""
    thread_ids = [f"rehearsal-{uuid.uuid4().hex[:12]}" for _ in range(threads)]
    seqs = dict.fromkeys(thread_ids, 0)
    start = datetime.now(UTC)
    frames = []
    for i in range(n):
        thread_id = thread_ids[i % threads]
        seqs[thread_id] += 1
        text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(3 + i % 6))
        frame = {
            "type": "message",
            "event_id": f"evt-{uuid.uuid4().hex[:12]}",
            "seq": seqs[thread_id],
            "thread_id": thread_id,
            "origin_replica": REPLICAS[i % len(REPLICAS)],
            "sent_at": (start + timedelta(microseconds=i * 7)).isoformat(timespec="microseconds")[:-6] + "Z",
            "text": text,
        }
        frames.append((f"chat:rt:{thread_id}", json.dumps(frame, separators=(",", ":"))))
    return frames


def publish(port: int, n: int, batch: int) -> dict[str, float]:
    """Pipeline N PUBLISH commands; the replies (receiver counts) are read as they come back."""
    frames = make_frames(n)
    chunks = [
        b"".join(resp_command("PUBLISH", ch, data) for ch, data in frames[i : i + batch])
        for i in range(0, n, batch)
    ]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies: list[bytes] = []

    def read_replies() -> None:
        lines = 0
        while lines < n:
            data = sock.recv(1 << 20)
            if not data:
                return
            replies.append(data)
            lines += data.count(b"\r\n")

    reader = threading.Thread(target=read_replies, daemon=True)
    started = time.monotonic()
    reader.start()
    for chunk in chunks:
        sock.sendall(chunk)
    reader.join(timeout=120)
    elapsed = time.monotonic() - started
    sock.close()
    receivers = sum(int(line[1:]) for line in b"".join(replies).split(b"\r\n") if line.startswith(b":"))
    payload_bytes = sum(len(data) for _, data in frames)
    return {"published": n, "receivers": receivers, "seconds": elapsed, "avg_payload": payload_bytes / n}


# --- our consumer (child process) -----------------------------------------------------------------------


async def consume_ours(
    url: str, n: int, journal_path: Path, mirror: str | None = None
) -> dict[str, float | bool | None]:
    """`mirror`: also mirror the journal to that Redis (bench/mirror.py), as `--mirror` does."""
    from rollback_tui.core import events as ev
    from rollback_tui.core.journal import Journal
    from rollback_tui.core.redact import Redactor
    from rollback_tui.playbook.load import load_playbook
    from rollback_tui.probes.redis_tap import RedisTap
    from rollback_tui.session.engine import Engine
    from rollback_tui.session.mirror import start_mirror

    playbook = load_playbook(Path(__file__).resolve().parent.parent / "playbooks" / "demo.yaml")
    # A session normally knows a few secrets (a Redis password, an API token): the exact-value scan runs.
    redactor = Redactor(["s3cr3t-redis-passw0rd", "ghp_bench0000000000000000000000000000"])
    engine = Engine(playbook, Journal(journal_path, redactor), playbook_path="playbooks/demo.yaml")
    mirrored = start_mirror(engine, mirror)
    engine.start_session()
    marks: dict[str, float] = {}
    frames = 0

    def clock(event: ev.Event) -> None:  # a subscriber, like the UI: sees every event after the journal
        nonlocal frames
        if event.kind == "fanout_tap_batch":
            if not frames:
                marks["first"] = time.monotonic()
            frames += len(event.rows)  # type: ignore[attr-defined]

    engine.subscribe(clock)

    async def flusher() -> None:  # what Engine.start() runs: batched writes at most batch_s old
        while True:
            await asyncio.sleep(engine.journal.batch_s / 2)
            engine.journal.flush_due()

    flush_task = asyncio.create_task(flusher())
    tap = RedisTap(url, PATTERN, engine.emit)
    try:
        await tap.run(limit=n)
        engine.journal.flush()  # the last frames are on disk before the clock stops
        marks["last"] = time.monotonic()
    finally:
        flush_task.cancel()
        await engine.stop("bench done")
    caught_up = await mirrored.close(300) if mirrored is not None else None  # after the clock stopped
    return {
        "count": frames,
        "first": marks.get("first", 0.0),
        "last": marks.get("last", 0.0),
        "mirrored": caught_up,
    }


# --- the orchestrator ----------------------------------------------------------------------------------


class CliCounter:
    """Drains redis-cli's stdout and timestamps the first and the last pmessage."""

    HEADER_LINES = 3  # psubscribe / pattern / count
    LINES_PER_MESSAGE = 4  # pmessage / pattern / channel / payload

    def __init__(self, proc: subprocess.Popen[bytes], n: int) -> None:
        self.proc = proc
        self.want = self.HEADER_LINES + self.LINES_PER_MESSAGE * n
        self.lines = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    @property
    def count(self) -> int:
        return max(0, (self.lines - self.HEADER_LINES) // self.LINES_PER_MESSAGE)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while self.lines < self.want:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            self.lines += data.count(b"\n")
            if not self.first and self.lines > self.HEADER_LINES:
                self.first = time.monotonic()
        self.last = time.monotonic()
        self.done.set()


def wait_subscribed(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while redis_int(port, "PUBSUB", "NUMPAT") < 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"consumer did not subscribe (exit code {proc.poll()})")
        time.sleep(0.02)


def wait_unsubscribed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while redis_int(port, "PUBSUB", "NUMPAT") > 0 and time.monotonic() < deadline:
        time.sleep(0.02)


def run_publisher(port: int, n: int, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "_publish", "--port", str(port), "--n", str(n), "--batch", str(batch)],
        capture_output=True,
        check=True,
        timeout=300,
    )
    result = json.loads(out.stdout)
    if result["receivers"] != n:
        raise RuntimeError(f"publisher reached {result['receivers']} receivers for {n} messages, not {n}")
    return result


def count_journal(path: Path) -> int:
    frames = 0
    with open(path, "rb") as fh:
        for line in fh:
            event = json.loads(line)
            if event["kind"] == "fanout_tap_batch":
                frames += len(event["rows"])
    return frames


def one_run(
    consumer: str, port: int, n: int, batch: int, mode: str, work: Path, rep: int
) -> dict[str, float]:
    journal = work / f"ours-{mode}-{rep}.jsonl"
    if consumer == "ours":
        argv = [sys.executable, __file__, "_consume", "--port", str(port), "--n", str(n)]
        argv += ["--journal", str(journal)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        counter = None
    else:
        argv = ["redis-cli", "-p", str(port), "psubscribe", PATTERN]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        counter = CliCounter(proc, n)
    try:
        wait_subscribed(port, proc)
        if mode == "backlog":
            proc.send_signal(signal.SIGSTOP)
        pub = run_publisher(port, n, batch)
        if mode == "backlog":
            proc.send_signal(signal.SIGCONT)
        if counter is not None:
            if not counter.done.wait(timeout=300):
                raise RuntimeError(f"redis-cli read {counter.count} of {n} messages")
            count, first, last = counter.count, counter.first, counter.last
            frames_in_journal = None
        else:
            stdout, stderr = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"our consumer failed:\n{stderr.decode()[-2000:]}")
            result = json.loads(stdout)
            count, first, last = int(result["count"]), result["first"], result["last"]
            frames_in_journal = count_journal(journal)
            journal.unlink()
        if count != n:
            raise RuntimeError(f"{consumer} received {count} of {n} messages")
        return {
            "rate": (n - 1) / (last - first) if last > first else float("nan"),
            "seconds": last - first,
            "publish_rate": n / pub["seconds"],
            "avg_payload": pub["avg_payload"],
            "journal_frames": frames_in_journal if frames_in_journal is not None else -1,
        }
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        wait_unsubscribed(port)


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """A throwaway redis-server (the lab's own argv: loopback, no persistence) on a free port."""
    from rollback_tui.lab.bus import ping_sync, redis_server_argv
    from rollback_tui.lab.proc import free_port

    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        sys.exit("this benchmark needs redis-server and redis-cli on PATH")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    kind = next((f"redis-server {w[2:]}" for w in version if w.startswith("v=")), "redis-server")
    for _ in range(3):
        port = free_port()
        log = open(work / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(redis_server_argv(binary, port, work), stdout=log, stderr=log)
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            if ping_sync(port):
                return proc, port, kind
            time.sleep(0.03)
        proc.kill()
        proc.wait()
    sys.exit(f"redis-server did not start; see {work / 'redis.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="frames per run (default 200000)")
    parser.add_argument("--reps", type=int, default=3, help="runs per consumer and mode; median kept")
    parser.add_argument("--mode", choices=["backlog", "live", "both"], default="both")
    parser.add_argument("--batch", type=int, default=1000, help="PUBLISH commands per pipeline write")
    args = parser.parse_args()
    modes = ["backlog", "live"] if args.mode == "both" else [args.mode]

    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    redis, port, kind = start_redis(work)
    try:
        redis_call(port, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0")
        print(f"{kind} on 127.0.0.1:{port} (temp dir, --save '')")
        print("CONFIG SET client-output-buffer-limit 'pubsub 0 0 0' (no slow-consumer disconnect)")
        print(f"{args.n:,} frames per run, {args.reps} runs per consumer and mode, pipeline {args.batch}\n")
        verdicts = []
        for mode in modes:
            results: dict[str, list[dict[str, float]]] = {"ours": [], "redis-cli": []}
            rows: list[list[object]] = [["mode", "rep", "consumer", "msgs/s", "seconds", "publisher msgs/s"]]
            for rep in range(1, args.reps + 1):
                for consumer in ("redis-cli", "ours"):
                    r = one_run(consumer, port, args.n, args.batch, mode, work, rep)
                    results[consumer].append(r)
                    if consumer == "ours" and r["journal_frames"] != args.n:
                        sys.exit(f"journal holds {r['journal_frames']} tapped frames, not {args.n}")
                    rate, secs, pub = f"{r['rate']:,.0f}", f"{r['seconds']:.2f}", f"{r['publish_rate']:,.0f}"
                    rows.append([mode, rep, consumer, rate, secs, pub])
            print(table(rows))
            ours = median([r["rate"] for r in results["ours"]])
            cli = median([r["rate"] for r in results["redis-cli"]])
            ratio = ours / cli
            payload = results["ours"][0]["avg_payload"]
            print(
                f"\n[{mode}] median msgs/s: ours {ours:,.0f}, redis-cli {cli:,.0f}, ratio {ratio:.2f}x "
                f"(target >= {TARGET_RATIO}x)"
            )
            print(f"[{mode}] journal: {args.n:,} tapped frames in every run; avg payload {payload:.0f} B\n")
            verdicts.append((mode, ratio))
        for mode, ratio in verdicts:
            print(f"{mode}: {'PASS' if ratio >= TARGET_RATIO else 'MISS'} ({ratio:.2f}x)")
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def child_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["_publish", "_consume"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--journal", type=Path)
    parser.add_argument("--mirror", help="mirror the journal to this Redis URL (bench/mirror.py)")
    args = parser.parse_args()
    if args.role == "_publish":
        result = publish(args.port, args.n, args.batch)
    else:
        url = f"redis://127.0.0.1:{args.port}/0"
        result = asyncio.run(consume_ours(url, args.n, args.journal, args.mirror))
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        child_main()
    else:
        main()
