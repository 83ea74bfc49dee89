"""The headless layers stay headless: importing them never pulls in Textual or the lab.

The import-linter contracts in pyproject.toml check the static imports (`lint-imports`, run by ./dev test);
this checks what actually lands in `sys.modules`, which also catches imports done inside functions at
import time and third-party packages that drag Textual in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEADLESS = [
    "rollback_tui.playbook.load",
    "rollback_tui.core.journal",
    "rollback_tui.core.state",
    "rollback_tui.core.checklist",
    "rollback_tui.core.resume",
    "rollback_tui.core.follow",
    "rollback_tui.exec.commands",
    "rollback_tui.exec.remote",
    "rollback_tui.probes.fanout",
    "rollback_tui.probes.traffic",
    "rollback_tui.probes.facts",
    "rollback_tui.actions.gates",
    "rollback_tui.actions.traffic_control",
    "rollback_tui.report.export",
    "rollback_tui.session.engine",
    "rollback_tui.session.rehearsal",
    "rollback_tui.session.mirror",
]


def test_headless_core_never_imports_textual_or_the_lab() -> None:
    script = (
        "import importlib, json, sys\n"
        f"for name in {HEADLESS!r}: importlib.import_module(name)\n"
        "banned = ('textual', 'rollback_tui.lab', 'rollback_tui.ui')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(banned))))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    lint = subprocess.run([str(lint_imports), "--no-cache"], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 broken" in lint.stdout


SRC = Path(__file__).resolve().parent.parent / "src" / "rollback_tui"


def private_imports_across_packages() -> list[str]:
    """`from rollback_tui.X.m import _name` in a module outside package X: a private name used as an API."""
    import ast

    found = []
    for path in sorted(SRC.rglob("*.py")):
        package = path.relative_to(SRC).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("rollback_tui."):
                continue
            source = (node.module or "").split(".")[1]
            for alias in node.names:
                if alias.name.startswith("_") and source != package:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.module}.{alias.name}")
    return found


def test_no_package_imports_another_packages_private_names() -> None:
    # e.g. the watch CLI once loaded a session's playbook through report.export._load_session_playbook
    assert private_imports_across_packages() == []
