"""Baseline facts: values captured at the start and re-checked after rollback, each with its source.

Sources: `health` (a dotted field of each replica's health JSON), `http` (url + dotted field),
`command` (local or over SSH; the regex's first group, or the whole match), `env`, `prometheus` (an
instant query's value, or one of its labels; with `{replica}` one value per replica), and `manual`
(recorded as pending: `values={"-": None}`, `source="manual:pending"`, for the operator to fill in).
A `must_agree` health fact sets `agree` and raises a warning Notice when replicas differ. A fact that
could not be observed (unset `${VAR}`, a host that does not resolve from here, a missing binary, auth
refused) is `observed=False` with the reason in `error`: unknown, and it claims no (dis)agreement.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import httpx

from rollback_tui.core.events import Event, FactCaptured, Notice
from rollback_tui.exec.commands import spec_argv
from rollback_tui.exec.supervise import run_capture
from rollback_tui.playbook.model import Fact, Playbook, Replica
from rollback_tui.playbook.secrets import MissingVariable
from rollback_tui.probes import http_client
from rollback_tui.probes.health import (
    auth_refused,
    cannot_observe,
    describe_http_error,
    dotted,
    health_url,
    run_health_command,
)
from rollback_tui.probes.http_client import request
from rollback_tui.probes.metrics.prometheus import Answer, PrometheusClient, render, scoped

Phase = Literal["baseline", "after_rollback", "check"]
MAX_VALUE = 500


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:MAX_VALUE]


class _Fetched(NamedTuple):
    doc: Any
    error: str | None = None
    observed: bool = True  # False: it could not look (see the module docstring)


async def _get_json(client: httpx.AsyncClient, url: str, timeout_s: float) -> _Fetched:
    try:
        response = await request(client, "GET", url, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        return _Fetched(None, describe_http_error(exc), not cannot_observe(exc))
    refused = auth_refused(response.status_code)
    if refused:
        return _Fetched(None, refused, observed=False)
    if response.status_code >= 400:
        return _Fetched(None, f"HTTP {response.status_code}")
    try:
        return _Fetched(response.json())
    except ValueError:
        return _Fetched(None, f"not JSON: {response.text[:80]!r}")


async def _command_json(replica: Replica, playbook: Playbook) -> _Fetched:
    """The health document a replica's health command prints."""
    said = await run_health_command(replica, playbook, playbook.health_timeout_s)
    if said.outcome != "ran":
        return _Fetched(None, said.error, observed=said.outcome != "unknown")
    if said.doc is None:
        return _Fetched(None, f"the health command printed a bare status ({said.value!r}), not a JSON object")
    return _Fetched(said.doc)


class _Capture:
    def __init__(
        self,
        playbook: Playbook,
        client: httpx.AsyncClient,
        health_docs: dict[str, dict] | None,
        environ: Mapping[str, str],
    ) -> None:
        self.playbook = playbook
        self.client = client
        self.environ = environ
        self._docs: dict[str, asyncio.Task[_Fetched]] = {}
        self._given = health_docs
        self._servers: dict[str, PrometheusClient] = {}

    async def aclose(self) -> None:
        for client in self._servers.values():
            await client.aclose()

    def health_doc(self, replica: Replica) -> asyncio.Task[_Fetched]:
        """Each replica's health document is fetched at most once per capture."""
        if replica.name not in self._docs:
            if self._given is not None:
                doc = self._given.get(replica.name)
                result = _Fetched(doc, None if doc is not None else "no health document for this replica")
                coro: Any = asyncio.sleep(0, result)
            elif replica.health_command is not None:
                coro = _command_json(replica, self.playbook)
            else:
                coro = _get_json(self.client, health_url(replica), self.playbook.health_timeout_s)
            self._docs[replica.name] = asyncio.ensure_future(coro)
        return self._docs[replica.name]

    async def fact(self, fact: Fact, phase: Phase) -> FactCaptured:
        handler = getattr(self, f"_{fact.source}")
        return await handler(fact, phase)

    async def _health(self, fact: Fact, phase: Phase) -> FactCaptured:
        assert fact.field is not None
        replicas = [r for r in self.playbook.replicas if fact.replicas in ("all", r.role)]
        docs = await asyncio.gather(*(self.health_doc(r) for r in replicas))
        values: dict[str, str | None] = {}
        errors: list[str] = []
        for replica, (doc, error, _) in zip(replicas, docs, strict=True):
            values[replica.name] = _text(dotted(doc, fact.field)) if doc is not None else None
            if error:
                errors.append(f"{replica.name}: {error}")
            elif values[replica.name] is None:
                errors.append(f"{replica.name}: no field {fact.field!r}")
        observed = all(d.observed for d in docs)
        agree = None
        if fact.must_agree and observed:  # replicas it could not look at neither agree nor disagree
            agree = bool(values) and None not in values.values() and len(set(values.values())) == 1
        return FactCaptured(
            fact=fact.name,
            phase=phase,
            values=values,
            source=f"health:{fact.field}",
            agree=agree,
            error="; ".join(errors) or None,
            observed=observed,
        )

    async def _http(self, fact: Fact, phase: Phase) -> FactCaptured:
        assert fact.url is not None and fact.field is not None
        doc, error, observed = await _get_json(self.client, fact.url, self.playbook.health_timeout_s)
        value = _text(dotted(doc, fact.field)) if doc is not None else None
        if error is None and value is None:
            error = f"no field {fact.field!r}"
        return FactCaptured(
            fact=fact.name,
            phase=phase,
            values={"-": value},
            source=f"http:{fact.url}#{fact.field}",
            error=error,
            observed=observed,
        )

    async def _command(self, fact: Fact, phase: Phase) -> FactCaptured:
        assert fact.command is not None
        spec = fact.command
        source = f"command:{shlex.join(spec_argv(spec))}" + (
            "" if spec.where == "local" else f"@{spec.where}"
        )
        result = await run_capture(spec, self.playbook, environ=self.environ)
        value: str | None = None
        error: str | None = None
        if result.outcome != "passed":
            last = result.stderr.strip().splitlines()[-1:] or [""]
            error = result.error or f"command {result.outcome} (exit {result.exit_code}) {last[0]}".strip()
        elif fact.regex:
            match = re.search(fact.regex, result.stdout, re.MULTILINE)
            if match is None:
                error = f"regex {fact.regex!r} did not match the command output"
            else:
                value = match.group(1) if match.groups() else match.group(0)
        else:
            value = result.stdout.strip() or None
            error = None if value else "the command printed nothing"
        return FactCaptured(
            fact=fact.name,
            phase=phase,
            values={"-": _text(value)},
            source=source,
            error=error,
            observed=result.outcome != "error",  # `error`: it never ran (missing binary, unset ${VAR})
        )

    async def _env(self, fact: Fact, phase: Phase) -> FactCaptured:
        assert fact.env_var is not None
        value = self.environ.get(fact.env_var)
        error = None if value is not None else str(MissingVariable(fact.env_var))
        return FactCaptured(
            fact=fact.name,
            phase=phase,
            values={"-": _text(value)},
            source=f"env:{fact.env_var}",
            error=error,
            observed=value is not None,
        )

    async def _prometheus(self, fact: Fact, phase: Phase) -> FactCaptured:
        assert fact.query is not None
        server = self.playbook.prometheus_server(fact.server)
        assert server is not None, "validated: a query names a server, or there is exactly one"
        if server.name not in self._servers:
            self._servers[server.name] = PrometheusClient(server, self.environ)
        client = self._servers[server.name]
        replicas = scoped(self.playbook, fact.replicas)
        keys = replicas if "{replica}" in fact.query else ["-"]
        queries = [
            render(fact.query, replica=k, replicas=replicas, scope=fact.replicas, window_s=60) for k in keys
        ]
        answers = await asyncio.gather(*(client.query(q) for q in queries))
        values = {key: _series_text(answer, fact.label) for key, answer in zip(keys, answers, strict=True)}
        errors = [
            f"{key}: {answer.error}" if key != "-" else answer.error
            for key, answer in zip(keys, answers, strict=True)
            if answer.error is not None
        ]
        errors += [f"{k}: no label {fact.label!r}" for k, v in values.items() if v is None and fact.label]
        agree = None
        if fact.must_agree and not errors:
            agree = len(set(values.values())) == 1
        return FactCaptured(
            fact=fact.name,
            phase=phase,
            values=values,
            source=f"prometheus:{server.name}:{fact.query}",
            agree=agree,
            error="; ".join(e for e in errors if e) or None,
            observed=all(a.error is None for a in answers),  # a query that could not answer is unknown
        )

    async def _manual(self, fact: Fact, phase: Phase) -> FactCaptured:
        return FactCaptured(fact=fact.name, phase=phase, values={"-": None}, source="manual:pending")


def _series_text(answer: Answer, label: str | None) -> str | None:
    """A query's answer as a fact's value: the value (`12`, `0.5`), or a label of its series."""
    if not answer.series:
        return None
    if label is None:
        return _text(", ".join(f"{s.value:g}" for s in answer.series))
    found = sorted({s.labels[label] for s in answer.series if label in s.labels})
    return _text(", ".join(found)) if found else None


async def capture_facts(
    playbook: Playbook,
    emit: Callable[[Event], Event],
    *,
    phase: Phase = "baseline",
    health_docs: dict[str, dict] | None = None,
    names: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
) -> list[FactCaptured]:
    """Capture the playbook's facts (or the named ones) concurrently; emit them in playbook order."""
    facts = [f for f in playbook.facts if names is None or f.name in names]
    if names is not None and (unknown := set(names) - {f.name for f in facts}):
        raise ValueError(f"unknown fact(s): {', '.join(sorted(unknown))}")
    environ = os.environ if environ is None else environ
    own_client = client is None
    http = client or http_client.client(headers={"User-Agent": "rollback-tui/facts"})
    capture = _Capture(playbook, http, health_docs, environ)
    try:
        captured = await asyncio.gather(*(capture.fact(f, phase) for f in facts))
    finally:
        await capture.aclose()
        if own_client:
            await http.aclose()
    emitted: list[FactCaptured] = []
    for fact, event in zip(facts, captured, strict=True):
        emitted.append(emit(event))  # type: ignore[arg-type]
        if event.agree is False:
            shown = ", ".join(f"{k}={v!r}" for k, v in event.values.items())
            emit(
                Notice(level="warning", source="facts", message=f"{fact.title}: replicas disagree ({shown})")
            )
    return emitted
