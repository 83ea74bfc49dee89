"""Synthetic traffic, guardrails and rollback against the real lab (replicas, balancer, Redis)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from conftest import build_lab_playbook, removal_action
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.playbook.model import Playbook
from rollback_tui.probes.traffic import TrafficGenerator
from rollback_tui.session.engine import Engine, NotAvailable
from support.http import JsonHandler, serving
from support.wait import until

GUARDED = build_lab_playbook(
    guardrails=[
        {
            "name": "candidate-5xx",
            "title": "5xx on blue-next",
            "metric": "http_5xx_rate",
            "threshold": 0.05,
            "window_s": 2,
            "scope": "candidate",
            "severity": "P0",
        }
    ],
    actions=[removal_action(verify_requests=100, rto_budget_s=10)],
)


async def test_measured_share_matches_configured_weights(lab):
    windows: list[ev.TrafficWindow] = []
    gen = TrafficGenerator(
        lab.playbook, lambda e: windows.append(e) or e, rate_rps=1000, concurrency=16, max_requests=1200
    )
    await asyncio.wait_for(gen.run(), 60)
    total: dict[str, int] = {}
    for w in windows:
        for replica, n in w.per_replica.items():
            total[replica] = total.get(replica, 0) + n
    requests = sum(total.values())
    assert requests >= 1000
    weights = lab.playbook.load_balancer.weights
    for replica, weight in weights.items():
        share = total.get(replica, 0) / requests
        expected = weight / sum(weights.values())
        assert abs(share - expected) <= 0.05, (replica, share, expected, total)
    assert all(not w.errors_5xx for w in windows)


@pytest.fixture
def engine(lab, tmp_path):
    eng = Engine(lab.playbook, Journal(tmp_path / "session.jsonl"), operator="tester")
    yield eng


async def rolled_back_on_5xx(
    engine: Engine, lab, *, healthy_s: float, error_rate: float
) -> ev.RollbackVerified:
    """Traffic with nothing to decide for `healthy_s`, then 5xx on blue-next until the automatic rollback
    is verified."""
    engine.auto_rollback = True
    engine.start_traffic(rate_rps=150)
    await asyncio.sleep(healthy_s)
    assert not engine.state.traffic.breaches
    await lab.set_faults("blue-next", error_rate=error_rate)
    verified = await until(lambda: engine.state.traffic.rollback_verified, "the rollback verified", 15)
    assert verified.ok
    return verified


@pytest.mark.parametrize("lab_playbook", [GUARDED], indirect=True)
async def test_injected_5xx_is_detected_rolled_back_and_verified(lab, engine):
    await engine.start()
    try:
        verified = await rolled_back_on_5xx(engine, lab, healthy_s=1.5, error_rate=0.6)
        assert verified.stable_share == 1.0 and verified.requests >= 100
        assert verified.time_to_detect_s is not None and 0 < verified.time_to_detect_s < 5
        assert verified.rto_s is not None and 0 < verified.rto_s < 10
        breach = next(b for b in engine.state.traffic.breach_log if isinstance(b, ev.GuardrailBreach))
        assert breach.guardrail == "candidate-5xx" and breach.value > 0.05
        assert engine.state.traffic.selector.backends == ["stable-a", "stable-b"]
        # after the removal no traffic reaches blue-next: judged on a window that began after the
        # selector change (a window that straddles it may hold a request routed just before)
        applied_at = engine.state.traffic.rollback_applied.ts

        def window_after_the_change() -> ev.TrafficWindow | None:
            last = engine.state.traffic.last_window
            return last if last is not None and last.ts - last.window_s > applied_at + 0.5 else None

        last = await until(window_after_the_change, "a traffic window after the change", 5)
        assert last.requests > 0 and "blue-next" not in last.per_replica
        # pressing it again does no harm: it says so and journals nothing
        assert engine.state.traffic.rollback.stage == "verified"
        with pytest.raises(NotAvailable, match="already rolled back and verified"):
            await engine.rollback("remove-blue-next", "blue-next")
        assert engine.state.counts["rollback_requested"] == 1
        assert verified.time_to_mitigate_s is not None
        assert verified.time_to_mitigate_s >= verified.time_to_detect_s
    finally:
        await engine.stop()
    kinds = [e.kind for e in read_journal(engine.journal.path).events]
    assert (
        kinds.index("guardrail_breach") < kinds.index("rollback_requested") < kinds.index("rollback_applied")
    )
    assert kinds.index("rollback_applied") < kinds.index("rollback_verified")
    requested = next(e for e in read_journal(engine.journal.path).events if e.kind == "rollback_requested")
    assert requested.actor == "auto-rollback" and "candidate-5xx" in requested.reason


@pytest.mark.parametrize("lab_playbook", [GUARDED], indirect=True)
async def test_rollback_refuses_a_wrong_confirmation_and_changes_nothing(lab, engine):
    with pytest.raises(NotAvailable, match="type 'blue-next' exactly"):
        await engine.rollback("remove-blue-next", "blue-nxt")
    routing = await engine.read_routing()
    assert "blue-next" in routing.backends
    assert engine.state.traffic.rollback_requested is None
    await engine.stop()


@pytest.mark.parametrize("lab_playbook", [GUARDED], indirect=True)
async def test_balancer_down_is_a_notice_and_rollback_error_not_a_crash(lab, engine):
    await lab.children["balancer"].kill()
    with pytest.raises(NotAvailable, match="unreachable"):
        await engine.rollback("remove-blue-next", "blue-next")
    applied = engine.state.traffic.rollback_applied
    assert applied is not None and not applied.ok and "unreachable" in applied.error
    status = engine.state.traffic.rollback
    assert status.stage == "failed" and "unreachable" in (status.failure or "")
    assert not status.after_rollback
    await engine.stop()


async def test_balancer_restart_mid_run_is_survived(lab, engine):
    await engine.start()
    try:
        engine.start_traffic(rate_rps=100)
        await asyncio.sleep(1.2)
        before = engine.state.traffic.last_window
        assert before is not None and before.requests > 0
        await lab.restart_balancer()
        await asyncio.sleep(2.5)
        assert engine.running("traffic") and engine.running("health") and engine.running("routing")
        after = list(engine.state.traffic.windows)[-1]
        assert after.requests > 0 and after.ts > before.ts  # traffic flows through the new balancer
    finally:
        await engine.stop()
    kinds = [e.kind for e in read_journal(engine.journal.path).events]
    assert kinds[-1] == "session_ended"


async def test_sse_stream_drops_are_measured_like_websocket_ones(lab):
    """Synthetic traffic holds SSE sessions through the balancer too (they used to be skipped: always 0)."""
    doc = lab.playbook.model_dump()
    doc["realtime"]["fanout"]["stream_kind"] = "sse"
    doc["realtime"]["fanout"]["stream_url"] = "{base}/v1/threads/{thread_id}/sse?after={after}"
    playbook = type(lab.playbook).model_validate(doc)

    async def disconnects() -> int:
        windows: list[ev.TrafficWindow] = []
        gen = TrafficGenerator(playbook, lambda e: windows.append(e) or e, rate_rps=100, max_requests=200)
        await asyncio.wait_for(gen.run(), 30)
        assert sum(w.requests for w in windows) == 200
        return sum(w.ws_disconnects for w in windows)

    assert await disconnects() == 0  # healthy streams stay open: nothing to count
    for name in ("stable-a", "stable-b", "blue-next"):
        await lab.set_faults(name, ws_drop_rate=1.0)  # every stream closes after its next frame
    assert await disconnects() > 0


# --- rollback verification: a batch of N requests after the read-back, all answered by kept replicas ---


async def _lab_requests(lab) -> dict[str, int]:
    """How many requests each replica has received, by its own count (GET /_lab/stats)."""
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        return {
            name: (await client.get(f"{lab.endpoints[name]}/_lab/stats")).json()["requests"]
            for name in ("stable-a", "stable-b", "blue-next")
        }


async def test_verification_sends_exactly_its_batch_concurrently_all_to_kept_replicas(lab):
    import time

    from rollback_tui.actions.traffic_control import make_driver
    from rollback_tui.probes.traffic import verify_stable

    after = await make_driver(lab.playbook).remove(["blue-next"])  # read back by the driver
    assert "blue-next" not in after.backends
    for name in ("stable-a", "stable-b"):
        await lab.set_faults(name, latency_ms=200)  # every answer takes 200 ms: one at a time is 40 s
    before = await _lab_requests(lab)
    started = time.monotonic()
    ok, share, total, served = await verify_stable(
        lab.endpoints["balancer"], {"stable-a", "stable-b"}, need=200, timeout_s=30, concurrency=32
    )
    took = time.monotonic() - started
    received = await _lab_requests(lab)
    assert ok and share == 1.0 and total == 200 and set(served) <= {"stable-a", "stable-b"}, served
    # exactly the batch reached the replicas (the replicas' own count), none of it blue-next
    assert {n: received[n] - before[n] for n in received} == {**served, "blue-next": 0}
    assert took < 200 * 0.2 / 8, f"{took:.1f} s: not {32} in flight"  # more than 8 at a time


async def test_an_answer_from_a_removed_replica_spoils_the_batch_and_a_fresh_one_follows(lab):
    from rollback_tui.actions.traffic_control import make_driver
    from rollback_tui.probes.traffic import verify_stable

    async def remove_later() -> None:
        await asyncio.sleep(0.5)
        await make_driver(lab.playbook).remove(["blue-next"])

    remover = asyncio.create_task(remove_later())
    await lab.set_faults("blue-next", latency_ms=20)  # blue-next in the first batches, still selected
    ok, share, total, served = await verify_stable(
        lab.endpoints["balancer"], {"stable-a", "stable-b"}, need=100, timeout_s=20, concurrency=16
    )
    await remover
    assert ok and served.get("blue-next", 0) > 0 and share < 1.0
    # the verifying batch was 100 kept answers; the spoiled ones before it were sent and counted too
    assert total > 100 and served["stable-a"] + served["stable-b"] >= 100


async def test_verification_fails_when_no_batch_is_clean_within_its_budget(lab):
    from rollback_tui.probes.traffic import verify_stable

    ok, share, total, served = await verify_stable(
        lab.endpoints["balancer"], {"stable-a", "stable-b"}, need=100, timeout_s=1.5, concurrency=16
    )
    assert not ok and served.get("blue-next", 0) > 0 and 0 < share < 1.0 and total == sum(served.values())


async def test_the_streams_follow_a_bounded_share_of_a_high_synthetic_rate(lab):
    """At 200 req/s the stream sessions' thread gets one send in four (≤ 50 a second), the rest go to a
    second synthetic thread: deliveries still reach every stream, without 4 x 200 frames a second through
    the balancer. Both threads are cleaned up afterwards."""
    from rollback_tui.probes.redis_tap import redis_client

    gen = TrafficGenerator(lab.playbook, lambda e: e, rate_rps=200, max_requests=300, ws_sessions=2)
    redis = redis_client(lab.playbook.realtime.redis_url)
    prefix = lab.playbook.realtime.channel_prefix
    streamed, bulk = f"{prefix}stream:{gen.thread_id}", f"{prefix}stream:{gen.bulk_thread}"
    task = asyncio.create_task(gen.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if gen.sent >= 200:
                break
        counts = (await redis.xlen(streamed), await redis.xlen(bulk))
        await asyncio.wait_for(task, 30)
        assert counts[0] > 0 and counts[1] > 2 * counts[0], counts  # 1 in 4 on the streams' thread
        assert await redis.exists(streamed, bulk) == 0  # cleaned up
    finally:
        task.cancel()
        await redis.aclose()


SEQUENTIAL = build_lab_playbook(
    guardrails=[
        {
            "name": "candidate-5xx",
            "title": "5xx on blue-next",
            "metric": "http_5xx_rate",
            "threshold": 0.05,
            "window_s": 10,
            "scope": "candidate",
            "severity": "P0",
            "detection": {"mode": "sequential", "false_alarm_rate": 0.001},
        }
    ],
    actions=GUARDED.model_dump(mode="json", exclude_unset=True)["actions"],
)


@pytest.mark.parametrize("lab_playbook", [SEQUENTIAL], indirect=True)
async def test_a_sequential_guardrail_decides_on_the_response_and_the_journal_replays_it(lab, engine):
    from rollback_tui.core.guardrails import GuardrailEvaluator

    await engine.start()
    try:
        await rolled_back_on_5xx(engine, lab, healthy_s=2.5, error_rate=0.5)
    finally:
        await engine.stop()
    events = read_journal(engine.journal.path).events
    at = next(i for i, e in enumerate(events) if isinstance(e, ev.GuardrailBreach))
    breach = events[at]
    assert breach.requests and breach.errors and breach.statistic >= breach.bound
    # The window before it was closed on the deciding response: a blue-next 5xx, its last answer.
    window = next(e for e in reversed(events[:at]) if isinstance(e, ev.TrafficWindow))
    names = sorted(window.per_replica)
    assert window.sequence[-1] == "abcdefghijklmnopqrstuvwxyz"[names.index("blue-next")].upper()
    # Folding the journal's windows again decides the same breach, with the same evidence.
    replayed = GuardrailEvaluator(engine.playbook)
    again = next(d for e in events for d in replayed.observe(e) if isinstance(d, ev.GuardrailBreach))
    keys = {"value", "requests", "errors", "statistic", "bound", "alternative", "first_bad_ts"}
    assert again.model_dump(include=keys) == breach.model_dump(include=keys)


WATCHED = build_lab_playbook(
    guardrails=[
        *GUARDED.model_dump(mode="json", exclude_unset=True)["guardrails"],
        {"name": "service-5xx", "title": "5xx of the service", "metric": "http_5xx_rate",
         "threshold": 0.5, "window_s": 2, "scope": "all", "severity": "P1"},
    ],
    actions=GUARDED.model_dump(mode="json", exclude_unset=True)["actions"],
    steps=[{"name": "watch", "title": "Watch after the rollback", "do": [{"check": "guardrail_watch"}]}],
)  # fmt: skip


@pytest.mark.parametrize("lab_playbook", [WATCHED], indirect=True)
async def test_a_watch_after_a_finished_rollback_watches_its_whole_time(lab, engine):
    """A guardrail watch stopped as soon as the rollback stage read verified — also for a rollback that
    ended before the watch began: it "passed" after watching for nothing ("no guardrail breached in 0 s")."""
    from rollback_tui.session.runbook import Runbook, RunOptions

    async def nobody(_: object) -> None:
        return None

    await engine.start()
    try:
        engine.start_traffic(rate_rps=100)
        await engine.rollback("remove-blue-next", "blue-next")
        assert engine.state.traffic.rollback.stage == "verified"
        await until(lambda: engine.state.traffic.last_window, "traffic after the rollback", 5)
        runbook = Runbook(engine, ask=nobody, confirm=nobody, options=RunOptions(watch_s=1.5))
        [result] = await runbook.run_step("watch")
    finally:
        await engine.stop()
    assert result.outcome == "passed" and result.reason.startswith("no guardrail breached in "), result
    assert result.reason != "no guardrail breached in 0 s"
    run = engine.state.step_items[("watch", 0)]
    assert run.finished_ts is not None and run.started_ts is not None
    assert run.finished_ts - run.started_ts >= 1.5


class _KeepAliveTimer(JsonHandler):
    """A replica behind its server's keep-alive timer: a connection that sat idle for `idle_timeout_s`
    is closed — here exactly as the next request arrives on it (the timer firing as the request goes
    out), so nobody reads that request. Every request it does read is answered 201 by `stable-a`."""

    protocol_version = "HTTP/1.1"
    idle_timeout_s = 2.0
    read: list[str] = []  # the idempotency key (or path) of every request the server read

    def setup(self) -> None:
        super().setup()
        self.idle_since: float | None = None  # on this connection

    def _answer(self) -> None:
        if self.idle_since is not None and time.monotonic() - self.idle_since >= self.idle_timeout_s:
            self.close_connection = True
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.read.append(self.headers.get("Idempotency-Key") or self.path)
        self.send_json({"event_id": f"evt-{len(self.read)}", "seq": len(self.read)}, 201, SERVED_BY)
        self.idle_since = time.monotonic()

    do_GET = do_POST = _answer


SERVED_BY = {"X-Served-By": "stable-a"}


def _behind_timer(url: str, *, realtime: bool, verify_method: str = "GET") -> Playbook:
    """The lab playbook with its balancer at `url` (no Redis listens at the realtime section's address:
    the synthetic thread's cleanup fails, which the canary ignores)."""
    lb = {
        "url": url,
        "selector": {"app": "api"},
        "traffic_control": {"driver": "lab", "admin_url": url},
        "verify": {"method": verify_method, "path": "/v1/verify"},
    }
    rt = {"redis_url": "redis://127.0.0.1:1/0", "channel_prefix": "chat:rt:"} if realtime else None
    return build_lab_playbook(load_balancer=lb, realtime=rt)


async def _canary(playbook: Playbook, *, rate_rps: float, requests: int) -> tuple[Counter, Counter]:
    """Send `requests` synthetic requests: (answers per replica, unanswered per reason) over all windows."""
    answered: Counter[str] = Counter()
    unanswered: Counter[str] = Counter()

    def count(window: ev.Event) -> ev.Event:
        assert isinstance(window, ev.TrafficWindow)
        answered.update(window.per_replica)
        unanswered.update(window.unattributed)
        return window

    gen = TrafficGenerator(playbook, count, rate_rps=rate_rps, ws_sessions=0, max_requests=requests)
    await asyncio.wait_for(gen.run(), 30)
    return answered, unanswered


@pytest.mark.parametrize(
    ("idle_timeout_s", "rate_rps"),
    [(2.0, 0.4), (0.3, 2.0)],
    ids=["gunicorn-2s-timer", "a-timer-shorter-than-our-expiry"],
)
async def test_a_low_rate_canary_is_not_failed_by_the_servers_keep_alive_timer(
    idle_timeout_s: float, rate_rps: float
) -> None:
    """Seen in demo rehearsals: a canary POST counted as "no answer: RemoteProtocolError" (no replica
    answered: a failed traffic check, a 5xx for the rates) while the replica was fine — the request went
    out on a kept-open connection as the server's keep-alive timer closed it. httpx reuses an idle
    connection for 5 s, as long as uvicorn keeps one: at one request every few seconds they race. Our
    clients drop idle connections first (gunicorn's 2 s timer never sees a request), and a send that a
    shorter timer closed unread goes out again: it carries an idempotency key."""
    handler = type("Timer", (_KeepAliveTimer,), {"idle_timeout_s": idle_timeout_s, "read": []})
    with serving(handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        answered, unanswered = await _canary(_behind_timer(url, realtime=True), rate_rps=rate_rps, requests=3)
    assert (answered, unanswered) == ({"stable-a": 3}, {})
    assert len(handler.read) == len(set(handler.read)) == 3  # each send read once


async def test_a_post_without_an_idempotency_key_is_not_sent_twice_when_its_connection_closed() -> None:
    """The other side of the retry: a POST that may not be received twice (a verification request without
    an idempotency key) is not sent again when the server closed its kept-open connection under it — the
    canary counts it as unanswered, as it is."""
    handler = type("Timer", (_KeepAliveTimer,), {"idle_timeout_s": 0.3, "read": []})
    with serving(handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        playbook = _behind_timer(url, realtime=False, verify_method="POST")
        answered, unanswered = await _canary(playbook, rate_rps=2.0, requests=4)
    closed = unanswered["no answer: RemoteProtocolError"]
    assert (
        closed >= 1
        and answered["stable-a"] + closed == 4
        and set(unanswered) <= {"no answer: RemoteProtocolError"}
    )
    assert len(handler.read) == answered["stable-a"]  # what the server read, it answered: nothing twice


def _two_candidates(keep: list[str]) -> Playbook:
    """blue-next and blue-next-2 are both candidates; the rollback removes blue-next only, and the label it
    narrows the selector by (pool: main) leaves blue-next-2 selected."""

    def replica(name: str, port: int, role: str, pool: str) -> dict:
        track = "stable" if role == "stable" else "candidate"
        commit = "abc1234" if role == "stable" else "def5678"
        return {
            "name": name,
            "url": f"http://127.0.0.1:{port}",
            "role": role,
            "labels": {"app": "api", "track": track, "pool": pool},
            "lab": {"image": f"sha256:{commit * 2}", "commit": commit},
        }

    return build_lab_playbook(
        replicas=[
            replica("stable-a", 18081, "stable", "main"),
            replica("stable-b", 18082, "stable", "main"),
            replica("blue-next", 18083, "candidate", "canary"),
            replica("blue-next-2", 18084, "candidate", "main"),
        ],
        load_balancer={
            "url": "http://127.0.0.1:18080",
            "selector": {"app": "api"},
            # The balancer picks at random by weight: at 10 of 90, 50 verification requests missed blue-next-2
            # 0.3 % of the time (seen once in CI); at 40 of 120, (2/3)^50 ≈ 2e-9.
            "weights": {"stable-a": 40, "stable-b": 40, "blue-next": 10, "blue-next-2": 40},
            "traffic_control": {"driver": "lab", "admin_url": "http://127.0.0.1:18090"},
        },
        actions=[removal_action(keep_replicas=keep, verify_requests=50, rto_budget_s=3)],
    )


@pytest.mark.parametrize("lab_playbook", [_two_candidates(keep=[])], indirect=True)
async def test_a_second_candidate_still_selected_fails_the_rollback_verification(lab, engine):
    """Verification counted every replica the rollback did not remove as stable: with a second candidate
    still selected it read "verified: 100.0 % of 50 requests on stable" while blue-next-2 answered a share
    of them. Kept is stable (or a candidate the action keeps on purpose); blue-next-2 fails it, by name."""
    with pytest.raises(NotAvailable, match="Rollback not verified"):
        await engine.rollback("remove-blue-next", "blue-next")
    routing = await engine.read_routing()
    assert "blue-next" not in routing.backends and "blue-next-2" in routing.backends
    verified = engine.state.traffic.rollback_verified
    assert verified is not None and not verified.ok and verified.stable_share < 1.0
    assert "not served by stable (" in verified.error and " by candidate blue-next-2" in verified.error
    status = engine.state.traffic.rollback
    assert status.stage == "failed" and "candidate blue-next-2" in (status.failure or "")
    await engine.stop()


@pytest.mark.parametrize("lab_playbook", [_two_candidates(keep=["blue-next-2"])], indirect=True)
async def test_a_candidate_the_rollback_keeps_on_purpose_counts_as_kept(lab, engine):
    verified = await engine.rollback("remove-blue-next", "blue-next")
    assert verified.ok and verified.stable_share == 1.0 and verified.requests >= 50
    await engine.stop()
