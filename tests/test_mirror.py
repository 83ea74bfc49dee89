"""The session's mirror (session/mirror.py): every journal line, already redacted, in a Redis Stream that a
viewer folds — through a Redis that is down, hung or restarted, and across the writer's resume.

Real redis-server processes, real journals; the session side is the real Journal appending on the loop the
mirror runs on, as in the cockpit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from rollback_tui.core import events as ev
from rollback_tui.core.follow import LineFold, line_n
from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.core.redact import Redactor
from rollback_tui.core.resume import fold_journal, resume_session
from rollback_tui.core.state import fold
from rollback_tui.playbook.model import Mirror
from rollback_tui.playbook.secrets import MissingVariable
from rollback_tui.session.mirror import JournalMirror, MirrorError, MirrorTarget, StreamFollower, session_id
from support.wait import until
from test_ui_support import demo_playbook, rehearsal_full_events
from watch_support import RedisProcess, state_digest

pytestmark = pytest.mark.integration


def _events() -> list[ev.Event]:
    return [e.model_copy() for e in rehearsal_full_events()]


async def stream_lines(target: MirrorTarget) -> dict[int, bytes]:
    """Every mirrored line by its n (a line twice in the stream would show as a count mismatch)."""
    client = target.client()
    try:
        entries = await client.xrange(target.key)
    finally:
        await client.aclose()
    lines = [line for _, fields in entries for line in fields[b"lines"].split(b"\n")[:-1]]
    by_n = {line_n(line): line for line in lines}
    assert len(by_n) == len(lines), "a line was mirrored twice"
    return by_n  # type: ignore[return-value]


def journal_lines(path: Path) -> dict[int, bytes]:
    return {line_n(line): line for line in path.read_bytes().split(b"\n")[:-1]}  # type: ignore[misc]


def mirror_for(url: str, path: Path, said: list[tuple[str, str]], journal: Journal, **kw) -> JournalMirror:
    return JournalMirror(
        MirrorTarget.parse(url),
        path,
        playbook=demo_playbook(),
        redactor=journal.redact,
        say=lambda level, message: said.append((level, message)),
        finished=lambda: journal.closed,
        poll_s=0.02,
        retry_s=(0.05, 0.3),
        **kw,
    )


async def test_every_journal_line_reaches_the_stream_and_a_viewer_folds_them(redis_server, tmp_path) -> None:
    path = tmp_path / "calm-session.jsonl"
    journal = Journal(path, batch_s=0.05)
    said: list[tuple[str, str]] = []
    mirror = mirror_for(redis_server, path, said, journal)
    mirror.start()
    viewer = StreamFollower(MirrorTarget.parse(mirror.target.watch_url), LineFold(), block_ms=100)
    follow = asyncio.create_task(viewer.run(lambda kinds: None))
    for i, event in enumerate(_events()):
        journal.append(event)
        if i % 10 == 0:
            journal.flush()
            await asyncio.sleep(0.01)
    journal.close()
    assert await mirror.close(10)
    await until(lambda: viewer.fold.state.last_n == fold_journal(path)[0].last_n, "the viewer", 10)
    follow.cancel()
    assert await stream_lines(mirror.target) == journal_lines(path)
    assert state_digest(viewer.fold.state) == state_digest(fold(read_journal(path).events))
    assert mirror.target.session == session_id(path) == "calm-session"
    assert said == [("info", f"mirroring to Redis; viewers: rollback-tui watch {mirror.target.watch_url}")]
    assert (await viewer.playbook()) == demo_playbook()  # the viewer needs nothing but the URL


async def test_redis_restarted_mid_session_loses_no_mirrored_line(tmp_path) -> None:
    """Redis dies (its stream with it); the session appends on, unhindered, and says so once; Redis comes
    back empty; the mirror mirrors the journal again from its start. A viewer that followed throughout ends
    with the whole fold."""
    server = RedisProcess(tmp_path / "redis").start()
    try:
        path = tmp_path / "restart.jsonl"
        journal = Journal(path, batch_s=0.05)
        said: list[tuple[str, str]] = []
        mirror = mirror_for(server.url, path, said, journal)
        mirror.start()
        viewer = StreamFollower(
            MirrorTarget.parse(mirror.target.watch_url), block_ms=100, retry_s=(0.05, 0.3)
        )
        follow = asyncio.create_task(viewer.run(lambda kinds: None))
        events = _events()
        third = len(events) // 3
        for event in events[:third]:
            journal.append(event)
        journal.flush()
        await until(lambda: mirror.top == third, "the first third mirrored", 10)
        server.kill()
        started = time.monotonic()
        for event in events[third : 2 * third]:  # the session goes on while Redis is gone
            journal.append(event)
            journal.flush()
            await asyncio.sleep(0.005)
        assert time.monotonic() - started < 2.0
        await until(lambda: mirror.down is not None, "the mirror to notice", 10)
        server.start()  # empty: the stream and its first third are gone
        for event in events[2 * third :]:
            journal.append(event)
        journal.close()
        assert await mirror.close(15)
        last = fold_journal(path)[0].last_n
        await until(lambda: viewer.fold.state.last_n == last, "the viewer to catch up", 15)
        follow.cancel()
        assert await stream_lines(mirror.target) == journal_lines(path)
        assert state_digest(viewer.fold.state) == state_digest(fold(read_journal(path).events))
        levels = [level for level, _ in said]
        assert levels == ["info", "warning", "info"], said  # announced; down, once; back
        assert "the session goes on" in said[1][1] and "reachable again" in said[2][1]
    finally:
        server.kill()


async def test_a_hung_redis_never_holds_up_the_session(tmp_path) -> None:
    """Redis stops answering (SIGSTOP) mid-session: the loop the session appends on keeps its pace, and once
    Redis answers again the mirror catches up."""
    server = RedisProcess(tmp_path / "redis").start()
    assert server.proc is not None
    try:
        path = tmp_path / "hung.jsonl"
        journal = Journal(path, batch_s=0.05)
        mirror = mirror_for(server.url, path, [], journal)
        mirror.start()
        events = _events()
        journal.append(events[0])
        journal.flush()
        await until(lambda: mirror.top == 1, "the first line mirrored", 10)
        os.kill(server.proc.pid, signal.SIGSTOP)
        gaps = []
        for event in events[1:]:
            before = time.monotonic()
            journal.append(event)
            journal.flush()
            await asyncio.sleep(0.002)
            gaps.append(time.monotonic() - before)
        assert max(gaps) < 0.5, f"an append waited {max(gaps):.2f} s on a hung Redis"
        assert mirror.top < len(events)
        os.kill(server.proc.pid, signal.SIGCONT)
        journal.close()
        assert await mirror.close(20)
        assert await stream_lines(mirror.target) == journal_lines(path)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.kill()


async def test_a_resumed_writer_continues_the_same_stream(redis_server, tmp_path) -> None:
    """The cockpit dies with lines journaled but not yet mirrored; `resume` reopens the journal; its mirror
    finds the stream's newest n and mirrors the rest, none twice."""
    path = tmp_path / "resumed.jsonl"
    events = _events()
    journal = Journal(path)
    mirror = mirror_for(redis_server, path, [], journal)
    task = mirror.start()
    for event in events[:30]:
        journal.append(event)
    journal.flush()
    await until(lambda: mirror.top == 30, "30 lines mirrored", 10)
    task.cancel()  # the cockpit is killed: its mirror with it ...
    await asyncio.gather(task, return_exceptions=True)
    for event in events[30:50]:  # ... after journaling lines it never mirrored
        journal.append(event)
    journal.close()
    resumed, _, _ = resume_session(path, operator="bob")
    again = mirror_for(redis_server, path, [], resumed)
    again.start()
    for event in events[50:]:
        resumed.append(event)
    resumed.close()
    assert await again.close(10)
    assert await stream_lines(again.target) == journal_lines(path)


async def test_a_viewer_of_a_trimmed_stream_starts_from_the_sessions_head_and_says_so(tmp_path) -> None:
    """The stream is capped; a viewer who joins after it was trimmed folds the journal's first line (kept
    with the mirror) and the events still there, and says how many it does not have."""
    server = RedisProcess(tmp_path / "redis", "--stream-node-max-entries", "1").start()
    try:
        path = tmp_path / "long.jsonl"
        journal = Journal(path)
        mirror = mirror_for(server.url, path, [], journal, max_len=3)
        mirror.start()
        for event in _events():
            n = journal.append(event).n
            journal.flush()
            await until(lambda n=n: mirror.top == n, f"line {n} mirrored", 10)
        journal.close()
        assert await mirror.close(10)
        remaining = await stream_lines(mirror.target)
        assert len(remaining) < len(journal_lines(path))  # capped
        statuses: list[tuple[str, str]] = []
        viewer = StreamFollower(
            MirrorTarget.parse(mirror.target.watch_url), on_status=lambda *s: statuses.append(s)
        )
        follow = asyncio.create_task(viewer.run(lambda kinds: None))
        await until(lambda: viewer.fold.state.last_n == len(journal_lines(path)), "the viewer", 10)
        follow.cancel()
        assert viewer.fold.state.started is not None  # the head: the session's own first line
        first = min(remaining)
        assert viewer.trimmed == first - 2
        assert (
            "warning",
            f"the mirror holds events from n={first} on: {first - 2} older ones were trimmed",
        ) in statuses
    finally:
        server.kill()


async def test_a_password_comes_only_from_a_variable_and_never_reaches_the_journal(
    tmp_path, monkeypatch
) -> None:
    password = "mirr0r-s3cret-pw"
    server = RedisProcess(tmp_path / "redis", "--requirepass", password).start()
    try:
        with pytest.raises(MirrorError, match="inline credential"):
            MirrorTarget.parse(f"redis://:{password}@127.0.0.1:{server.port}/0")
        url = f"redis://:${{MIRROR_PW}}@127.0.0.1:{server.port}/0"
        with pytest.raises(MissingVariable, match="MIRROR_PW"):
            MirrorTarget.parse(url).resolved({})
        monkeypatch.setenv("MIRROR_PW", password)
        path = tmp_path / "auth.jsonl"
        journal = Journal(path, Redactor())
        said: list[tuple[str, str]] = []
        mirror = mirror_for(url, path, said, journal)
        mirror.start()
        journal.append(ev.Notice(source="test", message=f"a tool printed the password: {password}"))
        journal.close()
        assert await mirror.close(10)
        assert password not in path.read_text()  # the resolved password is one of the journal's secrets
        assert password not in str(said) and "${MIRROR_PW}" in said[0][1]  # viewers are told the ${VAR}
        assert await stream_lines(mirror.target) == journal_lines(path)
        plain = aioredis.Redis.from_url(f"redis://127.0.0.1:{server.port}/0")
        with pytest.raises(Exception, match=r"(?i)auth"):
            await plain.xlen(mirror.target.key)
        await plain.aclose()
    finally:
        server.kill()


def test_mirror_urls_are_checked_before_anything_starts() -> None:
    assert MirrorTarget.parse("redis://h:6379/2/demo-20260101T120000").session == "demo-20260101T120000"
    assert MirrorTarget.parse("redis://h:6379").for_session("s").watch_url == "redis://h:6379/0/s"
    assert MirrorTarget.parse("redis://h/3").for_session("s").watch_url == "redis://h/3/s"
    for bad, why in [
        ("http://h/0", "expected redis://"),
        ("redis://h/0/a/b", "at most a db number and a session id"),
        ("redis://h/0?password=x", "inline credential"),
        ("redis://h/0/bad$id", "not a session id"),
    ]:
        with pytest.raises(MirrorError, match=why.replace("$", r"\$")):
            MirrorTarget.parse(bad)
    with pytest.raises(MirrorError, match="name the session"):
        MirrorTarget.parse("redis://h/0", session_required=True)


async def test_the_playbooks_mirror_section_mirrors_without_the_option(redis_server, tmp_path) -> None:
    """`mirror:` in the playbook does what --mirror does (the option, when given, wins); the session says
    where viewers find it, in its own journal."""
    from rollback_tui.session.engine import Engine
    from rollback_tui.session.mirror import start_mirror

    playbook = demo_playbook().model_copy(update={"mirror": Mirror(redis_url=redis_server, max_len=500)})
    assert start_mirror(Engine(demo_playbook(), Journal(tmp_path / "plain.jsonl")), None) is None
    engine = Engine(playbook, Journal(tmp_path / "from-the-playbook.jsonl"), operator="alice")
    mirror = start_mirror(engine, None)
    assert mirror is not None and mirror.max_len == 500
    engine.start_session()
    engine.journal.flush()
    await until(lambda: mirror.top >= 1, "the session's start mirrored", 10)
    await engine.stop("done")
    assert await mirror.close(10)
    journal = engine.journal.path
    assert await stream_lines(mirror.target) == journal_lines(journal)
    notices = [e for e in read_journal(journal).events if isinstance(e, ev.Notice) and e.source == "mirror"]
    assert [n.message for n in notices] == [
        f"mirroring to Redis; viewers: rollback-tui watch {redis_server}/from-the-playbook"
    ]
