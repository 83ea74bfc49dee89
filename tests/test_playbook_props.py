"""Property tests: whatever text arrives, the loader returns a Playbook or raises PlaybookError with
located, explained errors; never any other exception."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollback_tui.playbook.load import PlaybookError, bundled_playbook, format_path, load_playbook_text
from rollback_tui.playbook.model import Playbook

YAML_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
SHIPPED = {
    name: bundled_playbook(name).read_text()
    for name in ("demo", "realtime-surreal-rehearsal", "production-rollback")
}
PROPS = settings(
    max_examples=int(os.environ.get("PLAYBOOK_PROP_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def load_or_explain(text: str) -> Playbook | PlaybookError:
    """The contract: a Playbook, or a PlaybookError whose every error is located and explained."""
    try:
        return load_playbook_text(text, "prop.yaml")
    except PlaybookError as err:
        assert err.errors, "a PlaybookError must carry at least one error"
        lines = len(YAML_LINE_BREAK.split(text)) + 1  # YAML also breaks lines at \x85, \u2028, \u2029
        for e in err.errors:
            assert e.file == "prop.yaml"
            assert isinstance(e.path, str)
            assert isinstance(e.message, str) and e.message.strip()
            assert e.line is None or 1 <= e.line <= lines, (e, lines)
            assert e.column is None or e.column >= 1
            assert str(e).startswith("prop.yaml")
        assert str(err).count("\n") == len(err.errors) - 1
        return err


# --- random YAML-ish text -----------------------------------------------------------------------------

TOKENS = [
    "name: x",
    "title: t",
    "replicas:",
    "steps:",
    "- ",
    "  ",
    "    ",
    ":",
    " ",
    "\n",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "#",
    "&a ",
    "*a",
    "!!int ",
    "!!binary ",
    "!!python/object ",
    "? ",
    "|",
    ">",
    "~",
    "null",
    "true",
    "1",
    "3.5",
    "role: stable",
    "role: candidate",
    "url: http://127.0.0.1:1",
    "do:",
    "manual: m",
    "kind: command",
    "actions:",
    "gates:",
    "argv: [x]",
    "run: ls",
    "<<: *a",
    "---",
    "\t",
    "\x00",
    "é",
    "${X}",
]


@PROPS
@given(st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=40).map("".join))
def test_random_yamlish_text(text: str) -> None:
    load_or_explain(text)


# --- line-level mutations of the shipped playbooks --------------------------------------------------


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    lines = SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))].splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "garble", "truncate"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i]
        elif op == "garble":
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(st.sampled_from(TOKENS)) + lines[i][cut:]
        else:
            lines = lines[:i]
    return "\n".join(lines) + "\n"


@PROPS
@given(mutated_lines())
def test_line_mutations_of_shipped_playbooks(text: str) -> None:
    load_or_explain(text)


# --- structural mutations: a wrong value at a known path is reported at that path ----------------------


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in leaves(v, (*path, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in leaves(v, (*path, i))]
    return [(path, node)]


def set_at(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


SHIPPED_DATA = {name: yaml.safe_load(text) for name, text in SHIPPED.items()}
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@PROPS
@given(st.sampled_from(sorted(SHIPPED_DATA)), st.data())
def test_string_leaf_replaced_by_a_mapping_is_reported_at_its_path(name: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(SHIPPED_DATA[name])
    strings = [(p, v) for p, v in leaves(doc) if isinstance(v, str)]
    path, _ = data.draw(st.sampled_from(strings))
    set_at(doc, path, {"unexpected": ["mapping"]})
    result = load_or_explain(yaml.safe_dump(doc, sort_keys=False))
    assert isinstance(result, PlaybookError), f"{format_path(path)} accepted a mapping"
    paths = [e.path for e in result.errors]
    assert format_path(path) in paths, (format_path(path), paths)
    located = next(e for e in result.errors if e.path == format_path(path))
    assert located.line is not None


@PROPS
@given(st.sampled_from(sorted(SHIPPED_DATA)), st.data(), JUNK)
def test_any_leaf_replaced_by_junk(name: str, data: st.DataObject, junk: Any) -> None:
    doc = copy.deepcopy(SHIPPED_DATA[name])
    path, _ = data.draw(st.sampled_from(leaves(doc)))
    set_at(doc, path, junk)
    load_or_explain(yaml.safe_dump(doc, sort_keys=False))


@PROPS
@given(st.sampled_from(sorted(SHIPPED_DATA)), st.data())
def test_deleting_a_mapping_key(name: str, data: st.DataObject) -> None:
    doc = copy.deepcopy(SHIPPED_DATA[name])
    mappings: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def collect(node: Any, path: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            mappings.append((path, node))
            for k, v in node.items():
                collect(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                collect(v, (*path, i))

    collect(doc, ())
    _, mapping = data.draw(st.sampled_from([m for m in mappings if m[1]]))
    del mapping[data.draw(st.sampled_from(sorted(mapping)))]
    load_or_explain(yaml.safe_dump(doc, sort_keys=False))


def test_shipped_playbooks_round_trip_through_yaml_dump() -> None:
    for name, doc in SHIPPED_DATA.items():
        assert isinstance(load_or_explain(yaml.safe_dump(doc, sort_keys=False)), Playbook), name


def test_hostile_documents_are_explained() -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    for text in [
        laughs,
        "a: &a [*a]\n",
        "[" * 5000 + "]" * 5000,
        "name: !!int abc\n",
        "? [a, b]\n: 1\n",
        "name: x\n---\nname: y\n",
        "\ufeffname: x\n",
        "!!python/object:os.system {}\n",
    ]:
        assert isinstance(load_or_explain(text), PlaybookError), text[:40]


def test_fixture_dir_exists() -> None:
    assert (Path(__file__).parent / "data" / "playbooks" / "minimal.yaml").is_file()
