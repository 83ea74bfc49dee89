"""Release gates: commands run locally or over SSH (exec/), streamed, bounded, recorded.

Output is streamed line by line through an OutputRecorder (every line to the redacted artefact file, a
rate-limited share to the journal). A gate that could not even start (command not found, unset `${VAR}`,
unreachable host, refused host key) is an `error` outcome with a clear message: it could not run, which
is not a failure.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from rollback_tui.core.events import Event, GateFinished, GateStarted
from rollback_tui.core.redact import Redactor
from rollback_tui.exec.commands import (
    CommandError,
    OutputRecorder,
    spec_argv,
)
from rollback_tui.exec.supervise import Outcome, make_execution, supervise
from rollback_tui.playbook.model import CommandSpec, Gate, Playbook
from rollback_tui.playbook.secrets import ENV_REF


def referenced_env(playbook: Playbook) -> set[str]:
    """Every `${VAR}` name the playbook's commands reference (their values are secrets)."""
    names: set[str] = set()
    specs: list[CommandSpec] = [*playbook.gates, *(f.command for f in playbook.facts if f.command)]
    for spec in specs:
        for value in spec.env.values():
            names.update(ENV_REF.findall(value))
    for probe in playbook.probes:
        for value in probe.headers.values():
            names.update(ENV_REF.findall(value))
    return names


class GateRunner:
    """Runs the playbook's gates and journals GateStarted / GateOutput / GateFinished."""

    def __init__(
        self,
        playbook: Playbook,
        emit: Callable[[Event], Event],
        *,
        artefact_dir: Path,
        env: Mapping[str, str] | None = None,
        max_tail: int = 200,
        lines_per_s: float = 100.0,
        redactor: Redactor | None = None,
    ) -> None:
        self.playbook = playbook
        self.emit = emit
        self.artefact_dir = Path(artefact_dir)
        self.environ: Mapping[str, str] = os.environ if env is None else env
        self.max_tail = max_tail
        self.lines_per_s = lines_per_s
        # Share the journal's redactor where possible: secret values resolved here are added to it.
        self.redact = redactor or Redactor.from_env(referenced_env(playbook), self.environ)
        self._cancel: dict[str, asyncio.Event] = {}

    def running(self) -> list[str]:
        return list(self._cancel)

    def cancel(self, gate: str) -> bool:
        flag = self._cancel.get(gate)
        if flag is None or flag.is_set():
            return False
        flag.set()
        return True

    def _gate(self, name: str) -> Gate:
        for gate in self.playbook.gates:
            if gate.name == name:
                return gate
        known = ", ".join(g.name for g in self.playbook.gates) or "none"
        raise ValueError(f"unknown gate {name!r} (the playbook defines: {known})")

    async def run(self, gate: str, *, actor: str = "engine") -> GateFinished:
        spec = self._gate(gate)
        if gate in self._cancel:
            raise ValueError(f"gate {gate!r} is already running")
        run = uuid.uuid4().hex[:8]
        flag = self._cancel[gate] = asyncio.Event()
        started = time.monotonic()
        recorder: OutputRecorder | None = None
        try:
            self.emit(GateStarted(gate=gate, run=run, argv=spec_argv(spec), where=spec.where, actor=actor))
            recorder = OutputRecorder(
                gate,
                run,
                self.emit,
                self.redact,
                self.artefact_dir / f"{gate}-{run}.log",
                lines_per_s=self.lines_per_s,
                tail=self.max_tail,
            )
            try:
                execution, secrets = make_execution(spec, self.playbook, recorder.line, self.environ)
            except CommandError as exc:
                result = Outcome("error", error=str(exc))
            else:
                self.redact.add(secrets)
                result = await supervise(execution, spec.timeout_s, flag)
            for note in result.notes:
                recorder.note(note)
        except asyncio.CancelledError:
            self._finish(gate, run, Outcome("cancelled", error="gate task cancelled"), started, recorder)
            raise
        finally:
            self._cancel.pop(gate, None)
        return self._finish(gate, run, result, started, recorder)

    def _finish(
        self, gate: str, run: str, result: Outcome, started: float, recorder: OutputRecorder | None
    ) -> GateFinished:
        artefact = None
        lines = 0
        if recorder is not None:
            if result.error:
                recorder.note(result.error)
            recorder.close()
            lines = recorder.lines
            artefact = str(recorder.artefact) if recorder.artefact else None
        event = GateFinished(
            gate=gate,
            run=run,
            outcome=result.outcome,  # type: ignore[arg-type]
            exit_code=result.exit_code,
            duration_s=round(time.monotonic() - started, 3),
            output_lines=lines,
            artefact=artefact,
            error=self.redact(result.error) if result.error else None,
        )
        return self.emit(event)  # type: ignore[return-value]

    async def run_all(self, names: list[str] | None = None, *, actor: str = "engine") -> list[GateFinished]:
        """Playbook order; consecutive `parallel: true` gates run concurrently as one batch."""
        if names is not None:
            for name in names:
                self._gate(name)
        gates = [g for g in self.playbook.gates if names is None or g.name in names]
        results: list[GateFinished] = []
        batch: list[Gate] = []

        async def flush() -> None:
            if batch:
                results.extend(await asyncio.gather(*(self.run(g.name, actor=actor) for g in batch)))
                batch.clear()

        for gate in gates:
            if gate.parallel:
                batch.append(gate)
                continue
            await flush()
            results.append(await self.run(gate.name, actor=actor))
        await flush()
        return results
