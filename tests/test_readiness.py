"""Readiness (issue 14 item 4): what every playbook item needs from here and whether it is present /
resolvable / reachable — `check ready`, the engine's session-start check, the headless table.

Real parts only: real sockets listening (and closed) on loopback, real known_hosts and kubeconfig files,
the real resolver, real `python -m rollback_tui` subprocesses.
"""

from __future__ import annotations

import inspect
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import yaml

from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.readiness import ReadinessView
from rollback_tui.core.readiness import Need, kube_context, readiness_items
from rollback_tui.playbook.load import load_playbook
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes.readiness import check_readiness
from rollback_tui.session.engine import Engine
from rollback_tui.session.runtime import SessionRuntime
from test_cli import run

PRESENT_VALUE = "ready-present-value-4711"


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel completes them from the backlog)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed): connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_playbook(path: Path, doc: dict) -> Path:
    base = {"version": 1, "name": "ready", "title": "Readiness"}
    path.write_text(yaml.safe_dump({**base, **doc}))
    return path


def known_hosts_for(path: Path, port: int) -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n")
    return path


def everything(tmp_path: Path, up: int, down: int) -> dict:
    """Items needing: a set and an unset variable, a missing binary, an unresolvable host, a reachable and a
    refused loopback port, an SSH host with and without its known_hosts entry."""
    known = known_hosts_for(tmp_path / "known_hosts", up)
    other = known_hosts_for(tmp_path / "other_known_hosts", up + 1)  # an entry, for another port
    return {
        "replicas": [
            {"name": "up", "url": f"http://127.0.0.1:{up}", "role": "stable"},
            {"name": "down", "url": f"http://127.0.0.1:{down}", "role": "candidate"},
        ],
        "hosts": [
            {"name": "known", "host": "127.0.0.1", "port": up, "user": "ops", "known_hosts": str(known)},
            {"name": "stranger", "host": "127.0.0.1", "port": up, "user": "ops", "known_hosts": str(other)},
        ],
        "probes": [{"name": "nowhere", "url": "http://rollback-tui-ready.invalid/x"}],
        "gates": [
            {"name": "env-present", "title": "t", "argv": ["python3", "-c", "pass", "${READY_PRESENT}"]},
            {"name": "env-missing", "title": "t", "argv": ["python3", "-c", "pass", "${READY_MISSING}"]},
            {"name": "no-binary", "title": "t", "argv": ["rollback-tui-no-such-binary", "--help"]},
            {"name": "this-one", "title": "t", "argv": ["rollback-tui", "--version"]},  # PATH or not
            {"name": "ssh-known", "title": "t", "argv": ["uptime"], "where": "known"},
            {"name": "ssh-stranger", "title": "t", "argv": ["uptime"], "where": "stranger"},
        ],
        "steps": [{"name": "s", "title": "s", "do": [{"gate": "env-present"}, {"gate": "env-missing"}]}],
    }


def env_for_check() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "READY_MISSING"}
    return {**env, "READY_PRESENT": PRESENT_VALUE}


def needs_of(doc: dict, item: str, name: str) -> dict[str, dict]:
    entry = next(i for i in doc["items"] if (i["item"], i["name"]) == (item, name))
    return {f"{n['need']} {n['target']}": n for n in entry["needs"]}


def test_check_ready_json_says_what_is_present_resolvable_and_reachable(
    tmp_path: Path, listening: int, closed_port: int
) -> None:
    path = write_playbook(tmp_path / "pb.yaml", everything(tmp_path, listening, closed_port))
    result = run("check", "ready", str(path), "--json", "--timeout", "2", env=env_for_check())
    assert result.returncode == 1, result.stdout + result.stderr
    assert PRESENT_VALUE not in result.stdout  # a variable is checked, its value never shown
    doc = json.loads(result.stdout)
    assert doc["ready"] is False
    ready = {(i["item"], i["name"]): i["ready"] for i in doc["items"]}

    assert ready[("gate", "env-present")] and needs_of(doc, "gate", "env-present")["env READY_PRESENT"]["ok"]
    missing = needs_of(doc, "gate", "env-missing")["env READY_MISSING"]
    assert not ready[("gate", "env-missing")] and (missing["status"], missing["ok"]) == ("missing", False)

    binary = needs_of(doc, "gate", "no-binary")["binary rollback-tui-no-such-binary"]
    assert (binary["status"], binary["why"]) == ("missing", "not on PATH")
    assert needs_of(doc, "gate", "env-present")["binary python3"]["status"] == "present"
    assert ready[("gate", "this-one")]  # a local `rollback-tui` runs this installation, not PATH's

    host = needs_of(doc, "probe", "nowhere")["host rollback-tui-ready.invalid"]
    assert (host["ok"], host["status"]) == (False, "unresolvable")

    up = needs_of(doc, "replica", "up")[f"tcp 127.0.0.1:{listening}"]
    assert (up["ok"], up["status"]) == (True, "reachable") and "connected to 127.0.0.1" in up["why"]
    down = needs_of(doc, "replica", "down")[f"tcp 127.0.0.1:{closed_port}"]
    assert (down["ok"], down["status"], down["why"]) == (False, "unreachable", "connection refused")

    known = needs_of(doc, "gate", "ssh-known")
    assert known["known_hosts known"]["status"] == "present" and known[f"tcp 127.0.0.1:{listening}"]["ok"]
    assert ready[("gate", "ssh-known")]
    assert "binary uptime" not in known  # run on the host, not here
    stranger = needs_of(doc, "gate", "ssh-stranger")["known_hosts stranger"]
    assert (stranger["ok"], stranger["status"]) == (False, "missing")
    assert f"127.0.0.1:{listening} not in" in stranger["why"]

    step = needs_of(doc, "step", "s")  # a step is ready when its items are, and names the one that is not
    assert step["item gate env-present"]["ok"] and not step["item gate env-missing"]["ok"]
    assert step["item gate env-missing"]["why"] == "env READY_MISSING missing"


def test_check_ready_prints_a_table_per_item_and_exits_0_only_when_all_is_here(
    tmp_path: Path, listening: int, closed_port: int
) -> None:
    path = write_playbook(tmp_path / "pb.yaml", everything(tmp_path, listening, closed_port))
    result = run("check", "ready", str(path), "--timeout", "2", env=env_for_check())
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["item", "need", "status", "why"]
    row = next(line for line in lines if line.startswith("✗ gate env-missing"))
    assert row.split()[3:6] == ["env", "READY_MISSING", "missing"]
    assert row.endswith(" not set in this environment")
    assert any(line.startswith("✓ gate env-present") for line in lines)
    # down, nowhere, env-missing, no-binary, ssh-stranger and the step that runs env-missing
    assert lines[-1] == f"✗ 6 of 10 items cannot run from {socket.gethostname()}"

    fine = {
        "replicas": [{"name": "up", "url": f"http://127.0.0.1:{listening}", "role": "stable"}],
        "gates": [{"name": "g", "title": "t", "argv": ["python3", "-c", "pass", "${READY_PRESENT}"]}],
        "steps": [{"name": "s", "title": "s", "do": [{"gate": "g"}, {"manual": "look"}]}],
    }
    ok = run("check", "ready", str(write_playbook(tmp_path / "ok.yaml", fine)), env=env_for_check())
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == f"✓ all 3 items can run from {socket.gethostname()}"
    empty = run("check", "ready", str(tmp_path / "ok.yaml"), env={"READY_PRESENT": ""})
    assert empty.returncode == 0  # set, even empty, is present: the check never judges a value


def test_the_needs_model_reads_kube_contexts_urls_and_remote_commands() -> None:
    book = load_playbook(Path(__file__).parents[1] / "playbooks" / "realtime-surreal-rehearsal.yaml")
    items = {i.label: i for i in readiness_items(book)}
    balancer = items["load_balancer gotong-api"].needs  # its url, and the kubectl commands that steer it
    assert Need("kube_context", "${KUBE_CONTEXT}") in balancer and Need("binary", "kubectl") in balancer
    assert Need("env", "KUBE_NAMESPACE") in balancer
    assert Need("tcp", "api.staging.gotong.internal:443") in balancer
    redis = items["realtime redis"].needs
    assert Need("env", "REDIS_PASSWORD") in redis
    assert Need("host", "redis.staging.gotong.internal") in redis
    assert Need("tcp", "redis.staging.gotong.internal:6379") in redis
    # Every step names the items it runs through; a guardrail the source of its data.
    for step in book.steps:
        assert all(n.kind == "item" for n in items[f"step {step.name}"].needs)


def test_a_command_health_the_api_headers_and_prometheus_need_what_they_use() -> None:
    book = Playbook.model_validate({
        "name": "t", "title": "t",
        "replicas": [{"name": "a", "url": "http://api.invalid", "role": "stable",
                      "health_command": {"argv": ["curl", "-sf", "-H", "X-Key: ${HEALTH_KEY}", "http://h:9/x"]}}],
        "load_balancer": {"url": "http://lb:80", "selector": {"app": "a"},
                          "traffic_control": {"driver": "lab", "admin_url": "http://lb:81"},
                          "verify": {"headers": {"Authorization": "Bearer ${VERIFY_TOKEN}"}}},
        "realtime": {"redis_url": "redis://r:6379/0", "channel_prefix": "p",
                     "fanout": {"send_headers": {"Authorization": "Bearer ${API_TOKEN}"}}},
        "prometheus": [{"name": "prom", "url": "https://prom:9090", "bearer_token": "${PROM_TOKEN}",
                        "tls": {"ca_file": "/etc/prom-ca.pem"}}],
        "facts": [{"name": "up", "title": "up", "source": "prometheus", "query": "up"}],
        "guardrails": [{"name": "q", "title": "q", "metric": "query", "query": "sum(x)", "threshold": 1}],
        "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
    })  # fmt: skip
    items = {i.label: [n.label for n in i.needs] for i in readiness_items(book)}
    prom = ["host prom", "tcp prom:9090", "env PROM_TOKEN", "file /etc/prom-ca.pem"]
    assert items["prometheus prom"] == prom
    assert items["guardrail q"] == items["fact up"] == ["prometheus prom"]  # a query needs its server
    assert items["replica a"] == ["env HEALTH_KEY", "binary curl", "host h", "tcp h:9"]  # not its url
    assert "env VERIFY_TOKEN" in items["load_balancer lb"] and "tcp lb:81" in items["load_balancer lb"]
    assert items["realtime redis"] == ["host r", "tcp r:6379", "env API_TOKEN"]


@pytest.mark.parametrize(
    ("argv", "env", "context"),
    [
        (["kubectl", "--context", "${KUBE_CONTEXT}", "get", "pods"], {}, "${KUBE_CONTEXT}"),
        (["env", "A=1", "kubectl", "--context=prod", "get"], {}, "prod"),  # behind a wrapper
        (["helm", "--kube-context", "staging", "list"], {}, "staging"),
        (["kubectl", "get", "pods"], {}, ""),  # the kubeconfig's current context
        (["kubectl", "get", "pods"], {"KUBE_CONTEXT": "lab"}, "lab"),
        (["./deploy.sh"], {"KUBE_CONTEXT": "lab"}, "lab"),
        (["docker", "--context", "remote", "ps"], {}, None),  # docker's --context is not a kube context
    ],
)
def test_the_kube_context_a_command_needs(argv: list[str], env: dict[str, str], context: str | None) -> None:
    assert kube_context(argv, env) == context


async def test_a_kube_context_is_present_when_the_kubeconfig_has_it_and_its_server_answers(
    tmp_path: Path, listening: int, closed_port: int
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "current-context": "staging",
                "contexts": [
                    {"name": "staging", "context": {"cluster": "up"}},
                    {"name": "dead", "context": {"cluster": "down"}},
                ],
                "clusters": [
                    {"name": "up", "cluster": {"server": f"https://127.0.0.1:{listening}"}},
                    {"name": "down", "cluster": {"server": f"https://127.0.0.1:{closed_port}"}},
                ],
            }
        )
    )
    book = load_playbook(
        write_playbook(
            tmp_path / "pb.yaml",
            {
                "replicas": [{"name": "a", "url": f"http://127.0.0.1:{listening}", "role": "stable"}],
                "gates": [
                    {"name": name, "title": "t", "argv": ["kubectl", *flags, "get", "pods"]}
                    for name, flags in (
                        ("named", ["--context", "${CTX}"]),
                        ("current", []),
                        ("dead", ["--context=dead"]),
                        ("absent", ["--context", "prod"]),
                    )
                ],
                "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
            },
        )
    )
    environ = {"KUBECONFIG": str(config), "CTX": "staging", "PATH": os.defpath}
    view = ReadinessView(await check_readiness(book, environ=environ, timeout_s=2))
    status = {
        i.name: next(n for n in i.needs if n.need == "kube_context") for i in view.items if i.item == "gate"
    }
    assert (status["named"].ok, status["named"].status) == (True, "reachable")
    assert status["current"].ok and "context staging" in status["current"].why
    assert (status["dead"].ok, status["dead"].status) == (False, "unreachable")
    assert "connection refused" in status["dead"].why
    assert (status["absent"].ok, status["absent"].status) == (False, "missing")
    unset = ReadinessView(await check_readiness(book, environ={"KUBECONFIG": str(config)}, timeout_s=2))
    named = next(n for i in unset.items if i.name == "named" for n in i.needs if n.need == "kube_context")
    assert (named.ok, named.status, named.why) == (False, "unknown", "not checked: CTX is not set")


async def test_the_session_journals_its_readiness_at_the_start_and_checks_once(
    tmp_path: Path, listening: int, closed_port: int
) -> None:
    book = load_playbook(
        write_playbook(
            tmp_path / "pb.yaml",
            {
                "replicas": [
                    {"name": "up", "url": f"http://127.0.0.1:{listening}", "role": "stable"},
                    {"name": "down", "url": f"http://127.0.0.1:{closed_port}", "role": "candidate"},
                ],
                "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
            },
        )
    )
    journal = Journal(tmp_path / "s.jsonl")
    async with SessionRuntime(book, str(tmp_path / "pb.yaml"), journal=journal) as engine:
        checked = await engine.readiness()
        assert await engine.readiness() is checked  # the session's one check, not another
        assert engine.state.readiness is checked
        view = ReadinessView(checked)
        assert view.why("replica", "down") == (
            f"cannot run: tcp 127.0.0.1:{closed_port} unreachable (connection refused)"
        )
        assert view.why("replica", "up") is None
    kinds = [e.kind for e in read_journal(journal.path).events]
    assert kinds.count("readiness_checked") == 1 and kinds.index("readiness_checked") > 0


async def test_a_task_cancelled_before_it_ran_closes_its_coroutine(tmp_path: Path) -> None:
    """A session that ends before its readiness check started: no coroutine left 'never awaited'."""
    book = load_playbook(write_playbook(tmp_path / "pb.yaml", {
        "replicas": [{"name": "a", "url": "http://127.0.0.1:9", "role": "stable"}],
        "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
    }))  # fmt: skip
    engine = Engine(book, Journal(tmp_path / "s.jsonl"))

    async def never_started() -> None:
        raise AssertionError("cancelled before it ran")

    coro = never_started()
    engine.spawn("feed", coro)
    await engine.stop()  # before the task had a turn
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
