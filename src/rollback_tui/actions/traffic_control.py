"""Traffic-control drivers: read and change which replicas the load balancer routes to.

* `lab`     — the embedded lab balancer's admin endpoint (`GET /admin/state`, `PUT /admin/selector`).
* `command` — argv templates run locally or over SSH, for the real world. Placeholders are filled per
  argument (never through a shell): {selector_json}, {replicas}, {replica_set}. Examples:
    kubectl  remove: [kubectl, patch, service, api, --type=merge,
                      -p, '{"spec":{"selector":{selector_json}}}']
             read:   [kubectl, get, service, api, -o, "jsonpath={.spec.selector}"]
    HAProxy  remove: shell: true, run: "echo 'set server api/blue-next weight 0'
                                        | socat stdio /run/haproxy/admin.sock"
             read:   a script printing {"weights": {...}, "backends": [...]}
    nginx    remove: a script that swaps the upstream include and runs `nginx -s reload`
  The `read` command prints a JSON object: the selector itself (`{"app": "api", "track": "stable"}`, as
  kubectl does) or `{"selector": {...}, "weights": {...}, "backends": [...]}`.
Every driver reads the resulting state back after changing it; that read-back is what gets journaled.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from rollback_tui.exec.commands import fill
from rollback_tui.playbook.model import CommandSpec, Playbook, Replica


class TrafficControlError(Exception):
    """The driver could not read or change the routing; the message is shown to the operator."""


@dataclass
class RoutingState:
    selector: dict[str, str]
    weights: dict[str, int] = field(default_factory=dict)
    backends: list[str] = field(default_factory=list)  # replicas currently receiving traffic

    def as_dict(self) -> dict[str, Any]:
        return {"selector": self.selector, "weights": self.weights, "backends": self.backends}


class Driver(Protocol):
    name: str

    async def read(self) -> RoutingState: ...

    async def remove(self, replicas: list[str]) -> RoutingState: ...

    async def set_selector(self, selector: dict[str, str]) -> RoutingState: ...


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def selector_without(replicas: list[Replica], selector: dict[str, str], remove: list[str]) -> dict[str, str]:
    """Narrow `selector` with one label every kept replica has and no removed one has."""
    kept = [r for r in replicas if r.name not in remove and matches(r.labels, selector)]
    gone = [r for r in replicas if r.name in remove]
    if not kept:
        raise TrafficControlError("removing those replicas would leave the selector matching nothing")
    if not any(matches(r.labels, selector) for r in gone):
        return dict(selector)  # already removed: pressing twice does no harm
    for key, value in sorted(kept[0].labels.items()):
        if key in selector:
            continue
        if all(r.labels.get(key) == value for r in kept) and all(r.labels.get(key) != value for r in gone):
            return {**selector, key: value}
    names = ", ".join(r.name for r in gone)
    raise TrafficControlError(f"no label separates {names} from the replicas that stay; add one (e.g. track)")


class LabDriver:
    name = "lab"

    def __init__(self, playbook: Playbook, timeout_s: float = 5.0) -> None:
        assert playbook.load_balancer is not None
        tc = playbook.load_balancer.traffic_control
        if not tc.admin_url:
            raise TrafficControlError("traffic_control.admin_url is not set")
        self.admin = tc.admin_url.rstrip("/")
        self.replicas = playbook.replicas
        self.timeout = timeout_s

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> RoutingState:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.request(method, self.admin + path, json=body)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise TrafficControlError(f"balancer admin {self.admin} unreachable: {reason}") from exc
        if response.status_code >= 400:
            detail = response.text[:200]
            raise TrafficControlError(f"balancer admin answered HTTP {response.status_code}: {detail}")
        return parse_state(response.text)

    async def read(self) -> RoutingState:
        return await self._call("GET", "/admin/state")

    async def set_selector(self, selector: dict[str, str]) -> RoutingState:
        await self._call("PUT", "/admin/selector", {"selector": selector})
        return await self.read()

    async def remove(self, replicas: list[str]) -> RoutingState:
        current = await self.read()
        return await self.set_selector(selector_without(self.replicas, current.selector, replicas))


Runner = Callable[[CommandSpec, dict[str, str]], Awaitable[tuple[int, str, str]]]


def command_runner(playbook: Playbook) -> Runner:
    """Run through the gate runner's executions: locally or over SSH (`where:`), bounded, group-killed."""
    from rollback_tui.exec.supervise import run_capture

    async def run(spec: CommandSpec, values: dict[str, str]) -> tuple[int, str, str]:
        result = await run_capture(fill(spec, values), playbook)
        if result.outcome in ("error", "timed_out", "cancelled"):
            raise TrafficControlError(result.error or result.outcome)
        return result.exit_code or 0, result.stdout, result.stderr

    return run


class CommandDriver:
    name = "command"

    def __init__(self, playbook: Playbook, runner: Runner | None = None) -> None:
        assert playbook.load_balancer is not None
        self.lb = playbook.load_balancer
        self.tc = playbook.load_balancer.traffic_control
        self.replicas = playbook.replicas
        self.runner = runner or command_runner(playbook)

    async def _run(self, spec: CommandSpec | None, what: str, values: dict[str, str]) -> str:
        if spec is None:
            raise TrafficControlError(f"traffic_control has no {what} command")
        code, out, err = await self.runner(spec, values)
        if code != 0:
            raise TrafficControlError(f"{what} command exited {code}: {(err or out).strip()[-300:]}")
        return out

    async def read(self) -> RoutingState:
        state = parse_state(await self._run(self.tc.read, "read", {}))
        if not state.backends:
            state.backends = [r.name for r in self.replicas if matches(r.labels, state.selector)]
        return state

    async def set_selector(self, selector: dict[str, str]) -> RoutingState:
        spec = self.tc.restore
        await self._run(spec, "restore", {"selector_json": json.dumps(selector)})
        return await self.read()

    async def remove(self, replicas: list[str]) -> RoutingState:
        values = {"replicas": ",".join(replicas), "replica_set": replicas[0]}
        spec = self.tc.remove
        if spec is not None and "{selector_json}" in " ".join(spec.argv or []):
            # kubectl-style: the new selector is computed from labels (weights-based drivers don't need it)
            current = await self.read()
            selector = selector_without(self.replicas, current.selector, replicas)
            values["selector_json"] = json.dumps(selector, separators=(",", ":"))
        await self._run(self.tc.remove, "remove", values)
        return await self.read()


def parse_state(text: str) -> RoutingState:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TrafficControlError(f"routing state is not JSON: {text.strip()[:120]!r}") from exc
    if not isinstance(doc, dict):
        raise TrafficControlError("routing state must be a JSON object")
    if not {"selector", "weights", "backends"} & doc.keys():
        doc = {"selector": doc}  # kubectl prints the bare selector
    selector = {str(k): str(v) for k, v in (doc.get("selector") or {}).items()}
    weights = {str(k): int(v) for k, v in (doc.get("weights") or {}).items()}
    return RoutingState(selector, weights, [str(b) for b in doc.get("backends") or []])


def make_driver(playbook: Playbook, runner: Runner | None = None) -> Driver:
    if playbook.load_balancer is None:
        raise TrafficControlError("the playbook has no load_balancer section")
    if playbook.load_balancer.traffic_control.driver == "lab":
        return LabDriver(playbook)
    return CommandDriver(playbook, runner)
