"""Regenerate the recorded journal `session.jsonl` (and its gate artefacts) behind the golden tests.

Run: .venv/bin/python tests/data/export/make_session.py, then UPDATE_GOLDEN=1 pytest tests/test_report.py.
The session: baseline facts and gates, a fanout check, canary traffic to blue-next, a P0 5xx breach,
rollback (requested → applied → verified), gates and fanout re-run, a manual tick, session end.
The journal is written without knowing the secret `SECRET`, so only the export's redactor can mask it.
"""

from __future__ import annotations

from pathlib import Path

from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal

HERE = Path(__file__).resolve().parent
T0 = 1767268800.0  # 2026-01-01T12:00:00Z
SECRET = "s3cr3t-fixture-value-42"
REPLICAS = [
    {"name": "stable-a", "role": "stable", "url": "http://127.0.0.1:18081", "labels": {"track": "stable"}},
    {"name": "stable-b", "role": "stable", "url": "http://127.0.0.1:18082", "labels": {"track": "stable"}},
    {
        "name": "blue-next",
        "role": "candidate",
        "url": "http://127.0.0.1:18083",
        "labels": {"track": "blue-next"},
    },
]
STABLE_IMAGE = "sha256:4f1c9a7be03d2c55"
NEXT_IMAGE = "sha256:b7e20d4c6a8f1e3b"


def build(path: Path, artefacts: Path) -> None:
    if path.exists():
        path.unlink()
    artefacts.mkdir(exist_ok=True)
    journal = Journal(path)

    def at(offset: float, event: ev.Event) -> None:
        event.ts = round(T0 + offset, 3)
        journal.append(event)

    at(
        0,
        ev.SessionStarted(
            playbook="playbook.yaml",
            playbook_name="rehearsal-fixture",
            playbook_title="Realtime rollback rehearsal (recorded fixture)",
            environment="staging",
            operator="alice",
            host="ops-1",
            version="0.1.0",
            replicas=REPLICAS,
        ),
    )
    at(0.5, ev.StepEntered(step="baseline", actor="alice"))
    for i, rep in enumerate(REPLICAS):
        candidate = rep["name"] == "blue-next"
        at(
            1 + i * 0.01,
            ev.HealthSample(
                replica=rep["name"],
                status="ok",
                latency_ms=8.0 + i,
                http_status=200,
                image=NEXT_IMAGE if candidate else STABLE_IMAGE,
                commit="e41f07d" if candidate else "9c1e2ab",
                channel_prefix="chat:rt:",
                transport="redis",
            ),
        )
    at(
        2,
        ev.FactCaptured(
            fact="channel-prefix",
            phase="baseline",
            source="health",
            agree=True,
            values={"stable-a": "chat:rt:", "stable-b": "chat:rt:"},
        ),
    )
    at(
        2.1,
        ev.FactCaptured(
            fact="api-image",
            phase="baseline",
            source="health",
            values={"stable-a": STABLE_IMAGE, "stable-b": STABLE_IMAGE, "blue-next": NEXT_IMAGE},
        ),
    )

    def gate(offset: float, run: str, lines: int, actor: str) -> None:
        at(
            offset,
            ev.GateStarted(
                gate="release-gates-surreal",
                run=run,
                argv=["just", "release-gates-surreal"],
                where="local",
                actor=actor,
            ),
        )
        text = []
        for k in range(lines):
            line = f"test surreal::guardrail_{k:02d} ... ok"
            if k == 3:
                line = f"using credentials {SECRET} for the staging cluster"
            text.append(line)
            at(
                offset + 0.1 + k * 0.05,
                ev.GateOutput(gate="release-gates-surreal", run=run, stream="stdout", line=line),
            )
        artefact = artefacts / f"release-gates-surreal-{run}.log"
        artefact.write_text("\n".join(text) + "\n")
        at(
            offset + 0.2 + lines * 0.05,
            ev.GateFinished(
                gate="release-gates-surreal",
                run=run,
                outcome="passed",
                exit_code=0,
                duration_s=round(0.2 + lines * 0.05, 3),
                output_lines=lines,
                artefact=f"{artefacts.name}/{artefact.name}",
            ),
        )

    gate(3, "g1base00", 25, "alice")

    def fanout(offset: float, run: str, phase: str, base_seq: int) -> None:
        thread = f"rehearsal-{run}"
        ids = [f"evt-{run}-{k}" for k in range(2)]
        for k, event_id in enumerate(ids):
            for j, (session, replica) in enumerate((("A", "stable-a"), ("B", "stable-b"), ("tap", "redis"))):
                at(
                    offset + k * 0.2 + j * 0.004,
                    ev.FanoutFrame(
                        run=run,
                        session=session,
                        replica=replica,
                        thread_id=thread,
                        event_id=event_id,
                        seq=base_seq + k,
                        sent_at=T0 + offset + k * 0.2 - 0.01,
                        received_at=T0 + offset + k * 0.2 + j * 0.004,
                        latency_ms=10.0 + j * 4,
                    ),
                )
        at(
            offset + 0.5,
            ev.FanoutResult(
                run=run,
                thread_id=thread,
                passed=True,
                phase=phase,
                sent=ids,
                received={"A": ids, "B": ids},
                cross_latency_ms=14.0,
                replay_ok=True,
                ordering_ok=True,
                prefixes_seen=["chat:rt:"],
            ),
        )

    at(5.5, ev.StepEntered(step="fanout-before", actor="alice"))
    fanout(6, "f1before", "before_rollback", 1)
    at(8, ev.StepEntered(step="canary", actor="alice"))
    at(
        8.1,
        ev.SelectorState(
            selector={"app": "chat"},
            weights={"stable-a": 45, "stable-b": 40, "blue-next": 15},
            backends=["stable-a", "stable-b", "blue-next"],
            source="lab",
        ),
    )
    # 90 one-second traffic windows: canary at 15 %, blue-next starts failing at +40 s, rollback at +45 s.
    for s in range(90):
        t = 10 + s
        next_share = 15 if t < 46 else 0
        per = {
            "stable-a": 50 - next_share // 2,
            "stable-b": 50 - (next_share - next_share // 2),
            "blue-next": next_share,
        }
        errors = {"blue-next": 3} if 40 <= t < 46 else {}
        at(
            t,
            ev.TrafficWindow(
                window_s=1.0,
                requests=100,
                per_replica=per,
                errors_5xx=errors,
                p50_ms=12.0,
                p95_ms=40.0 if errors else 25.0,
            ),
        )
        if t == 42:
            at(
                42.01,
                ev.GuardrailBreach(
                    guardrail="candidate-5xx",
                    severity="P0",
                    metric="http_5xx_rate",
                    value=0.2,
                    threshold=0.02,
                    window_s=10.0,
                    first_bad_ts=T0 + 39.0,
                ),
            )
            at(42.2, ev.Notice(level="warning", source="guardrails", message="P0 breach: rollback offered"))
        if t == 44:
            at(
                44.5,
                ev.OperatorAction(
                    action="rollback_confirmed",
                    actor="alice",
                    detail={"action": "remove-blue-next", "typed": "blue-next"},
                ),
            )
            at(
                44.6,
                ev.RollbackRequested(
                    action="remove-blue-next",
                    actor="alice",
                    confirmed_text="blue-next",
                    reason="guardrail candidate-5xx breached",
                ),
            )
            before = {"selector": {"app": "chat"}, "backends": ["stable-a", "stable-b", "blue-next"]}
            after = {"selector": {"app": "chat", "track": "stable"}, "backends": ["stable-a", "stable-b"]}
            at(45.4, ev.RollbackApplied(action="remove-blue-next", driver="lab", before=before, after=after))
            at(
                45.41,
                ev.SelectorState(
                    selector=after["selector"],
                    weights={"stable-a": 45, "stable-b": 40},
                    backends=after["backends"],
                    source="lab",
                ),
            )
        if t == 57:
            at(
                57.1,
                ev.RollbackVerified(
                    action="remove-blue-next",
                    ok=True,
                    stable_share=1.0,
                    requests=200,
                    time_to_detect_s=3.01,
                    rto_s=12.5,
                ),
            )
        if t == 60:
            at(60.2, ev.GuardrailRecovered(guardrail="candidate-5xx", value=0.0))
    at(100, ev.StepEntered(step="verify", actor="alice"))
    gate(101, "g2after0", 6, "alice")
    fanout(104, "f2after0", "after_rollback", 3)
    at(
        105,
        ev.FactCaptured(
            fact="channel-prefix",
            phase="after_rollback",
            source="health",
            agree=True,
            values={"stable-a": "chat:rt:", "stable-b": "chat:rt:"},
        ),
    )
    at(
        106,
        ev.ChecklistTicked(
            item="no-blockers", checked=True, actor="alice", note="PR-15 hardening tasks reviewed with bob"
        ),
    )
    at(110, ev.SessionEnded(reason="quit"))
    journal.close()


if __name__ == "__main__":
    build(HERE / "session.jsonl", HERE / "session-artefacts")
    print(f"wrote {HERE / 'session.jsonl'}")
