"""Shared fixtures (names are stable; other test modules use them):

- `redis_server`        a real redis-server on a free loopback port for the session → "redis://127.0.0.1:P/0"
                        (skipped when redis-server is absent, except with CI=true where that is a failure)
- `demo_playbook_path`  Path to playbooks/demo.yaml (skipped until it exists)
- `demo_playbook`       that file loaded as a Playbook
- `lab_playbook`        a small three-replica lab Playbook built in code (override it, or parametrize it
                        indirectly, to run `lab` on another playbook)
- `lab`                 a started `rollback_tui.lab.supervisor.Lab` for `lab_playbook`, stopped afterwards
- `exporter`            a real prometheus_client exporter on a free loopback port → (registry, "127.0.0.1:P")
- `prometheus`          a real `prometheus` scraping `exporter` every second (skipped when prometheus is
                        absent, except with CI=true where that is a failure)

Plain helpers: `build_lab_playbook(**changes)`, `require_redis_server()`, `require_prometheus()`,
`pid_alive(pid)`, `encodings(secret)` and `holds_secret(text, secret)` (redaction of a secret's encoded
forms).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest

from rollback_tui.lab.bus import ping_sync, redis_server_argv
from rollback_tui.lab.proc import die_with_parent_hook, free_port
from rollback_tui.lab.supervisor import Lab
from rollback_tui.playbook.model import Playbook

REPO = Path(__file__).resolve().parent.parent
DEMO_PLAYBOOK = REPO / "playbooks" / "demo.yaml"


def require_binary(name: str, package: str | None = None) -> str:
    """Path of a system tool the test needs; skip without it, except under CI=true where .ci/run
    installs it, so its absence is a failure."""
    binary = shutil.which(name)
    if binary is None:
        reason = f"{name} is not installed (apt-get install {package or name}); the real one is required"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def require_redis_server() -> str:
    return require_binary("redis-server")


def require_prometheus() -> str:
    return require_binary("prometheus")


def stop_processes(procs: list[subprocess.Popen], grace_s: float = 3.0) -> None:
    """Terminate, then kill what did not exit within the grace period."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def live_processes(matches: Callable[[str], bool]) -> list[int]:
    """PIDs of live (non-zombie) processes, other than this one, whose command line `matches`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if matches(cmdline) and state != "Z":
            found.append(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def encodings(secret: str) -> dict[str, str]:
    """The forms a secret travels in, as the standard library writes them (name → text); base64 also of
    longer data holding the secret at each byte offset mod 3."""
    raw = secret.encode()
    b64, urlsafe = base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()
    inside = {
        f"{name} at offset {k}": encode(b"\x00" * k + raw + b"\xff").decode()
        for k in range(3)
        for name, encode in (("base64", base64.b64encode), ("urlsafe-base64", base64.urlsafe_b64encode))
    }
    return inside | {
        "quote": quote(secret, safe=""),
        "quote-path": quote(secret),
        "quote_plus": quote_plus(secret),
        "base64": b64,
        "base64-unpadded": b64.rstrip("="),
        "urlsafe-base64": urlsafe,
        "urlsafe-base64-unpadded": urlsafe.rstrip("="),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }


def _from_hex(chunk: str) -> bytes:
    return bytes.fromhex(chunk[: len(chunk) // 2 * 2])


def _from_base64(chunk: str) -> bytes:
    chunk = chunk.rstrip("=").translate(str.maketrans("-_", "+/"))
    chunk = chunk[: len(chunk) - (len(chunk) % 4 == 1)]  # a lone last character holds no whole byte
    return base64.b64decode(chunk + "=" * (-len(chunk) % 4))


def _decodes_to(runs: list[str], raw: bytes, step: int, decode: Callable[[str], bytes]) -> bool:
    """Whether some run, decoded from one of its first `step` characters on, holds `raw`."""
    for run in runs:
        for start in range(min(step, len(run))):
            try:
                if raw in decode(run[start:]):
                    return True
            except (binascii.Error, ValueError):
                continue
    return False


def holds_secret(text: str, secret: str) -> bool:
    """Whether `text` still gives `secret` away: as is, URL-decoded, or decoded from any hex or base64
    (standard or URL-safe) run at any alignment. Independent of how the Redactor finds them."""
    raw = secret.encode()
    if any(secret in form for form in (text, unquote(text), unquote_plus(text))):
        return True
    hex_runs = re.findall(r"[0-9a-fA-F]{2,}", text)
    b64_runs = re.findall(r"[A-Za-z0-9+/_-]{2,}", text)
    return _decodes_to(hex_runs, raw, 2, _from_hex) or _decodes_to(b64_runs, raw, 4, _from_base64)


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Journals, exports and settings written by a test go to a temp dir, never the user's own."""
    base = tmp_path_factory.mktemp("user-dirs")
    monkeypatch.setenv("ROLLBACK_TUI_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("ROLLBACK_TUI_CONFIG_DIR", str(base / "config"))


@pytest.fixture
def terminal() -> Iterator[Any]:
    """A tmux server of the test's own (test_e2e_tmux.Terminal, one session named `cockpit`), killed after
    the test."""
    from test_e2e_tmux import Terminal, require_tmux

    term = Terminal(require_tmux(), f"rollback-e2e-{uuid.uuid4().hex[:8]}", "cockpit")
    try:
        yield term
    finally:
        term.run("kill-server")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    binary = require_redis_server()
    with tempfile.TemporaryDirectory(prefix="rollback-test-redis-") as data_dir:
        port = free_port()
        proc = subprocess.Popen(
            redis_server_argv(binary, port, Path(data_dir)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent_hook(),
        )
        try:
            deadline = time.monotonic() + 5
            while not ping_sync(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_processes([proc])


@pytest.fixture
def demo_playbook_path() -> Path:
    if not DEMO_PLAYBOOK.exists():
        pytest.skip("playbooks/demo.yaml does not exist yet")
    return DEMO_PLAYBOOK


@pytest.fixture
def demo_playbook(demo_playbook_path: Path) -> Playbook:
    from rollback_tui.playbook.load import load_playbook

    return load_playbook(demo_playbook_path)


def build_lab_playbook(**changes: Any) -> Playbook:
    """stable-a, stable-b (stable) and blue-next (candidate) behind a lab balancer; `changes` are merged
    into the top level of the document (e.g. replicas=[...])."""

    def replica(name: str, port: int, role: str, commit: str, **lab: Any) -> dict[str, Any]:
        track = "stable" if role == "stable" else "candidate"
        return {
            "name": name,
            "url": f"http://127.0.0.1:{port}",
            "role": role,
            "labels": {"app": "api", "track": track},
            "lab": {"image": f"sha256:{commit * 2}", "commit": commit, **lab},
        }

    doc: dict[str, Any] = {
        "name": "lab-test",
        "title": "Lab test playbook",
        "replicas": [
            replica("stable-a", 18081, "stable", "abc1234"),
            replica("stable-b", 18082, "stable", "abc1234"),
            replica("blue-next", 18083, "candidate", "def5678"),
        ],
        "load_balancer": {
            "url": "http://127.0.0.1:18080",
            "selector": {"app": "api"},
            "weights": {"stable-a": 45, "stable-b": 45, "blue-next": 10},
            "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:18090"},
        },
        "realtime": {"redis_url": "redis://127.0.0.1:16379/0", "channel_prefix": "chat:rt:"},
        "probes": [{"name": "dead-letters", "url": "http://127.0.0.1:18081/api/ops/dead-letters"}],
        "steps": [{"name": "look", "title": "Look around", "do": [{"manual": "look"}]}],
    }
    doc.update(changes)
    return Playbook.model_validate(doc)


def removal_action(**changes: Any) -> dict[str, Any]:
    """The lab playbook's rollback: blue-next removed by selector; `changes` override its fields."""
    return {
        "kind": "selector_removal",
        "name": "remove-blue-next",
        "title": "Remove blue-next",
        "replica_set": "blue-next",
        "remove_replicas": ["blue-next"],
        **changes,
    }


@pytest.fixture
def lab_playbook(request: pytest.FixtureRequest) -> Playbook:
    return getattr(request, "param", None) or build_lab_playbook()


@pytest.fixture
async def lab(lab_playbook: Playbook, tmp_path: Path) -> AsyncIterator[Lab]:
    require_redis_server()
    running = Lab(lab_playbook, redis="server", log_dir=tmp_path / "lab-logs")
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


# --- test groups -----------------------------------------------------------------------------------
# `pytest -m "not integration"` is the quick loop (under a minute): what needs a real server process
# (redis-server, sshd, HAProxy, the lab, tmux) or a whole CLI run is marked integration here, by module
# or by the fixture that starts the real part; single tests elsewhere carry the mark themselves.
INTEGRATION_MODULES = {
    "test_cli",
    "test_e2e_tmux",
    "test_fanout",
    "test_gates_remote",
    "test_health_probe",
    "test_lab_balancer",
    "test_lab_replica",
    "test_lab_supervisor",
    "test_metrics_prometheus",
    "test_redis_tap",
    "test_traffic_control",
    "test_traffic_rollback",
}
REAL_PARTS = {"lab", "redis_server", "ssh_server", "openssh", "replicas", "terminal", "prometheus"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module else ""
        fixtures = set(getattr(item, "fixturenames", ()))
        if name in INTEGRATION_MODULES or fixtures & REAL_PARTS or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def exporter() -> Iterator[tuple[Any, str]]:
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield registry, f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def prometheus(exporter: tuple[Any, str], tmp_path: Path) -> AsyncIterator[Any]:
    from rollback_tui.lab.prometheus import LabPrometheus, Target

    require_prometheus()
    server = LabPrometheus([Target(exporter[1], {"role": "stable"})], work_dir=tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
