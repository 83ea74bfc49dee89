"""Stand-in `railway`, `gh`, `git`, `npm`, `npx` and `node` for the production playbook, and a stand-in
production API (health and dead letters), so the production rollback runs for real — real processes,
real HTTP — without production.

`StandIns(tmp)` writes the programs into `tmp/bin` (put it first on PATH, `env()` does) and keeps their
state in `tmp/state`: every call is recorded (`calls()`: tool, argv, cwd), `railway up` makes a new
deployment id per service and tells the API the commit it deployed, `railway variables` reads and sets
variables, the replay empties the dead-letter queue. `ProductionApi` serves `/health` and
`/api/ops/dead-letters` (bearer token required) on a loopback port.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from conftest import REPO

LAST_GOOD = "3f2a9c1d8e7b6a5f4c3d2e1f0a9b8c7d6e5f4a3b"  # what `gh run list` reports as the last good deploy
REGRESSED = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d"
OPS_TOKEN = "ops-t0ken-for-dead-letters"
DATABASE_URL = "postgres://app:db-passw0rd-42@db.internal:5432/app"
RAILWAY_TOKEN = "railway-t0ken-secret-77"
TOOLS = ("railway", "gh", "git", "npm", "npx", "node")

# One program for every tool (dispatch on the name it was called by). It imports nothing of ours.
PROGRAM = r"""
import json, os, sys, time, uuid, urllib.request
from pathlib import Path

tool = Path(sys.argv[0]).name
args = sys.argv[1:]
state_dir = Path(STATE)  # written in below: rollback-tui runs commands with a minimal environment
state_file = state_dir / "state.json"
state = json.loads(state_file.read_text())
with open(state_dir / "calls.jsonl", "a") as log:
    log.write(json.dumps({"tool": tool, "argv": args, "cwd": os.getcwd(), "pid": os.getpid()}) + "\n")


def save():
    state_file.write_text(json.dumps(state))


def post(path, doc):
    req = urllib.request.Request(API + path, data=json.dumps(doc).encode(), method="POST")
    urllib.request.urlopen(req, timeout=5).read()


def opt(name):
    return args[args.index(name) + 1] if name in args else None


if tool == "gh" and args[:2] == ["run", "list"]:
    print(f"{state['last_good']} run 48213 at 2026-01-01T09:12:00Z")
elif tool == "git" and args[:2] == ["worktree", "add"]:
    target, commit = Path(args[-2]), args[-1]
    target.mkdir(parents=True, exist_ok=True)
    (target / ".standin-commit").write_text(commit)
    print(f"Preparing worktree (detached HEAD {commit[:7]})")
elif tool == "railway" and args[:2] == ["deployment", "list"]:
    service = opt("--service")
    ids = reversed(state["deployments"][service])
    rows = [{"id": d, "status": "SUCCESS", "service": service} for d in ids]
    print(json.dumps(rows, indent=2))
elif tool == "railway" and args[:1] == ["up"]:
    service = opt("--service")
    if state.get("fail_up") == service:
        print(f"Deploy failed: build error in {service}", file=sys.stderr)
        sys.exit(1)
    commit = Path(".standin-commit").read_text()
    deployment = str(uuid.uuid4())
    state["deployments"][service].append(deployment)
    save()
    if service == "api":
        post("/_deploy", {"commit": commit})
    print(f"Indexing...\nUploading...\n  Build Logs: https://railway.app/project/p/service/{service}?id={deployment}")
    print(f"Deploy complete ({service} at {commit[:7]})")
elif tool == "railway" and args[:1] == ["variables"] and "--set" in args:
    key, _, value = opt("--set").partition("=")
    state["variables"][key] = value
    also = state.get("set_also")  # a switch that flips more than it says
    if also:
        k, _, v = also.partition("=")
        state["variables"][k] = v
    save()
    print(f"Set variables {key}")
elif tool == "railway" and args[:1] == ["variables"]:
    for key, value in state["variables"].items():
        print(f"{key}={value}")
elif tool == "npm" and args[:2] == ["run", "ops:replay-dead-letters"]:
    post("/_replay", {})
    print("replayed 7 jobs from source payload")
elif tool == "npm" and args[:2] == ["run", "verify:backfill"]:
    if state.get("backfill") == "missing":
        print("verify:backfill: 3 positions missing opening aggregates", file=sys.stderr)
        sys.exit(1)
    print("verify:backfill: all aggregates present")
elif tool == "npm" and args[:2] == ["run", "backfill:enqueue"]:
    print("enqueued 3 targeted backfills")
elif tool == "node":
    print("smoke: auth ok · import ok · authenticated write ok")
elif tool == "npx":
    print("  12 passed (31.2s)")
else:
    print(f"stand-in {tool}: unexpected arguments {args}", file=sys.stderr)
    sys.exit(2)
"""


class StandIns:
    def __init__(self, tmp: Path, api_url: str) -> None:
        self.bin = tmp / "bin"
        self.state = tmp / "state"
        self.api_url = api_url
        self.bin.mkdir(parents=True)
        self.state.mkdir(parents=True)
        program = self.bin / "standin.py"
        baked = f"STATE = {str(self.state)!r}\nAPI = {api_url!r}\n"
        program.write_text(f"#!{sys.executable}\n" + baked + PROGRAM)
        for tool in TOOLS:
            (self.bin / tool).symlink_to(program)
        program.chmod(0o755)
        self.write_state(
            {
                "last_good": LAST_GOOD,
                "deployments": {
                    s: [f"0000000{i}-1111-2222-3333-444455556666"]
                    for i, s in enumerate(("web", "api", "worker"))
                },
                "variables": {
                    "AUTH_REQUIRED": "true",
                    "SESSION_COOKIE_SECURE": "true",
                    "CSRF_PROTECTION": "true",
                    "S3_STARTUP_CHECK_STRICT": "true",
                    "DATABASE_URL": DATABASE_URL,  # the read prints every variable: only the flags are kept
                },
            }
        )

    def write_state(self, state: dict[str, Any]) -> None:
        (self.state / "state.json").write_text(json.dumps(state))

    def read_state(self) -> dict[str, Any]:
        return json.loads((self.state / "state.json").read_text())

    def set_variable(self, key: str, value: str) -> None:
        state = self.read_state()
        state["variables"][key] = value
        self.write_state(state)

    def behave(self, **how: str) -> None:
        """fail_up=SERVICE (that deploy fails), set_also=KEY=VALUE (a --set that flips more than it says),
        backfill=missing (verify:backfill finds missing aggregates)."""
        self.write_state({**self.read_state(), **how})

    def calls(self, tool: str | None = None) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [c for c in found if tool is None or c["tool"] == tool]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a run: the stand-ins first on PATH, the playbook's variables set."""
        return {
            **os.environ,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "GITHUB_REPOSITORY": "kezilu/app",
            "DEPLOY_WORKFLOW": "deploy.yml",
            "RAILWAY_PROJECT_ID": "prj-1234",
            "RAILWAY_TOKEN": RAILWAY_TOKEN,
            "OPS_API_TOKEN": OPS_TOKEN,
            "DATABASE_URL": DATABASE_URL,
            **extra,
        }


class _Api(BaseHTTPRequestHandler):
    commit = REGRESSED
    dead_letters: list[dict[str, Any]] = []

    def _send(self, code: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        api = type(self)
        if self.path == "/health":
            self._send(200, {"status": "ok", "commit": api.commit})
        elif self.path == "/api/ops/dead-letters":
            if self.headers.get("Authorization") != f"Bearer {OPS_TOKEN}":
                self._send(401, {"error": "unauthorized"})
            else:
                self._send(200, {"count": len(api.dead_letters), "items": api.dead_letters})
        else:
            self._send(404, {})

    def do_POST(self) -> None:
        api = type(self)
        length = int(self.headers.get("Content-Length") or 0)
        doc = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_deploy":
            api.commit = doc["commit"]
        elif self.path == "/_replay":
            api.dead_letters = []
        self._send(200, {})

    def log_message(self, *args: Any) -> None:
        pass


class ProductionApi:
    """The stand-in api.kezilu.com on a loopback port: health reports the deployed commit, the dead-letter
    queue starts with seven poisoned import jobs."""

    def __init__(self) -> None:
        handler = type("Api", (_Api,), {"commit": REGRESSED, "dead_letters": _poisoned(7)})
        self.handler = handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def commit(self) -> str:
        return self.handler.commit

    @property
    def dead_letter_count(self) -> int:
        return len(self.handler.dead_letters)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _poisoned(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"dl-{i}", "job": "import.positions", "error": "aggregate missing"} for i in range(n, 0, -1)
    ]


def production_playbook(path: Path, api_url: str, edit: Any = None) -> Path:
    """playbooks/production-rollback.yaml pointed at the stand-in API (`edit(doc)` may change it more)."""
    text = (REPO / "playbooks" / "production-rollback.yaml").read_text()
    doc = yaml.safe_load(text.replace("https://api.kezilu.com", api_url))
    if edit is not None:
        edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def api_server() -> Iterator[ProductionApi]:
    api = ProductionApi()
    try:
        yield api
    finally:
        api.close()
