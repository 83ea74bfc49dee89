"""The docs in the repository stay true: every cookbook fragment validates, the protocol reference names every
placeholder the model accepts, and the README links the docs instead of files outside the repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollback_tui.playbook import model
from rollback_tui.playbook.load import load_playbook_text

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"

# What a fragment is pasted into: the sections a fragment does not bring itself.
BASE: dict[str, Any] = {
    "name": "cookbook",
    "title": "Cookbook fragment",
    "replicas": [
        {"name": "api-a", "url": "http://10.0.0.11:8080", "role": "stable"},
        {"name": "api-b", "url": "http://10.0.0.12:8080", "role": "stable"},
        {"name": "blue-next", "url": "http://10.0.0.13:8080", "role": "candidate"},
    ],
    "steps": [{"name": "look", "title": "Look", "do": [{"manual": "look"}]}],
}


def _fragments() -> list[tuple[str, str]]:
    text = (DOCS / "cookbook.md").read_text()
    found, heading = [], ""
    for block in re.finditer(r"^## ([^\n]+)$|^```yaml\n(.*?)^```", text, re.M | re.S):
        if block.group(1):
            heading = block.group(1)
        else:
            found.append((heading, block.group(2)))
    return found


FRAGMENTS = _fragments()


def test_the_cookbook_has_its_recipes():
    headings = [h for h, _ in FRAGMENTS]
    for topic in ("Kubernetes", "HAProxy", "nginx", "websocket", "SSE", "Health via a command"):
        assert any(topic in h for h in headings), (topic, headings)


@pytest.mark.parametrize(("heading", "fragment"), FRAGMENTS, ids=[h for h, _ in FRAGMENTS])
def test_every_cookbook_fragment_is_a_valid_playbook_part(heading: str, fragment: str) -> None:
    doc = {**BASE, **yaml.safe_load(fragment)}
    playbook = load_playbook_text(yaml.safe_dump(doc, sort_keys=False), f"cookbook.md ({heading})")
    assert playbook.name == "cookbook"


def test_the_protocol_reference_names_every_placeholder():
    text = (DOCS / "protocol.md").read_text()
    placeholders = {
        *model.STREAM_PLACEHOLDERS,
        *model.SEND_PLACEHOLDERS,
        *model.HEADER_PLACEHOLDERS,
        *model.TAP_PLACEHOLDERS,
        "selector_json",
        "replicas",
        "replica_set",
        "commit",
        "service",
        "flag",
        "value",
    }
    missing = sorted(p for p in placeholders if f"`{{{p}}}`" not in text)
    assert missing == []


def test_the_readme_links_the_docs_and_nothing_outside_the_repository():
    text = README.read_text()
    for page in ("docs/protocol.md", "docs/cookbook.md", "docs/architecture.md"):
        assert f"]({page})" in text, page
        assert (DOCS.parent / page).is_file()
    assert "../" not in text and "shared/DESIGN" not in text
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert target.startswith("http") or (DOCS.parent / target).exists(), target
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            assert target.startswith("http") or (page.parent / target).exists(), (page.name, target)
