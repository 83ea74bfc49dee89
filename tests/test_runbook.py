"""The runbook runner and the production actions, through the engine, with real processes: stand-in
`railway`, `gh`, `git`, `npm` (tests/standins.py) first on PATH and a stand-in production API on loopback.

A step's status is what ran in it and what that showed; an item that could not run is unknown and never
triggers `on_failure`; a change needs its typed confirmation (journaled with who and the previewed argv);
the redeploy goes service by service and records the new deployment ids; the flags action refuses to
touch a protection; dead letters are inspected and replayed while the probe keeps watching.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_tui.core import events as ev
from rollback_tui.core.checklist import hms
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.summary import summarize
from rollback_tui.core.resume import resume_session
from rollback_tui.playbook.load import PlaybookError, load_playbook
from rollback_tui.playbook.model import FlagChange, Playbook, StabiliseFlags
from rollback_tui.session.engine import Engine, NotAvailable
from rollback_tui.session.preview import ActionPreview
from rollback_tui.session.runbook import Question, Runbook, RunOptions
from standins import LAST_GOOD, ProductionApi, StandIns, api_server, production_playbook
from support.events import breach


@pytest.fixture
def api() -> Iterator[ProductionApi]:
    yield from api_server()


@pytest.fixture
def standins(tmp_path: Path, api: ProductionApi, monkeypatch: pytest.MonkeyPatch) -> StandIns:
    """The stand-ins first on PATH of this process (the engine runs commands with its environment)."""
    tools = StandIns(tmp_path / "standins", api.url)
    for key, value in tools.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # the redeploy's worktree and cwd are relative to where rollback-tui runs
    return tools


def production(tmp_path: Path, api: ProductionApi, edit: Any = None) -> Engine:
    book = load_playbook(production_playbook(tmp_path / "production.yaml", api.url, edit))
    engine = Engine(book, Journal(tmp_path / "session.jsonl"), operator="alice")
    engine.start_session()
    return engine


class Operator:
    """What the cockpit's modals would answer: values and notes by key, confirmations as typed."""

    def __init__(self, answers: dict[str, str] | None = None, *, types: bool = True) -> None:
        self.answers = answers or {}
        self.types = types
        self.asked: list[Question] = []
        self.shown: list[ActionPreview] = []

    async def ask(self, question: Question) -> str | None:
        self.asked.append(question)
        return self.answers.get(question.key)

    async def confirm(self, preview: ActionPreview) -> str | None:
        self.shown.append(preview)
        return preview.confirm_text if self.types else None

    def runbook(self, engine: Engine, **options: Any) -> Runbook:
        return Runbook(
            engine, ask=self.ask, confirm=self.confirm, options=RunOptions(**options), actor="alice"
        )


def kinds(engine: Engine, kind: str) -> list[Any]:
    return [e for e in read_journal(engine.journal.path).events if e.kind == kind]


def small_playbook(steps: list[dict[str, Any]], **extra: Any) -> Playbook:
    doc = {
        "name": "small",
        "title": "Small",
        "replicas": [{"name": "a", "url": "http://127.0.0.1:9", "role": "stable"}],
        "steps": steps,
        **extra,
    }
    return Playbook.model_validate(doc)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --- step status ----------------------------------------------------------------------------------


async def test_a_step_is_judged_by_what_ran_in_it_not_by_being_entered(tmp_path: Path) -> None:
    """The reproducer: `]` six times marked steps ✓ with nothing run, and a fact captured in step 1 made
    step 2's re-check of it pass. Only an item's own run counts."""
    book = small_playbook(
        [
            {"name": "capture", "title": "Capture", "do": [{"fact": "commit"}]},
            {"name": "recheck", "title": "Re-check", "do": [{"fact": "commit"}, {"manual": "Look at it."}]},
            {"name": "gates", "title": "Gates", "do": [{"gate": "smoke"}]},
        ],
        facts=[
            {
                "name": "commit",
                "title": "Commit",
                "source": "command",
                "command": {"argv": py("print('abc')")},
            }
        ],
        gates=[{"name": "smoke", "title": "Smoke", "argv": py("pass")}],
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    for step in book.steps:  # the tracker only
        engine.enter_step(step.name)
    assert {r.name: r.status for r in summarize(book, engine.state).steps} == dict.fromkeys(
        ["capture", "recheck", "gates"], "not_run"
    )
    await engine.run_gates(["smoke"])  # run outside the runbook (the `g` key): not an item of a step
    results = await Operator().runbook(engine).run_step("capture")
    assert [(r.outcome, r.reason) for r in results] == [("passed", "abc")]
    rows = {r.name: r for r in summarize(book, engine.state).steps}
    assert rows["capture"].status == "passed"
    assert [i.status for i in rows["recheck"].items] == ["not_run", "not_run"]
    assert rows["recheck"].status == "not_run" and rows["gates"].status == "not_run"
    recheck = await Operator().runbook(engine).run_step("recheck")
    assert [r.outcome for r in recheck] == ["passed", "needs_input"]  # nobody confirmed the manual task
    assert summarize(book, engine.state).steps[1].status == "needs_input"
    await engine.stop()


async def test_manual_facts_and_tasks_are_answered_by_the_operator_and_journaled_with_them(
    tmp_path: Path,
) -> None:
    book = small_playbook(
        [{"name": "s", "title": "S", "do": [{"fact": "tag"}, {"manual": "Keep Redis as it is."}]}],
        facts=[{"name": "tag", "title": "Surreal image tag", "source": "manual"}],
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    operator = Operator({"tag": "v2.1.4", "s:2": "no restarts in the last hour"})
    results = await operator.runbook(engine).run_step("s")
    assert [(q.kind, q.key) for q in operator.asked] == [("fact", "tag"), ("manual", "s:2")]
    assert [r.outcome for r in results] == ["passed", "passed"]
    fact = kinds(engine, "fact_captured")[0]
    assert fact.values == {"-": "v2.1.4"} and fact.source == "manual:alice"
    finished = kinds(engine, "step_item_finished")[1]
    assert (finished.note, finished.actor) == ("no restarts in the last hour", "alice")
    await engine.stop()


async def test_a_manual_fact_with_an_expectation_fails_on_another_value_and_says_expected_vs_got(
    tmp_path: Path,
) -> None:
    """The reproducer: the demo's `surreal-image-tag` expects 3.0.0, yet "n/a (lab)" passed."""
    book = small_playbook(
        [{"name": "s", "title": "S", "do": [{"fact": "tag"}]}],
        facts=[{"name": "tag", "title": "Surreal image tag", "source": "manual", "expect": "3.0.0"}],
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    results = await Operator({"tag": "n/a (lab)"}).runbook(engine).run_step("s")
    assert [(r.outcome, r.reason) for r in results] == [("failed", "expected 3.0.0, got n/a (lab)")]
    assert summarize(book, engine.state).steps[0].status == "failed"
    results = await Operator({"tag": "3.0.0"}).runbook(engine).run_step("s")
    assert [(r.outcome, r.reason) for r in results] == [("passed", "3.0.0 (recorded by alice)")]
    await engine.stop()


@pytest.mark.parametrize(
    ("gate", "ran"),
    [
        (["rollback-tui-no-such-binary"], False),  # could not run: unknown, not a failure
        (py("raise SystemExit(1)"), True),  # failed: the on_failure item runs
    ],
)
async def test_an_item_that_could_not_run_does_not_trigger_on_failure(
    tmp_path: Path, gate: list[str], ran: bool
) -> None:
    marker = tmp_path / "backfills-enqueued"
    book = small_playbook(
        [
            {
                "name": "integrity",
                "title": "Integrity",
                "do": [{"gate": "verify"}, {"action": "enqueue", "when": "on_failure"}],
            }
        ],
        gates=[{"name": "verify", "title": "Verify", "argv": gate}],
        actions=[
            {
                "kind": "command",
                "name": "enqueue",
                "title": "Enqueue backfills",
                "changes": True,
                "command": {"argv": py(f"open({str(marker)!r}, 'w').write('x')")},
            }
        ],
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    results = await Operator().runbook(engine).run_step("integrity")
    assert marker.exists() == ran
    if ran:
        assert [r.outcome for r in results] == ["failed", "passed"]
    else:
        assert [r.outcome for r in results] == ["unknown", "skipped"]
        assert "unknown, not a failure" in results[1].reason
        assert not kinds(engine, "action_started")
    await engine.stop()


# --- confirmation tiers ---------------------------------------------------------------------------


async def test_a_change_runs_only_with_its_typed_confirmation_journaled_first(tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    action = {
        "kind": "command",
        "name": "pause-ingestion",
        "title": "Pause",
        "command": {"argv": py(f"open({str(marker)!r}, 'w')")},
    }
    read_only = {**action, "name": "list-jobs", "changes": False, "command": {"argv": py("print('3 jobs')")}}
    book = small_playbook(
        [{"name": "s", "title": "S", "do": [{"manual": "x"}]}],
        environment="production",
        actions=[action, read_only],
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    preview = engine.preview_action("pause-ingestion")
    assert (
        preview.changes and preview.confirm_text == "pause-ingestion"
    )  # production: changes unless declared not
    for typed in (None, "pause", " pause-ingestio"):
        with pytest.raises(NotAvailable, match="changes production: type 'pause-ingestion'"):
            await engine.run_action("pause-ingestion", confirmed_text=typed)
    assert not marker.exists() and not kinds(engine, "action_started")
    assert await engine.run_action("list-jobs") == "passed"  # read-only: no confirmation
    assert (
        await engine.run_action("pause-ingestion", confirmed_text="pause-ingestion", actor="bob") == "passed"
    )
    assert marker.exists()
    events = [e for e in read_journal(engine.journal.path).events if e.kind.startswith("action_")]
    confirmed = next(e for e in events if e.kind == "action_confirmed")
    assert (confirmed.action, confirmed.actor, confirmed.typed) == (
        "pause-ingestion",
        "bob",
        "pause-ingestion",
    )
    assert confirmed.commands == [{"label": "", "argv": py(f"open({str(marker)!r}, 'w')"), "where": "local"}]
    started = [e for e in events if e.kind == "action_started" and e.action == "pause-ingestion"]
    assert started[0].n > confirmed.n  # journaled before anything ran
    await engine.stop()


async def test_a_declined_confirmation_runs_nothing_and_says_so(tmp_path: Path) -> None:
    marker = tmp_path / "replayed"
    book = small_playbook(
        [{"name": "q", "title": "Queue", "do": [{"action": "replay"}]}],
        environment="production",
        actions=[
            {
                "kind": "command",
                "name": "replay",
                "title": "Replay",
                "command": {"argv": py(f"open({str(marker)!r}, 'w')")},
            }
        ],
    )
    engine = Engine(book, Journal(tmp_path / "s.jsonl"), operator="alice")
    engine.start_session()
    operator = Operator(types=False)
    [result] = await operator.runbook(engine).run_step("q")
    assert (result.outcome, result.reason) == ("cancelled", "declined at the confirmation")
    assert [p.commands[0].argv for p in operator.shown] == [tuple(py(f"open({str(marker)!r}, 'w')"))]
    assert not marker.exists()
    declined = kinds(engine, "operator_action")[-1]
    assert (declined.action, declined.actor, declined.detail) == (
        "decline_action",
        "alice",
        {"name": "replay"},
    )
    await engine.stop()


# --- the production rollback ----------------------------------------------------------------------


async def test_redeploy_goes_service_by_service_and_records_the_new_deployment_ids(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    engine = production(tmp_path, api)
    with pytest.raises(NotAvailable, match="capture the last known good commit first"):
        await engine.run_action("redeploy-last-known-good", confirmed_text="redeploy-last-known-good")
    assert not standins.calls("railway")
    operator = Operator()
    runbook = operator.runbook(engine)
    first = await runbook.run_step("identify-last-known-good")
    assert [r.outcome for r in first] == ["passed"] * 5, first
    before = {s: standins.read_state()["deployments"][s][-1] for s in ("web", "api", "worker")}
    deploy = await runbook.run_step("roll-back-code")
    assert [r.outcome for r in deploy] == ["passed", "needs_input", "passed"], deploy
    # The operator saw the resolved commands: the commit filled in, ${VAR} as the variable's name.
    web = next(c for c in operator.shown[0].commands if c.label == "web")
    assert "${RAILWAY_PROJECT_ID}" in web.argv and "prj-1234" not in web.text
    prepare = next(c for c in operator.shown[0].commands if c.label == "prepare")
    assert prepare.argv[-1] == LAST_GOOD
    ups = [c for c in standins.calls("railway") if c["argv"][0] == "up"]
    assert [c["argv"][c["argv"].index("--service") + 1] for c in ups] == ["web", "api", "worker"]
    assert all(c["cwd"].endswith(".rollback/last-known-good") for c in ups)
    parts = [(e.part, e.outcome) for e in kinds(engine, "action_finished")]
    assert parts == [
        ("prepare", "passed"),
        ("web", "passed"),
        ("api", "passed"),
        ("worker", "passed"),
        ("", "passed"),
    ]
    after = engine.state.facts
    for service in ("web", "api", "worker"):
        new = standins.read_state()["deployments"][service][-1]
        assert new != before[service]
        assert after[f"railway-deployment-{service}@after_rollback"].values == {"-": new}
        assert after[f"railway-deployment-{service}@baseline"].values == {"-": before[service]}
    assert api.commit == LAST_GOOD
    assert after["deployed-commit@after_rollback"].values == {"api": LAST_GOOD}
    assert engine.rolled_back
    await engine.stop()


async def test_a_failed_service_stops_the_redeploy_and_names_what_did_not_run(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    standins.behave(fail_up="api")
    engine = production(tmp_path, api)
    await engine.capture_facts("baseline", ["last-known-good"])
    outcome = await engine.run_action("redeploy-last-known-good", confirmed_text="redeploy-last-known-good")
    assert outcome == "failed"
    whole = engine.state.actions["redeploy-last-known-good"].whole
    assert (
        whole is not None and whole.error == "api: exit 1: Deploy failed: build error in api; not run: worker"
    )
    assert [c["argv"][c["argv"].index("--service") + 1] for c in standins.calls("railway")] == ["web", "api"]
    assert not engine.rolled_back
    await engine.stop()


def _flags_always(doc: dict[str, Any]) -> None:
    """The flags step as a required one (in the shipped playbook it is optional, the operator's choice)."""
    step = next(s for s in doc["steps"] if s["name"] == "stabilise-runtime-flags")
    step["do"][1]["when"] = "always"
    doc["actions"][1]["set"][0]["optional"] = False


async def test_flags_show_current_to_new_and_keep_every_protection(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    engine = production(tmp_path, api, _flags_always)
    operator = Operator({"stabilise-runtime-flags:1": "auth, cookie and CSRF stay on"})
    results = await operator.runbook(engine).run_step("stabilise-runtime-flags")
    assert [r.outcome for r in results] == ["passed", "passed"], results
    assert [f.text for f in operator.shown[0].flags] == [
        "S3_STARTUP_CHECK_STRICT true → false",
        "AUTH_REQUIRED true (must stay on)",
        "SESSION_COOKIE_SECURE true (must stay on)",
        "CSRF_PROTECTION true (must stay on)",
    ]
    reads = kinds(engine, "flags_read")
    assert [r.phase for r in reads] == ["before", "before", "after"]  # the preview's read, the action's two
    assert reads[-1].values["S3_STARTUP_CHECK_STRICT"] == "false" and "DATABASE_URL" not in reads[-1].values
    assert "db-passw0rd" not in engine.journal.path.read_text()  # the read printed it; nothing kept it
    assert standins.read_state()["variables"]["CSRF_PROTECTION"] == "true"
    await engine.stop()


async def test_an_optional_action_run_on_its_own_shows_on_its_skipped_step_item_with_when_and_who(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    """The reproducer: the flags step skipped its optional `stabilise-flags`; the operator then ran it with
    `a` and it passed, yet the step item said "skipped" for ever. The read model shows it ran."""
    engine = production(tmp_path, api)
    operator = Operator({"stabilise-runtime-flags:1": "auth, cookie and CSRF stay on"})
    results = await operator.runbook(engine).run_step("stabilise-runtime-flags")
    assert [r.outcome for r in results] == ["passed", "skipped"], results
    outcome = await engine.run_action(
        "stabilise-flags", confirmed_text="stabilise-flags", actor="bob", include_optional=True
    )
    assert outcome == "passed"
    whole = engine.state.actions["stabilise-flags"].whole
    assert whole is not None and whole.finished_ts is not None
    steps = summarize(engine.playbook, engine.state).steps
    row = next(r for r in steps if r.name == "stabilise-runtime-flags")
    when = hms(whole.finished_ts)
    assert (row.items[1].status, row.items[1].reason) == ("passed", f"ran outside the step at {when} by bob")
    assert row.status == "passed"
    await engine.stop()


async def test_a_flag_value_refused_by_fill_ends_the_action_before_any_change(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    """The reproducer: a flag value '-1' filled as an argument of its own (it would be read as an option)
    raised out of the action: its start was journaled and never its end (the `a` list said "running" for
    ever) and the changes before it had already been made. The values are known at load: validate says
    it at its file:line. For a spec changed in code, every change is filled before any runs."""

    def negative_value(doc: dict[str, Any]) -> None:
        _flags_always(doc)
        action = doc["actions"][1]
        action["command"]["argv"] = [*action["command"]["argv"][:-1], "{flag}", "{value}"]
        action["set"].append({"flag": "IMPORT_RETRY_LIMIT", "value": "-1", "reason": "no limit"})

    located = r"production.yaml:\d+:\d+: actions\[1\]: set\[1\] \(IMPORT_RETRY_LIMIT\): command.argv\[8\]: "
    (tmp_path / "validated").mkdir()
    with pytest.raises(PlaybookError, match=located + r"the value of \{value\} begins with '-'"):
        production(tmp_path / "validated", api, negative_value)

    engine = production(tmp_path, api, _flags_always)
    action = next(a for a in engine.playbook.actions if isinstance(a, StabiliseFlags))
    assert action.command.argv is not None
    action.command.argv[-1:] = ["{flag}", "{value}"]  # changed after validation, as code could
    action.set.append(FlagChange(flag="IMPORT_RETRY_LIMIT", value="-1", reason="no limit"))
    outcome = await engine.run_action("stabilise-flags", confirmed_text="stabilise-flags")
    whole = engine.state.actions["stabilise-flags"].whole
    assert outcome == "error" and whole is not None and whole.finished_ts is not None
    assert whole.error is not None and whole.error.startswith("IMPORT_RETRY_LIMIT: refusing to fill argv[8]")
    assert "(--value={value})" in whole.error
    assert [c for c in standins.calls("railway") if "--set" in c["argv"]] == []
    await engine.stop()


@pytest.mark.parametrize("case", ["off-before", "flipped-by-the-change"])
async def test_flags_refuse_to_go_on_when_a_protection_is_off_or_would_change(
    case: str, tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    if case == "off-before":
        standins.set_variable("CSRF_PROTECTION", "false")
    else:  # a switch that relaxes more than it names
        standins.behave(set_also="CSRF_PROTECTION=false")
    engine = production(tmp_path, api, _flags_always)
    outcome = await engine.run_action("stabilise-flags", confirmed_text="stabilise-flags")
    whole = engine.state.actions["stabilise-flags"].whole
    assert outcome == "failed" and whole is not None
    sets = [c for c in standins.calls("railway") if "--set" in c["argv"]]
    if case == "off-before":
        assert (
            whole.error
            == "protections not on before any change (CSRF_PROTECTION=false): not changing anything"
        )
        assert sets == []
    else:
        assert whole.error == "CSRF_PROTECTION changed true → false: a protection was relaxed"
    await engine.stop()


async def test_dead_letters_are_inspected_and_the_replay_is_watched(
    tmp_path: Path, api: ProductionApi, standins: StandIns
) -> None:
    engine = production(tmp_path, api)
    engine.watch_interval_s = 0.2
    operator = Operator({"queue-recovery:3": "fixed the aggregate job"})
    runbook = operator.runbook(engine)
    inspect = await runbook.run_item("queue-recovery", 1)
    assert inspect.outcome == "passed" and inspect.reason.startswith("7 dead letters; newest: {")
    seen = kinds(engine, "dead_letters_inspected")[0]
    assert seen.count == 7 and '"id":"dl-7"' in seen.newest[0] and len(seen.newest) == 5
    replay = await runbook.run_item("queue-recovery", 3)
    assert replay.outcome == "passed"
    assert [c["argv"] for c in standins.calls("npm")] == [
        ["run", "ops:replay-dead-letters", "--", "--from-source-payload"]
    ]
    assert api.dead_letter_count == 0
    # The probe keeps watching after the replay: the queue poisoned again shows without anyone asking.
    api.handler.dead_letters = [{"id": "dl-new", "job": "import.positions"}] * 3
    deadline = time.monotonic() + 10
    while engine.state.probes["dead-letters"].value != 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert engine.state.probes["dead-letters"].value == 3
    await engine.stop()


def test_resume_ends_what_a_killed_session_left_running_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    journal = Journal(path)
    journal.append(
        ev.SessionStarted(
            playbook="p.yaml", playbook_name="p", playbook_title="t", environment="production",
            operator="alice", host="h", version="0", runbook_items=True,
        )
    )  # fmt: skip
    journal.append(ev.StepItemStarted(step="roll-back-code", index=0, item="action: redeploy", actor="alice"))
    journal.append(ev.ActionStarted(action="redeploy", actor="alice"))
    journal.append(ev.ActionStarted(action="redeploy", part="web", argv=["railway", "up"], actor="alice"))
    journal.close()
    resumed, state, _ = resume_session(path, operator="bob")
    resumed.close()
    assert {p.part: p.status for p in state.actions["redeploy"].parts.values()} == {
        "": "interrupted",
        "web": "interrupted",
    }
    item = state.step_items[("roll-back-code", 0)]
    assert item.status == "unknown" and item.reason.startswith("interrupted")


def test_the_shipped_playbooks_declare_what_changes() -> None:
    from conftest import REPO
    from rollback_tui.playbook.model import action_changes

    declared = {}
    for path in sorted((REPO / "playbooks").glob("*.yaml")):
        book = load_playbook(path)
        declared.update({f"{book.name}/{a.name}": action_changes(book, a) for a in book.actions})
    assert declared == {
        "demo/inject-blue-next-fault": False,  # the embedded lab's fault switch
        "demo/rollback-blue-next": True,
        "production-rollback/redeploy-last-known-good": True,
        "production-rollback/stabilise-flags": True,
        "production-rollback/pause-ingestion": True,
        "production-rollback/replay-dead-letters": True,
        "production-rollback/enqueue-backfills": True,
        "production-rollback/resume-ingestion": True,
        "realtime-surreal-rehearsal/deploy-blue-next": True,
        "realtime-surreal-rehearsal/rollback-blue-next": True,
    }
    raw = yaml.safe_load((REPO / "playbooks" / "production-rollback.yaml").read_text())
    replay = next(a for a in raw["actions"] if a["name"] == "replay-dead-letters")
    assert replay["watch"] == ["dead-letters"]


async def test_a_guardrail_watch_does_not_call_a_breach_its_rail_can_no_longer_observe_still_breached(
    tmp_path: Path,
) -> None:
    # After the rollback the candidate's Prometheus rail has no samples: its breach is neither held nor
    # cleared (the verdict and the report say "unknown since"), but the watch said "still breached".
    book = small_playbook(
        [{"name": "validate", "title": "Validate", "do": [{"check": "guardrail_watch", "note": "Clear?"}]}],
        prometheus=[{"name": "prom", "url": "http://127.0.0.1:9"}],
        guardrails=[{"name": "prom-5xx", "title": "5xx", "metric": "query", "query": "up", "threshold": 0.05,
                     "scope": "candidate", "severity": "P1"}],
    )  # fmt: skip
    engine = Engine(book, Journal(tmp_path / "session.jsonl"), operator="alice")
    engine.start_session()
    now = time.time()
    engine.emit(ev.GuardrailStatus(guardrail="prom-5xx", status="observed", ts=now - 8))
    engine.emit(breach(now - 5, guardrail="prom-5xx", severity="P1", metric="query", window_s=10))
    engine.emit(ev.GuardrailStatus(guardrail="prom-5xx", status="waiting", ts=now - 2))
    [result] = await Operator().runbook(engine, watch_s=0.2).run_step("validate")
    assert result.outcome == "unknown", result
    assert "P1 prom-5xx breached at" in result.reason and "unknown since" in result.reason, result.reason
    assert "still breached" not in result.reason
