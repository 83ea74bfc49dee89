"""The front ends (the cockpit and the CLI) only call the engine's intent methods; they never put an event
in the journal themselves. Checked on the source, so a new key binding or command cannot slip past it.

An event journaled by a front end skips the engine's rules (name checks, journal-before-act, the rollback
state machine) — exactly how the old cockpit started traffic before journaling it and how `--tick`
journaled a typo as evidence.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "rollback_tui"
FRONT_ENDS = sorted([*(SRC / "ui").rglob("*.py"), *SRC.glob("cli*.py"), *(SRC / "cli").rglob("*.py")])
EVENT_CLASSES = {
    node.name
    for node in ast.parse((SRC / "core" / "events.py").read_text()).body
    if isinstance(node, ast.ClassDef)
}


def _offences(path: Path, root: Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        where = f"{path.relative_to(root)}:{node.lineno}"
        if isinstance(func, ast.Attribute):
            target = ast.unparse(func.value)
            if func.attr in ("emit", "operator_action"):
                found.append(f"{where}: {ast.unparse(func)}(…) — call an engine intent method instead")
            elif func.attr == "append" and "journal" in target:
                found.append(f"{where}: {ast.unparse(func)}(…) appends to the journal")
            elif func.attr in EVENT_CLASSES and target in ("ev", "events"):
                found.append(f"{where}: builds a {func.attr} event")
        elif isinstance(func, ast.Name) and func.id in EVENT_CLASSES and func.id != "Event":
            found.append(f"{where}: builds a {func.id} event")
    return found


@pytest.mark.parametrize("path", FRONT_ENDS, ids=lambda p: str(p.relative_to(SRC)))
def test_front_ends_never_journal_events_themselves(path: Path) -> None:
    assert _offences(path) == []


def test_the_check_sees_an_offence(tmp_path: Path) -> None:
    """The checker itself is not blind: the calls the old code made are found."""
    bad = tmp_path / "bad.py"
    bad.write_text(
        "engine.emit(ev.ChecklistTicked(item=name, checked=True, actor=a))\n"
        "self.engine.operator_action('start_traffic', rate_rps=rps)\n"
        "engine.journal.append(x)\n"
    )
    assert [line.split(": ", 1)[1] for line in _offences(bad, tmp_path)] == [
        "engine.emit(…) — call an engine intent method instead",
        "self.engine.operator_action(…) — call an engine intent method instead",
        "engine.journal.append(…) appends to the journal",
        "builds a ChecklistTicked event",
    ]
