"""Guardrails and facts on a real Prometheus (the `prometheus` binary, scraping a real prometheus_client
exporter every second): a query crossing its threshold breaches; a broken query or a stopped Prometheus
is unknown (no breach, no tick); {replica} and the other placeholders are filled in; auth headers never
reach the journal."""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import Gauge

from conftest import build_lab_playbook, holds_secret, require_prometheus, require_redis_server
from rollback_tui.core import events as ev
from rollback_tui.core.guardrails import guardrail_readings
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.read.summary import summarize
from rollback_tui.core.read.timeline import event_log
from rollback_tui.core.read.words import hms
from rollback_tui.core.state import fold
from rollback_tui.lab.prometheus import LabPrometheus, Target
from rollback_tui.lab.supervisor import Lab
from rollback_tui.playbook.model import Playbook
from rollback_tui.report.bundle import build_bundle
from rollback_tui.report.evidence import iso
from rollback_tui.report.markdown import render_markdown
from rollback_tui.session.engine import Engine
from rollback_tui.ui.panes.base import View
from rollback_tui.ui.panes.presenter import tiles
from support.wait import until

REPLICAS = [
    {"name": "stable-a", "url": "http://127.0.0.1:9", "role": "stable"},
    {"name": "stable-b", "url": "http://127.0.0.1:9", "role": "stable"},
    {"name": "blue-next", "url": "http://127.0.0.1:9", "role": "candidate"},
]
RATIO = 'max(rtui_error_ratio{replica=~"{replicas}"})'


def playbook(servers: list[dict], rails: list[dict], **extra: Any) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "prom",
            "title": "Prometheus guardrails",
            "replicas": REPLICAS,
            "prometheus": servers,
            "guardrails": [{"title": r["name"], "metric": "query", "interval_s": 0.25, **r} for r in rails],
            "steps": [{"name": "s", "title": "S", "do": [{"manual": "look"}]}],
            "health_interval_s": 30,
            **extra,
        }
    )


def rail_status(engine: Engine, name: str) -> tuple[str | None, str | None]:
    rail = engine.state.rails.get(name)
    return (rail.status, rail.reason) if rail else (None, None)


def breaches(engine: Engine) -> list[str]:
    return [e.guardrail for e in engine.state.traffic.breach_log if isinstance(e, ev.GuardrailBreach)]


async def test_query_crossing_its_threshold_breaches(
    prometheus: LabPrometheus, exporter: tuple[Any, str], tmp_path: Path
) -> None:
    ratio = Gauge("rtui_error_ratio", "test", ["replica"], registry=exporter[0])
    ratio.labels("blue-next").set(0.01)
    ratio.labels("stable-a").set(0.5)  # out of scope: a stable replica's value is not the candidate's
    rail = {"name": "prom-5xx", "query": RATIO, "threshold": 0.05, "window_s": 5, "scope": "candidate"}
    pb = playbook([{"name": "prom", "url": prometheus.url}], [rail])
    engine = Engine(pb, Journal(tmp_path / "j.jsonl"), operator="t")
    await engine.start()  # the metric poller is one of the feeds
    try:
        await until(
            lambda: (s := engine.state.metrics.get("prom-5xx")) and s.value == 0.01, "the first value"
        )
        assert rail_status(engine, "prom-5xx") == ("observed", None) and breaches(engine) == []
        ratio.labels("blue-next").set(0.2)
        await until(lambda: "prom-5xx" in engine.state.traffic.breaches, "the breach")
    finally:
        await engine.stop()
    breach = engine.state.traffic.breaches["prom-5xx"]
    assert (breach.metric, breach.value, breach.threshold, breach.window_s) == ("query", 0.2, 0.05, 5)
    samples = [e for e in read_journal(tmp_path / "j.jsonl").events if isinstance(e, ev.MetricSample)]
    assert samples and samples[-1].query == 'max(rtui_error_ratio{replica=~"blue-next"})'
    assert breach.first_bad_ts == next(s.ts for s in samples if s.value == 0.2) - 5  # its window's start


async def test_a_query_breach_reads_in_its_declared_unit_everywhere_it_is_told(
    prometheus: LabPrometheus, exporter: tuple[Any, str], tmp_path: Path
) -> None:
    # A `unit: ratio` query guardrail read 20.0% on its row, but its breach said "query 0.2 > 0.05" on
    # the ACTIVE BREACH tile, in the event log, the headless log, the verdict and the report.
    ratio = Gauge("rtui_error_ratio", "test", ["replica"], registry=exporter[0])
    ratio.labels("blue-next").set(0.2)
    rail = {"name": "prom-5xx", "query": RATIO, "unit": "ratio", "threshold": 0.05, "window_s": 5,
            "scope": "candidate"}  # fmt: skip
    pb = playbook([{"name": "prom", "url": prometheus.url}], [rail])
    engine = Engine(pb, Journal(tmp_path / "j.jsonl"), operator="t")
    await engine.start()
    try:
        await until(lambda: "prom-5xx" in engine.state.traffic.breaches, "the breach")
    finally:
        await engine.stop()
    events = read_journal(tmp_path / "j.jsonl").events
    state = fold(events)
    said = "query 20.0% > 5.0% over 5 s"
    [logged] = [line.text for line in event_log(state) if line.kind == "guardrail_breach"]
    assert logged.startswith(f"P0 guardrail prom-5xx breached: {said}"), logged
    _, rows = tiles(state, pb, View(now=time.time()))
    tile = next(t for row in rows for t in row if t.label == "ACTIVE BREACH")
    assert tile.detail == said, tile
    assert any(said in problem for problem in summarize(pb, state).verdict.problems)
    report = render_markdown(pb, state, events)
    assert f"P0 guardrail prom-5xx breached: {said}" in report  # the timeline
    assert "| breach P0 | query 20.0% | 5.0% over 5 s |" in report  # the breach table
    assert "query 0.2" not in report


async def test_broken_query_and_stopped_prometheus_are_unknown_no_breach_no_tick(
    prometheus: LabPrometheus, exporter: tuple[Any, str], tmp_path: Path
) -> None:
    ratio = Gauge("rtui_error_ratio", "test", ["replica"], registry=exporter[0])
    ratio.labels("blue-next").set(0.01)
    rails = [
        {"name": "broken", "query": "sum(rate(rtui_error_ratio[", "threshold": 0.05},
        {"name": "good", "query": RATIO, "threshold": 0.05, "scope": "candidate"},
        {"name": "absent", "query": "rtui_no_such_metric", "threshold": 1},
    ]
    checklist = [{"name": "clear", "text": "No guardrail tripped", "rule": "guardrails_clear"}]
    pb = playbook([{"name": "prom", "url": prometheus.url, "timeout_s": 2}], rails, checklist=checklist)
    engine = Engine(pb, Journal(tmp_path / "j.jsonl"), operator="t")
    await engine.start()
    try:
        await until(lambda: rail_status(engine, "good")[0] == "observed", "the good query to observe")
        await until(lambda: rail_status(engine, "broken")[0] == "unknown", "the broken query to be unknown")
        reason = rail_status(engine, "broken")[1]
        assert reason is not None and reason.startswith("Prometheus prom: query bad_data (HTTP 400): ")
        await until(lambda: rail_status(engine, "absent")[0] == "unknown", "no series to be unknown")
        assert (
            rail_status(engine, "absent")[1]
            == "Prometheus prom: no series (nothing matched the query in its window)"
        )
        assert not engine.checklist().items[0].checked  # an unknown guardrail vouches for nothing
        await prometheus.stop()
        ratio.labels("blue-next").set(0.9)  # nobody can see this now
        await until(lambda: rail_status(engine, "good")[0] == "unknown", "the stopped server to be unknown")
    finally:
        await engine.stop()
    reason = rail_status(engine, "good")[1] or ""
    assert reason.startswith("Prometheus prom: connection refused or unreachable"), reason
    assert breaches(engine) == [] and not engine.checklist().items[0].checked
    assert "clear" not in engine.state.checklist or not engine.state.checklist["clear"].checked
    notices = [n.message for n in engine.state.notices]
    assert any(m.startswith("guardrail good unknown (could not observe): Prometheus prom:") for m in notices)


async def test_placeholders_are_filled_in_and_replica_queries_ask_each_replica(
    prometheus: LabPrometheus, exporter: tuple[Any, str], tmp_path: Path
) -> None:
    registry = exporter[0]
    build = Gauge("rtui_build_info", "test", ["replica", "commit"], registry=registry)
    depth = Gauge("rtui_queue_depth", "test", ["replica"], registry=registry)
    for name, commit, value in (
        ("stable-a", "aaa111", 3),
        ("stable-b", "bbb222", 7),
        ("blue-next", "ccc333", 0),
    ):
        build.labels(name, commit).set(1)
        if value:
            depth.labels(name).set(value)
    rails = [
        {
            "name": "per-replica",
            "query": 'rtui_queue_depth{replica="{replica}"}',
            "threshold": 6,
            "scope": "stable",
        },
        {
            "name": "windowed",
            "query": 'max(max_over_time(rtui_queue_depth{replica=~"{replicas}",role=~"{scope}"}[{window}]))',
            "threshold": 100,
            "window_s": 4,
            "scope": "stable",
        },
    ]
    fact = {"title": "F", "source": "prometheus"}
    facts = [
        {
            **fact,
            "name": "commit",
            "query": 'rtui_build_info{replica="{replica}"}',
            "label": "commit",
            "must_agree": True,
        },
        {**fact, "name": "depth", "query": 'rtui_queue_depth{replica="{replica}"}'},
    ]
    pb = playbook([{"name": "prom", "url": prometheus.url}], rails, facts=facts)
    engine = Engine(pb, Journal(tmp_path / "j.jsonl"), operator="t")
    await engine.start()
    try:
        await until(lambda: "per-replica" in engine.state.traffic.breaches, "the worst replica to breach")
        await until(lambda: rail_status(engine, "windowed")[0] == "observed", "the windowed query")
        captured = {f.fact: f for f in await engine.capture_facts()}
    finally:
        await engine.stop()
    sample = engine.state.metrics["per-replica"]
    assert (sample.value, sample.series, sample.errors) == (7.0, "stable-b", {})
    assert sample.query == 'rtui_queue_depth{replica="{replica}"}'
    assert engine.state.traffic.breaches["per-replica"].value == 7
    windowed = engine.state.metrics["windowed"]
    assert windowed.query == (
        'max(max_over_time(rtui_queue_depth{replica=~"stable-a|stable-b",role=~"stable"}[4s]))'
    )
    assert windowed.value == 7
    commit = captured["commit"]
    assert commit.values == {"stable-a": "aaa111", "stable-b": "bbb222", "blue-next": "ccc333"}
    assert commit.observed and commit.agree is False  # three builds: they disagree, and it says so
    depth_fact = captured["depth"]  # blue-next exports no depth: that replica is unknown, with why
    assert depth_fact.values == {"stable-a": "3", "stable-b": "7", "blue-next": None}
    assert not depth_fact.observed and depth_fact.error == (
        "blue-next: Prometheus prom: no series (nothing matched the query in its window)"
    )


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # Prometheus's web config wants a bcrypt hash; glibc makes one

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


async def test_auth_headers_never_reach_the_journal(
    exporter: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_prometheus()
    password, wrong, token = "Pr0m-s3cret-pw", "not-the-password", "tok-3f9a-bearer-value"
    monkeypatch.setenv("RTUI_PROM_PASSWORD", password)
    monkeypatch.setenv("RTUI_PROM_WRONG", wrong)
    monkeypatch.setenv("RTUI_PROM_TOKEN", token)
    monkeypatch.delenv("RTUI_PROM_UNSET", raising=False)
    Gauge("rtui_error_ratio", "test", ["replica"], registry=exporter[0]).labels("blue-next").set(0.01)
    guarded = LabPrometheus(
        [Target(exporter[1])],
        work_dir=tmp_path,
        web_config={"basic_auth_users": {"rtui": _bcrypt(password)}},
        auth=httpx.BasicAuth("rtui", password),
    )
    async with guarded:
        url = guarded.url
        servers = [
            {
                "name": "good",
                "url": url,
                "basic_auth": {"username": "rtui", "password": "${RTUI_PROM_PASSWORD}"},
            },
            {
                "name": "wrong",
                "url": url,
                "basic_auth": {"username": "rtui", "password": "${RTUI_PROM_WRONG}"},
            },
            {"name": "token", "url": url, "bearer_token": "${RTUI_PROM_TOKEN}"},
            {"name": "unset", "url": url, "bearer_token": "${RTUI_PROM_UNSET}"},
        ]
        rails = [{"name": s["name"], "server": s["name"], "query": RATIO, "threshold": 0.05} for s in servers]
        journal = Journal(tmp_path / "j.jsonl")  # no redactor: nothing secret may be written at all
        engine = Engine(playbook(servers, rails), journal, operator="t")
        await engine.start()
        try:
            await until(
                lambda: all(rail_status(engine, s["name"])[0] for s in servers),
                "every guardrail to say something",
            )
            await until(
                lambda: rail_status(engine, "good")[0] == "observed", "the right password to be let in"
            )
        finally:
            await engine.stop()
    assert rail_status(engine, "wrong") == ("unknown", "Prometheus wrong: HTTP 401: authentication refused")
    assert rail_status(engine, "token") == ("unknown", "Prometheus token: HTTP 401: authentication refused")
    assert rail_status(engine, "unset") == (
        "unknown",
        "Prometheus unset: environment variable RTUI_PROM_UNSET is not set"
        " (needed by Prometheus unset bearer_token)",
    )
    text = (tmp_path / "j.jsonl").read_text()
    assert "metric_sample" in text
    for secret in (password, wrong, token):
        assert not holds_secret(text, secret), secret
    assert "Authorization" not in text and "Basic " not in text and "Bearer " not in text


async def test_baseline_every_replica_slowed_alike_no_breach_candidate_alone_slowed_breach(
    tmp_path: Path,
) -> None:
    """The real lab (replicas exporting /metrics) and its real Prometheus; synthetic traffic through the
    balancer. The same comparison from both sources: Prometheus's histogram and the synthetic p95."""
    require_redis_server()
    require_prometheus()
    histogram = (
        "1000 * histogram_quantile(0.95, sum by (le) "
        '(rate(lab_http_request_duration_seconds_bucket{replica=~"{replicas}",route="api"}[{window}])))'
    )
    count = (
        'sum(increase(lab_http_request_duration_seconds_count{replica=~"{replicas}",route="api"}[{window}]))'
    )
    common = {"threshold": 2, "window_s": 4, "sustained_s": 2, "scope": "candidate", "severity": "P1"}
    rails = [
        {
            "name": "prom-p95",
            "title": "p95 against stable (Prometheus)",
            "metric": "query",
            "query": histogram,
            "interval_s": 0.5,
            "baseline": {"compare": "ratio", "min_samples": 10, "samples_query": f"{count} or vector(0)"},
            **common,
        },
        {
            "name": "p95",
            "title": "p95 against stable (synthetic)",
            "metric": "p95_latency_ms",
            "baseline": {"compare": "ratio", "min_samples": 10},
            **common,
        },
    ]
    server = {"name": "lab-prometheus", "url": "http://127.0.0.1:19090", "lab": True}
    source = build_lab_playbook(prometheus=[server], guardrails=rails)
    async with Lab(source, redis="server", log_dir=tmp_path / "lab") as lab:
        engine = Engine(lab.playbook, Journal(tmp_path / "j.jsonl"), operator="t")
        await engine.start()
        try:
            engine.start_traffic(rate_rps=50)
            for name in ("stable-a", "stable-b", "blue-next"):  # the host is slow: every replica alike
                await lab.set_faults(name, latency_ms=120)

            def slowed_alike(rail: str) -> bool:
                sides = guardrail_readings(engine.playbook, engine.state, time.time())[rail].sides
                return sides is not None and min(sides) >= 100

            await until(lambda: slowed_alike("prom-p95") and slowed_alike("p95"), "both sides slowed", 40)
            # A full window and the sustain time of nothing but host-wide slowness: no verdict against it.
            await asyncio.sleep(common["window_s"] + common["sustained_s"] + 1)
            assert breaches(engine) == []
            readings = guardrail_readings(engine.playbook, engine.state, time.time())
            assert all(0.5 < (readings[r].value or 0) < 2 for r in ("prom-p95", "p95")), readings
            for name in ("stable-a", "stable-b"):  # now only blue-next is slow
                await lab.set_faults(name, latency_ms=0)
            await until(
                lambda: {"prom-p95", "p95"} <= set(engine.state.traffic.breaches), "both breaches", 40
            )
        finally:
            await engine.stop()
    breach = engine.state.traffic.breaches["prom-p95"]
    assert breach.candidate is not None and breach.baseline is not None
    assert breach.candidate >= 120 and breach.value > 2 and breach.baseline < breach.candidate / 2


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files (the CA is the certificate itself)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rollback-tui test prometheus")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "prom.crt", directory / "prom.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_options_verify_the_server_with_the_given_ca(
    exporter: tuple[Any, str], tmp_path: Path
) -> None:
    require_prometheus()
    Gauge("rtui_error_ratio", "test", ["replica"], registry=exporter[0]).labels("blue-next").set(0.01)
    cert, key = _self_signed(tmp_path)
    tls = {"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}}
    server = LabPrometheus(
        [Target(exporter[1])], work_dir=tmp_path, web_config=tls, scheme="https", ca_file=cert
    )
    async with server:
        url = server.url
        assert url.startswith("https://127.0.0.1:")
        servers = [
            {"name": "trusted", "url": url, "tls": {"ca_file": str(cert)}},
            {"name": "system-cas", "url": url},  # the system CAs do not vouch for a self-signed server
            {"name": "skip", "url": url, "tls": {"insecure_skip_verify": True}},
        ]
        rails = [{"name": s["name"], "server": s["name"], "query": RATIO, "threshold": 0.05} for s in servers]
        engine = Engine(playbook(servers, rails), Journal(tmp_path / "j.jsonl"), operator="t")
        await engine.start()
        try:
            await until(lambda: all(rail_status(engine, s["name"])[0] for s in servers), "every guardrail")
            # Both read it once Prometheus has scraped (until then: no series, unknown too).
            observed = ("trusted", "skip")
            await until(
                lambda: all(rail_status(engine, n)[0] == "observed" for n in observed), "both to read"
            )
        finally:
            await engine.stop()
    status, reason = rail_status(engine, "system-cas")
    assert status == "unknown" and reason is not None, reason
    # It reached the server: the certificate is what failed, not the connection.
    assert reason.startswith(
        "Prometheus system-cas: TLS handshake failed ([SSL: CERTIFICATE_VERIFY_FAILED]"
    ), reason


async def test_a_guardrail_unknown_for_another_reason_reports_the_latest_one(
    prometheus: LabPrometheus, exporter: tuple[Any, str], tmp_path: Path
) -> None:
    """A query with no series yet, then a NaN sample: the report's data-collection failures kept "no
    series" — since, last and times of its first evaluation, "still unknown" — because a guardrail's status
    was journaled only when it changed, and unknown → unknown was no change. A change of reason is
    journaled; the table ends the first reason there and shows the latest with its evaluations."""
    rail = {"name": "prom-ratio", "query": "max(rtui_nan_ratio)", "threshold": 0.05}
    pb = playbook([{"name": "prom", "url": prometheus.url}], [rail])
    journal = tmp_path / "j.jsonl"
    engine = Engine(pb, Journal(journal), operator="t")
    no_series = "Prometheus prom: no series (nothing matched the query in its window)"
    nan = "Prometheus prom: the query gives NaN or ±Inf (no samples in its window?)"

    def evaluations(reason: str) -> int:
        samples = [e for e in read_journal(journal).events if isinstance(e, ev.MetricSample)]
        return sum(reason in s.errors.values() for s in samples)

    await engine.start()
    try:
        await until(lambda: evaluations(no_series) >= 3, "three evaluations with no series")
        Gauge("rtui_nan_ratio", "test", registry=exporter[0]).set(float("nan"))
        await until(lambda: evaluations(nan) >= 3, "three evaluations giving NaN", 30)
    finally:
        await engine.stop()
    assert rail_status(engine, "prom-ratio") == ("unknown", nan)
    events = read_journal(journal).events
    samples = [e for e in events if isinstance(e, ev.MetricSample)]
    first_nan = next(s for s in samples if nan in s.errors.values())
    state = fold(events)
    rows = [r for r in build_bundle(pb, state, events)["summary"]["data_collection_failures"]
            if r["what"] == "guardrail prom-ratio"]  # fmt: skip
    last_no_series = max(s.ts for s in samples if no_series in s.errors.values())
    assert rows == [
        {"what": "guardrail prom-ratio", "why": no_series, "since": iso(samples[0].ts),
         "last": iso(last_no_series), "times": evaluations(no_series), "until": iso(first_nan.ts)},
        {"what": "guardrail prom-ratio", "why": nan, "since": iso(first_nan.ts), "last": iso(samples[-1].ts),
         "times": evaluations(nan), "until": None},
    ]  # fmt: skip
    report = render_markdown(pb, state, events)
    table = report.split("## Data-collection failures\n", 1)[1].split("\n## ", 1)[0]
    shown = [line for line in table.splitlines() if line.startswith("| guardrail prom-ratio")]
    assert len(shown) == 2 and no_series in shown[0] and nan in shown[1] and "still unknown" in shown[1]


async def test_a_breach_whose_query_then_counts_no_samples_is_unknown_since_not_still_breached(
    prometheus: LabPrometheus, exporter: tuple[Any, str], tmp_path: Path
) -> None:
    """The demo's ending on a real Prometheus: the candidate's ratio breaches, then it serves nothing (its
    sample count falls to 0, as blue-next's once out of traffic): nothing observes a recovery, so the
    report says since when it is unknown, not that it is still breached."""
    ratio = Gauge("rtui_error_ratio", "test", ["replica"], registry=exporter[0])
    served = Gauge("rtui_served", "test", ["replica"], registry=exporter[0])
    ratio.labels("blue-next").set(0.2)
    served.labels("blue-next").set(50)
    rail = {"name": "prom-5xx", "query": RATIO, "threshold": 0.05, "window_s": 5, "scope": "candidate",
            "samples_query": 'sum(rtui_served{replica=~"{replicas}"})', "min_samples": 10}  # fmt: skip
    pb = playbook([{"name": "prom", "url": prometheus.url}], [rail])
    engine = Engine(pb, Journal(tmp_path / "j.jsonl"), operator="t")
    await engine.start()
    try:
        await until(lambda: "prom-5xx" in engine.state.traffic.breaches, "the breach")
        served.labels("blue-next").set(0)
        await until(lambda: rail_status(engine, "prom-5xx")[0] == "waiting", "no samples to judge by")
    finally:
        await engine.stop()
    events = read_journal(tmp_path / "j.jsonl").events
    state = fold(events)
    report = render_markdown(pb, state, events)
    assert "Still breached" not in report
    since = state.rails["prom-5xx"].since
    assert since is not None and since > state.traffic.breaches["prom-5xx"].ts
    unknown = f"breached at {hms(state.traffic.breaches['prom-5xx'].ts)}, unknown since {hms(since)}"
    assert f"- prom-5xx — {unknown}: no data to judge it\n" in report
