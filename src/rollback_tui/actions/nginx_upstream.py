"""nginx upstream swap for the `command` traffic-control driver (stdlib only; `rollback-tui lb nginx`).

The nginx configuration includes one file of upstream servers, `DIR/active.conf`; the other `DIR/*.conf`
files are the sets it can switch between (e.g. `all.conf` with the candidate, `stable.conf` without):

    upstream api { include /etc/nginx/upstreams/api/active.conf; }

    # stable.conf — one server per line; the comment names the replica as the playbook does
    server 10.0.0.11:8080 weight=45;  # stable-a
    server 10.0.0.12:8080 weight=45;  # stable-b

`use SET` copies SET.conf over active.conf (atomically), checks the configuration with `nginx -t` (and puts
the previous file back if nginx refuses it), reloads nginx (`nginx -s reload`) and, given the master's pid
file, waits until every worker serving new connections runs the new configuration. `state` prints the
routing state as the driver reads it: {"set": …, "weights": {replica: weight}, "backends": [replicas]}.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACTIVE = "active.conf"
_SERVER = re.compile(r"^\s*server\s+(?P<addr>\S+?)(?P<params>(?:\s+[^;#]+?)?)\s*;\s*(?:#\s*(?P<name>\S+))?")


class NginxError(Exception):
    """The swap could not be made; the message says why (nginx's own words when it refused)."""


@dataclass(frozen=True)
class Nginx:
    """How to run this nginx: its binary and the -c/-p it was started with, and its pid file."""

    binary: str = "nginx"
    conf: str | None = None
    prefix: str | None = None
    pid_file: str | None = None

    def argv(self, *args: str) -> list[str]:
        out = [self.binary]
        if self.prefix:
            out += ["-p", self.prefix]
        if self.conf:
            out += ["-c", self.conf]
        return [*out, *args]

    def run(self, *args: str) -> None:
        try:
            done = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=30, check=False)
        except FileNotFoundError:
            raise NginxError(f"{self.binary} not found") from None
        if done.returncode != 0:
            raise NginxError(f"nginx {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-400:]}")


def servers(text: str) -> dict[str, int]:
    """Replica (the line's comment, else its address) → weight; `down` and `backup` servers weigh 0."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        match = _SERVER.match(line)
        if not match:
            continue
        params = match.group("params").split()
        weight = next((int(p.split("=", 1)[1]) for p in params if p.startswith("weight=")), 1)
        if "down" in params or "backup" in params:
            weight = 0
        out[match.group("name") or match.group("addr")] = weight
    return out


def state(directory: Path) -> dict[str, object]:
    active = (directory / ACTIVE).read_text()
    named = next(
        (p.stem for p in sorted(directory.glob("*.conf")) if p.name != ACTIVE and p.read_text() == active),
        None,
    )
    weights = servers(active)
    return {"set": named, "weights": weights, "backends": [name for name, w in weights.items() if w > 0]}


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".active-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def use(directory: Path, name: str, nginx: Nginx, wait_s: float = 10.0) -> str:
    """Make SET `name` the active upstream set and reload nginx; returns what was active before."""
    wanted = directory / f"{name}.conf"
    if name == ACTIVE.removesuffix(".conf") or not wanted.is_file():
        known = sorted(p.stem for p in directory.glob("*.conf") if p.name != ACTIVE)
        raise NginxError(f"no upstream set {name!r} in {directory} (known: {', '.join(known) or 'none'})")
    active = directory / ACTIVE
    previous = active.read_text() if active.exists() else ""
    was = state(directory)["set"] if previous else None
    _write_atomically(active, wanted.read_text())
    try:
        nginx.run("-t")
    except NginxError:
        _write_atomically(active, previous)
        raise
    old = _workers(nginx.pid_file)
    nginx.run("-s", "reload")
    if nginx.pid_file:
        _wait_for_new_workers(nginx.pid_file, old, wait_s)
    return str(was)


def _master(pid_file: str | None) -> int | None:
    if not pid_file:
        return None
    try:
        return int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _workers(pid_file: str | None) -> dict[int, str]:
    """The master's worker processes (pid → command line), read from /proc."""
    master = _master(pid_file)
    if master is None:
        return {}
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == master and "worker process" in cmdline:
            found[int(entry)] = cmdline
    return found


def _wait_for_new_workers(pid_file: str, old: dict[int, str], wait_s: float) -> None:
    """A reload is asynchronous: new workers start with the new configuration, old ones stop accepting
    and finish what they serve ("worker process is shutting down"). Wait until no old worker accepts."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        now = _workers(pid_file)
        fresh = [pid for pid in now if pid not in old]
        accepting_old = [pid for pid, cmd in now.items() if pid in old and "shutting down" not in cmd]
        if fresh and not accepting_old:
            return
        time.sleep(0.02)
    raise NginxError(f"nginx did not start workers with the new configuration within {wait_s:g} s")
