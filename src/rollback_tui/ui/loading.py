"""The cockpit's first frame: what is being opened and how far it got, painted before the heavy part.

`rollback-tui open|demo|resume` start the cockpit app with a SessionOpener instead of an engine
(`CockpitApp(opener=…)`, ui/app.py). The app shows this screen at once; after its first frame it has the
opener validate the playbook (in a thread: YAML, pydantic), imports the panes (also in a thread), has the
opener start the session (lab, journal, engine, on the app's loop) and switches to the cockpit screen. Until
`validate` has returned nothing is journaled and nothing is started.

A failure the operator can fix (a playbook with errors, a lab that did not start) is a NotOpened: this
screen shows it until a key is pressed, the app exits with its status and the CLI prints it again on stderr,
where it stays once the screen is gone.

This module, like ui/app.py, imports only Textual and light modules of ours: what the first frame needs
(tests/test_startup.py holds it to that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from rollback_tui.session.engine import Engine


class NotOpened(Exception):
    """The session could not be opened, for a reason the operator can fix; `str()` is what to tell them
    (already redacted), `status` the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class SessionOpener(Protocol):
    """What the cockpit needs to open a session after its first frame (cli/cockpit.py's Opening)."""

    source: str  # what is being opened (the playbook's path), named on the first frame

    def validate(self) -> None:
        """Load and validate the playbook (blocking: run in a thread); raise NotOpened on errors."""

    async def start(self, say: Callable[[str], None]) -> Engine:
        """Start the session (lab, journal, engine), telling `say` each stage; raise NotOpened."""
        ...


class LoadingScreen(Screen[None]):
    """A title line and the stages so far (✓ done, … under way), or the error that stopped them."""

    def __init__(self, source: str) -> None:
        super().__init__(id="loading")
        self.source = source
        self.stages: list[str] = []
        self.failure: NotOpened | None = None

    def compose(self) -> ComposeResult:
        # Text, not markup: a path or an error may hold brackets (replicas[2].role).
        yield Static(Text(f" rollback-tui · opening {self.source}"), id="loading-title")
        yield Static(self._stages(), id="loading-stages")
        yield Static(id="loading-error")
        yield Static(
            Text(" Press any key to exit (the error is printed again in the terminal)."), id="loading-hint"
        )

    def say(self, stage: str) -> None:
        """A new stage has begun (the one before it is done)."""
        self.stages.append(stage)
        self.query_one("#loading-stages", Static).update(self._stages())

    def fail(self, failure: NotOpened) -> None:
        """Show what stopped the opening; any key then exits with its status."""
        self.failure = failure
        self.query_one("#loading-stages", Static).update(self._stages())
        self.query_one("#loading-error", Static).update(Text(str(failure)))
        self.add_class("-failed")

    def _stages(self) -> Text:
        text = Text()
        for i, stage in enumerate(self.stages or ["loading"]):
            if i < len(self.stages) - 1:
                text.append(f" ✓ {stage}\n", style="dim")
            else:
                text.append(f" {'✗' if self.failure else '…'} {stage}\n", style="bold")
        return text

    def on_key(self, event: events.Key) -> None:
        if self.failure is not None:
            event.stop()
            self.app.exit(return_code=self.failure.status)
