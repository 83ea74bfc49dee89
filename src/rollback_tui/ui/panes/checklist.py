"""Evidence checklist and exit criteria: ☐/☑, auto or manual; space/t ticks the highlighted item."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import Pane, View


def checklist_entries(playbook: Playbook) -> list[tuple[str, str, str, str]]:
    """(section, name, text, rule) of every checklist item, then every exit criterion."""
    entries: list[tuple[str, str, str, str]] = [("item", c.name, c.text, c.rule) for c in playbook.checklist]
    return entries + [("exit", e.name, e.text, e.rule) for e in playbook.exit_criteria]


def checklist_progress(state: SessionState, playbook: Playbook) -> tuple[int, int]:
    """(done, total) as the pane counts them: the presenter board shows the same x/y."""
    entries = checklist_entries(playbook)
    done = sum(1 for _, name, _, _ in entries if (e := state.checklist.get(name)) is not None and e.checked)
    return done, len(entries)


class ChecklistPane(Pane):
    TITLE = "Evidence checklist"

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._signature: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-note", id="checklist-note")
        yield OptionList(id="checklist-items")

    @property
    def option_list(self) -> OptionList:
        return self.query_one(OptionList)

    def highlighted_item(self) -> str | None:
        """Name of the highlighted checklist item or exit criterion (None on a heading)."""
        ol = self.option_list
        if ol.highlighted is None:
            return None
        option_id = ol.get_option_at_index(ol.highlighted).id or ""
        return option_id.split(":", 1)[1] if ":" in option_id else None

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        entries = checklist_entries(playbook)
        checked = {name: e.checked for name, e in state.checklist.items()}
        done, _ = checklist_progress(state, playbook)
        signature = (
            tuple(entries),
            tuple(sorted(checked.items())),
            view.share,
            tuple(sorted(view.colors.items())),
        )
        note = Text(f"{done}/{len(entries)} done", style="bold")
        if not view.read_only:
            note.append("  · space/t ticks", style=view.tone("stale"))
        self.query_one("#checklist-note", Static).update(note, layout=False)
        self.border_subtitle = "" if "checklist" in view.features else "ticking arrives with #8"
        if signature == self._signature:
            return
        self._signature = signature
        ol = self.option_list
        keep = ol.highlighted
        options: list[Option | None] = []
        section = None
        for kind, name, text, rule in entries:
            if kind != section:
                section = kind
                heading = "Evidence" if kind == "item" else "Exit criteria"
                options.append(
                    Option(Text(heading, style="bold underline"), id=f"heading-{kind}", disabled=True)
                )
            is_checked = checked.get(name, False)
            prompt = Text()
            prompt.append(
                "☑ " if is_checked else "☐ ", style=view.tone("ok", bold=True) if is_checked else "bold"
            )
            prompt.append(view.redact(text))
            prompt.append(f" ({'auto' if rule != 'manual' else 'manual'})", style="dim")
            options.append(Option(prompt, id=f"{kind}:{name}"))
        ol.clear_options()
        ol.add_options([o for o in options if o is not None])
        if not entries:
            ol.add_option(Option(Text("This playbook has no checklist.", style="dim"), disabled=True))
            return
        first = next(i for i, o in enumerate(options) if o is not None and not o.disabled)
        ol.highlighted = keep if keep is not None and keep < ol.option_count else first
