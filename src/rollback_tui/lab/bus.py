"""The lab's Redis: a real `redis-server` on a free loopback port when one is installed, otherwise an
embedded fakeredis TCP server in a child process (`python -m rollback_tui.lab.bus --port N`).

`RedisBus.kind` says which one is in use, e.g. "redis-server 7.0.15".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Literal

from rollback_tui.lab.proc import Child, free_port

RedisMode = Literal["auto", "server", "embedded"]
EMBEDDED_KIND = "embedded fakeredis (install redis-server for the real thing)"
_PING = b"*1\r\n$4\r\nPING\r\n"


class BusError(RuntimeError):
    """Redis could not be started."""


def redis_server_argv(binary: str, port: int, data_dir: Path) -> list[str]:
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        "--daemonize", "no",
    ]  # fmt: skip


def ping_sync(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(_PING)
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


async def ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(_PING)
        await writer.drain()
        return (await asyncio.wait_for(reader.read(64), timeout)).startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def redis_server_version(binary: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        binary, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    match = re.search(rb"v=(\S+)", out)
    return match.group(1).decode() if match else "unknown version"


class RedisBus:
    """Start with `await bus.start()`, stop with `await bus.stop()`; `url` and `kind` once started."""

    def __init__(self, mode: RedisMode = "auto", *, log_dir: Path, port: int | None = None) -> None:
        if mode not in ("auto", "server", "embedded"):
            raise BusError(f"unknown redis mode {mode!r}: use auto, server or embedded")
        self.mode = mode
        self.log_dir = log_dir
        self.requested_port = port
        self.port = 0
        self.kind = ""
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, timeout_s: float = 5.0) -> None:
        binary = shutil.which("redis-server")
        if self.mode == "server" and binary is None:
            raise BusError("redis-server is not on PATH (use redis='embedded' or install redis-server)")
        use_server = binary is not None and self.mode != "embedded"
        for attempt in range(3):
            self.port = self.requested_port if self.requested_port and attempt == 0 else free_port()
            if use_server:
                assert binary is not None
                data_dir = self.log_dir / "redis-data"  # stays empty: persistence is off
                data_dir.mkdir(parents=True, exist_ok=True)
                argv = redis_server_argv(binary, self.port, data_dir)
                self.kind = f"redis-server {await redis_server_version(binary)}"
            else:
                argv = [sys.executable, "-m", "rollback_tui.lab.bus", "--port", str(self.port)]
                self.kind = EMBEDDED_KIND
            self.child = Child("redis", argv, self.log_dir / "redis.log")
            await self.child.start()
            if await self._wait_ready(timeout_s):
                return
            output = self.child.last_output()
            await self.stop()
            if "in use" not in output.lower():
                raise BusError(f"{self.kind} did not answer PING on port {self.port}; last output:\n{output}")
        raise BusError(f"could not find a free port for {self.kind} after 3 attempts")

    async def _wait_ready(self, timeout_s: float) -> bool:
        assert self.child is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await ping(self.port):
                return True
            if not self.child.running:
                return False
            await asyncio.sleep(0.03)
        return False

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()


def serve_embedded(port: int, host: str = "127.0.0.1") -> None:
    """Run fakeredis's TCP server in this process until SIGTERM."""
    import signal

    from fakeredis import TcpFakeServer

    TcpFakeServer.allow_reuse_address = True
    server = TcpFakeServer((host, port), server_type="redis")
    server.daemon_threads = True  # client threads must not keep the process alive

    def _stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server._shutdown_event.set()  # ends the per-client loops
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Embedded Redis (fakeredis) for the rollback-tui lab.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    serve_embedded(args.port, args.host)


if __name__ == "__main__":
    main()
