"""Every operator command, once (Posting's pattern).

The cockpit screen's and the app's key bindings, the command palette and the `?` help are generated from
COMMANDS, so a command is added, renamed or rebound in one place and the three surfaces cannot drift apart.
A command that `needs` part of a playbook (a load balancer, a realtime section…) is offered — footer, help,
palette, key — only for a playbook that has it. A `watch` viewer gets the same surfaces from the same table,
with only the commands marked `watch` (views: nothing a viewer does reaches the session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

from textual.actions import parse
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider

from rollback_tui.ui.themes import THEME_ORDER

if TYPE_CHECKING:  # the app's bindings come from here: importing it must not import pydantic
    from rollback_tui.playbook.model import Playbook


@dataclass(frozen=True)
class Key:
    key: str
    display: str | None = None  # how the footer, help and palette spell it, when not the key's name
    footer: bool = True  # shown in the footer (when its command is)
    priority: bool = False  # checked before the focused widget (ctrl+c quits from anywhere)
    help: str | None = None  # its own line in help, when it differs from the command's


@dataclass(frozen=True)
class Command:
    id: str
    keys: tuple[Key, ...]
    action: str  # a Textual action string, run where `scope` says
    label: str  # the footer's word
    help: str  # the help screen's line and the footer's tooltip
    palette: tuple[str, str] | None = None  # (title, line) in the command palette; None keeps it out
    footer: bool = True
    # Bound on the cockpit screen, on the app, or on the Runbook pane (its keys work while it has focus).
    scope: Literal["screen", "app", "steps"] = "screen"
    needs: str | None = None  # a key of NEEDS: what the playbook must have for the command to be offered
    watch: bool = False  # a `watch` viewer's too: a view of the session that changes nothing in it
    cockpit: bool = True  # the cockpit's (False: a viewer's own, e.g. its quit, which stops nothing)

    def __post_init__(self) -> None:
        if parse(self.action)[0]:
            raise ValueError(f"{self.id}: the scope says where {self.action!r} runs, not a namespace")

    @property
    def action_name(self) -> str:
        return parse(self.action)[1]


# need → (whether a playbook has it, why a command is not offered when it does not)
NEEDS: dict[str, tuple[Callable[[Playbook], bool], str]] = {
    "gates": (lambda pb: bool(pb.gates), "the playbook has no gates"),
    "realtime": (lambda pb: pb.realtime is not None, "the playbook has no realtime section"),
    "load_balancer": (lambda pb: pb.load_balancer is not None, "the playbook has no load balancer"),
    "selector_removal": (
        lambda pb: any(a.kind == "selector_removal" for a in pb.actions),
        "the playbook has no selector_removal action",
    ),
    "actions": (lambda pb: bool(pb.actions), "the playbook has no actions"),
    "checklist": (lambda pb: bool(pb.checklist or pb.exit_criteria), "the playbook has no checklist"),
}


def supported(playbook: Playbook) -> frozenset[str]:
    """The needs this playbook meets."""
    return frozenset(need for need, (has, _) in NEEDS.items() if has(playbook))


# The panes the digits 1 to 6 focus, in screen order: (pane id, its name, what the playbook needs to
# show it).
FOCUS_PANES: tuple[tuple[str, str, str | None], ...] = (
    ("health", "Replica health", None),
    ("fanout", "Fanout", "realtime"),
    ("traffic", "Traffic", None),
    ("steps", "Runbook", None),
    ("gates", "Release gates", None),
    ("checklist", "Evidence checklist", None),
)


def focus_command(number: int, pane: str, name: str, needs: str | None) -> Command:
    """A digit that moves the focus to a pane, as Tab would reach it (then `z` zooms it)."""
    return Command(
        id=f"focus-{pane}",
        keys=(Key(str(number)),),
        action=f"focus_pane({pane!r})",
        label=f"{name} pane",
        help=f"Focus the {name} pane",
        palette=(f"Focus {name} pane", f"Move the focus to the {name} pane; z then zooms it"),
        footer=False,
        needs=needs,
        watch=True,
    )


COMMANDS: tuple[Command, ...] = (
    # Operator actions: bound on the cockpit screen, so they wait while a dialog is open.
    Command(
        id="run-gates",
        keys=(Key("g"),),
        action="run_gates",
        label="Gates",
        help="Run the playbook's release gates",
        palette=("Run gates", "Run the playbook's release gates"),
        needs="gates",
    ),
    Command(
        id="fanout",
        keys=(Key("f"),),
        action="fanout",
        label="Fanout",
        help="Run the two-session cross-replica fanout check",
        palette=("Run fanout check", "Two stream sessions on two replicas, same thread"),
        needs="realtime",
    ),
    Command(
        id="traffic",
        keys=(Key("s"),),
        action="traffic",
        label="Traffic",
        help="Start / stop synthetic canary traffic through the balancer",
        palette=("Start / stop synthetic traffic", "Canary traffic through the balancer"),
        needs="load_balancer",
    ),
    Command(
        id="rollback",
        keys=(Key("r"),),
        action="rollback",
        label="Rollback",
        help="Roll back: remove the candidate from the selector (confirms)",
        palette=("Roll back", "Remove the candidate from the service selector — asks to confirm"),
        needs="selector_removal",
    ),
    Command(
        id="cancel-gates",
        keys=(Key("c"),),
        action="cancel_gates",
        label="Cancel",
        help="Cancel the running gates",
        palette=("Cancel running gates", "Stop the gates that are running"),
        needs="gates",
    ),
    Command(
        id="tick",
        # Not in the footer: the checklist pane says "space/t ticks" where it matters.
        keys=(Key("t", footer=False), Key("space", footer=False)),
        action="tick",
        label="Tick",
        help="Tick / untick the highlighted checklist item",
        palette=("Tick checklist item", "Tick / untick the highlighted evidence item"),
        needs="checklist",
    ),
    Command(
        id="export",
        keys=(Key("e"),),
        action="export",
        label="Export",
        help="Export the evidence (Markdown report + JSON bundle)",
        palette=("Export evidence", "Write the Markdown report and JSON bundle"),
    ),
    Command(
        id="actions",
        keys=(Key("a"),),
        action="actions",
        label="Actions",
        help="Run one of the playbook's actions (a change shows what it runs and asks you to type its name)",
        palette=("Run a playbook action", "Choose one; a change shows what it runs and asks to confirm"),
        needs="actions",
    ),
    # The Runbook pane's own (↑/↓ select a step there, as in any list).
    Command(
        id="run-step",
        keys=(Key("enter"),),
        action="run_step",
        label="Run step",
        help="Runbook pane: run the selected step's items in order (↑/↓ select a step)",
        palette=None,  # the palette lists every step instead ("Run step 2: …")
        footer=False,  # the Runbook pane names its keys in its border while it has focus
        scope="steps",
    ),
    Command(
        id="retry-item",
        keys=(Key("R"),),
        action="retry",
        label="Retry",
        help="Runbook pane: run the selected step's failed or unanswered item again (else a skipped one)",
        palette=("Retry failed runbook item", "Run the selected step's failed (else skipped) item"),
        footer=False,  # the Runbook pane names its keys in its border while it has focus
        scope="steps",
    ),
    Command(
        id="next-step",
        keys=(Key("right_square_bracket", "]"),),
        action="step(1)",
        label="Next step",
        help="Move the runbook tracker to the next step (journaled)",
        palette=("Next step", "Move the runbook tracker to the next step"),
        footer=False,
    ),
    Command(
        id="previous-step",
        keys=(Key("left_square_bracket", "["),),
        action="step(-1)",
        label="Previous step",
        help="Move the runbook tracker back a step (journaled)",
        palette=("Previous step", "Move the runbook tracker back a step"),
        footer=False,
    ),
    Command(
        id="notices",
        keys=(Key("n"),),
        action="notices",
        label="Notices",
        help="Show every notice (feed failures, errors)",
        palette=("Show notices", "Feed failures, warnings and action errors"),
        footer=False,
        watch=True,
    ),
    Command(
        id="event-log",
        keys=(Key("l"),),
        action="event_log",
        label="Log",
        help="Event log: every breach, recovery, operator action and outcome, in full",
        palette=("Show event log", "Every breach, recovery, operator action and outcome, in full"),
        watch=True,
    ),
    Command(
        id="readiness",
        keys=(Key("y"),),
        action="readiness",
        label="Ready",
        help="Readiness: what each item needs from here, and what cannot run and why (r checks again)",
        palette=("Show readiness", "What each item needs from here; what cannot run and why"),
        # Not in the footer (it would cut `q Quit` off at 100 columns): the status bar and the panes that
        # mark an item "cannot run" name the key.
        footer=False,
        watch=True,
    ),
    *(focus_command(number, *pane) for number, pane in enumerate(FOCUS_PANES, 1)),
    Command(
        id="zoom",
        keys=(Key("z"),),
        action="zoom",
        label="Zoom",
        help="Zoom the focused pane (Tab or a digit 1-6 moves the focus; z again restores)",
        palette=("Zoom pane", "Zoom the focused pane; z again restores"),
        footer=False,
        watch=True,
    ),
    Command(
        id="present",
        keys=(Key("p"),),
        action="present",
        label="Present",
        help="Presenter layout for the call: verdict, rollback, breach, TTD/RTO, checklist in large text",
        palette=("Presenter layout", "Large text for the call; p again returns to the panes"),
        footer=False,
        watch=True,
    ),
    Command(
        id="help",
        keys=(Key("question_mark", "?"),),
        action="help",
        label="Help",
        help="This help",
        palette=("Help", "Keys and status glyphs"),
        watch=True,
    ),
    # App-wide: bound on the app.
    Command(
        id="command-palette",
        # Both bound here: with `:` bound to the palette, Textual no longer binds its own ctrl+p.
        keys=(Key("colon", ":"), Key("ctrl+p")),
        action="command_palette",
        label="Commands",
        help="Command palette",
        palette=None,  # it is the palette
        footer=False,
        scope="app",
        watch=True,
    ),
    Command(
        id="cycle-theme",
        keys=(Key("T"),),
        action="cycle_theme",
        label="Theme",
        help="Cycle theme: dark → high contrast → light",
        palette=("Cycle theme", "dark → high contrast → light"),
        footer=False,
        scope="app",
        watch=True,
    ),
    Command(
        id="quit",
        keys=(
            Key("q"),
            Key("ctrl+c", footer=False, priority=True, help="Close the dialog; on the cockpit, as q"),
        ),
        action="quit",
        label="Quit",
        help="Quit: asks first when something runs or the exit criteria are unmet; on a dialog, closes it",
        palette=("Quit", "Stop the feeds and exit (asks first when something runs or the verdict is open)"),
        scope="app",
    ),
    Command(
        id="quit-viewer",
        keys=(Key("q"), Key("ctrl+c", footer=False, priority=True, help="Quit")),
        action="quit",
        label="Quit",
        help="Quit this view (the session goes on)",
        palette=("Quit", "Close this view; the session it watches goes on"),
        scope="app",
        watch=True,
        cockpit=False,
    ),
)

SCREEN_ACTIONS = frozenset(c.action_name for c in COMMANDS if c.scope == "screen" and c.cockpit)


def commands(watch: bool = False, supports: frozenset[str] | None = None) -> tuple[Command, ...]:
    """The cockpit's commands — those a playbook meeting `supports` offers (all when None) — or a `watch`
    viewer's (views only), in table order."""
    return tuple(
        c
        for c in COMMANDS
        if (c.watch if watch else c.cockpit) and (supports is None or c.needs is None or c.needs in supports)
    )


def not_offered(supports: frozenset[str]) -> list[tuple[Command, str]]:
    """The commands a playbook does not support, with the reason (the help says why a key is missing)."""
    return [(c, NEEDS[c.needs][1]) for c in COMMANDS if c.needs is not None and c.needs not in supports]


def offered_keys(watch: bool = False, supports: frozenset[str] | None = None) -> dict[str, str]:
    """command id → how its first key is spelled, for the commands offered (`commands`): what a pane's hint
    may name ("f runs the check"), so no pane advertises a key the footer does not have."""
    return {c.id: c.keys[0].display or c.keys[0].key for c in commands(watch, supports)}


def bindings(scope: Literal["screen", "app", "steps"], *, watch: bool = False) -> list[BindingType]:
    """The key bindings of one scope, in table order (the footer's order). The cockpit screen's
    check_action turns off those its playbook does not support (`commands(supports=…)`)."""
    return [
        Binding(
            key.key,
            command.action,
            command.label,
            show=command.footer and key.footer,
            key_display=key.display,
            priority=key.priority,
            tooltip=key.help or command.help,
            id=command.id,
        )
        for command in commands(watch)
        if command.scope == scope
        for key in command.keys
    ]


def help_bindings(watch: bool = False, supports: frozenset[str] | None = None) -> list[Binding]:
    """Every offered key with its long description, in table order (the help groups keys sharing one)."""
    return [
        Binding(key.key, command.action, key.help or command.help, key_display=key.display)
        for command in commands(watch, supports)
        for key in command.keys
    ]


class Runner(Protocol):
    """What the palette needs from the app: the playbook, run a command or an action, switch theme."""

    available_themes: dict[str, Any]
    read_only: bool  # a viewer: views only
    playbook: Playbook
    supports: frozenset[str]

    def run_command(self, command: Command) -> Any: ...

    def run_playbook_action(self, name: str) -> Any: ...

    def run_step_named(self, name: str) -> Any: ...

    def set_theme(self, name: str) -> None: ...


PaletteEntry = tuple[str, str, Callable[[], Any]]


def palette_entries(runner: Runner) -> Iterator[PaletteEntry]:
    """(title, help, callback): the offered commands, every playbook action and runbook step, then the
    bundled themes."""
    for command in commands(runner.read_only, runner.supports):
        if command.palette is not None:
            title, line = command.palette
            first = command.keys[0]  # the palette names the key, so the operator learns it
            yield title, f"{line} ({first.display or first.key})", partial(runner.run_command, command)
    for action in () if runner.read_only else runner.playbook.actions:
        line = f"{action.title} ({action.kind.replace('_', ' ')})"
        yield f"Run action: {action.name}", line, partial(runner.run_playbook_action, action.name)
    for i, step in enumerate(() if runner.read_only else runner.playbook.steps, 1):
        line = f"{step.title} — its items in order"
        yield f"Run step {i}: {step.name}", line, partial(runner.run_step_named, step.name)
    for name in THEME_ORDER:
        if name in runner.available_themes:
            yield f"Theme: {name}", f"Switch to {name}", partial(runner.set_theme, name)


class CockpitCommands(Provider):
    """The command palette's entries (registered through App.COMMANDS in place of Textual's own)."""

    def _entries(self) -> list[PaletteEntry]:
        return list(palette_entries(cast(Runner, self.app)))

    async def discover(self) -> Hits:
        # In table order: the operator's actions first, the playbook's own next, themes last.
        for title, help_text, callback in self._entries():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._entries():
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


def invoke(target: Any, action: str) -> Any:
    """Call an action string's method on its node: the palette already chose it, so no check_action."""
    _, name, params = parse(action)
    return getattr(target, f"action_{name}")(*params)
