"""Command line, one module per command family over one session runtime (session/runtime.py):

* cli/cockpit.py — `demo`, `open`, `resume`, `lab`: the Textual cockpit, with or without the lab
* cli/headless.py — `rehearse --headless`: the runbook without a UI, for CI
* cli/checks.py — `check health|fanout|traffic|ready`: one-shot checks for scripts
* cli/files.py — `validate`, `schema`, `export`
* cli/lb.py — `lb haproxy|nginx …`: load-balancer helpers for traffic_control commands
* cli/watch.py — `watch`, `serve`: a live session, read-only, in a terminal or browsers; `--mirror`
* cli/common.py — the redacting Output (the only way the CLI prints), loading a playbook, the journal

COMMANDS below maps every command to the function that implements it. A command's module is imported only
when that command runs (or its own --help is asked for): `rollback-tui open` paints its first frame before
pydantic, the engine or the panes are imported (ui/loading.py), and `rollback-tui --help` lists every
command from this table alone (tests/test_startup.py holds both to that).
"""

from __future__ import annotations

import importlib

import click

from rollback_tui import __version__

# name → ("module:function", its short help: the first sentence of its docstring, which a test compares)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("rollback_tui.cli.cockpit:demo", "Start the embedded staging lab and open the cockpit on it."),
    "open": ("rollback_tui.cli.cockpit:open_", "Open the cockpit on a playbook's real deployment."),
    "resume": (
        "rollback_tui.cli.cockpit:resume",
        "Reopen a session after the cockpit was killed: rebuild it from the journal and carry on appending.",
    ),
    "lab": (
        "rollback_tui.cli.cockpit:lab_",
        "Run the embedded staging lab until Ctrl-C (replicas, balancer, Redis).",
    ),
    "rehearse": (
        "rollback_tui.cli.headless:rehearse",
        "Run the playbook's steps in order, headless; exit 0 only when the exit criteria hold.",
    ),
    "check": (
        "rollback_tui.cli.checks:check",
        "One-shot checks for scripts (JSON out, exit 0 only on pass).",
    ),
    "validate": (
        "rollback_tui.cli.files:validate",
        "Validate playbooks; every error is reported as file:line:column: field: message.",
    ),
    "schema": ("rollback_tui.cli.files:schema", "Print the playbook JSON Schema (for editor completion)."),
    "export": (
        "rollback_tui.cli.files:export",
        "Export a session journal: Markdown report, JSON bundle, journal copy and artefacts.",
    ),
    "lb": (
        "rollback_tui.cli.lb:lb",
        "Load-balancer helpers for traffic_control commands (HAProxy runtime API, nginx upstream swap).",
    ),
    "watch": (
        "rollback_tui.cli.watch:watch",
        "Follow a live session, read-only: a journal file being written, or redis://HOST/DB/SESSION.",
    ),
    "serve": (
        "rollback_tui.cli.watch:serve",
        "Serve the watch view of SOURCE to browsers (share mode, access token required).",
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module of one command and return it."""
    module, _, attr = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command), COMMANDS[name][0]
    return command


def short_help(name: str, limit: int) -> str:
    """The table's help for `name`, shortened to `limit` as click shortens a command's own."""
    return click.Command(name, help=COMMANDS[name][1]).get_short_help_str(limit)


class LazyGroup(click.Group):
    """click's documented lazy-loading group: commands come from COMMANDS, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists them, from the table: listing the commands imports none of them."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        # A stand-in command carrying the table's help shortens it exactly as the real one would.
        rows = [(name, short_help(name, limit)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollback-tui")
def main() -> None:
    """A terminal cockpit for rollback rehearsals and real rollbacks."""
