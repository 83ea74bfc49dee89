"""`rehearse --headless` of the production playbook, as CI runs it: a real `python -m rollback_tui` process
against stand-in `railway`, `gh`, `git`, `npm`, `npx` and `node` first on PATH and a stand-in production
API (tests/standins.py).

The reproducer (issue 14): without --allow-destructive it ran `replay-dead-letters`, and ran
`enqueue-backfills` as an on_failure item because the backfill check could not even start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import holds_secret
from rollback_tui.core.journal import read_journal
from standins import (
    DATABASE_URL,
    LAST_GOOD,
    RAILWAY_TOKEN,
    ProductionApi,
    StandIns,
    api_server,
    production_playbook,
)

pytestmark = pytest.mark.integration

MANUAL_TASKS = [
    "roll-back-code:2=schema forward-only, no downgrade",
    "stabilise-runtime-flags:1",
    "queue-recovery:3=aggregate job fixed",
    "validate:3=flows checked by hand",
]


@pytest.fixture
def api() -> Iterator[ProductionApi]:
    yield from api_server()


@pytest.fixture
def standins(tmp_path: Path, api: ProductionApi) -> StandIns:
    return StandIns(tmp_path / "standins", api.url)


def rehearse(
    tmp_path: Path, standins: StandIns, playbook: Path, *args: str, **env: str
) -> subprocess.CompletedProcess:
    """The CLI in a project checkout of its own (the redeploy's worktree goes there), data dir in tmp."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    environ = standins.env(ROLLBACK_TUI_DATA_DIR=str(tmp_path / "data"), **env)
    for name, value in env.items():
        if value == "":
            environ.pop(name)  # unset: the configuration error of the reproducer
    return subprocess.run(
        [sys.executable, "-m", "rollback_tui", "rehearse", str(playbook), "--headless", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=environ,
        cwd=project,
        stdin=subprocess.DEVNULL,
    )


def items(journal: Path) -> dict[tuple[str, int], Any]:
    """Each step item's last StepItemFinished."""
    return {(e.step, e.index): e for e in read_journal(journal).events if e.kind == "step_item_finished"}


def changing_calls(standins: StandIns) -> list[list[str]]:
    """What the stand-ins were asked to change (reads and checks excluded)."""
    calls = []
    for call in standins.calls():
        argv = call["argv"]
        if call["tool"] == "railway" and (argv[0] == "up" or "--set" in argv):
            calls.append(["railway", *argv])
        elif call["tool"] == "npm" and argv[1] in ("ops:replay-dead-letters", "backfill:enqueue"):
            calls.append(["npm", *argv])
        elif call["tool"] == "git":
            calls.append(["git", *argv])
    return calls


def test_without_allow_destructive_nothing_changes_and_the_changes_not_made_are_listed(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    playbook = production_playbook(tmp_path / "production.yaml", api.url)
    journal = tmp_path / "session.jsonl"
    result = rehearse(tmp_path, standins, playbook, "--journal", str(journal), "--watch", "1")
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert changing_calls(standins) == []  # not the redeploy, no flag, no replay, no backfill
    assert {c["tool"] for c in standins.calls()} >= {
        "gh",
        "railway",
        "npm",
        "node",
        "npx",
    }  # reads and checks ran
    assert api.dead_letter_count == 7
    for item in (
        "roll-back-code 1. action: redeploy-last-known-good",
        "queue-recovery 4. action: replay-dead-letters",
    ):
        assert f"  - not run (changes production; needs --allow-destructive): {item}" in out, out[-3000:]
    finished = items(journal)
    replay = finished[("queue-recovery", 3)]
    assert (replay.outcome, replay.reason) == (
        "skipped",
        "changes the system: not run without --allow-destructive",
    )
    assert (
        finished[("data-integrity", 1)].outcome == "skipped"
    )  # the backfill check passed: nothing to enqueue
    assert "evidence exported to " + str(tmp_path / "data" / "exports") in out


def test_an_unknown_backfill_check_does_not_enqueue_backfills(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    """The reproducer's configuration error: DATABASE_URL unset, so the backfill check cannot start."""
    playbook = production_playbook(tmp_path / "production.yaml", api.url)
    journal = tmp_path / "session.jsonl"
    result = rehearse(
        tmp_path, standins, playbook, "--journal", str(journal), "--allow-destructive", "--watch", "1",
        DATABASE_URL="",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    events = read_journal(journal).events
    gate = next(e for e in events if e.kind == "gate_finished" and e.gate == "verify-backfill")
    assert gate.outcome == "error" and "DATABASE_URL" in (gate.error or "")
    started = [e for e in events if e.kind in ("action_started", "action_confirmed", "operator_action")]
    assert not [e for e in started if "enqueue-backfills" in e.model_dump_json()]
    enqueue = items(journal)[("data-integrity", 1)]
    assert enqueue.outcome == "skipped" and "unknown, not a failure" in enqueue.reason


def _flags_always(doc: dict[str, Any]) -> None:
    step = next(s for s in doc["steps"] if s["name"] == "stabilise-runtime-flags")
    step["do"][1]["when"] = "always"
    doc["actions"][1]["set"][0]["optional"] = False


def test_with_allow_destructive_the_production_rollback_runs_and_refuses_to_relax_a_protection(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    standins.set_variable(
        "CSRF_PROTECTION", "false"
    )  # someone relaxed it already: the flags step must refuse
    playbook = production_playbook(tmp_path / "production.yaml", api.url, _flags_always)
    journal = tmp_path / "session.jsonl"
    ticks = [arg for task in MANUAL_TASKS for arg in ("--tick", task)]
    export = tmp_path / "evidence"
    result = rehearse(
        tmp_path, standins, playbook, "--journal", str(journal), "--allow-destructive", "--watch", "1",
        "--export", str(export), *ticks,
    )  # fmt: skip
    out = result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    calls = changing_calls(standins)
    services = [c[c.index("--service") + 1] for c in calls if c[:2] == ["railway", "up"]]
    assert services == ["web", "api", "worker"], calls
    assert calls[0] == [
        "git",
        "worktree",
        "add",
        "--force",
        "--detach",
        ".rollback/last-known-good",
        LAST_GOOD,
    ]
    assert not [c for c in calls if "--set" in c]  # the protection was off: no flag changed
    assert ["npm", "run", "ops:replay-dead-letters", "--", "--from-source-payload"] in calls
    assert api.commit == LAST_GOOD and api.dead_letter_count == 0
    events = read_journal(journal).events
    facts = {f"{e.fact}@{e.phase}": e.values for e in events if e.kind == "fact_captured"}
    state = standins.read_state()
    for service in ("web", "api", "worker"):
        assert facts[f"railway-deployment-{service}@after_rollback"] == {
            "-": state["deployments"][service][-1]
        }
    finished = items(journal)
    flags = finished[("stabilise-runtime-flags", 1)]
    assert flags.outcome == "failed" and "CSRF_PROTECTION=false" in flags.reason, flags
    inspected = [e.count for e in events if e.kind == "dead_letters_inspected"]
    assert inspected == [7, 0]
    confirmed = [e for e in events if e.kind == "action_confirmed"]
    # Nobody was asked to confirm a flag change that must not happen: refused on the read, before it.
    assert {e.action for e in confirmed} == {"redeploy-last-known-good", "replay-dead-letters"}
    assert not [e for e in events if e.kind == "action_started" and e.action == "stabilise-flags"]
    assert all(e.via == "--allow-destructive" and e.actor == "headless-rehearsal" for e in confirmed)
    # The evidence says all of it, and none of the secrets the commands were given.
    report = (export / "report.md").read_text()
    assert "Action redeploy-last-known-good (api) passed" in report
    assert "protections not on before any change (CSRF_PROTECTION=false)" in report
    for text in (out + result.stderr, journal.read_text(), report):
        assert not holds_secret(text, RAILWAY_TOKEN) and not holds_secret(text, DATABASE_URL)


def test_dry_run_prints_the_resolved_plan_and_runs_nothing(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    playbook = production_playbook(tmp_path / "production.yaml", api.url)
    result = rehearse(
        tmp_path, standins, playbook, "--dry-run", "--only", "roll-back-code", "--only", "queue-recovery"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert standins.calls() == [] and not (tmp_path / "data").exists()  # no command, no journal
    out = result.stdout
    assert "2. roll-back-code: Roll back code" in out and "identify-last-known-good" not in out
    assert "      skipped: changes production, runs only with --allow-destructive" in out
    web = "railway up --project '${RAILWAY_PROJECT_ID}' --environment production --service web --ci"
    assert f"      web: $ {web}" in out
    assert "      needs input: --tick roll-back-code:2[=note]" in out
    assert f"      http: $ GET {api.url}/api/ops/dead-letters" in out
    assert "'DATABASE_URL=${DATABASE_URL}' npm run ops:replay-dead-letters -- --from-source-payload" in out
    assert DATABASE_URL not in out


def test_only_and_junit_give_ci_one_testcase_per_item(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    standins.behave(backfill="missing")  # the check fails: the on_failure item enqueues backfills
    playbook = production_playbook(tmp_path / "production.yaml", api.url)
    junit = tmp_path / "result.xml"
    result = rehearse(
        tmp_path, standins, playbook, "--only", "data-integrity", "--only", "validate", "--allow-destructive",
        "--junit", str(junit), "--watch", "1", "--format", "jsonl",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert ["npm", "run", "backfill:enqueue", "--", "--only-missing"] in changing_calls(standins)
    assert not [c for c in standins.calls() if c["tool"] in ("gh", "git")]  # the other steps did not run
    verdict = json.loads(result.stdout.strip().splitlines()[-1])
    assert verdict["kind"] == "rehearsal_verdict" and verdict["export"]
    assert junit.stat().st_mode & 0o077 == 0
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == [
        "1. gate: verify-backfill",
        "2. action: enqueue-backfills",
        "1. gate: smoke",
        "2. gate: browser-e2e",
        "3. manual: Confirm auth/session, import, analysis, and export flows all pass.",
        "4. check: guardrail_watch",
    ]
    failure = cases["1. gate: verify-backfill"].find("failure")
    assert failure is not None and failure.get("message") == "failed: exit 1"
    assert list(cases["2. action: enqueue-backfills"]) == []  # passed
    skipped = cases["3. manual: Confirm auth/session, import, analysis, and export flows all pass."].find(
        "skipped"
    )
    assert skipped is not None and skipped.get("message", "").startswith("needs input")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("6", "1", "1")
    assert {c.get("classname") for c in cases.values()} == {
        "production-rollback.data-integrity",
        "production-rollback.validate",
    }
