"""Shared helpers for the UI tests: a lab-shaped playbook and engines rebuilt from recorded journals.

Run as a script to regenerate the recorded journals in tests/data/journals/:
    /tmp/venv/bin/python tests/test_ui_support.py
"""

from __future__ import annotations

from pathlib import Path

from rollback_tui.core import events as ev
from rollback_tui.core.engine import Engine
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.playbook.model import Playbook

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
