"""Shared helpers for the UI tests: a lab-shaped playbook and engines rebuilt from recorded journals.

Run as a script to regenerate the recorded journals in tests/data/journals/:
    .venv/bin/python tests/test_ui_support.py
"""

from __future__ import annotations

from pathlib import Path

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine

JOURNALS = Path(__file__).parent / "data" / "journals"
T0 = 1767268800.0  # 2026-01-01 12:00:00 UTC


def demo_playbook() -> Playbook:
    return Playbook.model_validate(
        {
            "name": "demo",
            "title": "Realtime rollback rehearsal (embedded lab)",
            "environment": "lab",
            "replicas": [
                {
                    "name": "stable-a",
                    "url": "http://127.0.0.1:18081",
                    "role": "stable",
                    "labels": {"app": "chat"},
                },
                {
                    "name": "stable-b",
                    "url": "http://127.0.0.1:18082",
                    "role": "stable",
                    "labels": {"app": "chat"},
                },
                {
                    "name": "blue-next",
                    "url": "http://blue-next.internal.example:18083",
                    "role": "candidate",
                    "labels": {"app": "chat", "track": "blue-next"},
                    "sensitive": True,
                },
            ],
            "load_balancer": {
                "url": "http://127.0.0.1:1",  # nothing listens on port 1: a rollback fails fast
                "selector": {"app": "chat"},
                "weights": {"stable-a": 45, "stable-b": 40, "blue-next": 15},
                "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:1/admin"},
            },
            "realtime": {"redis_url": "redis://127.0.0.1:6399/0", "channel_prefix": "chat:rt:"},
            "gates": [
                {
                    "name": "release-gates",
                    "title": "Surreal release gates",
                    "argv": ["just", "release-gates-surreal"],
                },
                {
                    "name": "api-tests",
                    "title": "API integration tests",
                    "argv": ["cargo", "test", "-p", "gotong-api", "--test", "*"],
                },
            ],
            "guardrails": [
                {
                    "name": "candidate-5xx",
                    "title": "5xx on blue-next",
                    "metric": "http_5xx_rate",
                    "threshold": 0.02,
                    "scope": "candidate",
                },
                {
                    "name": "ws-drops",
                    "title": "Websocket disconnect burst",
                    "metric": "ws_disconnects",
                    "threshold": 5,
                },
            ],
            "actions": [
                {
                    "kind": "selector_removal",
                    "name": "remove-blue-next",
                    "title": "Remove blue-next from the selector",
                    "replica_set": "blue-next",
                    "remove_replicas": ["blue-next"],
                },
            ],
            "steps": [
                {
                    "name": "baseline",
                    "title": "Capture baseline evidence",
                    "do": [
                        {"gate": "release-gates"},
                        {"gate": "api-tests"},
                        {"manual": "Record SurrealDB image tag"},
                    ],
                },
                {"name": "fanout-before", "title": "Validate realtime fanout", "do": [{"check": "fanout"}]},
                {"name": "canary", "title": "Route 10-20 % to blue-next", "do": [{"check": "traffic"}]},
                {
                    "name": "trigger",
                    "title": "Trigger rollback on a P0 breach",
                    "do": [{"action": "remove-blue-next", "when": "on_breach"}],
                },
                {
                    "name": "verify",
                    "title": "Verify the rollback",
                    "do": [{"gate": "release-gates"}, {"check": "fanout"}],
                },
                {
                    "name": "cleanup",
                    "title": "Clean up and export",
                    "do": [{"check": "cleanup"}, {"check": "export"}],
                },
            ],
            "checklist": [
                {
                    "name": "gates-ok",
                    "text": "Surreal guardrail script succeeded",
                    "rule": "gate_passed",
                    "gate": "release-gates",
                },
                {
                    "name": "rto",
                    "text": "Rollback executed with bounded RTO",
                    "rule": "rollback_within_rto",
                    "rto_s": 60,
                },
                {
                    "name": "fanout-after",
                    "text": "Realtime events delivered across replicas after rollback",
                    "rule": "fanout_passed_after_rollback",
                },
                {
                    "name": "no-loss",
                    "text": "No data loss in stream order or replay",
                    "rule": "fanout_ordering_ok",
                },
                {
                    "name": "report",
                    "text": "Incident report stored with evidence IDs",
                    "rule": "report_exported",
                },
            ],
            "exit_criteria": [
                {"name": "all-checked", "text": "All evidence items checked", "rule": "all_checklist"},
                {"name": "no-blockers", "text": "No open follow-up blockers for PR-15", "rule": "manual"},
            ],
            "sensitive_patterns": [r"\binternal\.example\b"],
        }
    )


def replay_engine(
    journal_name: str, journal_path: Path, *, operator: str = "alice", playbook: Playbook | None = None
) -> Engine:
    """An engine whose state is the fold of a recorded journal; new events go to `journal_path`
    (snapshot tests chdir to tmp_path and pass a relative path so the status bar is stable)."""
    journal = Journal(journal_path)
    engine = Engine(
        playbook or demo_playbook(), journal, playbook_path="playbooks/demo.yaml", operator=operator
    )
    for event in read_journal(JOURNALS / journal_name).events:
        engine.state.apply(event)
    return engine


# --- recorded journals ------------------------------------------------------------------------------

IMAGE_STABLE = "sha256:4f1c9a7be03d2c5581e0f6a9d2b7c4e1a0f3b5d7c9e1f2a3b4c5d6e7f8091a2b"
IMAGE_CANDIDATE = "sha256:b7e20d4c6a8f1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b"


def three_replicas_events() -> list[ev.Event]:
    """20 s of health: stable-a fine, stable-b goes down at t=13 s, blue-next on the wrong prefix."""
    pb = demo_playbook()
    out: list[ev.Event] = [
        ev.SessionStarted(
            ts=T0,
            playbook="playbooks/demo.yaml",
            playbook_name=pb.name,
            playbook_title=pb.title,
            environment=pb.environment,
            operator="alice",
            host="lab-host",
            version="0.1.0",
            replicas=[
                {"name": r.name, "role": r.role, "url": r.url, "labels": r.labels} for r in pb.replicas
            ],
        ),
        ev.StepEntered(ts=T0 + 0.5, step="baseline", actor="alice"),
    ]
    for i in range(20):
        t = T0 + 1 + i
        out.append(
            ev.HealthSample(
                ts=t,
                replica="stable-a",
                status="ok",
                latency_ms=8 + (i * 7) % 9,
                http_status=200,
                image=IMAGE_STABLE,
                commit="9c1e2ab",
                channel_prefix="chat:rt:",
                transport="redis",
            )
        )
        if i < 12:
            out.append(
                ev.HealthSample(
                    ts=t + 0.01,
                    replica="stable-b",
                    status="ok",
                    latency_ms=11 + (i * 5) % 13,
                    http_status=200,
                    image=IMAGE_STABLE,
                    commit="9c1e2ab",
                    channel_prefix="chat:rt:",
                    transport="redis",
                )
            )
        else:
            out.append(
                ev.HealthSample(
                    ts=t + 0.01,
                    replica="stable-b",
                    status="down",
                    error="ConnectError: [Errno 111] Connection refused",
                )
            )
        out.append(
            ev.HealthSample(
                ts=t + 0.02,
                replica="blue-next",
                status="ok",
                latency_ms=24 + (i * 11) % 30,
                http_status=200,
                image=IMAGE_CANDIDATE,
                commit="e41f07d",
                channel_prefix="chat:rt2:",
                transport="redis",
            )
        )
        if i == 12:
            out.append(
                ev.Notice(
                    ts=t + 0.03,
                    level="warning",
                    source="health",
                    message="stable-b stopped answering: ConnectError: [Errno 111] Connection refused",
                )
            )
    return out


def rehearsal_midway_events() -> list[ev.Event]:
    """Everything later issues produce: gates, a fanout check, traffic, a P0 breach, a verified rollback."""
    out = [e for e in three_replicas_events() if not isinstance(e, ev.Notice)]
    t = T0 + 22
    out.append(ev.StepEntered(ts=t, step="verify", actor="alice"))
    out.append(
        ev.GateStarted(
            ts=t, gate="release-gates", run="g1", argv=["just", "release-gates-surreal"], where="local"
        )
    )
    out.append(
        ev.GateOutput(ts=t + 1, gate="release-gates", run="g1", stream="stdout", line="surreal pinned 3.0.0")
    )
    out.append(
        ev.GateFinished(
            ts=t + 2,
            gate="release-gates",
            run="g1",
            outcome="passed",
            exit_code=0,
            duration_s=2.0,
            output_lines=1,
        )
    )
    out.append(ev.GateStarted(ts=t + 2, gate="api-tests", run="g2", argv=["cargo", "test"], where="local"))
    out.append(
        ev.GateFinished(ts=t + 9, gate="api-tests", run="g2", outcome="failed", exit_code=101, duration_s=7.0)
    )
    for session, replica in (("A", "stable-a"), ("B", "stable-b")):
        out.append(ev.FanoutSessionState(ts=t + 3, run="f1", session=session, replica=replica, state="open"))
    for seq in range(1, 4):
        for session, replica, lat in (("A", "stable-a", 3.1), ("B", "stable-b", 4.7)):
            out.append(
                ev.FanoutFrame(
                    ts=t + 3 + seq,
                    run="f1",
                    session=session,
                    replica=replica,
                    thread_id="rehearsal-1",
                    event_id=f"evt-{seq:04d}",
                    seq=seq,
                    sent_at=t + 3 + seq,
                    received_at=t + 3 + seq + lat / 1000,
                    latency_ms=lat,
                )
            )
    out.append(
        ev.FanoutResult(
            ts=t + 8,
            run="f1",
            thread_id="rehearsal-1",
            passed=True,
            phase="after_rollback",
            cross_latency_ms=4.7,
            replay_ok=True,
            ordering_ok=True,
            prefixes_seen=["chat:rt:"],
        )
    )
    out.append(
        ev.SelectorState(
            ts=t + 4,
            selector={"app": "chat"},
            weights={"stable-a": 50, "stable-b": 50},
            backends=["stable-a", "stable-b"],
            source="lab",
        )
    )
    out.append(
        ev.TrafficWindow(
            ts=t + 5,
            window_s=5,
            requests=400,
            per_replica={"stable-a": 210, "stable-b": 190},
            p50_ms=9,
            p95_ms=31,
        )
    )
    out.append(
        ev.GuardrailBreach(
            ts=t + 1,
            guardrail="candidate-5xx",
            severity="P0",
            metric="http_5xx_rate",
            value=0.08,
            threshold=0.02,
            window_s=10,
            first_bad_ts=t - 3,
        )
    )
    out.append(
        ev.RollbackVerified(
            ts=t + 7,
            action="remove-blue-next",
            ok=True,
            stable_share=1.0,
            requests=200,
            time_to_detect_s=4.0,
            rto_s=6.5,
        )
    )
    out.append(ev.ChecklistTicked(ts=t + 9, item="gates-ok", checked=True, actor="engine", auto=True))
    return out


def _health(t: float, i: int) -> list[ev.Event]:
    common = {"http_status": 200, "channel_prefix": "chat:rt:", "transport": "redis", "status": "ok"}
    return [
        ev.HealthSample(
            ts=t,
            replica="stable-a",
            latency_ms=6 + (i * 7) % 9,
            image=IMAGE_STABLE,
            commit="9c1e2ab",
            **common,
        ),
        ev.HealthSample(
            ts=t + 0.01,
            replica="stable-b",
            latency_ms=8 + (i * 5) % 11,
            image=IMAGE_STABLE,
            commit="9c1e2ab",
            **common,
        ),
        ev.HealthSample(
            ts=t + 0.02,
            replica="blue-next",
            latency_ms=14 + (i * 11) % 23,
            image=IMAGE_CANDIDATE,
            commit="e41f07d",
            **common,
        ),
    ]


def _fanout_run(run: str, t: float, phase: str, thread: str) -> list[ev.Event]:
    """Five events: A live throughout, B live for two, then dropped and caught up by replay; tap sees all."""
    out: list[ev.Event] = []
    for session, replica in (("A", "stable-a"), ("B", "stable-b"), ("tap", "redis")):
        out.append(ev.FanoutSessionState(ts=t, run=run, session=session, replica=replica, state="open"))
    for seq in range(1, 6):
        sent = t + seq * 0.2
        eid = f"evt-{run}-{seq:03d}"
        frames = [("tap", "redis", 0.8), ("A", "stable-a", 2.1 + seq / 10)]
        if seq <= 2:
            frames.append(("B", "stable-b", 3.4 + seq / 10))
        for session, replica, lat in frames:
            out.append(
                ev.FanoutFrame(
                    ts=sent + lat / 1000,
                    run=run,
                    session=session,  # type: ignore[arg-type]
                    replica=replica,
                    thread_id=thread,
                    event_id=eid,
                    seq=seq,
                    sent_at=sent,
                    received_at=sent + lat / 1000,
                    latency_ms=lat,
                )
            )
        if seq == 2:
            out.append(
                ev.FanoutSessionState(
                    ts=sent + 0.01, run=run, session="B", replica="stable-b", state="dropped"
                )
            )
    t_back = t + 1.3
    out.append(
        ev.FanoutSessionState(ts=t_back, run=run, session="B", replica="stable-b", state="reconnecting")
    )
    for seq in range(3, 6):
        out.append(
            ev.FanoutFrame(
                ts=t_back + seq / 100,
                run=run,
                session="B",
                replica="stable-b",
                thread_id=thread,
                event_id=f"evt-{run}-{seq:03d}",
                seq=seq,
                sent_at=t + seq * 0.2,
                received_at=t_back + seq / 100,
                latency_ms=None,
                replay=True,
            )
        )
    for session, replica in (("A", "stable-a"), ("B", "stable-b"), ("tap", "redis")):
        out.append(
            ev.FanoutSessionState(ts=t + 1.5, run=run, session=session, replica=replica, state="closed")
        )
    sent_ids = [f"evt-{run}-{seq:03d}" for seq in range(1, 6)]
    out.append(
        ev.FanoutResult(
            ts=t + 1.6,
            run=run,
            thread_id=thread,
            passed=True,
            phase=phase,  # type: ignore[arg-type]
            sent=sent_ids,
            received={"A": sent_ids, "B": sent_ids},
            cross_latency_ms=3.9,
            replay_ok=True,
            ordering_ok=True,
            prefixes_seen=["chat:rt:"],
        )
    )
    return out


def _window(t: float, i: int, candidate: bool, failing: bool) -> ev.TrafficWindow:
    requests = 20
    blue = (3 + i % 2) if candidate else 0
    a = (requests - blue) // 2 + i % 3 - 1
    per = {"stable-a": a, "stable-b": requests - blue - a}
    errors: dict[str, int] = {}
    if candidate:
        per["blue-next"] = blue
        if failing:
            errors["blue-next"] = 2
    return ev.TrafficWindow(
        ts=t,
        window_s=1.0,
        requests=requests,
        per_replica=per,
        errors_5xx=errors,
        p50_ms=6.0 + i % 4,
        p95_ms=18.0 + (i * 7) % 15,
    )


def rehearsal_full_events() -> list[ev.Event]:
    """A whole rehearsal up to the verification: data for every pane (deterministic, T0-based).

    Gates (one passed, one failed with output), a fanout check before and after the rollback (frames on
    both sessions, a dropped session caught up by replay, tap frames), canary traffic with blue-next
    failing, a P0 breach, the rollback requested/applied/verified, checklist ticks and notices.
    """
    pb = demo_playbook()
    out: list[ev.Event] = [
        three_replicas_events()[0],
        ev.StepEntered(ts=T0 + 0.5, step="baseline", actor="alice"),
    ]
    out.append(ev.Notice(ts=T0 + 0.6, source="lab", message="embedded lab up · Redis: redis-server 7.0.15"))
    for i in range(45):
        out.extend(_health(T0 + 1 + i, i))
    t = T0 + 2
    out.append(
        ev.GateStarted(
            ts=t, gate="release-gates", run="g1", argv=["just", "release-gates-surreal"], where="local"
        )
    )
    for k, line in enumerate(["surreal pinned 3.0.0", "stable-a: transport=redis", "release gates: PASS"]):
        out.append(
            ev.GateOutput(ts=t + 0.3 * (k + 1), gate="release-gates", run="g1", stream="stdout", line=line)
        )
    out.append(
        ev.GateFinished(
            ts=t + 1.2,
            gate="release-gates",
            run="g1",
            outcome="passed",
            exit_code=0,
            duration_s=1.2,
            output_lines=3,
            artefact="session-artefacts/release-gates-g1.log",
        )
    )
    api_argv = ["cargo", "test", "-p", "gotong-api", "--test", "*"]
    out.append(ev.GateStarted(ts=t + 1.3, gate="api-tests", run="g2", argv=api_argv, where="local"))
    for k, line in enumerate(
        [
            "running 14 tests",
            "test chat::idempotency ... ok",
            "test chat::replay_after ... FAILED",
            "exit 101",
        ]
    ):
        out.append(ev.GateOutput(ts=t + 1.5 + k, gate="api-tests", run="g2", stream="stdout", line=line))
    out.append(
        ev.GateFinished(
            ts=t + 5.6,
            gate="api-tests",
            run="g2",
            outcome="failed",
            exit_code=101,
            duration_s=4.3,
            output_lines=4,
            artefact="session-artefacts/api-tests-g2.log",
        )
    )
    out.append(ev.ChecklistTicked(ts=t + 1.3, item="gates-ok", checked=True, actor="engine", auto=True))
    out.append(ev.StepEntered(ts=T0 + 8, step="fanout-before", actor="alice"))
    out.extend(_fanout_run("f1", T0 + 8.5, "before_rollback", "rehearsal-1"))
    out.append(ev.StepEntered(ts=T0 + 12, step="canary", actor="alice"))
    out.append(
        ev.SelectorState(
            ts=T0 + 12,
            selector={"app": "chat"},
            weights={"stable-a": 45, "stable-b": 40, "blue-next": 15},
            backends=["stable-a", "stable-b", "blue-next"],
            source="lab",
        )
    )
    for i in range(26):
        out.append(_window(T0 + 13 + i, i, candidate=True, failing=i >= 18))
    out.append(
        ev.GuardrailBreach(
            ts=T0 + 33.0,
            guardrail="candidate-5xx",
            severity="P0",
            metric="http_5xx_rate",
            value=0.5,
            threshold=0.02,
            window_s=10,
            first_bad_ts=T0 + 30.0,
        )
    )
    out.append(
        ev.Notice(
            ts=T0 + 33.0, level="warning", source="guardrails", message="P0 candidate-5xx breached: 50% > 2%"
        )
    )
    out.append(ev.StepEntered(ts=T0 + 33.1, step="trigger", actor="alice"))
    out.append(
        ev.RollbackRequested(
            ts=T0 + 34.0,
            action="remove-blue-next",
            actor="alice",
            confirmed_text="blue-next",
            reason="guardrail candidate-5xx breached",
        )
    )
    before = {"selector": {"app": "chat"}, "backends": ["stable-a", "stable-b", "blue-next"]}
    after = {"selector": {"app": "chat", "track": "stable"}, "backends": ["stable-a", "stable-b"]}
    out.append(
        ev.RollbackApplied(ts=T0 + 34.2, action="remove-blue-next", driver="lab", before=before, after=after)
    )
    out.append(
        ev.SelectorState(
            ts=T0 + 34.2,
            selector={"app": "chat", "track": "stable"},
            weights={"stable-a": 45, "stable-b": 40},
            backends=["stable-a", "stable-b"],
            source="lab",
        )
    )
    for i in range(26, 32):
        out.append(_window(T0 + 13 + i, i, candidate=False, failing=False))
    out.append(
        ev.RollbackVerified(
            ts=T0 + 36.1,
            action="remove-blue-next",
            ok=True,
            stable_share=1.0,
            requests=200,
            time_to_detect_s=3.0,
            rto_s=2.1,
        )
    )
    out.append(ev.ChecklistTicked(ts=T0 + 36.2, item="rto", checked=True, actor="engine", auto=True))
    out.append(ev.StepEntered(ts=T0 + 37, step="verify", actor="alice"))
    out.extend(_fanout_run("f2", T0 + 38, "after_rollback", "rehearsal-2"))
    out.append(ev.ChecklistTicked(ts=T0 + 39.7, item="fanout-after", checked=True, actor="engine", auto=True))
    out.append(ev.ChecklistTicked(ts=T0 + 39.8, item="no-loss", checked=True, actor="engine", auto=True))
    out.append(
        ev.ChecklistTicked(ts=T0 + 40.5, item="no-blockers", checked=True, actor="alice", note="PR-15 ok")
    )
    assert pb.name == "demo"
    return sorted(out, key=lambda e: e.ts)


def write_journal(name: str, events: list[ev.Event]) -> Path:
    JOURNALS.mkdir(parents=True, exist_ok=True)
    path = JOURNALS / name
    with open(path, "w") as fh:
        for n, event in enumerate(events, 1):
            event.n = n
            fh.write(event.model_dump_json() + "\n")
    return path


if __name__ == "__main__":
    print(write_journal("three-replicas.jsonl", three_replicas_events()))
    print(write_journal("rehearsal-midway.jsonl", rehearsal_midway_events()))
    print(write_journal("rehearsal-full.jsonl", rehearsal_full_events()))
