"""Local gates with real subprocesses: pass, fail, hang (whole group killed), flood, cancel, secrets."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import live_processes, pid_alive
from rollback_tui.actions.gates import GateRunner
from rollback_tui.core import events as ev
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.redact import Redactor
from rollback_tui.exec import local as local_exec
from rollback_tui.playbook.model import Playbook
from rollback_tui.session.engine import Engine


def playbook(*gates: dict) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "t",
            "title": "t",
            "replicas": [{"name": "a", "url": "http://127.0.0.1:1", "role": "stable"}],
            "gates": [{"title": g["name"], **g} for g in gates],
            "steps": [{"name": "s", "title": "s", "do": [{"manual": "look"}]}],
        }
    )


class Session:
    """A real journal in a tmp dir plus the events as emitted."""

    def __init__(self, tmp_path: Path, book: Playbook, env: dict[str, str] | None = None, **kw) -> None:
        self.path = tmp_path / "journal.jsonl"
        self.journal = Journal(self.path, Redactor())
        self.events: list[ev.Event] = []
        self.runner = GateRunner(
            book, self.emit, artefact_dir=tmp_path / "artefacts", env=env or dict(os.environ), **kw
        )

    def emit(self, event: ev.Event) -> ev.Event:
        event = self.journal.append(event)
        self.events.append(event)
        return event

    def outputs(self, gate: str) -> list[ev.GateOutput]:
        return [e for e in self.events if isinstance(e, ev.GateOutput) and e.gate == gate]

    def journal_text(self) -> str:
        self.journal.close()
        return self.path.read_text()


def live_in_group(pgid: int) -> list[int]:
    """PIDs of non-zombie processes in a process group, straight from /proc."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def live_with_cmdline(needle: str) -> list[int]:
    return live_processes(lambda cmdline: needle in cmdline)


async def test_passing_gate_streams_lines_and_writes_artefact(tmp_path: Path) -> None:
    book = playbook({"name": "ok", "argv": ["sh", "-c", "echo hello; echo warn >&2; echo 'bye $HOME'"]})
    s = Session(tmp_path, book)
    finished = await s.runner.run("ok", actor="alice")

    assert finished.outcome == "passed" and finished.exit_code == 0
    started = next(e for e in s.events if isinstance(e, ev.GateStarted))
    assert started.argv == ["sh", "-c", "echo hello; echo warn >&2; echo 'bye $HOME'"]
    assert started.actor == "alice" and started.where == "local" and started.run == finished.run
    outputs = s.outputs("ok")
    # argv is not interpolated by any shell of ours; stdout/stderr order between streams may vary
    assert [o.line for o in outputs if o.stream == "stdout"] == ["hello", "bye $HOME"]
    assert [o.line for o in outputs if o.stream == "stderr"] == ["warn"]
    assert finished.output_lines == 3
    artefact = Path(finished.artefact or "")
    assert artefact.name == f"ok-{finished.run}.log"
    assert set(artefact.read_text().splitlines()) == {"hello", "[stderr] warn", "bye $HOME"}
    # journaled, durable, and readable back
    kinds = [e.kind for e in read_journal(s.path).events]
    assert kinds[0] == "gate_started" and kinds[-1] == "gate_finished"


async def test_failing_gate_records_exit_code(tmp_path: Path) -> None:
    s = Session(tmp_path, playbook({"name": "bad", "argv": ["sh", "-c", "echo broken >&2; exit 3"]}))
    finished = await s.runner.run("bad")
    assert finished.outcome == "failed" and finished.exit_code == 3
    assert [o.line for o in s.outputs("bad")] == ["broken"]


async def test_shell_gate_runs_only_with_shell_true(tmp_path: Path) -> None:
    s = Session(tmp_path, playbook({"name": "sh", "run": "echo a | tr a b", "shell": True}))
    finished = await s.runner.run("sh")
    assert finished.outcome == "passed"
    assert [o.line for o in s.outputs("sh")] == ["b"]
    assert next(e for e in s.events if isinstance(e, ev.GateStarted)).argv == [
        "/bin/sh",
        "-c",
        "echo a | tr a b",
    ]


async def test_hanging_gate_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    script = (
        "echo leader=$$; "
        "sleep 3171 & "
        "sh -c 'trap \"\" TERM; exec sleep 3173' & "  # a grandchild that ignores SIGTERM
        "echo started; exec sleep 3172"
    )
    s = Session(tmp_path, playbook({"name": "hang", "argv": ["sh", "-c", script], "timeout_s": 1}))
    t0 = time.monotonic()
    finished = await s.runner.run("hang")
    elapsed = time.monotonic() - t0

    assert finished.outcome == "timed_out", finished
    assert "timed out after 1 s" in (finished.error or "")
    assert elapsed < 6, elapsed  # timeout + TERM grace + drain, not the sleeps
    leader = int(next(o.line for o in s.outputs("hang") if o.line.startswith("leader=")).split("=")[1])
    assert live_in_group(leader) == []
    for needle in ("sleep 3171", "sleep 3172", "sleep 3173"):
        assert live_with_cmdline(needle) == [], needle
    assert s.runner.running() == []


# A command that exits 0 at once, leaving a child that called setsid (so killpg cannot reach it) and
# still holds stdout open. The parent prints the child's pid only once the child has left the group.
SETSID_ESCAPE = """
import os
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    os.write(w, b"x")
    os.execvp("sleep", ["sleep", "3201"])
os.read(r, 1)
print("escaped", pid, flush=True)
"""


async def test_a_setsid_child_neither_holds_the_gate_open_nor_outlives_it(tmp_path: Path) -> None:
    gate = {"name": "bg", "argv": [sys.executable, "-c", SETSID_ESCAPE], "timeout_s": 10}
    s = Session(tmp_path, playbook(gate))
    t0 = time.monotonic()
    finished = await s.runner.run("bg")
    elapsed = time.monotonic() - t0

    assert (finished.outcome, finished.exit_code) == ("passed", 0), finished
    assert elapsed < 3, elapsed  # finished when the command exited, not when the pipe closed
    escaped = int(next(o.line for o in s.outputs("bg") if o.line.startswith("escaped ")).split()[1])
    assert not pid_alive(escaped) and live_with_cmdline("sleep 3201") == []
    note = "[rollback-tui] killed 1 leftover process still running after the command exited: "
    journaled = [e.line for e in read_journal(s.path).events if isinstance(e, ev.GateOutput)]
    assert any(line.startswith(note) and f"(pid {escaped})" in line for line in journaled), journaled


async def test_without_the_reaper_a_setsid_child_still_does_not_hold_the_gate_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Off Linux there is no reaper: the escapee survives (a documented limit), but the gate still ends
    # when its command exits instead of waiting for the pipe to close.
    monkeypatch.setattr(local_exec, "supervised", lambda: False)
    gate = {"name": "bg", "argv": [sys.executable, "-c", SETSID_ESCAPE], "timeout_s": 10}
    s = Session(tmp_path, playbook(gate))
    t0 = time.monotonic()
    finished = await s.runner.run("bg")
    elapsed = time.monotonic() - t0
    escaped = int(next(o.line for o in s.outputs("bg") if o.line.startswith("escaped ")).split()[1])
    os.kill(escaped, signal.SIGKILL)

    assert (finished.outcome, finished.exit_code) == ("passed", 0), finished
    assert elapsed < 3, elapsed
    assert "[rollback-tui] processes the command started kept its output open; stopped reading it" in [
        o.line for o in s.outputs("bg")
    ]


async def test_huge_output_is_all_in_the_artefact_but_bounded_in_the_journal(tmp_path: Path) -> None:
    code = "import sys\nfor i in range(200000): sys.stdout.write(f'line {i}\\n')\nprint('x' * 100000)"
    s = Session(tmp_path, playbook({"name": "flood", "argv": [sys.executable, "-c", code]}))
    t0 = time.monotonic()
    finished = await s.runner.run("flood")
    elapsed = time.monotonic() - t0

    assert finished.outcome == "passed"
    assert elapsed < 15, elapsed
    assert finished.output_lines == 200_001
    lines = Path(finished.artefact or "").read_text().splitlines()
    own = [line for line in lines if line.startswith("[rollback-tui]")]
    data = [line for line in lines if not line.startswith("[rollback-tui]")]
    assert data[:200_000] == [f"line {i}" for i in range(200_000)]
    assert data[-1].startswith("x" * 4096) and "bytes cut" in data[-1] and len(data[-1]) < 4200
    assert any("not shown in the journal" in line for line in own)

    journaled = [e for e in read_journal(s.path).events if e.kind == "gate_output"]
    assert len(journaled) < 100 * (elapsed + 1) + 300  # rate-limited + the final tail
    texts = [e.line for e in journaled]  # type: ignore[attr-defined]
    assert "line 199999" in texts  # the end of the output is kept
    assert all(len(t) < 4200 for t in texts)


async def test_cancelled_gate_stops_and_kills_the_group(tmp_path: Path) -> None:
    s = Session(
        tmp_path,
        playbook({"name": "slow", "argv": ["sh", "-c", "echo leader=$$; sleep 3181 & exec sleep 3182"]}),
    )
    task = asyncio.create_task(s.runner.run("slow", actor="bob"))
    for _ in range(100):
        if s.outputs("slow"):
            break
        await asyncio.sleep(0.05)
    assert s.runner.running() == ["slow"]
    assert s.runner.cancel("slow") is True
    assert s.runner.cancel("slow") is False  # already cancelling
    finished = await asyncio.wait_for(task, 10)

    assert finished.outcome == "cancelled"
    assert s.runner.running() == [] and s.runner.cancel("slow") is False
    leader = int(s.outputs("slow")[0].line.split("=")[1])
    assert live_in_group(leader) == []
    assert live_with_cmdline("sleep 3181") == [] and live_with_cmdline("sleep 3182") == []


async def test_command_not_found_is_a_clear_error(tmp_path: Path) -> None:
    s = Session(tmp_path, playbook({"name": "nf", "argv": ["no-such-command-rtui", "--flag"]}))
    finished = await s.runner.run("nf")
    assert finished.outcome == "error" and finished.exit_code is None
    assert finished.error == "command not found: no-such-command-rtui"
    assert "Traceback" not in s.journal_text()


async def test_missing_cwd_and_unknown_gate_are_clear_errors(tmp_path: Path) -> None:
    s = Session(tmp_path, playbook({"name": "cwd", "argv": ["true"], "cwd": str(tmp_path / "nope")}))
    finished = await s.runner.run("cwd")
    assert finished.outcome == "error" and "does not exist" in (finished.error or "")
    with pytest.raises(ValueError, match="unknown gate 'ghost'"):
        await s.runner.run("ghost")


async def test_unset_env_reference_errors_before_starting(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    gate = {"name": "needs", "argv": ["touch", str(marker)], "env": {"API_TOKEN": "${RTUI_UNSET_VAR}"}}
    s = Session(tmp_path, playbook(gate), env={"PATH": os.environ["PATH"]})
    finished = await s.runner.run("needs")
    assert finished.outcome == "error"
    assert finished.error == "environment variable RTUI_UNSET_VAR is not set (needed by env API_TOKEN)"
    assert not marker.exists()


async def test_environment_is_minimal_plus_allow_list(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "ALLOWED_ONE": "yes", "NOT_ALLOWED": "leak"}
    gate = {"name": "env", "argv": ["env"], "env_allow": ["ALLOWED_ONE"], "env": {"FIXED": "1"}}
    s = Session(tmp_path, playbook(gate), env=env)
    await s.runner.run("env")
    seen = dict(o.line.split("=", 1) for o in s.outputs("env") if "=" in o.line)
    assert seen.get("ALLOWED_ONE") == "yes" and seen.get("FIXED") == "1" and seen.get("HOME") == "/tmp"
    assert "NOT_ALLOWED" not in seen


async def test_parallel_gates_run_concurrently_and_serial_ones_keep_order(tmp_path: Path) -> None:
    book = playbook(
        {"name": "p1", "argv": ["sleep", "1"], "parallel": True},
        {"name": "p2", "argv": ["sleep", "1"], "parallel": True},
        {"name": "serial", "argv": ["true"]},
        {"name": "p3", "argv": ["true"], "parallel": True},
    )
    s = Session(tmp_path, book)
    t0 = time.monotonic()
    results = await s.runner.run_all()
    elapsed = time.monotonic() - t0
    assert [r.gate for r in results] == ["p1", "p2", "serial", "p3"]
    assert all(r.outcome == "passed" for r in results)
    assert elapsed < 1.9, elapsed  # p1 and p2 overlapped
    order = [(e.kind, e.gate) for e in s.events if isinstance(e, ev.GateStarted | ev.GateFinished)]
    assert order.index(("gate_started", "serial")) > order.index(("gate_finished", "p1"))
    assert order.index(("gate_started", "serial")) > order.index(("gate_finished", "p2"))
    assert order.index(("gate_started", "p2")) < order.index(("gate_finished", "p1"))

    only = await s.runner.run_all(["p3", "serial"])
    assert [r.gate for r in only] == ["serial", "p3"]  # playbook order, not the caller's


async def test_concurrent_captures_leave_the_child_watcher_nothing_to_reap_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Closing a capture signalled its reaper the moment the reaper's status pipe closed; Popen polls before
    # a signal and reaped the exited reaper under asyncio's watcher thread, which then logged "Unknown
    # child process pid …, will report returncode 255". Many at once give the watcher threads the delay.
    from rollback_tui.exec.supervise import run_capture
    from rollback_tui.playbook.model import CommandSpec

    specs = [CommandSpec(argv=["sh", "-c", f"echo {i}; exit {i % 7}"]) for i in range(100)]
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        results = await asyncio.gather(*(run_capture(spec, playbook()) for spec in specs))
    assert [(r.exit_code, r.stdout) for r in results] == [(i % 7, str(i)) for i in range(100)]
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_a_kill_never_reaps_what_asyncio_s_watcher_collects(tmp_path: Path) -> None:
    # kill() and close() used Process.send_signal/kill: Popen polls first, and that waitpid reaped a
    # command that had just exited under asyncio's watcher ("Unknown child process pid …, will report
    # returncode 255"; its real status lost). signal_unreaped looks without reaping.
    import subprocess

    done = subprocess.Popen(["sh", "-c", "exit 3"])
    deadline = time.monotonic() + 10
    while os.waitid(os.P_PID, done.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert local_exec.signal_unreaped(done.pid, signal.SIGTERM) is False
    assert os.waitpid(done.pid, 0) == (done.pid, 3 << 8)  # still there for its owner, status intact
    done.returncode = 3  # collected above: keep Popen's destructor from waiting again

    running = subprocess.Popen(["sleep", "30"])
    assert local_exec.signal_unreaped(running.pid, signal.SIGTERM) is True
    assert running.wait(10) == -signal.SIGTERM


async def test_a_placeholder_is_never_spliced_into_a_shell_script(tmp_path: Path) -> None:
    from rollback_tui.exec.commands import CommandError, fill
    from rollback_tui.exec.supervise import run_capture
    from rollback_tui.playbook.model import CommandSpec

    commit = "abc$(touch X)"
    spliced = CommandSpec(argv=["sh", "-c", "echo deploy --commit {commit}"], cwd=str(tmp_path))
    with pytest.raises(CommandError, match=r"refusing to fill argv\[2\]: \{commit\} would be spliced"):
        fill(spliced, {"commit": commit})
    # The accepted form: the value is a positional parameter, data to the script and never code.
    positional = CommandSpec(
        argv=["sh", "-c", 'echo deploy --commit "$1"', "sh", "{commit}"], cwd=str(tmp_path)
    )
    result = await run_capture(fill(positional, {"commit": commit}), playbook())
    assert (result.outcome, result.stdout) == ("passed", "deploy --commit abc$(touch X)"), result
    assert list(tmp_path.iterdir()) == []  # no X: nothing ran the value


async def test_a_filled_value_is_never_read_as_an_option(tmp_path: Path) -> None:
    """A captured commit (or host) beginning with '-' became an option of the program it was given to:
    `[ssh, "{host}", deploy]` with `-oProxyCommand=touch X` runs `touch X` here. Refused; `--` before the
    word, or the option written with its value, keeps it data."""
    from rollback_tui.exec.commands import CommandError, fill
    from rollback_tui.exec.supervise import run_capture
    from rollback_tui.playbook.model import CommandSpec

    value = f"-oProxyCommand=touch {tmp_path / 'X'}"
    for argv in (["ssh", "{commit}", "deploy"], ["git", "checkout", "{commit}"], ["deploy", "{commit}-1"]):
        with pytest.raises(
            CommandError, match=r"refusing to fill argv\[\d\]: the value of \{commit\} begins"
        ):
            fill(CommandSpec(argv=argv), {"commit": value})
    echo = [sys.executable, "-c", "import sys; print(sys.argv[1:])"]
    for argv in ([*echo, "--", "{commit}"], [*echo, "--commit={commit}"], [*echo, "{commit}"]):
        filled = fill(
            CommandSpec(argv=argv, cwd=str(tmp_path)),
            {"commit": "4f1c9a7"} if argv[-1] == "{commit}" else {"commit": value},
        )
        assert (await run_capture(filled, playbook())).outcome == "passed"
    assert list(tmp_path.iterdir()) == []


async def test_secret_from_env_never_reaches_events_journal_or_artefact(tmp_path: Path) -> None:
    secret = "s3cr3t-Value-9f8e7d"
    script = 'echo "token=$API_TOKEN"; echo "raw $API_TOKEN" >&2; [ ${#API_TOKEN} -eq 19 ] && echo length-ok'
    gate = {"name": "sec", "argv": ["sh", "-c", script], "env": {"API_TOKEN": "${RTUI_TEST_SECRET}"}}
    env = {"PATH": os.environ["PATH"], "RTUI_TEST_SECRET": secret}
    book = playbook(gate)
    journal = Journal(tmp_path / "journal.jsonl", Redactor())  # the journal itself does not know it
    engine = Engine(book, journal)
    seen: list[ev.Event] = []
    engine.subscribe(seen.append)
    runner = GateRunner(book, engine.emit, artefact_dir=tmp_path / "art", env=env)

    finished = await runner.run("sec")
    journal.close()

    assert finished.outcome == "passed"
    lines = [e.line for e in seen if isinstance(e, ev.GateOutput)]
    assert "length-ok" in lines  # the gate really received the secret
    assert any("***" in line for line in lines)
    assert all(secret not in e.model_dump_json() for e in seen)
    assert secret not in (tmp_path / "journal.jsonl").read_text()
    artefact = Path(finished.artefact or "").read_text()
    assert "length-ok" in artefact and secret not in artefact


# Quotes, $(…) and backticks: spliced into a script's text, this value would run.
SPLICE_BAIT = "tok\"en' $(touch spliced1) `touch spliced2` ;touch spliced3"


def script_reading(var: str) -> str:
    """A script that writes ${var} as a script should (quoted, from its environment), then what `ps` shows
    for its shell and for that shell's parent (locally the reaper, whose own argv carries the command's)."""
    return (
        f'printf %s "${{{var}}}" > value; '
        'tr "\\0" " " < /proc/$$/cmdline > cmdline; tr "\\0" " " < /proc/$PPID/cmdline >> cmdline'
    )


def assert_expanded_by_the_shell(work: Path, var: str) -> None:
    """What script_reading(var) left in `work` when var held SPLICE_BAIT."""
    assert (work / "value").read_text() == SPLICE_BAIT  # the shell expanded it, from its environment
    assert sorted(p.name for p in work.iterdir()) == ["cmdline", "value"]  # nothing in it ran
    cmdline = (work / "cmdline").read_text()
    assert f"${{{var}}}" in cmdline and SPLICE_BAIT not in cmdline  # `ps` shows the name only


SCRIPT = script_reading("RTUI_SCRIPT_SECRET")


# env, timeout and nice pass the environment on: the shell behind them reads the variable as well.
WRAPPED = ["env", "RTUI_OTHER=1", "timeout", "60", "nice", "-n", "1", "sh", "-c", SCRIPT]


@pytest.mark.parametrize(
    "form",
    [{"argv": ["sh", "-c", SCRIPT]}, {"run": SCRIPT, "shell": True}, {"argv": WRAPPED}],
    ids=["sh-c", "shell", "env-timeout-nice-sh-c"],
)
async def test_a_secret_in_a_shell_script_is_expanded_by_the_shell_never_spliced(
    tmp_path: Path, form: dict
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    s = Session(
        tmp_path,
        playbook({"name": "curl", "cwd": str(work), **form}),
        env={"PATH": os.environ["PATH"], "RTUI_SCRIPT_SECRET": SPLICE_BAIT},
    )
    finished = await s.runner.run("curl")
    assert finished.outcome == "passed", finished
    assert_expanded_by_the_shell(work, "RTUI_SCRIPT_SECRET")
    started = next(e for e in s.events if isinstance(e, ev.GateStarted))
    assert "${RTUI_SCRIPT_SECRET}" in started.argv[-1] and SPLICE_BAIT not in s.journal_text()


async def test_an_unset_variable_in_a_shell_script_is_an_error_before_starting(tmp_path: Path) -> None:
    script = 'touch started; echo "${RTUI_UNSET_VAR}"'
    gate = {"name": "g", "argv": ["sh", "-c", script], "cwd": str(tmp_path)}
    finished = await Session(tmp_path, playbook(gate), env={"PATH": os.environ["PATH"]}).runner.run("g")
    assert finished.outcome == "error"
    assert finished.error == "environment variable RTUI_UNSET_VAR is not set (needed by argv[2])"
    assert not (tmp_path / "started").exists()


async def test_cancelling_the_run_task_still_kills_and_journals(tmp_path: Path) -> None:
    # What Engine.stop() does to a running gate task: cancel it.
    script = "echo leader=$$; exec sleep 3191"
    s = Session(tmp_path, playbook({"name": "stopme", "argv": ["sh", "-c", script]}))
    task = asyncio.create_task(s.runner.run("stopme"))
    for _ in range(100):
        if s.outputs("stopme"):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    finished = [e for e in s.events if isinstance(e, ev.GateFinished)]
    assert [f.outcome for f in finished] == ["cancelled"]
    assert live_with_cmdline("sleep 3191") == [] and s.runner.running() == []


async def test_undecodable_bytes_and_a_missing_final_newline(tmp_path: Path) -> None:
    s = Session(tmp_path, playbook({"name": "bytes", "argv": ["printf", "caf\\351 ok\\r\\nno newline"]}))
    finished = await s.runner.run("bytes")
    assert finished.outcome == "passed"
    assert [o.line for o in s.outputs("bytes")] == ["caf\ufffd ok", "no newline"]


async def test_env_reference_in_argv_is_one_argument_and_stays_secret(tmp_path: Path) -> None:
    # `--context ${KUBE_CONTEXT}`: resolved per argv element, never through a shell, never journaled.
    secret = "ctx; rm -rf / #"  # shell metacharacters stay inert inside one argv element
    script = "import sys; a = sys.argv[1:]; print(len(a), len(a[0]), a[0].startswith('ctx;'))"
    gate = {"name": "ctx", "argv": [sys.executable, "-c", script, "${RTUI_CTX_SECRET}"]}
    env = {"PATH": os.environ["PATH"], "RTUI_CTX_SECRET": secret}
    book = playbook(gate)
    journal = Journal(tmp_path / "journal.jsonl", Redactor())
    engine = Engine(book, journal)
    seen: list[ev.Event] = []
    engine.subscribe(seen.append)
    finished = await GateRunner(book, engine.emit, artefact_dir=tmp_path / "art", env=env).run("ctx")
    journal.close()
    assert finished.outcome == "passed"
    assert [e.line for e in seen if isinstance(e, ev.GateOutput)] == [f"1 {len(secret)} True"]
    started = next(e for e in seen if isinstance(e, ev.GateStarted))
    assert started.argv[-1] == "${RTUI_CTX_SECRET}"  # the journal shows the reference, not the value
    assert secret not in (tmp_path / "journal.jsonl").read_text()


class EndsAsTheLimitComes:
    """A real supervised command that has exited when its timeout's SIGTERM reaches the reaper: the reaper
    is held (SIGSTOP) until the command is a zombie and the SIGTERM is pending beside the SIGCHLD, then let
    go, so it takes the SIGTERM first — the race that made a command exiting 0 read as timed out."""

    def __init__(self, tmp_path: Path) -> None:
        self.real = local_exec.LocalExecution(
            ["sh", "-c", "exit 0"], cwd=str(tmp_path), env=dict(os.environ), on_line=lambda *_: None
        )
        self.notes = self.real.notes

    @property
    def ended_on_its_own(self) -> bool:
        return self.real.ended_on_its_own

    async def start(self) -> None:
        await self.real.start()
        assert self.real.proc is not None and self.real.pgid is not None
        os.kill(self.real.proc.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{self.real.pgid}/stat").read_text().split(") ", 1)[1][0] != "Z":
            assert time.monotonic() < deadline, "the command did not exit"
            await asyncio.sleep(0.01)

    async def wait(self) -> int:
        return await self.real.wait()

    async def kill(self) -> bool:
        assert self.real.proc is not None
        stopping = asyncio.ensure_future(self.real.kill())
        await asyncio.sleep(0.2)  # its SIGTERM is pending now, beside the SIGCHLD
        os.kill(self.real.proc.pid, signal.SIGCONT)
        return await stopping

    async def close(self) -> None:
        await self.real.close()


@pytest.mark.skipif(not local_exec.supervised(), reason="the reaper runs on Linux only")
async def test_a_command_that_ended_as_its_timeout_came_is_not_called_timed_out(tmp_path: Path) -> None:
    from rollback_tui.exec.supervise import supervise

    outcome = await supervise(EndsAsTheLimitComes(tmp_path), 0.3, asyncio.Event())
    assert (outcome.outcome, outcome.exit_code, outcome.error) == ("passed", 0, None), outcome
