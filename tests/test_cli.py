"""The command line as a user runs it: real subprocesses of `python -m rollback_tui`."""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO, build_lab_playbook, holds_secret, require_redis_server
from rollback_tui.cli.common import Output
from rollback_tui.core import events as ev
from rollback_tui.core.journal import read_journal
from rollback_tui.core.redact import MASK, Redactor
from rollback_tui.lab.proc import free_port
from support.http import JsonHandler

PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))
WATCHED = build_lab_playbook(
    guardrails=[
        {
            "name": "service-5xx",
            "title": "5xx rate of the service",
            "metric": "http_5xx_rate",
            "threshold": 0.05,
            "window_s": 2,
            "scope": "all",
            "severity": "P0",
        },
        {
            "name": "ws-disconnect-burst",
            "title": "Websocket disconnect burst",
            "metric": "ws_disconnects",
            "threshold": 5,
            "window_s": 10,
            "scope": "candidate",
            "severity": "P0",
        },
    ]
)


def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None, tmp: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    if tmp is not None:
        full_env["ROLLBACK_TUI_DATA_DIR"] = str(tmp / "data")
    return subprocess.run(
        [sys.executable, "-m", "rollback_tui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )


def test_validate_accepts_every_shipped_playbook():
    result = run("validate", *map(str, PLAYBOOKS))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok —") == len(PLAYBOOKS) == 3


def test_validate_rejects_a_broken_playbook_with_file_line_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "playbooks" / "demo.yaml").read_text().replace("role: candidate", "role: canary", 1)
    bad.write_text(text)
    line = text.splitlines().index("    role: canary") + 1
    result = run("validate", str(bad), str(PLAYBOOKS[0]))
    assert result.returncode == 1
    assert f"{bad}:{line}:11: replicas[2].role:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "index", "into"),
    [
        ('[sh, -c, "deploy --commit {commit}"]', 2, "shell"),
        ('[ssh, deploy@web-1, deploy, --commit, "{commit}"]', 4, "remote shell"),  # parsed on the host
    ],
)
def test_validate_refuses_a_placeholder_spliced_into_a_shell_script(tmp_path, argv, index, into):
    bad = tmp_path / "injection.yaml"
    text = (REPO / "playbooks" / "production-rollback.yaml").read_text()
    web = re.search(r"argv: \[railway, up, .*--service, web, --ci\]", text)
    assert web is not None
    line = text[: web.start()].count("\n") + 1  # the first service of the redeploy action: web
    bad.write_text(text[: web.start()] + f"argv: {argv}" + text[web.end() :])
    result = run("validate", str(bad))
    assert result.returncode == 1, result.stdout
    field = rf"actions\[0\]\.services\.web\.argv\[{index}\]"
    where = rf"^{re.escape(str(bad))}:{line}:\d+: {field}: \{{commit\}} would be spliced into {into}"
    assert re.search(where, result.stderr, re.M), result.stderr


def test_schema_is_json_schema():
    schema = json.loads(run("schema").stdout)
    assert schema["type"] == "object" and "replicas" in schema["properties"]


def _write_resolved(lab, path: Path) -> Path:
    path.write_text(yaml.safe_dump(lab.playbook.model_dump(mode="json", exclude_none=True)))
    return path


async def test_check_health_fanout_and_traffic_json(lab, tmp_path):
    playbook = _write_resolved(lab, tmp_path / "lab.yaml")
    health = run("check", "health", str(playbook), "--json")
    assert health.returncode == 0, health.stderr
    assert [r["status"] for r in json.loads(health.stdout)["replicas"]] == ["ok", "ok", "ok"]

    fanout = run("check", "fanout", str(playbook), "--json")
    assert fanout.returncode == 0, fanout.stdout + fanout.stderr
    result = json.loads(fanout.stdout)
    assert result["passed"] and result["replay_ok"] and result["received"]["B"] == result["sent"]

    traffic = run("check", "traffic", str(playbook), "--json", "--seconds", "2", "--rps", "100")
    assert traffic.returncode == 0, traffic.stdout + traffic.stderr
    split = json.loads(traffic.stdout)
    assert split["requests"] >= 150 and set(split["share"]) == {"stable-a", "stable-b", "blue-next"}


@pytest.mark.parametrize("lab_playbook", [WATCHED], indirect=True)
async def test_check_traffic_fails_when_a_stable_replica_is_dead(lab, tmp_path):
    await lab.kill_replica("stable-b")
    playbook = _write_resolved(lab, tmp_path / "lab.yaml")
    traffic = run("check", "traffic", str(playbook), "--json", "--seconds", "2", "--rps", "100")
    assert traffic.returncode == 1, traffic.stdout + traffic.stderr
    result = json.loads(traffic.stdout)
    # The balancer answers stable-b's share (45 %) itself, a 502 without X-Served-By: a failed request of
    # the service, in words, never a pseudo-replica "?".
    assert set(result["share"]) == {"stable-a", "blue-next"}, result
    failed = result["unattributed"]["no replica identified (HTTP 502)"]
    assert 0.25 * result["requests"] < failed < 0.65 * result["requests"], result
    assert "service-5xx" in {b["guardrail"] for b in result["breaches"]}


@pytest.mark.parametrize("lab_playbook", [WATCHED], indirect=True)
async def test_check_traffic_says_the_balancer_is_unreachable(lab, tmp_path):
    playbook = _write_resolved(lab, tmp_path / "lab.yaml")
    await lab.children["balancer"].kill()
    traffic = run("check", "traffic", str(playbook), "--seconds", "2", "--rps", "50")
    assert traffic.returncode == 1, traffic.stdout + traffic.stderr
    sent = re.search(r"✗ (\d+) requests through", traffic.stdout)
    assert sent and int(sent[1]) >= 50, traffic.stdout
    assert f"✗ {sent[1]} of {sent[1]} requests failed: balancer unreachable" in traffic.stdout
    assert "service-5xx" in traffic.stdout
    assert "ws-disconnect-burst" not in traffic.stdout  # streams that never connected are not disconnects


async def test_check_fanout_fails_with_reason_when_a_replica_is_on_memory(lab, tmp_path):
    await lab.set_faults("stable-b", transport="memory")
    playbook = _write_resolved(lab, tmp_path / "lab.yaml")
    fanout = run("check", "fanout", str(playbook))
    assert fanout.returncode == 1
    assert "stable-b reports transport=memory" in fanout.stdout


def test_headless_rehearsal_detects_rolls_back_verifies_and_passes(tmp_path):
    require_redis_server()
    out = tmp_path / "evidence"
    result = run(
        "rehearse",
        "playbooks/demo.yaml",
        "--headless",
        "--tick",
        "no-pr15-blockers=no blockers",
        "--export",
        str(out),
        "--watch",
        "15",
        tmp=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout
    # The fault trips the synthetic 5xx rail or the Prometheus one: whichever decides first rolls back.
    assert "P0 guardrail candidate-5xx breached" in log or "P0 guardrail prom-candidate-5xx breached" in log
    assert "verified ok: 100.0% of" in log and "  checklist: evidence 5/5 · exit criteria 3/3 checked" in log
    # Its Prometheus guardrails run beside the synthetic ones, or the log says why they do not.
    from rollback_tui.lab.prometheus import prometheus_binary

    if prometheus_binary():
        assert "Info from lab: Prometheus http://127.0.0.1:" in log and "scrapes 3 replicas every 1 s" in log
    else:
        assert "Warning from lab: Prometheus is not installed (apt-get install prometheus)" in log
    assert "✓ exit criteria hold" in log
    # "All traffic on the old image" is judged on the canary the item sent after the rollback, not on a
    # window reaching back to blue-next's traffic before it (it read "blue-next 8.1% (6 5xx)", passed).
    verify_traffic = next(ln for ln in log.splitlines() if "Step verify-rollback item 4 passed" in ln)
    assert "3 s canary: " in verify_traffic and "blue-next 0.0% (0 5xx)" in verify_traffic, verify_traffic
    assert {p.name for p in out.iterdir()} >= {"report.md", "bundle.json", "journal.jsonl"}
    report = (out / "report.md").read_text()
    assert "Exit verdict: COMPLETE" in report
    summary = json.loads((out / "bundle.json").read_text())["summary"]
    assert summary["verdict"]["complete"] is True


@pytest.mark.parametrize(
    "run_only",
    [
        ["--only", "verify-rollback"],
        ["--only", "trigger-rollback", "--only", "verify-rollback", "--rollback", "never"],
    ],
    ids=["only-the-verification", "rollback-never"],
)
def test_a_rollback_verification_with_no_rollback_does_not_pass(run_only: list[str], tmp_path: Path) -> None:
    """`rehearse --only verify-rollback` (or with `--rollback never`) on the demo read "verify-rollback:
    passed" — its traffic item "All traffic on the old image" passed with blue-next at ~15 % — although
    nothing was rolled back; only the exit criteria said so. What a verification step's items show
    without an applied rollback verifies none: unknown, with the reason, in the log, report, bundle, JUnit."""
    require_redis_server()
    out, junit = tmp_path / "evidence", tmp_path / "junit.xml"
    result = run("rehearse", "playbooks/demo.yaml", "--headless", *run_only, "--export", str(out),
                 "--junit", str(junit), tmp=tmp_path, timeout=180)  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout
    assert "verify-rollback: passed" not in log
    step = next(ln for ln in log.splitlines() if ln.startswith("  step 5. verify-rollback: "))
    why = "no rollback was applied in this session, so it verifies none — it passed"
    head = "  step 5. verify-rollback: unknown — gate: release-gates-surreal unknown"
    assert step.startswith(f"{head} ({why})"), step
    assert f"check: traffic unknown ({why}: 3 s canary: " in step and "blue-next " in step, step
    assert "(verify-rollback): unknown" in (out / "report.md").read_text()
    bundled = json.loads((out / "bundle.json").read_text())["summary"]["steps"]
    verify = next(s for s in bundled if s["step"] == "verify-rollback")
    assert verify["status"] == "unobserved" and {i["status"] for i in verify["items"]} == {"unobserved"}
    cases = ET.parse(junit).getroot().iter("testcase")
    verifying = [c for c in cases if c.get("classname", "").endswith(".verify-rollback")]
    assert len(verifying) == 5 and all(c.find("error") is not None for c in verifying)


def test_a_canary_that_no_replica_answered_is_a_failed_traffic_check(tmp_path: Path) -> None:
    """The runbook's `check: traffic` passed whenever requests had an outcome — also when every one of
    them found the balancer unreachable — where `check traffic` fails: no replica answered."""
    closed = free_port()
    doc = {
        "name": "unreachable",
        "title": "The balancer does not answer",
        "replicas": [
            {"name": "stable-a", "url": f"http://127.0.0.1:{closed}", "role": "stable",
             "labels": {"app": "api", "track": "stable"}},
            {"name": "blue-next", "url": f"http://127.0.0.1:{closed}", "role": "candidate",
             "labels": {"app": "api", "track": "blue-next"}},
        ],
        "load_balancer": {
            "url": f"http://127.0.0.1:{closed}",
            "selector": {"app": "api"},
            "traffic_control": {"driver": "lab", "admin_url": f"http://127.0.0.1:{closed}"},
        },
        "steps": [{"name": "canary", "title": "Canary traffic", "do": [{"check": "traffic"}]}],
    }  # fmt: skip
    book = tmp_path / "unreachable.yaml"
    book.write_text(yaml.safe_dump(doc))
    journal = tmp_path / "j.jsonl"
    result = run("rehearse", str(book), "--headless", "--no-lab", "--journal", str(journal), tmp=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    finished = [e for e in read_journal(journal).events if isinstance(e, ev.StepItemFinished)]
    assert [(e.item, e.outcome) for e in finished] == [("check: traffic", "failed")], finished
    reason = finished[0].reason
    assert "answered by no replica" in reason and "balancer unreachable 100.0%" in reason, reason
    assert "  step 1. canary: failed — check: traffic failed (" in result.stdout


def test_a_change_a_breach_called_for_and_nobody_made_is_not_a_passed_step(tmp_path: Path) -> None:
    """The smoke gate fails, its P0 rail breaches, and the next step's `on_breach` change is due — but
    not run without --allow-destructive. The step read "passed": a skipped conditional item was never
    held against its step, also when its condition held."""
    closed = free_port()
    doc = {
        "name": "withheld",
        "title": "A due change that was not made",
        "replicas": [{"name": "api", "url": f"http://127.0.0.1:{closed}", "role": "stable"}],
        "gates": [
            {"name": "smoke", "title": "Smoke", "argv": [sys.executable, "-c", "raise SystemExit(1)"]},
            {"name": "backfill", "title": "Backfill check", "argv": [sys.executable, "-c", "pass"]},
        ],
        "guardrails": [{"name": "smoke-failed", "title": "Smoke failed", "metric": "gate_failed",
                        "gate": "smoke", "threshold": 0, "severity": "P0"}],
        "actions": [{"kind": "command", "name": "pause-ingestion", "title": "Pause ingestion",
                     "changes": True, "command": {"argv": [sys.executable, "-c", "pass"]}}],
        "steps": [
            {"name": "detect", "title": "Detect", "do": [{"gate": "smoke"}]},
            {"name": "mitigate", "title": "Mitigate",
             "do": [{"action": "pause-ingestion", "when": "on_breach"}, {"gate": "backfill"}]},
            {"name": "calm", "title": "Nothing to do",
             "do": [{"action": "pause-ingestion", "when": "on_failure"}, {"gate": "backfill"}]},
        ],
    }  # fmt: skip
    book = tmp_path / "withheld.yaml"
    book.write_text(yaml.safe_dump(doc))
    out = tmp_path / "evidence"
    result = run("rehearse", str(book), "--headless", "--no-lab", "--export", str(out), tmp=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "P0 guardrail smoke-failed breached" in result.stdout
    assert (
        "  step 2. mitigate: partial — action: pause-ingestion skipped (changes the system: not run without "
        "--allow-destructive) · gate: backfill passed"
    ) in result.stdout, result.stdout
    # A condition that did not hold (nothing failed in that step) is still not held against its step.
    assert "  step 3. calm: passed — action: pause-ingestion skipped (nothing failed earlier" in result.stdout
    assert "(mitigate): partial" in (out / "report.md").read_text()


def test_a_guardrail_watch_with_a_breach_still_on_is_not_clear(tmp_path: Path) -> None:
    """The smoke gate fails and its P0 rail breaches; nothing recovers it. The next step's guardrail watch
    ("trigger conditions clear") passed — "no guardrail breached in 1 s" — since only breaches that began
    during the watch counted, beside a verdict line "✗ BREACH P0 smoke-failed"."""
    closed = free_port()
    doc = {
        "name": "still-breached",
        "title": "A breach that never cleared",
        "replicas": [{"name": "api", "url": f"http://127.0.0.1:{closed}", "role": "stable"}],
        "gates": [{"name": "smoke", "title": "Smoke", "argv": [sys.executable, "-c", "raise SystemExit(1)"]}],
        "guardrails": [{"name": "smoke-failed", "title": "Smoke failed", "metric": "gate_failed",
                        "gate": "smoke", "threshold": 0, "severity": "P0"}],
        "steps": [
            {"name": "detect", "title": "Detect", "do": [{"gate": "smoke"}]},
            {"name": "validate", "title": "Validate",
             "do": [{"check": "guardrail_watch", "note": "Trigger conditions clear"}]},
        ],
    }  # fmt: skip
    book = tmp_path / "still.yaml"
    book.write_text(yaml.safe_dump(doc))
    for policy in ("on_breach", "never"):  # with nothing to roll back, and with rollbacks off
        result = run("rehearse", str(book), "--headless", "--no-lab", "--watch", "1", "--rollback", policy,
                     tmp=tmp_path)  # fmt: skip
        assert result.returncode == 1, result.stdout + result.stderr
        assert "  guardrail ✗ BREACH P0 smoke-failed" in result.stdout
        step = "  step 2. validate: failed — check: guardrail_watch failed (still breached: P0 smoke-failed"
        assert step in result.stdout, result.stdout


def test_headless_rehearsal_fails_and_says_why_with_a_memory_transport_replica(tmp_path):
    require_redis_server()
    result = run(
        "rehearse",
        "playbooks/demo.yaml",
        "--headless",
        "--format",
        "jsonl",
        "--tick",
        "no-pr15-blockers",
        "--inject",
        "stable-b:transport=memory",
        "--watch",
        "5",
        tmp=tmp_path,
        timeout=240,
    )
    assert result.returncode == 1
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["kind"] == "rehearsal_verdict" and verdict["complete"] is False
    assert any("stable-b reports transport=memory" in why for why in verdict["why"]), verdict


LEAKED = "s3cr3t-upstream-k3y"  # UPSTREAM_KEY: referenced by the playbook as ${UPSTREAM_KEY}, so a secret


class _LeakyUpstream(JsonHandler):
    """A chat API that holds a stream open and answers every send with an error echoing a credential."""

    released = threading.Event()

    def do_GET(self) -> None:
        if "/stream" not in self.path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.flush()
        self.released.wait(60)

    def do_POST(self) -> None:
        as_basic = base64.b64encode(f"ci:{LEAKED}".encode()).decode()  # encoded forms are masked too
        body = f"upstream rejected credentials {LEAKED} (as {as_basic})".encode()
        self.send_json(body, 500)


@pytest.fixture
def leaky_upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyUpstream)
    server.daemon_threads = True
    _LeakyUpstream.released.clear()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _LeakyUpstream.released.set()
        server.shutdown()
        server.server_close()


def _leaky_playbook(path: Path, url: str) -> Path:
    """The secret reaches a fact value (a `missing:` reason), a failing gate's output and, through the
    upstream's error body, a fanout reason (a `why:` line)."""
    doc = {
        "name": "leaky",
        "title": "Secrets in what the rehearsal observes",
        "replicas": [{"name": name, "url": url, "role": "stable"} for name in ("stable-a", "stable-b")],
        "realtime": {
            "redis_url": "redis://127.0.0.1:1/0",
            "channel_prefix": "chat:rt:",
            "redis_tap": False,
            "fanout": {"stream_kind": "sse", "receive_timeout_s": 1.0},
        },
        "facts": [
            {
                "name": "upstream-key",
                "title": "Upstream key",
                "source": "env",
                "env_var": "UPSTREAM_KEY",
                "expect": "the-pinned-key",
            },
        ],
        "gates": [
            {
                "name": "smoke",
                "title": "Smoke",
                "argv": [
                    "python3",
                    "-c",
                    "import sys; print('key', sys.argv[1]); sys.exit(3)",
                    "${UPSTREAM_KEY}",
                ],
            }
        ],
        "steps": [
            {
                "name": "only",
                "title": "Only",
                "do": [{"fact": "upstream-key"}, {"gate": "smoke"}, {"check": "fanout"}],
            }
        ],
        "exit_criteria": [
            {
                "name": "key-pinned",
                "text": "Upstream key pinned",
                "rule": "facts_agree",
                "fact": "upstream-key",
            },
            {"name": "smoke-passes", "text": "Smoke passes", "rule": "gate_passed", "gate": "smoke"},
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_headless_output_masks_what_the_journal_masks(fmt: str, leaky_upstream: str, tmp_path: Path) -> None:
    playbook = _leaky_playbook(tmp_path / "leaky.yaml", leaky_upstream)
    journal = tmp_path / "session.jsonl"
    result = run(
        "rehearse", str(playbook), "--headless", "--format", fmt, "--journal", str(journal),
        env={"UPSTREAM_KEY": LEAKED}, tmp=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert LEAKED not in journal.read_text()  # what the journal masks …
    assert not holds_secret(result.stdout + result.stderr, LEAKED)  # … stdout and stderr mask too
    lines = result.stdout.strip().splitlines()
    if fmt == "jsonl":
        events = [json.loads(line) for line in lines]  # every line stays JSON
        assert any(e["kind"] == "gate_output" and e["line"] == f"key {MASK}" for e in events)
        verdict = events[-1]
        assert verdict["kind"] == "rehearsal_verdict"
        missing, why = verdict["missing"], verdict["why"]
    else:
        missing = [line.split("- missing: ", 1)[1] for line in lines if "- missing: " in line]
        why = [line.split("- why: ", 1)[1] for line in lines if "- why: " in line]
    # The reasons are still there, with the secret masked in them.
    assert any(
        "fact upstream-key does NOT agree" in m and f"={MASK} (expected the-pinned-key)" in m for m in missing
    )
    head = f"send via stable-a answered HTTP 500: upstream rejected credentials {MASK} (as "
    assert any(w.startswith("fanout check failed — ") and head in w for w in why), why


@pytest.mark.parametrize("as_json", [False, True])
def test_check_fanout_masks_secrets_in_its_reasons(
    as_json: bool, leaky_upstream: str, tmp_path: Path
) -> None:
    playbook = _leaky_playbook(tmp_path / "leaky.yaml", leaky_upstream)
    result = run(
        "check", "fanout", str(playbook), *(["--json"] if as_json else []), env={"UPSTREAM_KEY": LEAKED}
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert not holds_secret(result.stdout + result.stderr, LEAKED)
    reasons = json.loads(result.stdout)["reasons"] if as_json else result.stdout.splitlines()
    assert any(f"upstream rejected credentials {MASK} (as " in r for r in reasons), reasons


def test_warnings_logged_on_a_headless_path_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(Redactor([LEAKED]))
    handler = out.capture_logs()
    try:
        logging.getLogger("rollback_tui.core.engine").warning("task failed: ValueError: %s", LEAKED)
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert f"task failed: ValueError: {MASK}" in err and LEAKED not in err


def _prints(node: ast.AST) -> list[int]:
    """Line numbers of calls under `node` that write to the terminal: click.echo/secho, print, and
    sys.stdout/sys.stderr writes."""
    lines = []
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        name = ast.unparse(call.func)
        if name in ("print", "echo", "secho") or name.endswith(
            (".echo", ".secho", "stdout.write", "stderr.write")
        ):
            lines.append(call.lineno)
    return lines


def test_the_cli_prints_only_through_its_redacting_output() -> None:
    # A print added anywhere else in the CLI would bypass the redactor: keep every one inside Output.
    package = REPO / "src" / "rollback_tui" / "cli"
    common = ast.parse((package / "common.py").read_text())
    sink = next(n for n in common.body if isinstance(n, ast.ClassDef) and n.name == "Output")
    assert len(_prints(sink)) == 2  # line() and json()
    assert sorted(_prints(common)) == sorted(_prints(sink))
    for module in sorted(package.glob("*.py")):
        if module.name != "common.py":
            assert _prints(ast.parse(module.read_text())) == [], module.name


def test_a_gate_fault_rehearsal_ends_with_a_clean_stderr(tmp_path):
    """Issue 12 item 9: a gate that times out while a process it started outside its group (setsid)
    still holds its output. The rehearsal must end without `Exception ignored … RuntimeError: Event loop
    is closed` from pipes left open until the garbage collector met them after the loop had closed."""
    pidfile = tmp_path / "holder.pid"
    holder = f"setsid sh -c 'echo $$ > {pidfile}.new && mv {pidfile}.new {pidfile}; exec sleep 60' & sleep 60"
    book = tmp_path / "gate-fault.yaml"
    book.write_text(
        yaml.safe_dump(
            {
                "name": "gate-fault",
                "title": "A gate fault",
                "replicas": [{"name": "a", "url": "http://127.0.0.1:9", "role": "stable"}],
                "gates": [{"name": "stuck", "title": "Stuck", "argv": ["sh", "-c", holder], "timeout_s": 1}],
                "steps": [{"name": "gates", "title": "Gates", "do": [{"gate": "stuck"}]}],
            }
        )
    )
    try:
        result = run("rehearse", str(book), "--headless", "--no-lab", tmp=tmp_path)
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):  # the gate's reaper may have ended it already
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert "✗ Gate stuck timed out (run " in result.stdout, result.stdout
    assert pidfile.exists(), "the holder never ran: the test proves nothing"
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_export_command_writes_report_from_a_journal(tmp_path):
    journal = REPO / "tests" / "data" / "export" / "session.jsonl"
    if not journal.exists():
        pytest.skip("recorded export journal missing")
    result = run("export", str(journal), "--to", str(tmp_path / "x"), "--playbook", "playbooks/demo.yaml")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x" / "report.md").read_text().startswith("# ")


def test_bad_input_is_an_error_message_not_a_traceback(tmp_path):
    missing = run("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    bad_inject = run("rehearse", "playbooks/demo.yaml", "--headless", "--inject", "oops")
    assert bad_inject.returncode == 2 and "REPLICA:KEY=VALUE" in bad_inject.stderr
    typo = run("rehearse", "playbooks/demo.yaml", "--headless", "--inject", "blue-nxt:error_rate=0.5")
    assert typo.returncode == 2 and "no replica named 'blue-nxt'" in typo.stderr
    tick = run("rehearse", "playbooks/demo.yaml", "--headless", "--tick", "no-pr15-blockerz")
    assert (
        tick.returncode == 2 and "No checklist item or exit criterion named 'no-pr15-blockerz'" in tick.stderr
    )


def test_a_fault_the_lab_refuses_is_an_error_not_a_traceback(tmp_path):
    require_redis_server()
    refused = run(
        "rehearse", "playbooks/demo.yaml", "--headless", "--inject", "blue-next:bogus=1", tmp=tmp_path
    )
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "error: --inject blue-next" in refused.stderr and "Traceback" not in refused.stderr


def test_injected_values_are_read_as_json_scalars() -> None:
    from rollback_tui.cli.headless import _parse_injections

    parsed = _parse_injections(
        ("stable-b:health_errors=true", "stable-b:error_rate=0.5", "b:transport=memory")
    )
    assert parsed == {"stable-b": {"health_errors": True, "error_rate": 0.5}, "b": {"transport": "memory"}}


def test_a_baseline_breach_reads_with_both_sides_in_the_headless_log() -> None:
    from rollback_tui.cli.headless import progress_line

    breach = ev.GuardrailBreach(
        ts=1767268800.0, guardrail="p95-latency", severity="P1", metric="p95_latency_ms", value=3.1,
        threshold=2, window_s=10, candidate=310.0, baseline=100.0, compare="ratio",
    )  # fmt: skip
    line = progress_line(breach)
    assert line is not None and line.endswith(
        "P1 guardrail p95-latency breached: p95_latency_ms \N{MULTIPLICATION SIGN}3.10 >"
        " \N{MULTIPLICATION SIGN}2.00 over 10 s (candidate 310 ms vs stable 100 ms)"
    ), line
