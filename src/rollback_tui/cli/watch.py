"""`rollback-tui watch` and `rollback-tui serve`, and the `--mirror` option of the cockpit and `rehearse`.

* `watch SOURCE`: the cockpit's panes, read-only, following a live session (ui/watch.py). SOURCE is a
  journal file being written, or `redis://[:${VAR}@]host[:port]/db/<session>` (a session mirrored with
  `--mirror`). The playbook comes with the mirror, or from where the journal's session started.
* `serve SOURCE`: the same view in browsers, through textual-serve: each browser gets its own `watch`
  process, in share mode whatever it asks. It listens on 127.0.0.1 unless told otherwise and answers only
  requests that carry its random access token: the URL it prints (`/t/<token>`) sets a cookie and sends
  the browser on to `/`, so the token is not left in the address bar of a screen-shared browser.
* `--mirror URL` (cockpit commands and `rehearse`): checked before anything starts (shape, no inline
  credential, every ${VAR} set); the session side is session/mirror.py, run by session/runtime.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rollback_tui.cli.common import Output

SERVE_ENV = "ROLLBACK_TUI_SERVE"  # what a served `watch` process is to show (JSON), set by `serve`
PYTHON_ENV = "ROLLBACK_TUI_PYTHON"
# textual-serve runs its command through a shell: the command is this constant, and what varies travels in
# the environment (no value is ever spliced into shell code).
SERVED_COMMAND = f'exec "${PYTHON_ENV}" -m rollback_tui watch --served'
TOKEN_COOKIE = "rollback_tui_token"
TOKEN_PATH = "/t/"  # the printed URL: /t/<token> sets the cookie, then the browser goes on to /


def _fail(message: str) -> None:
    Output().line(f"error: {message}", err=True)
    sys.exit(2)


# --- --mirror ------------------------------------------------------------------------------------------


def _check_mirror(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """The URL is usable before the session starts: its shape, credentials only as ${VAR}, each one set."""
    if value is None:
        return None
    from rollback_tui.playbook.secrets import MissingVariable
    from rollback_tui.session.mirror import MirrorError, MirrorTarget

    try:
        MirrorTarget.parse(value).resolved()
    except (MirrorError, MissingVariable) as exc:
        raise click.BadParameter(str(exc)) from None
    return value


mirror_option = click.option(
    "--mirror",
    metavar="redis://HOST[:PORT][/DB]",
    callback=_check_mirror,
    help="Mirror the journal, as it is written, to a Redis Stream that `rollback-tui watch` follows "
    "(a password only as ${VAR}).",
)


# --- the source of a view ------------------------------------------------------------------------------


@dataclass
class Source:
    follower: Any  # FileFollower | StreamFollower
    playbook: Any  # Playbook
    label: str  # what the view says it follows
    journal_name: str


def open_source(source: str, playbook_path: str | None) -> Source:
    """The follower and playbook for SOURCE; exits 2 with the reason when they cannot be had."""
    from rollback_tui.playbook.load import PlaybookError, load_playbook

    playbook = None
    if playbook_path:
        try:
            playbook = load_playbook(playbook_path)
        except PlaybookError as exc:
            _fail(str(exc))
    if source.startswith(("redis://", "rediss://")):
        return _stream_source(source, playbook)
    return _file_source(Path(source), playbook)


def _stream_source(url: str, playbook: Any) -> Source:
    from rollback_tui.playbook.secrets import MissingVariable
    from rollback_tui.session.mirror import MirrorError, MirrorTarget, StreamFollower

    try:
        target = MirrorTarget.parse(url, session_required=True)
        target.resolved()
    except (MirrorError, MissingVariable) as exc:
        _fail(str(exc))
    follower = StreamFollower(target)
    if playbook is None:
        try:
            playbook = asyncio.run(follower.playbook())
        except Exception as exc:  # refused, unreachable, auth: nothing to show
            _fail(f"{target.watch_url}: {type(exc).__name__}: {exc}")
        if playbook is None:
            _fail(f"no mirrored session {target.session!r} at {target.url} (is it running with --mirror?)")
    return Source(follower, playbook, target.watch_url, f"{target.session}.jsonl")


def _file_source(path: Path, playbook: Any) -> Source:
    from rollback_tui.core.follow import FileFollower
    from rollback_tui.core.resume import SessionPlaybookError, session_playbook

    if not path.is_file():
        _fail(f"{path}: no such journal")
    if playbook is None:
        try:
            playbook = session_playbook(path)
        except SessionPlaybookError as exc:
            _fail(str(exc))
    return Source(FileFollower(path), playbook, str(path), path.name)


# --- watch ---------------------------------------------------------------------------------------------


@click.command()
@click.argument("source", required=False)
@click.option("--playbook", "playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--present", is_flag=True, help="Start in the presenter layout (large text for the call).")
@click.option("--share", is_flag=True, help="Screen-share mode: redact sensitive values.")
@click.option("--theme", help="rollback-dark, rollback-high-contrast or rollback-light.")
@click.option("--served", is_flag=True, hidden=True, help="Started by `serve` (what to show is in its env).")
def watch(
    source: str | None, playbook_path: str | None, present: bool, share: bool, theme: str | None, served: bool
) -> None:
    """Follow a live session, read-only: a journal file being written, or redis://HOST/DB/SESSION."""
    from rollback_tui.ui.watch import WatchApp

    if served:  # what `serve` asked for; share mode whatever else was asked
        asked = json.loads(os.environ.get(SERVE_ENV, "{}"))
        source, playbook_path = asked.get("source"), asked.get("playbook")
        present, share = bool(asked.get("present")), True
    if not source:
        raise click.UsageError("SOURCE is required: a journal file or redis://HOST[:PORT]/DB/SESSION")
    logging.getLogger().addHandler(logging.NullHandler())  # the view owns the terminal: no log on it
    opened = open_source(source, playbook_path)
    app = WatchApp(
        opened.follower,
        opened.playbook,
        source=opened.label,
        journal_name=opened.journal_name,
        theme=theme,
        share=share,
        present=present,
    )
    app.run()


# --- serve ---------------------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@click.command()
@click.argument("source")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=0, help="Port (default: a free one).")
@click.option("--playbook", "playbook_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--present", is_flag=True, help="Start every browser in the presenter layout.")
def serve(source: str, host: str, port: int, playbook_path: str | None, present: bool) -> None:
    """Serve the watch view of SOURCE to browsers (share mode, access token required)."""
    import secrets

    opened = open_source(source, playbook_path)  # refuse a bad source now, not in every browser
    del opened
    token = secrets.token_urlsafe(32)
    port = port or _free_port(host)
    os.environ[PYTHON_ENV] = sys.executable
    os.environ[SERVE_ENV] = json.dumps({"source": source, "playbook": playbook_path, "present": present})
    server = _token_server(token, host, port)
    shown = f"[{host}]" if ":" in host else host
    out = Output()
    out.line(f"Serving the read-only view of {source} (share mode)")
    out.line(f"Open: http://{shown}:{port}{TOKEN_PATH}{token}")
    out.line("Requests without the token are refused. Ctrl-C stops serving.")
    sys.stdout.flush()
    server.serve()


def _token_server(token: str, host: str, port: int) -> Any:
    """textual-serve's Server, answering only requests that carry `token` (query, then cookie)."""
    import hmac

    from aiohttp import web
    from textual_serve.server import Server

    def allowed(given: str) -> bool:
        return hmac.compare_digest(given.encode(), token.encode())

    @web.middleware
    async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(TOKEN_PATH) and allowed(request.path[len(TOKEN_PATH) :]):
            # The page's scripts, styles and websocket carry the token as a cookie from here on.
            response: web.StreamResponse = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
        elif allowed(request.cookies.get(TOKEN_COOKIE, "")) and not request.path.startswith(TOKEN_PATH):
            response = await handler(request)
        else:
            return web.Response(status=403, text="403: this view needs the access token `serve` printed\n")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    class TokenServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(require_token)
            return app

        async def on_startup(self, app: web.Application) -> None:  # our own lines say where, with the token
            return None

    return TokenServer(SERVED_COMMAND, host=host, port=port, title="rollback-tui watch")
