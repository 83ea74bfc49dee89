"""Prometheus as a metric source: instant PromQL queries for guardrails (`metric: query`) and facts.

A query template is filled in per evaluation: `{replica}` (one replica: the query is asked once per
replica in scope and the largest answer is judged), `{replicas}` (the replicas in scope as a regex
alternation, for `label=~"{replicas}"` in a double-quoted string), `{scope}` (candidate, stable or
`candidate|stable`) and `{window}` (the guardrail's window as a PromQL duration, e.g. `30s`). Any other
brace is PromQL's own (label matchers) and is left alone.

Nothing here decides ok or breached: `MetricPoller` journals each evaluation as a MetricSample, with what
could not be observed and why — server unreachable, auth refused, a query error or timeout, no series,
NaN, an unset `${VAR}` — and core/guardrails.py judges it (unknown, never ok). Auth headers are built
from `${VAR}` references when a query is sent and are never journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from rollback_tui.core import events as ev
from rollback_tui.playbook.model import Guardrail, Playbook, PrometheusServer
from rollback_tui.playbook.secrets import MissingVariable, resolve
from rollback_tui.probes import http_client
from rollback_tui.probes.health import auth_refused, describe_http_error
from rollback_tui.probes.http_client import request

Emit = Callable[[ev.Event], ev.Event]
PLACEHOLDER = re.compile(r"\{(replica|replicas|scope|window)\}")
MAX_ERROR = 300


def promql_duration(seconds: float) -> str:
    """A window in PromQL's duration syntax: 30 → `30s`, 2.5 → `2500ms`."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def replicas_regex(names: Iterable[str]) -> str:
    """`a|b`, each name a literal inside a double-quoted PromQL string (`.` escaped as `\\\\.`)."""
    return "|".join(name.replace(".", "\\\\.") for name in names)


def render(template: str, *, replicas: list[str], scope: str, window_s: float, replica: str = "") -> str:
    values = {
        "replica": replica,
        "replicas": replicas_regex(replicas),
        "scope": "candidate|stable" if scope == "all" else scope,
        "window": promql_duration(window_s),
    }
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def scoped(playbook: Playbook, scope: str) -> list[str]:
    """The names of the replicas a scope (candidate, stable, all) covers, in playbook order."""
    return [r.name for r in playbook.replicas if scope in ("all", r.role)]


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Answer:
    """What one instant query gave: its series, or why there is nothing to read."""

    series: tuple[Series, ...] = ()
    error: str | None = None

    @property
    def largest(self) -> Series | None:
        return max(self.series, key=lambda s: s.value) if self.series else None


def _tls(server: PrometheusServer) -> ssl.SSLContext | bool:
    tls = server.tls
    if not (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
        return True
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert_file and tls.key_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class PrometheusClient:
    """Instant queries against one server. It never raises: every failure is an Answer with its reason."""

    def __init__(self, server: PrometheusServer, environ: Mapping[str, str] | None = None) -> None:
        self.server = server
        self.url = server.url.rstrip("/") + "/api/v1/query"
        self.blind: str | None = None  # set when it cannot even ask (unset ${VAR}, unreadable TLS files)
        environ = os.environ if environ is None else environ
        headers = {"User-Agent": "rollback-tui/metrics"}
        auth: httpx.Auth | None = None
        verify: ssl.SSLContext | bool = True
        try:
            what = f"Prometheus {server.name}"
            for key, value in server.headers.items():
                headers[key] = resolve(value, environ, f"{what} header {key}")[0]
            if server.bearer_token is not None:
                token = resolve(server.bearer_token, environ, f"{what} bearer_token")[0]
                headers["Authorization"] = f"Bearer {token}"
            if server.basic_auth is not None:
                password = resolve(server.basic_auth.password, environ, f"{what} basic_auth")[0]
                auth = httpx.BasicAuth(server.basic_auth.username, password)
            verify = _tls(server)
        except MissingVariable as exc:
            self.blind = f"{what}: {exc}"
        except (OSError, ssl.SSLError) as exc:
            self.blind = f"{what}: TLS files unusable: {exc}"
        self.client = http_client.client(headers=headers, auth=auth, verify=verify, timeout=server.timeout_s)

    async def aclose(self) -> None:
        await self.client.aclose()

    def _fail(self, why: str) -> Answer:
        return Answer(error=f"Prometheus {self.server.name}: {why}"[:MAX_ERROR])

    async def query(self, promql: str) -> Answer:
        if self.blind is not None:
            return Answer(error=self.blind)
        try:
            # An instant query changes nothing: it may be sent again when a kept-open connection raced.
            response = await request(self.client, "POST", self.url, data={"query": promql}, replayable=True)
        except httpx.TimeoutException:
            return self._fail(f"no answer within {self.server.timeout_s:g} s")
        except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
            return self._fail(describe_http_error(exc))
        refused = auth_refused(response.status_code)
        if refused:
            return self._fail(refused)
        try:
            doc = response.json()
        except ValueError:
            return self._fail(f"HTTP {response.status_code}, not the Prometheus API: {response.text[:80]!r}")
        if not isinstance(doc, dict) or doc.get("status") != "success":
            kind = doc.get("errorType", "error") if isinstance(doc, dict) else "error"
            detail = doc.get("error", "") if isinstance(doc, dict) else ""
            return self._fail(f"query {kind} (HTTP {response.status_code}): {detail}")
        return self._answer(doc.get("data") or {})

    def _answer(self, data: dict[str, Any]) -> Answer:
        kind, result = data.get("resultType"), data.get("result")
        points: list[tuple[dict[str, str], Any]]
        if kind == "scalar":
            points = [({}, result)]
        elif kind == "vector":
            points = [(item.get("metric", {}), item.get("value")) for item in result or []]
        else:
            return self._fail(f"the query gives a {kind}; a guardrail needs an instant vector or a scalar")
        if not points:
            return self._fail("no series (nothing matched the query in its window)")
        series = []
        for labels, point in points:
            try:
                value = float(point[1])
            except (TypeError, ValueError, IndexError):
                return self._fail(f"unreadable sample {point!r}")
            if not math.isfinite(value):
                continue
            series.append(Series(dict(labels), value))
        if not series:
            return self._fail("the query gives NaN or ±Inf (no samples in its window?)")
        return Answer(tuple(series))


def _label_text(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class MetricPoller:
    """Evaluates each `metric: query` guardrail every `interval_s` and journals a MetricSample."""

    def __init__(self, playbook: Playbook, emit: Emit, *, environ: Mapping[str, str] | None = None) -> None:
        self.playbook = playbook
        self.emit = emit
        self.environ = environ
        self.rails = [g for g in playbook.guardrails if g.metric == "query"]
        self._clients: dict[str, PrometheusClient] = {}

    def client(self, name: str | None) -> PrometheusClient:
        server = self.playbook.prometheus_server(name)
        assert server is not None, "validated: a query names a server, or there is exactly one"
        if server.name not in self._clients:
            self._clients[server.name] = PrometheusClient(server, self.environ)
        return self._clients[server.name]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                for rail in self.rails:
                    group.create_task(self._poll(rail, stop), name=f"metric:{rail.name}")
        finally:
            await self.aclose()

    async def _poll(self, rail: Guardrail, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.emit(await self.evaluate(rail))
            remaining = max(0.0, rail.interval_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)

    async def evaluate(self, rail: Guardrail) -> ev.MetricSample:
        """One evaluation: the scope's value (and sample count), and with a baseline the stable side too."""
        assert rail.query is not None
        client = self.client(rail.server)
        started = time.perf_counter()
        scope = "candidate" if rail.baseline is not None else rail.scope
        jobs = {"value": self._value(client, rail, scope)}
        samples_query = rail.baseline.samples_query if rail.baseline else rail.samples_query
        if samples_query:
            jobs["samples"] = self._count(client, rail, samples_query, scope)
        if rail.baseline is not None:
            jobs["baseline"] = self._value(client, rail, "stable")
            jobs["baseline_samples"] = self._count(client, rail, samples_query or "", "stable")
        answers = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
        value, series, _ = answers["value"]
        errors = {k: err for k, (_, _, err) in answers.items() if err is not None}
        if rail.baseline is not None:  # say which side could not be seen
            for key, side in (("value", "candidate"), ("baseline", "stable")):
                if key in errors:
                    errors[key] = f"{side} side: {errors[key]}"
        shown = render(  # {replica} stays visible: it is asked once per replica
            rail.query,
            replica="{replica}",
            replicas=scoped(self.playbook, scope),
            scope=scope,
            window_s=rail.window_s,
        )
        return ev.MetricSample(
            guardrail=rail.name,
            server=client.server.name,
            query=shown,
            window_s=rail.window_s,
            value=value,
            samples=answers["samples"][0] if "samples" in answers else None,
            baseline=answers["baseline"][0] if "baseline" in answers else None,
            baseline_samples=answers["baseline_samples"][0] if "baseline_samples" in answers else None,
            series=series,
            errors=errors,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    async def _value(
        self, client: PrometheusClient, rail: Guardrail, scope: str
    ) -> tuple[float | None, str | None, str | None]:
        """(largest value, which series or replica gave it, what could not be observed)."""
        assert rail.query is not None
        replicas = scoped(self.playbook, scope)
        if "{replica}" not in rail.query:
            promql = render(rail.query, replicas=replicas, scope=scope, window_s=rail.window_s)
            answer = await client.query(promql)
            best = answer.largest
            if best is None:
                return None, None, answer.error
            several = _label_text(best.labels) if len(answer.series) > 1 else None
            return best.value, several, None
        # Once per replica: the worst replica is judged; those that could not be asked are named.
        promqls = [
            render(rail.query, replica=r, replicas=replicas, scope=scope, window_s=rail.window_s)
            for r in replicas
        ]
        answers = await asyncio.gather(*(client.query(q) for q in promqls))
        values = {r: a.largest.value for r, a in zip(replicas, answers, strict=True) if a.largest is not None}
        blind = [f"{r}: {a.error}" for r, a in zip(replicas, answers, strict=True) if a.error is not None]
        if not values:
            return None, None, "; ".join(blind) or "no replica in scope"
        worst = max(values, key=lambda r: values[r])
        return values[worst], worst, "; ".join(blind) or None

    async def _count(
        self, client: PrometheusClient, rail: Guardrail, template: str, scope: str
    ) -> tuple[float | None, None, str | None]:
        promql = render(template, replicas=scoped(self.playbook, scope), scope=scope, window_s=rail.window_s)
        answer = await client.query(promql)
        if answer.error is not None:
            return None, None, f"samples query ({scope}): {answer.error}"
        return sum(s.value for s in answer.series), None, None
