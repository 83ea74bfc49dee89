"""Small helpers shared by the benchmarks (not part of the package)."""

from __future__ import annotations

import argparse
import socket
import statistics
from collections.abc import Sequence


def resp_command(*args: str | bytes) -> bytes:
    """One Redis command in RESP (the wire format every client speaks)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def redis_call(port: int, *args: str, host: str = "127.0.0.1", timeout: float = 5.0) -> bytes:
    """Send one command and return its raw reply (enough for CONFIG SET / PUBSUB NUMPAT / INFO)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(resp_command(*args))
        reply = sock.recv(65536)
        if reply.startswith(b"$"):  # a bulk string: read until the announced length has arrived
            head, _, body = reply.partition(b"\r\n")
            length = int(head[1:])
            while length >= 0 and len(body) < length + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return body[:length] if length >= 0 else b""
        return reply.rstrip(b"\r\n")


def redis_int(port: int, *args: str) -> int:
    """A command whose reply is an integer, or an array whose last element is one (PUBSUB NUMPAT)."""
    reply = redis_call(port, *args)
    return int(reply.split(b"\r\n")[-1].lstrip(b":"))


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned text table; the first row is the header."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_fault_run_options(parser: argparse.ArgumentParser) -> None:
    """The options of a timed fault run (rto.one_run, which false_alarms reuses): the synthetic traffic,
    the fault injected on blue-next, and whether a missed target fails the benchmark."""
    parser.add_argument("--rps", type=float, help="synthetic requests/s (default: the playbook's rate)")
    parser.add_argument("--traffic-window", type=float, default=1.0, help="seconds per TrafficWindow")
    parser.add_argument("--error-rate", type=float, default=0.25, help="5xx share injected on blue-next")
    parser.add_argument("--latency-ms", type=int, default=150, help="latency added on blue-next")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
