"""The session runtime: whatever happens inside, the session's end is journaled, the evidence exported
(unless a front end already did), the journal closed — written once for the cockpit and headless runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_tui.core.journal import Journal, read_journal
from rollback_tui.session.runtime import SessionRuntime
from test_checklist import playbook


async def test_a_crash_inside_still_ends_exports_and_closes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s.jsonl")
    runtime = SessionRuntime(
        playbook([]), "pb.yaml", journal=journal, export_on_exit=True, export_dir=tmp_path / "out"
    )
    with pytest.raises(RuntimeError, match="the cockpit blew up"):
        async with runtime as engine:
            engine.notice("test", "working")
            raise RuntimeError("the cockpit blew up")
    assert journal.closed
    kinds = [e.kind for e in read_journal(journal.path).events]
    assert kinds[0] == "session_started" and "session_ended" in kinds and kinds[-1] == "export_written"
    assert runtime.exported and {p.name for p in runtime.exported} >= {"report.md", "bundle.json"}


async def test_an_export_that_fails_is_said_and_journaled_not_raised(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "s.jsonl")
    runtime = SessionRuntime(
        playbook([]),
        "pb.yaml",
        journal=journal,
        export_on_exit=True,
        export_dir=tmp_path,  # its own dir
    )
    async with runtime:
        pass
    assert runtime.export_error and "journal" in runtime.export_error
    notices = [e for e in read_journal(journal.path).events if e.kind == "notice" and e.level == "error"]
    assert notices and "export failed" in notices[-1].message


async def test_a_front_end_that_exported_itself_is_not_exported_again(tmp_path: Path) -> None:
    opened: list[str] = []

    def new_journal(pb: object) -> Journal:
        opened.append("journal")
        return Journal(tmp_path / "s.jsonl")

    runtime = SessionRuntime(playbook([]), "pb.yaml", journal=new_journal, export_on_exit=True)
    async with runtime:
        runtime.exported = []  # what the cockpit does after exporting with its screenshot
    assert opened == ["journal"]
    assert "export_written" not in [e.kind for e in read_journal(tmp_path / "s.jsonl").events]
