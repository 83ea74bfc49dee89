"""Readiness: whether what each playbook item needs (core/readiness.py) is here — checked, never used.

Every distinct need is checked once, all of them concurrently, each within `timeout_s`: a variable is
set (its value is never read out), a program is on PATH, an SSH host's key is in known_hosts (or pinned),
a kube context is in the kubeconfig and its API server accepts connections, a host name resolves (through
the event loop's resolver), a host:port accepts a TCP connection (closed at once: nothing is sent, so no
secret travels). An item is ready when all its needs are; a step or guardrail when its items are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncssh
import yaml

from rollback_tui.core import events as ev
from rollback_tui.core.read.readiness import need_text
from rollback_tui.core.readiness import ItemNeeds, Need, host_port, readiness_items
from rollback_tui.exec.commands import CONSOLE_SCRIPT, this_installation
from rollback_tui.playbook.model import Playbook
from rollback_tui.playbook.secrets import MissingVariable, resolve

TIMEOUT_S = 3.0
MAX_CONCURRENT = 32  # connections and lookups in flight at once
Check = Callable[[Need, "Checker"], Awaitable[ev.NeedStatus]]


def _status(need: Need, ok: bool, status: str, why: str) -> ev.NeedStatus:
    return ev.NeedStatus(need=need.kind, target=need.target, ok=ok, status=status, why=why)


class Checker:
    def __init__(self, playbook: Playbook, environ: Mapping[str, str], timeout_s: float) -> None:
        self.playbook, self.environ, self.timeout_s = playbook, environ, timeout_s
        self._slots = asyncio.Semaphore(MAX_CONCURRENT)

    def resolved(self, need: Need, value: str) -> str:
        """`value` with its `${VAR}` references filled (raises MissingVariable)."""
        return resolve(value, self.environ, need.label)[0]

    async def check(self, need: Need) -> ev.NeedStatus:
        try:
            async with self._slots:
                return await _CHECKS[need.kind](need, self)
        except MissingVariable as exc:  # the variable's own need says it is missing
            return _status(need, False, "unknown", f"not checked: {exc.name} is not set")

    async def resolve_host(self, host: str) -> list[Any]:
        """The addresses of `host`, through the event loop's resolver, within the timeout."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout_s):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(info[4][0] for info in infos))

    async def connect(self, host: str, port: int) -> tuple[bool, str]:
        """Whether some address of host accepts a TCP connection on port (closed at once, nothing sent)."""
        started = time.monotonic()
        try:
            addresses = await self.resolve_host(host)
        except (OSError, TimeoutError):
            return False, f"not checked: {host} does not resolve"
        error: BaseException | None = None
        for address in addresses:  # localhost may be ::1 and 127.0.0.1: any one that answers will do
            remaining = self.timeout_s - (time.monotonic() - started)
            try:
                async with asyncio.timeout(max(remaining, 0.05)):
                    _, writer = await asyncio.open_connection(address, port)
            except (OSError, TimeoutError) as exc:
                error = exc
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True, f"connected to {address}:{port} in {(time.monotonic() - started) * 1000:.0f} ms"
        return False, _why(error, self.timeout_s) if error else "no address"


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


# --- one check per kind of need -------------------------------------------------------------------


async def _env(need: Need, c: Checker) -> ev.NeedStatus:
    if need.target in c.environ:
        return _status(need, True, "present", "set (value not shown)")
    return _status(need, False, "missing", "not set in this environment")


async def _binary(need: Need, c: Checker) -> ev.NeedStatus:
    program = c.resolved(need, need.target)
    if program == CONSOLE_SCRIPT:  # runs as this very installation, whatever PATH says
        return _status(need, True, "present", f"this installation ({' '.join(this_installation([program]))})")
    if "/" in program:
        path = Path(c.resolved(need, need.cwd or ".")) / program
        found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
    else:
        found = shutil.which(program, path=c.environ.get("PATH", os.defpath))
    if found:
        return _status(need, True, "present", found)
    return _status(need, False, "missing", "not an executable file" if "/" in program else "not on PATH")


async def _file(need: Need, c: Checker) -> ev.NeedStatus:
    path = Path(c.resolved(need, need.target)).expanduser()
    if path.is_file():
        return _status(need, True, "present", str(path))
    return _status(need, False, "missing", f"{path} not found")


async def _known_hosts(need: Need, c: Checker) -> ev.NeedStatus:
    host = next(h for h in c.playbook.hosts if h.name == need.target)
    if host.host_key_pin:
        return _status(need, True, "pinned", f"host key pinned to {host.host_key_pin}")
    path = Path(host.known_hosts or "~/.ssh/known_hosts").expanduser()
    address = f"{host.host}:{host.port}"
    if not path.is_file():
        return _status(need, False, "missing", f"{path} not found: no key for {address} can be verified")
    try:
        matched = asyncssh.read_known_hosts(str(path)).match(host.host, host.host, host.port)
    except (OSError, ValueError) as exc:
        return _status(need, False, "missing", f"{path} unreadable: {exc}")
    if matched[0] or matched[1]:  # host keys, or a CA that signs them
        return _status(need, True, "present", f"{address} listed in {path}")
    return _status(need, False, "missing", f"{address} not in {path} (add its key, or set host_key_pin)")


async def _host(need: Need, c: Checker) -> ev.NeedStatus:
    host = c.resolved(need, need.target)
    try:
        addresses = await c.resolve_host(host)
    except (OSError, TimeoutError) as exc:
        return _status(need, False, "unresolvable", _why(exc, c.timeout_s))
    shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if len(addresses) > 3 else "")
    return _status(need, True, "resolvable", shown)


async def _tcp(need: Need, c: Checker) -> ev.NeedStatus:
    host, port = host_port(c.resolved(need, need.target))
    if not port.isdigit():
        return _status(need, False, "unknown", f"not checked: port {port!r} is not a number")
    ok, why = await c.connect(host, int(port))
    return _status(need, ok, "reachable" if ok else "unreachable", why)


async def _kube_context(need: Need, c: Checker) -> ev.NeedStatus:
    wanted = c.resolved(need, need.target)
    configs = _kubeconfigs(c.environ)
    docs = [doc for path in configs if isinstance(doc := _load_yaml(path), dict)]
    if not docs:
        return _status(need, False, "missing", f"no kubeconfig at {os.pathsep.join(map(str, configs))}")
    name = wanted or next((d["current-context"] for d in docs if d.get("current-context")), "")
    context = _named(docs, "contexts", name)
    if not name or context is None:
        return _status(need, False, "missing", f"no context {name or '(current)'} in the kubeconfig")
    cluster = _named(docs, "clusters", str(context.get("cluster", "")))
    server = str(cluster.get("server", "")) if cluster else ""
    host, port = host_port(server.split("://", 1)[-1].split("/", 1)[0])
    if not host:
        return _status(need, False, "missing", f"context {name}: no cluster server in the kubeconfig")
    ok, why = await c.connect(host, int(port) if port.isdigit() else 443)
    why = f"context {name}, API server {server}: {why}"
    return _status(need, ok, "reachable" if ok else "unreachable", why)


def _kubeconfigs(environ: Mapping[str, str]) -> list[Path]:
    listed = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    home = environ.get("HOME") or str(Path.home())
    return [Path(p).expanduser() for p in listed] or [Path(home) / ".kube" / "config"]


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None


def _named(docs: list[dict[str, Any]], section: str, name: str) -> dict[str, Any] | None:
    """The `section` entry called `name` (its inner mapping), first kubeconfig first, as kubectl merges."""
    for doc in docs:
        for entry in doc.get(section) or []:
            if isinstance(entry, dict) and entry.get("name") == name:
                inner = entry.get(section[:-1])
                return inner if isinstance(inner, dict) else {}
    return None


_CHECKS: dict[str, Check] = {
    "env": _env,
    "binary": _binary,
    "file": _file,
    "known_hosts": _known_hosts,
    "kube_context": _kube_context,
    "host": _host,
    "tcp": _tcp,
}


# --- items ------------------------------------------------------------------------------------------


async def check_readiness(
    playbook: Playbook, *, environ: Mapping[str, str] | None = None, timeout_s: float = TIMEOUT_S
) -> ev.ReadinessChecked:
    """Check every item's needs from here (concurrently, each bounded by `timeout_s`)."""
    started = time.monotonic()
    checker = Checker(playbook, os.environ if environ is None else environ, timeout_s)
    items = readiness_items(playbook)
    direct = list(dict.fromkeys(n for item in items for n in item.needs if n.kind != "item"))
    checked = dict(zip(direct, await asyncio.gather(*(checker.check(n) for n in direct)), strict=True))
    by_label = {item.label: item for item in items}
    done: dict[str, ev.ItemReadiness] = {}
    for item in items:
        _item_readiness(item, by_label, checked, done)
    return ev.ReadinessChecked(
        host=socket.gethostname(),
        items=[done[item.label] for item in items],
        duration_s=round(time.monotonic() - started, 3),
    )


def _item_readiness(
    item: ItemNeeds,
    by_label: Mapping[str, ItemNeeds],
    checked: Mapping[Need, ev.NeedStatus],
    done: dict[str, ev.ItemReadiness],
) -> ev.ItemReadiness:
    """An item's needs; an `item` need is ready when that item is (steps use items, never each other)."""
    if item.label in done:
        return done[item.label]
    needs = []
    for need in item.needs:
        if need.kind != "item":
            needs.append(checked[need])
            continue
        used = by_label.get(need.target)
        if used is None:
            needs.append(_status(need, False, "missing", "this playbook has none"))
            continue
        sub = _item_readiness(used, by_label, checked, done)
        why = "; ".join(need_text(n) for n in sub.needs if not n.ok)
        needs.append(_status(need, sub.ready, "ready" if sub.ready else "not ready", why))
    done[item.label] = ev.ItemReadiness(item=item.item, name=item.name, needs=needs)
    return done[item.label]
