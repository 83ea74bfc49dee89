"""Traffic-control drivers: selector arithmetic and the command driver against a real kubectl stand-in."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path

import pytest

from rollback_tui.actions.traffic_control import (
    CommandDriver,
    TrafficControlError,
    make_driver,
    parse_state,
    selector_without,
)
from rollback_tui.playbook.model import Playbook, Replica

REPLICAS = [
    Replica(
        name="stable-a", url="http://127.0.0.1:1", role="stable", labels={"app": "api", "track": "stable"}
    ),
    Replica(
        name="stable-b", url="http://127.0.0.1:2", role="stable", labels={"app": "api", "track": "stable"}
    ),
    Replica(
        name="blue-next", url="http://127.0.0.1:3", role="candidate", labels={"app": "api", "track": "blue"}
    ),
]


def test_selector_narrowed_with_a_separating_label():
    assert selector_without(REPLICAS, {"app": "api"}, ["blue-next"]) == {"app": "api", "track": "stable"}


def test_removing_twice_is_harmless():
    narrowed = {"app": "api", "track": "stable"}
    assert selector_without(REPLICAS, narrowed, ["blue-next"]) == narrowed


def test_no_separating_label_is_a_clear_error():
    same = [r.model_copy(update={"labels": {"app": "api"}}) for r in REPLICAS]
    with pytest.raises(TrafficControlError, match="no label separates blue-next"):
        selector_without(same, {"app": "api"}, ["blue-next"])


def test_parse_state_accepts_kubectl_selector_and_full_state():
    assert parse_state('{"app":"api"}').selector == {"app": "api"}
    full = parse_state('{"selector": {"app": "api"}, "weights": {"a": 1}, "backends": ["a"]}')
    assert (full.weights, full.backends) == ({"a": 1}, ["a"])
    with pytest.raises(TrafficControlError, match="not JSON"):
        parse_state("error: the server doesn't have a resource type")


@pytest.fixture
def fake_kubectl(tmp_path):
    """A real executable that keeps a service selector in a file, like `kubectl patch/get service`."""
    state = tmp_path / "service.json"
    state.write_text(json.dumps({"app": "api"}))
    script = tmp_path / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            f"""
            import json, sys
            path = {str(state)!r}
            args = sys.argv[1:]
            if args[:2] == ["get", "service"]:
                print(open(path).read())
            elif args[:2] == ["patch", "service"]:
                patch = json.loads(args[args.index("-p") + 1])
                open(path, "w").write(json.dumps(patch["spec"]["selector"]))
                print("service/api patched")
            else:
                print("unknown command", args, file=sys.stderr)
                sys.exit(1)
            """
        )
    )
    script.chmod(0o755)
    return script, state


def _command_playbook(kubectl) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "k",
            "title": "k",
            "replicas": [r.model_dump() for r in REPLICAS],
            "load_balancer": {
                "url": "http://127.0.0.1:9",
                "selector": {"app": "api"},
                "traffic_control": {
                    "driver": "command",
                    "remove": {
                        "argv": [
                            str(kubectl),
                            "patch",
                            "service",
                            "api",
                            "-p",
                            '{"spec":{"selector":{selector_json}}}',
                        ]
                    },
                    "read": {
                        "argv": [str(kubectl), "get", "service", "api", "-o", "jsonpath={.spec.selector}"]
                    },
                },
            },
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "x"}]}],
        }
    )


async def test_command_driver_removes_and_reads_back(fake_kubectl):
    kubectl, state = fake_kubectl
    driver = make_driver(_command_playbook(kubectl))
    assert isinstance(driver, CommandDriver)
    before = await driver.read()
    assert sorted(before.backends) == ["blue-next", "stable-a", "stable-b"]
    after = await driver.remove(["blue-next"])
    assert json.loads(state.read_text()) == {"app": "api", "track": "stable"}
    assert sorted(after.backends) == ["stable-a", "stable-b"]
    again = await driver.remove(["blue-next"])  # idempotent
    assert again.selector == after.selector


async def test_command_driver_failure_is_reported(fake_kubectl, tmp_path):
    kubectl, _state = fake_kubectl
    pb = _command_playbook(kubectl)
    pb.load_balancer.traffic_control.read.argv = [str(kubectl), "explode"]
    with pytest.raises(TrafficControlError, match="read command exited 1: unknown command"):
        await make_driver(pb).read()
    pb.load_balancer.traffic_control.read.argv = [str(tmp_path / "no-such-kubectl")]
    with pytest.raises(TrafficControlError, match=r"command not found: .*no-such-kubectl"):
        await make_driver(pb).read()


async def test_command_driver_against_real_haproxy(tmp_path, monkeypatch):
    """HAProxy's runtime API drains blue-next through `rollback-tui lb haproxy` (with a PATH that has neither
    this venv's python nor its console script on it); traffic through HAProxy then reaches stable
    servers only."""
    import subprocess

    import httpx

    from conftest import require_binary
    from rollback_tui.lab.proc import free_port
    from rollback_tui.probes.traffic import verify_stable

    haproxy = require_binary("haproxy")

    servers = []
    for name in ("stable-a", "stable-b", "blue-next"):
        port = free_port()
        code = (
            "import http.server\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        self.send_response(200); self.send_header('X-Served-By', NAME)\n"
            "        self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'ok')\n"
            "    def log_message(self, *a): pass\n"
            f"NAME = {name!r}\n"
            f"http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H).serve_forever()\n"
        )
        servers.append((name, port, subprocess.Popen([sys.executable, "-c", code])))
    front = free_port()
    sock = tmp_path / "admin.sock"
    cfg = tmp_path / "haproxy.cfg"
    backend_lines = "\n".join(f"  server {n} 127.0.0.1:{p} weight 50" for n, p, _ in servers)
    cfg.write_text(
        f"global\n  stats socket {sock} level admin\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n"
        f"frontend fe\n  bind 127.0.0.1:{front}\n  default_backend api\n"
        f"backend api\n  balance roundrobin\n{backend_lines}\n"
    )
    proxy = subprocess.Popen(
        [haproxy, "-f", str(cfg), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        monkeypatch.setenv("PATH", "/usr/bin:/bin")  # where a venv's python is not
        ctl = ["rollback-tui", "lb", "haproxy"]
        playbook = Playbook.model_validate(
            {
                "name": "h",
                "title": "h",
                "replicas": [r.model_dump() for r in REPLICAS],
                "load_balancer": {
                    "url": f"http://127.0.0.1:{front}",
                    "selector": {"app": "api"},
                    "traffic_control": {
                        "driver": "command",
                        "remove": {"argv": [*ctl, "drain", str(sock), "api", "{replicas}"]},
                        "read": {"argv": [*ctl, "state", str(sock), "api"]},
                    },
                },
                "steps": [{"name": "s", "title": "s", "do": [{"manual": "x"}]}],
            }
        )
        driver = make_driver(playbook)
        for _ in range(50):  # the admin socket answers before the servers are marked up
            before = await driver.read()
            if len(before.backends) == 3:
                break
            await asyncio.sleep(0.1)
        assert sorted(before.backends) == ["blue-next", "stable-a", "stable-b"], before
        async with httpx.AsyncClient() as client:
            seen = {
                (await client.get(f"http://127.0.0.1:{front}/")).headers["x-served-by"] for _ in range(12)
            }
        assert "blue-next" in seen
        after = await driver.remove(["blue-next"])
        assert after.weights["blue-next"] == 0 and "blue-next" not in after.backends
        ok, _share, _total, served = await verify_stable(
            playbook.load_balancer.url, {"stable-a", "stable-b"}, need=60, timeout_s=10, path="/"
        )
        assert ok and "blue-next" not in served, served
    finally:
        proxy.terminate()
        proxy.wait(5)
        for _, _, proc in servers:
            proc.terminate()
            proc.wait(5)


def test_placeholders_are_filled_per_argument_and_other_braces_left_alone():
    from rollback_tui.exec.commands import CommandError, fill
    from rollback_tui.playbook.model import CommandSpec

    spec = CommandSpec(
        argv=["kubectl", "-o", "jsonpath={.spec.selector}", "-p", '{"spec":{"selector":{selector_json}}}']
    )
    filled = fill(spec, {"selector_json": '{"app":"api"}', "unused": "x"})
    assert filled.argv == [
        "kubectl",
        "-o",
        "jsonpath={.spec.selector}",
        "-p",
        '{"spec":{"selector":{"app":"api"}}}',
    ]
    assert fill(spec, {}).argv == spec.argv
    shell = CommandSpec(run="echo {selector_json}", shell=True)
    with pytest.raises(CommandError, match=r"refusing to fill run: \{selector_json\} would be spliced"):
        fill(shell, {"selector_json": "x; rm -rf /"})  # never into a shell


def _validate(tmp_path, remove: str, read: str):
    import subprocess

    playbook = tmp_path / "pb.yaml"
    playbook.write_text(
        "name: t\ntitle: t\nsteps: [{name: s, title: s, do: [{manual: x}]}]\n"
        "replicas: [{name: a, url: 'http://127.0.0.1:1', role: stable}]\n"
        "load_balancer:\n  url: http://127.0.0.1:9\n  selector: {}\n  traffic_control:\n"
        f"    driver: command\n    remove: {{argv: {remove}}}\n    read: {{argv: {read}}}\n"
    )
    cli = str(Path(sys.executable).with_name("rollback-tui"))
    return subprocess.run([cli, "validate", str(playbook)], capture_output=True, text=True, timeout=60)


def test_validate_warns_about_a_traffic_control_program_that_is_not_there(tmp_path):
    done = _validate(
        tmp_path, "[no-such-haproxyctl, drain]", "[python3, -m, rollback_tui.actions.haproxy_runtime]"
    )
    assert done.returncode == 0, done.stderr  # usable: a warning, not an error
    lines = done.stderr.splitlines()
    assert any(
        line.startswith(f"{tmp_path / 'pb.yaml'}:10:")
        and "load_balancer.traffic_control.remove.argv[0]: warning: 'no-such-haproxyctl' is not on PATH here"
        in line
        for line in lines
    ), lines
    assert any(
        "read.argv[0]: warning: python3 -m rollback_tui.actions.haproxy_runtime needs" in x for x in lines
    )
    clean = _validate(tmp_path, "[rollback-tui, lb, haproxy, drain, /s, api, '{replicas}']", "[true]")
    assert clean.returncode == 0 and "warning" not in clean.stderr, clean.stderr


async def test_a_local_rollback_tui_is_this_installation_whatever_path_says(tmp_path):
    from rollback_tui.exec.supervise import run_capture
    from rollback_tui.playbook.model import CommandSpec

    pb = _command_playbook(tmp_path / "kubectl")
    result = await run_capture(
        CommandSpec(argv=["rollback-tui", "--version"]), pb, environ={"PATH": "/nowhere"}
    )
    assert result.outcome == "passed" and "rollback-tui" in result.stdout, result


def test_the_rollback_record_says_which_weights_moved():
    """The timeline (report and headless log alike) of a weight-based driver's rollback."""
    from rollback_tui.core import events as ev
    from rollback_tui.core.read.timeline import describe

    before = {"selector": {}, "weights": {"a": 50, "next": 50}, "backends": ["a", "next"]}
    after = {"selector": {}, "weights": {"a": 50, "next": 0}, "backends": ["a"]}
    applied = ev.RollbackApplied(action="rm", driver="command", before=before, after=after)
    assert describe(applied) == "Rollback rm applied via command: backends a, next → a; weights next 50 → 0"
    gone = {"selector": {}, "weights": {"a": 50}, "backends": ["a"]}  # nginx: the server line is gone
    applied = ev.RollbackApplied(action="rm", driver="command", before=before, after=gone)
    assert describe(applied).endswith("; weights next 50 → -")
    selector = {"selector": {"app": "api", "track": "stable"}, "weights": {}, "backends": ["a"]}
    lab = ev.RollbackApplied(action="rm", driver="lab", before={**before, "weights": {}}, after=selector)
    assert describe(lab) == "Rollback rm applied via lab: backends a, next → a"  # no weights: as before


def test_nginx_upstream_sets_are_read_by_their_replica_comments(tmp_path):
    from rollback_tui.actions.nginx_upstream import servers, state

    (tmp_path / "all.conf").write_text(
        "server 127.0.0.1:8001 weight=45;  # stable-a\n"
        "server 127.0.0.1:8002 max_fails=1 weight=45;  # stable-b\n"
        "  server 127.0.0.1:8003 weight=10; # blue-next\n"
        "server 127.0.0.1:8004 backup;\n"
        "# server 127.0.0.1:8005;  a comment, not a server\n"
    )
    (tmp_path / "stable.conf").write_text(
        "server 127.0.0.1:8001;  # stable-a\nserver 127.0.0.1:8002 down; # b\n"
    )
    (tmp_path / "active.conf").write_text((tmp_path / "all.conf").read_text())
    assert servers((tmp_path / "stable.conf").read_text()) == {"stable-a": 1, "b": 0}
    assert state(tmp_path) == {
        "set": "all",
        "weights": {"stable-a": 45, "stable-b": 45, "blue-next": 10, "127.0.0.1:8004": 0},
        "backends": ["stable-a", "stable-b", "blue-next"],
    }


def test_the_traffic_pane_says_weights_changed_for_a_weight_based_driver():
    from rollback_tui.core import events as ev
    from rollback_tui.core.state import SessionState
    from rollback_tui.ui.panes.base import View
    from rollback_tui.ui.panes.traffic import TrafficPane

    state = SessionState()
    before = {
        "selector": {},
        "weights": {"stable-a": 50, "blue-next": 50},
        "backends": ["stable-a", "blue-next"],
    }
    after = {"selector": {}, "weights": {"stable-a": 50, "blue-next": 0}, "backends": ["stable-a"]}
    for event in (
        ev.RollbackRequested(action="rm", actor="alice", confirmed_text="blue-next", replicas=["blue-next"]),
        ev.RollbackApplying(action="rm", driver="command", before=before),
        ev.RollbackApplied(action="rm", driver="command", before=before, after=after),
    ):
        state.apply(event)
    lines = [line.plain for line in TrafficPane._rollback(None, state, _command_playbook("k"), View())]  # type: ignore[arg-type]
    assert "✓ weights changed via command: blue-next 50 → 0 → stable-a" in lines, lines


async def test_the_session_start_says_a_traffic_control_program_is_missing_once(tmp_path):
    """The cockpit and headless rehearsals say it at the start, not at the moment of the rollback: in the
    session's readiness check, and only there (the engine once repeated it as a notice of its own)."""
    from rollback_tui.core.journal import Journal, read_journal
    from rollback_tui.core.read.readiness import ReadinessView
    from rollback_tui.session.runtime import SessionRuntime

    missing = tmp_path / "no-such-kubectl"
    journal = Journal(tmp_path / "s.jsonl")
    async with SessionRuntime(_command_playbook(missing), "", journal=journal) as engine:
        await engine.start()
        checked = await engine.readiness()
    why = ReadinessView(checked).why("load_balancer", "lb") or ""
    assert f"binary {missing} missing (not an executable file)" in why, why
    events = read_journal(journal.path).events
    assert [e for e in events if e.kind == "notice" and e.source == "readiness"] == []
