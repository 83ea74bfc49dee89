"""Evidence checklist and exit criteria: ☐/☑, auto or manual; space/t ticks the highlighted item.

The ticks and the counts are the report's (core/checklist.py evaluated, counted by core/read/checklist.py).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from rollback_tui.core.checklist import evaluate
from rollback_tui.core.read.checklist import ChecklistCounts, how
from rollback_tui.core.state import SessionState
from rollback_tui.playbook.model import Playbook
from rollback_tui.ui.panes.base import Pane, View


class WrappedOptionList(OptionList):
    """An OptionList whose wrapped lines follow its width.

    OptionList caches each option's lines without their width and drops them only on a Resize. A zoomed pane
    restored in a real terminal did not always get one (Pilot's relayout sends it), nor does a scrollbar
    appearing: the items stayed on the zoomed width's lines, cut mid-word. Rendering at another width than
    the lines were made for drops them first.
    """

    _lines_width: int | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        width = self.scrollable_content_region.width
        if width != self._lines_width:
            self._lines_width = width
            self._option_render_cache.clear()
            self._line_cache.clear()
        return super().render_lines(crop)


class ChecklistPane(Pane):
    TITLE = "Evidence checklist"

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self._signature: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(classes="pane-note", id="checklist-note")
        yield WrappedOptionList(id="checklist-items")

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

    def _note(self, counts: ChecklistCounts, view: View) -> Text:
        """Both counts on the note's one line: the words, then the tick keys, give way to the room."""
        hint = "" if view.read_only else "  · space/t ticks"
        exit_criteria = f"{counts.criteria_checked}/{counts.criteria}"
        short = f"evidence {counts.items_checked}/{counts.items} · exit {exit_criteria}"
        width = self.query_one("#checklist-note", Static).content_size.width or 200
        for counts_text, key_hint in ((counts.text, hint), (counts.text, ""), (short, hint), (short, "")):
            if len(counts_text + key_hint) <= width:
                break
        note = Text(counts_text, style="bold")
        note.append(key_hint, style=view.tone("stale"))
        return note

    def refresh_from(self, state: SessionState, playbook: Playbook, view: View) -> None:
        # The ticks as the report has them: the rules evaluated, manual ticks and overrides applied.
        report = evaluate(playbook, state)
        entries = [("item", s.name, s.text, s.checked, how(s)) for s in report.items]
        entries += [("exit", s.name, s.text, s.checked, how(s)) for s in report.exit_criteria]
        signature = (tuple(entries), view.share, tuple(sorted(view.colors.items())))
        self.query_one("#checklist-note", Static).update(
            self._note(ChecklistCounts.of(report), view), layout=False
        )
        self.border_subtitle = "" if "checklist" in view.features else "ticking arrives with #8"
        if signature == self._signature:
            return
        self._signature = signature
        ol = self.option_list
        keep = ol.highlighted
        options: list[Option | None] = []
        section = None
        for kind, name, text, is_checked, decided in entries:
            if kind != section:
                section = kind
                heading = "Evidence" if kind == "item" else "Exit criteria"
                options.append(
                    Option(Text(heading, style="bold underline"), id=f"heading-{kind}", disabled=True)
                )
            prompt = Text()
            prompt.append(
                "☑ " if is_checked else "☐ ", style=view.tone("ok", bold=True) if is_checked else "bold"
            )
            prompt.append(view.redact(text))
            prompt.append(f" ({decided})", style="dim")
            options.append(Option(prompt, id=f"{kind}:{name}"))
        ol.clear_options()
        ol.add_options([o for o in options if o is not None])
        if not entries:
            ol.add_option(Option(Text("This playbook has no checklist.", style="dim"), disabled=True))
            return
        first = next(i for i, o in enumerate(options) if o is not None and not o.disabled)
        ol.highlighted = keep if keep is not None and keep < ol.option_count else first
