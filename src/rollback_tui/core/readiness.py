"""What each playbook item needs from the machine the session runs on — from the playbook alone, no I/O.

An item (a replica's health URL, the balancer, Redis, a probe, fact, gate, action, guardrail, runbook
check or step) needs:

* `env` — every `${VAR}` it references (playbook/secrets.py), resolved when it runs;
* `binary` — the program of a local command (argv[0]), on PATH or at its path;
* `known_hosts` / `file` / `host` / `tcp` — for a command run over SSH: the host's key in known_hosts (or
  a pin), its key file, its name resolving and its port accepting connections;
* `kube_context` — the context a kubectl/helm command names (`--context`, `KUBE_CONTEXT`), else the
  kubeconfig's current one;
* `host` / `tcp` — the host name of every URL it reaches from here, and its port;
* `file` — a key or certificate file it reads (an SSH key, a Prometheus server's TLS files);
* `item` — another item it runs through (a step its items, a guardrail or fact its probe, gate or
  Prometheus server, a check the replicas, balancer, Redis or guardrails it reads).

probes/readiness.py checks each need; core/read/readiness.py formats the journaled result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from rollback_tui.playbook.model import (
    CommandAction,
    CommandSpec,
    Fact,
    Guardrail,
    Playbook,
    Redeploy,
    SelectorRemoval,
    StabiliseFlags,
    StepItem,
)
from rollback_tui.playbook.secrets import ENV_REF

NeedKind = Literal["env", "binary", "file", "known_hosts", "kube_context", "host", "tcp", "item"]

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443, "redis": 6379, "rediss": 6379}
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.I)
KUBE_TOOLS = frozenset({"kubectl", "helm", "kubectx"})
_CONTEXT_FLAGS = ("--context", "--kube-context")
# Metrics read from the synthetic traffic through the balancer.
_TRAFFIC_METRICS = frozenset({"http_5xx_rate", "ws_disconnects", "idempotency_collisions", "p95_latency_ms"})


@dataclass(frozen=True)
class Need:
    kind: NeedKind
    target: str  # may hold `${VAR}` references, resolved from the environment when checked; tcp: host:port
    cwd: str | None = None  # binary: a relative path is looked up from here

    @property
    def label(self) -> str:
        """`env GITHUB_REPOSITORY`, `binary gh`, `tcp api.kezilu.com:443`, `gate smoke`."""
        if self.kind == "item":
            return self.target
        return f"{self.kind.replace('_', ' ')} {self.target or '(current)'}"


@dataclass(frozen=True)
class ItemNeeds:
    item: str  # replica | load_balancer | realtime | prometheus | probe | fact | gate | action | guardrail …
    name: str
    needs: tuple[Need, ...]

    @property
    def label(self) -> str:
        return f"{self.item} {self.name}"


def env_needs(*values: str) -> list[Need]:
    return [Need("env", name) for value in values for name in ENV_REF.findall(value)]


def url_needs(url: str) -> list[Need]:
    """The variables a URL references, its host name and its host:port (the scheme's port by default)."""
    needs = env_needs(url)
    parts = urlsplit(url)
    host, port = host_port(parts.netloc)
    port = port or str(DEFAULT_PORTS.get(parts.scheme.lower(), ""))
    if host:
        needs.append(Need("host", host))
        if port:
            needs.append(Need("tcp", f"{host}:{port}"))
    return needs


def host_port(netloc: str) -> tuple[str, str]:
    """(host, port) of `user:pw@host:port`, `[::1]:80` — as written: urlsplit would lowercase a
    `${VAR}` host and refuse a `${PORT}`."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, sep, port = hostport.rpartition(":")
    return (host, port) if sep else (hostport, "")


def command_needs(spec: CommandSpec, playbook: Playbook) -> list[Need]:
    """A command's needs. Over SSH the program and the URLs it reaches are the remote host's business:
    from here it needs the host (known key, key file, name, port) and the variables it sends."""
    argv = list(spec.argv or [])
    needs = env_needs(*argv, spec.cwd or "", *spec.env.values())
    if spec.where != "local":
        return needs + _ssh_needs(spec.where, playbook)
    program = "/bin/sh" if spec.shell else argv[0]
    if "{" not in program.replace("${", ""):  # a `{placeholder}` is filled only when it runs
        needs.append(Need("binary", program, cwd=spec.cwd if "/" in program else None))
    for value in [*argv, *spec.env.values()]:
        if _URL.match(value):
            needs += url_needs(value)
    context = kube_context(argv, spec.env)
    if context is not None:
        needs.append(Need("kube_context", context))
    return needs


def kube_context(argv: list[str], env: dict[str, str]) -> str | None:
    """The kube context a command uses: for kubectl/helm (also behind a wrapper such as `env`), its
    `--context X` / `--context=X`, else `KUBE_CONTEXT` in its env, else "" (the kubeconfig's current
    context); `KUBE_CONTEXT` in the env of any other command; None otherwise. (docker has a `--context`
    too: only a kube tool's counts.)"""
    if not {arg.rsplit("/", 1)[-1] for arg in argv} & KUBE_TOOLS:
        return env.get("KUBE_CONTEXT")
    for i, arg in enumerate(argv):
        for flag in _CONTEXT_FLAGS:
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return env.get("KUBE_CONTEXT", "")


def _ssh_needs(name: str, playbook: Playbook) -> list[Need]:
    host = next((h for h in playbook.hosts if h.name == name), None)
    if host is None:  # validation refuses this; say it rather than crash
        return [Need("item", f"host {name}")]
    needs = [Need("known_hosts", name)]
    if host.key_file:
        needs.append(Need("file", host.key_file))
    return [*needs, Need("host", host.host), Need("tcp", f"{host.host}:{host.port}")]


def _item(item: str, name: str, needs: Iterable[Need]) -> ItemNeeds:
    return ItemNeeds(item, name, tuple(dict.fromkeys(needs)))


def _ref(item: str, name: str) -> Need:
    return Need("item", f"{item} {name}")


def readiness_items(playbook: Playbook) -> list[ItemNeeds]:
    """Every item of the playbook with what it needs, in the playbook's order: what the feeds poll
    (replicas, balancer, Redis, probes), then facts, gates, actions, guardrails and the runbook steps."""
    return list(_items(playbook))


def _items(pb: Playbook) -> Iterator[ItemNeeds]:
    for replica in pb.replicas:  # what its health is read through
        health = replica.health_command
        yield _item("replica", replica.name, command_needs(health, pb) if health else url_needs(replica.url))
    lb = pb.load_balancer
    if lb is not None:
        control = lb.traffic_control
        needs = url_needs(lb.url) + env_needs(*lb.verify.headers.values())
        needs += url_needs(control.admin_url) if control.admin_url else []
        for spec in (control.read, control.remove, control.restore):
            needs += command_needs(spec, pb) if spec is not None else []
        yield _item("load_balancer", lb.name, needs)
    if pb.realtime is not None:
        fanout = pb.realtime.fanout
        headers = [*fanout.stream_headers.values(), *fanout.send_headers.values()]
        yield _item("realtime", "redis", url_needs(pb.realtime.redis_url) + env_needs(*headers))
    for server in pb.prometheus:
        auth = [server.bearer_token or "", server.basic_auth.password if server.basic_auth else ""]
        tls = [Need("file", f) for f in (server.tls.ca_file, server.tls.cert_file, server.tls.key_file) if f]
        needs = url_needs(server.url) + env_needs(*auth, *server.headers.values())
        yield _item("prometheus", server.name, needs + tls)
    for probe in pb.probes:
        yield _item("probe", probe.name, url_needs(probe.url) + env_needs(*probe.headers.values()))
    for fact in pb.facts:
        yield _item("fact", fact.name, _fact_needs(fact, pb))
    for gate in pb.gates:
        yield _item("gate", gate.name, command_needs(gate, pb))
    for action in pb.actions:
        yield _item("action", action.name, _action_needs(action, pb))
    for rail in pb.guardrails:
        yield _item("guardrail", rail.name, _guardrail_needs(rail, pb))
    for check in _checks(pb):  # an item of its own, as a gate is: a step's check item is marked by it
        yield _item("check", check, _check_needs(check, pb))
    for step in pb.steps:
        yield _item("step", step.name, [n for item in step.do for n in _step_item_needs(item, pb)])


def _fact_needs(fact: Fact, pb: Playbook) -> list[Need]:
    if fact.source == "health":
        return [_ref("replica", r.name) for r in pb.replicas if fact.replicas in ("all", r.role)]
    if fact.source == "http" and fact.url:
        return url_needs(fact.url)
    if fact.source == "command" and fact.command is not None:
        return command_needs(fact.command, pb)
    if fact.source == "env" and fact.env_var:
        return [Need("env", fact.env_var)]
    if fact.source == "prometheus":
        return [_prometheus(fact.server, pb)]
    return []  # manual: the operator records it


def _action_needs(action: object, pb: Playbook) -> list[Need]:
    if isinstance(action, SelectorRemoval):
        return [_ref("load_balancer", pb.load_balancer.name)] if pb.load_balancer else []
    specs: list[CommandSpec | None] = []
    if isinstance(action, Redeploy):
        specs = [action.prepare, *action.services.values()]
    elif isinstance(action, StabiliseFlags):
        specs = [action.command, action.verify]
    elif isinstance(action, CommandAction):
        specs = [action.command]
    return [n for spec in specs if spec is not None for n in command_needs(spec, pb)]


def _guardrail_needs(rail: Guardrail, pb: Playbook) -> list[Need]:
    if rail.metric in _TRAFFIC_METRICS:  # without a balancer there is no traffic to judge: not ready
        lb = pb.load_balancer
        return [_ref("load_balancer", lb.name) if lb else Need("item", "load_balancer")]
    if rail.metric in ("dead_letters_growth", "http_json") and rail.probe:
        return [_ref("probe", rail.probe)]
    if rail.metric == "query":
        return [_prometheus(rail.server, pb)]
    if rail.metric == "gate_failed" and rail.gate:
        return [_ref("gate", rail.gate)]
    if rail.metric == "health_failing":
        return [_ref("replica", r.name) for r in pb.replicas if rail.scope in ("all", r.role)]
    return []


def _prometheus(name: str | None, pb: Playbook) -> Need:
    """The Prometheus server a query goes to (unnamed: the only one); a missing one is not ready."""
    server = pb.prometheus_server(name)
    return _ref("prometheus", server.name) if server else Need("item", f"prometheus {name or '(default)'}")


def _step_item_needs(item: StepItem, pb: Playbook) -> list[Need]:
    kind, ref = item.ref
    return [] if kind == "manual" else [_ref(kind, ref)]


def _checks(pb: Playbook) -> list[str]:
    """The checks the runbook's steps use, each once, in the order they first come."""
    return list(dict.fromkeys(item.check for step in pb.steps for item in step.do if item.check))


def _check_needs(ref: str, pb: Playbook) -> list[Need]:
    if ref == "fanout":
        redis = [_ref("realtime", "redis")] if pb.realtime is not None else []
        return redis + [_ref("replica", r.name) for r in pb.replicas]
    if ref == "traffic" and pb.load_balancer is not None:
        return [_ref("load_balancer", pb.load_balancer.name)]
    if ref == "guardrail_watch":
        return [_ref("guardrail", g.name) for g in pb.guardrails]
    return []  # cleanup, export: nothing from outside
