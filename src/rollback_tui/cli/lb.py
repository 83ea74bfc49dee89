"""`rollback-tui lb …`: load-balancer helpers for the `command` traffic-control driver.

They ship with the console script, so a playbook's argv starts with `rollback-tui` and never depends on
which python comes first on PATH (run locally, `rollback-tui` is this very installation). Each `state`
prints the routing state as the driver reads it; each change prints what it did and exits non-zero, with
the reason on stderr, when it could not.

    rollback-tui lb haproxy state SOCKET BACKEND
    rollback-tui lb haproxy drain SOCKET BACKEND SERVER[,SERVER…] [SERVER…]
    rollback-tui lb haproxy weight SOCKET BACKEND SERVER WEIGHT
    rollback-tui lb nginx state DIR
    rollback-tui lb nginx use SET DIR [--nginx BIN] [--conf FILE] [--prefix DIR] [--pid FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from rollback_tui.cli.common import Output


def _say(text: str) -> None:
    Output().line(text)


def _fail(message: str) -> None:
    Output().line(message, err=True)
    sys.exit(1)


@click.group("lb")
def lb() -> None:
    """Load-balancer helpers for traffic_control commands (HAProxy runtime API, nginx upstream swap)."""


@lb.group()
def haproxy() -> None:
    """HAProxy through its runtime API (an admin-level `stats socket`: a path, or host:port)."""


@haproxy.command("state")
@click.argument("socket")
@click.argument("backend")
def haproxy_state(socket: str, backend: str) -> None:
    """Print {"weights": {server: weight}, "backends": [servers UP with weight > 0]}."""
    from rollback_tui.actions.haproxy_runtime import servers_state

    try:
        _say(json.dumps(servers_state(socket, backend)))
    except (OSError, RuntimeError) as exc:
        _fail(f"haproxy runtime API at {socket}: {exc}")


def _set_weights(socket: str, backend: str, pairs: list[tuple[str, str]]) -> None:
    from rollback_tui.actions.haproxy_runtime import set_weight

    for server, weight in pairs:
        try:
            set_weight(socket, backend, server, weight)
        except (OSError, RuntimeError) as exc:
            _fail(f"haproxy runtime API at {socket}: {exc}")
        _say(f"{backend}/{server} weight {weight}")


@haproxy.command("drain")
@click.argument("socket")
@click.argument("backend")
@click.argument("servers", nargs=-1, required=True)
def haproxy_drain(socket: str, backend: str, servers: tuple[str, ...]) -> None:
    """Weight 0 for each server (`{replicas}` is a comma-separated list): new traffic stops."""
    names = [name for arg in servers for name in arg.split(",") if name]
    _set_weights(socket, backend, [(name, "0") for name in names])


@haproxy.command("weight")
@click.argument("socket")
@click.argument("backend")
@click.argument("server")
@click.argument("weight", type=click.IntRange(0, 256))
def haproxy_weight(socket: str, backend: str, server: str, weight: int) -> None:
    """Set one server's weight (0-256), e.g. to restore it."""
    _set_weights(socket, backend, [(server, str(weight))])


@lb.group()
def nginx() -> None:
    """nginx by swapping the included upstream set and reloading (see DIR's layout in docs/cookbook.md)."""


@nginx.command("state")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def nginx_state(directory: Path) -> None:
    """Print {"set": active set, "weights": {replica: weight}, "backends": [replicas]}."""
    from rollback_tui.actions.nginx_upstream import state

    try:
        _say(json.dumps(state(directory)))
    except (OSError, ValueError) as exc:
        _fail(f"nginx upstreams in {directory}: {exc}")


@nginx.command("use")
@click.argument("name")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--nginx", "binary", default="nginx", show_default=True, help="The nginx binary.")
@click.option("--conf", help="nginx -c: the configuration file nginx runs with.")
@click.option("--prefix", help="nginx -p: the prefix nginx runs with.")
@click.option("--pid", "pid_file", help="The master's pid file: wait until the new workers serve.")
@click.option("--wait", "wait_s", type=float, default=10.0, show_default=True, help="Seconds to wait.")
def nginx_use(
    name: str,
    directory: Path,
    binary: str,
    conf: str | None,
    prefix: str | None,
    pid_file: str | None,
    wait_s: float,
) -> None:
    """Make upstream set NAME (DIR/NAME.conf) the active one, check it with nginx -t, reload nginx."""
    from rollback_tui.actions.nginx_upstream import Nginx, NginxError, use

    try:
        was = use(directory, name, Nginx(binary, conf, prefix, pid_file), wait_s)
    except (NginxError, OSError) as exc:
        _fail(f"nginx upstream swap to {name}: {exc}")
    _say(f"nginx upstream set {name} active (was {was})")
