"""HTTP JSON probes (dead-letters count, health with timeout, any JSON field).

A probe never raises on network trouble: refused, timed out, junk or a missing field all become a
`ProbeResult(ok=False, error=…)` — the target is failing. What stops the probe from looking at all (an
unset `${VAR}`, a host name that does not resolve from here, a malformed URL, auth refused) is
`observed=False`: unknown, never a failure of the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from rollback_tui.core.events import DeadLettersInspected, Event, ProbeResult
from rollback_tui.exec.commands import CommandError, resolve_refs
from rollback_tui.playbook.model import HttpProbe, Playbook
from rollback_tui.probes import http_client
from rollback_tui.probes.health import auth_refused, cannot_observe, describe_http_error, dotted
from rollback_tui.probes.http_client import request


async def probe_http(
    probe: HttpProbe, client: httpx.AsyncClient, *, environ: Mapping[str, str] | None = None
) -> ProbeResult:
    return (await probe_document(probe, client, environ=environ))[0]


async def probe_document(
    probe: HttpProbe, client: httpx.AsyncClient, *, environ: Mapping[str, str] | None = None
) -> tuple[ProbeResult, Any]:
    """The probe's result and the JSON document it read (None when there was none)."""
    environ = os.environ if environ is None else environ
    try:
        headers = {k: resolve_refs(v, environ, f"header {k}")[0] for k, v in probe.headers.items()}
    except CommandError as exc:  # an unset ${VAR}: the probe cannot even ask
        return ProbeResult(probe=probe.name, ok=False, error=str(exc), observed=False), None
    started = time.perf_counter()
    try:
        response = await request(client, probe.method, probe.url, headers=headers, timeout=probe.timeout_s)
    except httpx.TimeoutException:
        timed_out = ProbeResult(
            probe=probe.name,
            ok=False,
            latency_ms=round(probe.timeout_s * 1000, 2),
            error=f"no answer within {probe.timeout_s:g} s",
        )
        return timed_out, None
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        blind = cannot_observe(exc)  # the host does not resolve from here, or the URL is malformed
        failed = ProbeResult(probe=probe.name, ok=False, error=describe_http_error(exc), observed=not blind)
        return failed, None
    latency = round((time.perf_counter() - started) * 1000, 2)
    base: dict[str, Any] = {"probe": probe.name, "http_status": response.status_code, "latency_ms": latency}
    value = doc = None
    error = None
    if probe.json_path:
        try:
            doc = response.json()
        except ValueError:
            error = f"not JSON: {response.text[:80]!r}"
        else:
            value = dotted(doc, probe.json_path)
            if value is None:
                error = f"no field {probe.json_path!r} in the response"
    if response.status_code != probe.expect_status:
        refused = auth_refused(response.status_code)
        if refused:  # the probe was not let in: it could not look, the target is not known to fail
            return ProbeResult(ok=False, error=refused, observed=False, **base), None
        error = f"expected HTTP {probe.expect_status}, got {response.status_code}"
    return ProbeResult(ok=error is None, value=value, error=error, **base), doc


async def probe_once(
    playbook: Playbook,
    emit: Callable[[Event], Event],
    names: list[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> list[ProbeResult]:
    """Run the named probes (all by default) once, concurrently; emit results in playbook order."""
    probes = [p for p in playbook.probes if names is None or p.name in names]
    async with http_client.client(headers={"User-Agent": "rollback-tui/probe"}) as client:
        results = await asyncio.gather(*(probe_http(p, client, environ=environ) for p in probes))
    return [emit(r) for r in results]  # type: ignore[misc]


NEWEST_SHOWN = 5  # dead letters listed by an inspection
ITEM_CHARS = 200


async def inspect_dead_letters(
    probe: HttpProbe, emit: Callable[[Event], Event], *, environ: Mapping[str, str] | None = None
) -> DeadLettersInspected:
    """Read the dead-letters endpoint once: its count (journaled as the probe's result too, so the growth
    guardrail sees it) and the newest items — the document's `items` list, in the endpoint's order."""
    async with http_client.client(headers={"User-Agent": "rollback-tui/probe"}) as client:
        result, doc = await probe_document(probe, client, environ=environ)
    emit(result)
    items = doc.get("items") if isinstance(doc, dict) else None
    newest = [json.dumps(i, separators=(",", ":"))[:ITEM_CHARS] for i in (items or [])[:NEWEST_SHOWN]]
    count: int | None = None
    if result.ok:
        try:
            count = int(result.value)
        except (TypeError, ValueError):
            result = result.model_copy(
                update={"ok": False, "error": f"count {result.value!r} is not a number"}
            )
    inspected = DeadLettersInspected(
        probe=probe.name, count=count, newest=newest, observed=result.observed, error=result.error
    )
    return emit(inspected)  # type: ignore[return-value]


async def poll_probes(
    playbook: Playbook,
    emit: Callable[[Event], Event],
    stop: asyncio.Event | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Poll every probe that has `interval_s`, each on its own task, until `stop` is set."""
    stop = stop or asyncio.Event()
    polled = [p for p in playbook.probes if p.interval_s]
    if not polled:
        return

    async def poll(client: httpx.AsyncClient, probe: HttpProbe) -> None:
        assert probe.interval_s is not None
        while not stop.is_set():
            started = time.monotonic()
            emit(await probe_http(probe, client, environ=environ))
            remaining = max(0.0, probe.interval_s - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)

    user_agent = {"User-Agent": "rollback-tui/probe"}
    async with http_client.client(headers=user_agent) as client, asyncio.TaskGroup() as group:
        for probe in polled:
            group.create_task(poll(client, probe), name=f"probe:{probe.name}")
