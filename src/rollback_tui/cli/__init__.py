"""Command line, one module per command family over one session runtime (session/runtime.py):

* cli/cockpit.py — `demo`, `open`, `resume`, `lab`: the Textual cockpit, with or without the lab
* cli/headless.py — `rehearse --headless`: the runbook without a UI, for CI
* cli/checks.py — `check health|fanout|traffic`: one-shot checks for scripts
* cli/files.py — `validate`, `schema`, `export`
* cli/lb.py — `lb haproxy|nginx …`: load-balancer helpers for traffic_control commands
* cli/watch.py — `watch`, `serve`: a live session, read-only, in a terminal or browsers; `--mirror`
* cli/common.py — the redacting Output (the only way the CLI prints), loading a playbook, the journal
"""

from __future__ import annotations

import click

from rollback_tui import __version__
from rollback_tui.cli.checks import check
from rollback_tui.cli.cockpit import demo, lab_, open_, resume
from rollback_tui.cli.common import Output
from rollback_tui.cli.files import export, schema, validate
from rollback_tui.cli.headless import _parse_injections, progress_line, rehearse, verdict_lines
from rollback_tui.cli.lb import lb
from rollback_tui.cli.watch import serve, watch

__all__ = ["Output", "_parse_injections", "main", "progress_line", "verdict_lines"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rollback-tui")
def main() -> None:
    """A terminal cockpit for rollback rehearsals and real rollbacks."""


for command in (demo, open_, resume, lab_, rehearse, check, validate, schema, export, lb, watch, serve):
    main.add_command(command)
