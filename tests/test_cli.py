"""The command line as a user runs it: real subprocesses of `python -m rollback_tui`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, require_redis_server

PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))


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
    assert "P0 guardrail candidate-5xx breached" in log
    assert "rollback verified: 100% stable" in log
    assert "✓ exit criteria hold" in log
    assert {p.name for p in out.iterdir()} >= {"report.md", "bundle.json", "journal.jsonl"}
    report = (out / "report.md").read_text()
    assert "Exit verdict: COMPLETE" in report
    summary = json.loads((out / "bundle.json").read_text())["summary"]
    assert summary["verdict"]["complete"] is True


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
