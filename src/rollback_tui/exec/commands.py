"""Command plumbing shared by the local and remote runners.

* `spec_argv` / `resolve_argv` / `build_env`: what to run and with which environment (`${VAR}` resolved
  here; inside a shell script it is left to the shell, which reads it from the environment).
* `LineSplitter`: bytes → decoded lines, each cut at `MAX_LINE` bytes so one endless line cannot
  exhaust memory.
* `OutputRecorder`: every line goes (redacted) to an artefact file; at most `lines_per_s` become
  `GateOutput` events, so a flood cannot swamp the journal; the suppressed tail is emitted at the end.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from rollback_tui.core.events import Event, GateOutput
from rollback_tui.core.redact import Redactor
from rollback_tui.playbook import secrets
from rollback_tui.playbook.code import (
    env_ref_in_code_message,
    env_refs_in_code,
    readable_script,
    spliced_placeholder_message,
    value_read_as_option,
)
from rollback_tui.playbook.model import CommandSpec, placeholders_in_code

BASE_ENV = ("PATH", "HOME", "LANG", "TZ")
MAX_LINE = 4096
Stream = str  # "stdout" | "stderr"
OnLine = Callable[[Stream, str], None]


class CommandError(Exception):
    """A command could not be started or completed; the message is shown to the operator as is."""


class Execution(Protocol):
    """One running command, local or remote."""

    async def start(self) -> None: ...  # raises CommandError

    async def wait(self) -> int: ...  # exit status once the output is drained

    async def kill(self) -> bool: ...  # stop it and all it started; False: it had ended on its own

    async def close(self) -> None: ...  # release pipes, channels, connections


def spec_argv(spec: CommandSpec) -> list[str]:
    """The argv to execute: the playbook's argv, or `/bin/sh -c <run>` for explicit shell commands."""
    if spec.shell and spec.run is not None:
        return ["/bin/sh", "-c", spec.run]
    assert spec.argv is not None  # the model guarantees one form
    return list(spec.argv)


CONSOLE_SCRIPT = "rollback-tui"


def this_installation(argv: list[str]) -> list[str]:
    """A local `rollback-tui …` runs as this very installation (its interpreter, `-m rollback_tui`), so a
    playbook's `rollback-tui lb …` helpers never depend on what PATH finds first (or on PATH at all)."""
    if argv and argv[0] == CONSOLE_SCRIPT:
        return [sys.executable, "-m", "rollback_tui", *argv[1:]]
    return argv


def fill(spec: CommandSpec, values: Mapping[str, str]) -> CommandSpec:
    """Fill `{name}` placeholders (e.g. {commit}, {selector_json}) per argv element.

    Only the names in `values` are replaced, so other braces (kubectl jsonpath `{.spec.selector}`, JSON
    patches) are written as they are, with no escaping. A placeholder inside code — a `shell: true`
    string, the SCRIPT of `sh -c SCRIPT`, the CODE of `python3 -c CODE` / `node -e CODE`, the remote
    command of `ssh HOST …` (playbook.code has the table) — is refused with a CommandError: a value such
    as `abc$(touch X)` would run as a command. `validate` refuses these playbooks already, with the same
    table; this is the second line for specs built in code.
    """
    if not values:
        return spec
    spliced = placeholders_in_code(spec, values)
    if spliced:
        (field, *index), name, program = spliced[0]
        where = f"{field}[{index[0]}]" if index else field
        raise CommandError(f"refusing to fill {where}: {spliced_placeholder_message(name, program)}")
    if spec.argv is None:
        return spec
    if (option := value_read_as_option(spec.argv, values)) is not None:
        raise CommandError(f"refusing to fill {option}")
    pattern = re.compile("{(" + "|".join(map(re.escape, values)) + ")}")
    argv = [pattern.sub(lambda m: values[m.group(1)], arg) for arg in spec.argv]
    return spec.model_copy(update={"argv": argv})


@dataclass
class ResolvedEnv:
    full: dict[str, str]  # minimal base + allowed + spec env: the local process environment
    passed: dict[str, str]  # allowed + spec env only: what is sent to a remote host
    secrets: list[str] = field(default_factory=list)  # values that came from ${VAR} references


def resolve_refs(value: str, environ: Mapping[str, str], what: str) -> tuple[str, list[str]]:
    """Substitute `${VAR}` from `environ`; an unset variable is a CommandError (its cause says which)."""
    try:
        return secrets.resolve(value, environ, what)
    except secrets.MissingVariable as exc:
        raise CommandError(str(exc)) from exc


@dataclass
class ResolvedArgv:
    argv: list[str]
    script_env: dict[str, str]  # the `${VAR}`s a shell script expands itself: for its environment
    secrets: list[str]  # values substituted or passed, to redact


def resolve_argv(spec: CommandSpec, environ: Mapping[str, str]) -> ResolvedArgv:
    """The argv with `${VAR}` replaced per element (one argument each: nothing re-splits the value).

    Not in a shell script: there the value would become code (`"` or `$(…)` in it runs) and would show
    in `ps`. The reference stays as text and VAR goes into the command's environment instead, so the
    shell expands it as data. `${VAR}` in code that cannot read the environment is refused.
    """
    argv = spec_argv(spec)
    if refused := env_refs_in_code(argv):  # the model refuses these too: this is for specs built in code
        raise CommandError(env_ref_in_code_message(*refused[0]))
    readable = readable_script(argv)
    script = readable.index if readable is not None else None
    resolved = ResolvedArgv([], {}, [])
    for index, arg in enumerate(argv):
        if index == script:
            for name in secrets.ENV_REF.findall(arg):
                if name not in environ:
                    raise CommandError(str(secrets.MissingVariable(name, f"argv[{index}]")))
                resolved.script_env[name] = environ[name]
                resolved.secrets.append(environ[name])
            resolved.argv.append(arg)
            continue
        value, used = resolve_refs(arg, environ, f"argv[{index}]")
        resolved.argv.append(value)
        resolved.secrets.extend(used)
    return resolved


def build_env(spec: CommandSpec, environ: Mapping[str, str] | None = None) -> ResolvedEnv:
    environ = os.environ if environ is None else environ
    passed = {name: environ[name] for name in spec.env_allow if name in environ}
    secrets: list[str] = []
    for key, raw in spec.env.items():
        value, used = resolve_refs(raw, environ, f"env {key}")
        passed[key] = value
        secrets.extend(used)
    full = {name: environ[name] for name in BASE_ENV if name in environ}
    full.setdefault("PATH", os.defpath)
    full.update(passed)
    return ResolvedEnv(full=full, passed=passed, secrets=secrets)


class LineSplitter:
    """Incremental bytes → lines; a line longer than `max_line` bytes is cut and marked."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._cut = 0

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._add(data[start:])
                return lines
            self._add(data[start:end])
            lines.append(self._take())
            start = end + 1

    def close(self) -> list[str]:
        return [self._take()] if self._buf or self._cut else []

    def _add(self, chunk: bytes) -> None:
        room = self.max_line - len(self._buf)
        if len(chunk) > room:
            self._cut += len(chunk) - room
            chunk = chunk[:room]
        self._buf += chunk

    def _take(self) -> str:
        text = self._buf.decode("utf-8", errors="replace").removesuffix("\r")
        if self._cut:
            text += f" …[{self._cut} bytes cut]"
        self._buf.clear()
        self._cut = 0
        return text


class OutputRecorder:
    """Routes a gate's output lines: all to the artefact, a rate-limited share to the journal."""

    FLUSH_BYTES = 64 * 1024

    def __init__(
        self,
        gate: str,
        run: str,
        emit: Callable[[Event], Event],
        redact: Redactor,
        artefact: Path | None,
        *,
        lines_per_s: float = 100.0,
        tail: int = 200,
    ) -> None:
        self.gate, self.run, self.emit, self.redact = gate, run, emit, redact
        self.artefact = artefact
        self.lines_per_s = lines_per_s
        self.lines = 0
        self.emitted = 0
        self._tokens = lines_per_s
        self._refilled = time.monotonic()
        self._tail: deque[tuple[Stream, str, bool]] = deque(maxlen=tail)
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._flushed_at = time.monotonic()
        self._fh: IO[str] | None = None
        if artefact is not None:
            artefact.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(artefact, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._fh = os.fdopen(fd, "w", encoding="utf-8", errors="replace")

    def line(self, stream: Stream, text: str) -> None:
        self.lines += 1
        record = text if stream == "stdout" else f"[stderr] {text}"
        self._pending.append(record)
        self._pending_bytes += len(record) + 1
        emitted = self._take_token()  # also refreshes self._refilled (now)
        if self._pending_bytes >= self.FLUSH_BYTES or self._refilled - self._flushed_at >= 1.0:
            self._flush()
        if emitted:
            self.emitted += 1
            self._emit(stream, text)
        self._tail.append((stream, text, emitted))

    def note(self, text: str) -> None:
        """A line from rollback-tui itself (not the command), always journaled."""
        self._pending.append(f"[rollback-tui] {text}")
        self._emit("stderr", f"[rollback-tui] {text}")

    def close(self) -> None:
        """Emit the suppressed tail (the end of the output matters most), then close the artefact."""
        suppressed = self.lines - self.emitted
        if suppressed:
            where = f" (all lines in {self.artefact})" if self.artefact else ""
            self.note(f"{suppressed} output lines not shown in the journal{where}")
            for stream, text, emitted in self._tail:
                if not emitted:
                    self.emitted += 1
                    self._emit(stream, text)
        self._flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _emit(self, stream: Stream, text: str) -> None:
        self.emit(GateOutput(gate=self.gate, run=self.run, stream=stream, line=self.redact(text)))  # type: ignore[arg-type]

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.lines_per_s, self._tokens + (now - self._refilled) * self.lines_per_s)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def _flush(self) -> None:
        if self._pending and self._fh is not None:
            # Redacting a block at once is much cheaper than line by line; secrets never span lines.
            self._fh.write(self.redact("\n".join(self._pending)) + "\n")
            self._fh.flush()  # readable by a detail view while the gate still runs
        self._pending.clear()
        self._pending_bytes = 0
        self._flushed_at = time.monotonic()
