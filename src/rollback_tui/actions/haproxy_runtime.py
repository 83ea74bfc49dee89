"""Tiny HAProxy runtime-API client for the `command` traffic-control driver (stdlib only).

In a playbook, use it as `rollback-tui lb haproxy …` (the installed console script: no dependence on which
python is first on PATH). The module form still works where rollback_tui is importable:

    python -m rollback_tui.actions.haproxy_runtime SOCKET state BACKEND
        prints {"weights": {server: weight}, "backends": [servers with weight > 0 and UP]}
    python -m rollback_tui.actions.haproxy_runtime SOCKET drain BACKEND SERVER [SERVER…]
        sets each server's weight to 0 (new traffic stops; the server stays defined)
    python -m rollback_tui.actions.haproxy_runtime SOCKET weight BACKEND SERVER WEIGHT

SOCKET is the admin-level `stats socket` path (or host:port). Used as argv, so no shell is involved.
"""

from __future__ import annotations

import json
import socket
import sys


def ask(address: str, command: str, timeout_s: float = 5.0) -> str:
    if ":" in address and not address.startswith("/"):
        host, port = address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        sock.connect(address)
    with sock:
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def servers_state(address: str, backend: str) -> dict[str, object]:
    """Parse `show servers state BACKEND` (format version 1)."""
    text = ask(address, f"show servers state {backend}")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    if not lines or not lines[0].strip().isdigit():
        raise RuntimeError(f"unexpected answer from HAProxy: {text.strip()[:200]}")
    weights: dict[str, int] = {}
    live: list[str] = []
    for line in lines[1:]:
        cols = line.split()
        # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight …
        name, op_state, admin_state, weight = cols[3], int(cols[5]), int(cols[6]), int(cols[7])
        weights[name] = weight
        if weight > 0 and op_state == 2 and admin_state == 0:
            live.append(name)
    return {"weights": weights, "backends": live}


def set_weight(address: str, backend: str, server: str, weight: str) -> None:
    """`set server BACKEND/SERVER weight W`; HAProxy answers nothing on success, else why not."""
    answer = ask(address, f"set server {backend}/{server} weight {weight}").strip()
    if answer:
        raise RuntimeError(f"{server}: {answer}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    address, verb, backend, *rest = args
    try:
        if verb == "state":
            print(json.dumps(servers_state(address, backend)))
            return 0
        if verb == "drain" and rest:
            pairs = [(server, "0") for server in rest]
        elif verb == "weight" and len(rest) == 2:
            pairs = [(rest[0], rest[1])]
        else:
            print(__doc__, file=sys.stderr)
            return 2
        for server, weight in pairs:
            set_weight(address, backend, server, weight)
            print(f"{backend}/{server} weight {weight}")
        return 0
    except (OSError, RuntimeError) as exc:
        print(f"haproxy runtime API at {address}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
