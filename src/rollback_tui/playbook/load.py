"""Load and validate playbooks, reporting every problem as `file:line:column: field: message`.

Three passes, all of whose errors are collected before anything is raised:
1. YAML: composed with SafeLoader's node API so every field path maps to its line and column;
   duplicate keys are errors (plain YAML would silently keep the last one).
2. Schema: the pydantic model; each error's `loc` is walked against the model's types (list
   indices, dict keys, the action `kind` tag) to find the field path and so its position.
3. Cross-references: unique names, references between sections, hosts, roles.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import shutil
import types
import typing
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rollback_tui.playbook.code import spliced_placeholder_message
from rollback_tui.playbook.model import (
    ENV_REF,
    Action,
    ChecklistItem,
    CommandAction,
    CommandSpec,
    ExitCriterion,
    Playbook,
    Redeploy,
    SelectorRemoval,
    StabiliseFlags,
    TrafficControl,
    placeholders_in_code,
)

FieldPath = tuple[Any, ...]

MAX_NODES = 100_000  # after alias expansion; guards against "billion laughs" documents
MAX_DEPTH = 200
_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"  # model.Name


# --- errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocatedError:
    """One problem in a playbook, with where it is (1-based line and column, when known)."""

    file: str
    line: int | None
    column: int | None
    path: str  # "replicas[1].role"; "" for document-level problems (syntax, empty file)
    message: str
    warning: bool = False  # usable, but something would fail when it runs (see readiness_warnings)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        message = f"warning: {self.message}" if self.warning else self.message
        return f"{where}: {self.path}: {message}" if self.path else f"{where}: {message}"


class PlaybookError(Exception):
    """A playbook that cannot be used; `errors` lists every problem found."""

    def __init__(self, errors: list[LocatedError]) -> None:
        self.errors = errors
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def format_path(path: FieldPath) -> str:
    """('replicas', 1, 'role') → 'replicas[1].role'; odd keys are quoted: env["A.B"]."""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


# --- YAML with positions --------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it (about 10x faster), the pure-Python one otherwise.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader without implicit timestamps: `2026-02-16` stays the string it looks like."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class _Pos:
    value: tuple[int, int]
    key: tuple[int, int] | None = None
    collection: bool = False


@dataclass
class _Document:
    data: Any
    positions: dict[FieldPath, _Pos] = field(default_factory=dict)
    errors: list[tuple[FieldPath, tuple[int, int], str]] = field(default_factory=list)


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _TooLarge(Exception):
    pass


class _Walker:
    """Records the position of every node by field path and finds duplicate keys."""

    def __init__(self, doc: _Document) -> None:
        self.doc = doc
        self.visited = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def key_of(self, node: Node) -> Any:
        try:
            key = self.constructor.construct_object(node, deep=True)
            hash(key)
        except Exception:
            return None
        return key

    def walk(
        self, node: Node, path: FieldPath, key_mark: tuple[int, int] | None, ancestors: set[int]
    ) -> None:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise _TooLarge
        collection = isinstance(node, MappingNode | SequenceNode)
        self.doc.positions.setdefault(path, _Pos(_mark(node), key_mark, collection))
        if not collection or len(path) > MAX_DEPTH:
            return
        if id(node) in ancestors:
            self.doc.errors.append((path, _mark(node), "recursive YAML alias: a node may not contain itself"))
            return
        ancestors = ancestors | {id(node)}
        if isinstance(node, SequenceNode):
            for index, child in enumerate(node.value):
                self.walk(child, (*path, index), None, ancestors)
            return
        seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.key_of(key_node)
            if key is None:
                continue
            if key in seen:
                first_line = seen[key][0]
                self.doc.errors.append(
                    (
                        (*path, key),
                        _mark(key_node),
                        f"duplicate key {key!r} (first defined at line {first_line})",
                    )
                )
                continue
            seen[key] = _mark(key_node)
            self.walk(value_node, (*path, key), _mark(key_node), ancestors)


def _yaml_error(err: yaml.YAMLError, text: str) -> tuple[int | None, int | None, str]:
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        parts = [p for p in (err.problem, err.context) if p]
        message = "YAML syntax error: " + ("; ".join(parts) if parts else "invalid document")
        if mark is None:
            return None, None, message
        return mark.line + 1, mark.column + 1, message
    if isinstance(err, yaml.reader.ReaderError):
        before = text[: err.position]
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        char = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "\0")
        return line, column, f"character #x{char:04x} is not allowed in YAML ({err.reason})"
    return None, None, f"YAML error: {err}"


def _scalar_nodes(node: Node, seen: set[int] | None = None) -> Iterator[ScalarNode]:
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        yield node
    elif isinstance(node, SequenceNode):
        for child in node.value:
            yield from _scalar_nodes(child, seen)
    elif isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            yield from _scalar_nodes(key_node, seen)
            yield from _scalar_nodes(value_node, seen)


def _compose(text: str, filename: str) -> _Document:
    def fail(line: int | None, column: int | None, message: str) -> PlaybookError:
        return PlaybookError([LocatedError(filename, line, column, "", message)])

    try:
        loader = _Loader(text)  # the reader rejects control characters here already
    except yaml.YAMLError as err:
        raise fail(*_yaml_error(err, text)) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as err:
            raise fail(*_yaml_error(err, text)) from None
        except RecursionError:
            raise fail(None, None, "the document is nested too deeply") from None
        if node is None:
            raise fail(None, None, "the playbook is empty")
        doc = _Document(data=None)
        try:
            _Walker(doc).walk(node, (), None, set())
        except _TooLarge:
            raise fail(
                None, None, f"the document is too large (over {MAX_NODES} nodes once aliases are expanded)"
            ) from None
        except RecursionError:
            raise fail(None, None, "the document is nested too deeply") from None
        if doc.errors and any("recursive YAML alias" in m for _, _, m in doc.errors):
            raise PlaybookError([LocatedError(filename, *pos, format_path(p), m) for p, pos, m in doc.errors])
        try:
            doc.data = loader.construct_document(node)
        except yaml.YAMLError as err:
            raise fail(*_yaml_error(err, text)) from None
        except Exception as exc:  # e.g. `!!int abc` raises ValueError inside PyYAML
            raise fail(*_locate_bad_scalar(node), f"cannot read YAML value: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(doc.data, dict):
        line, column = _mark(node)
        kind = type(doc.data).__name__ if doc.data is not None else "nothing"
        raise fail(line, column, f"the top level must be a mapping of playbook fields, got {kind}")
    return doc


def _locate_bad_scalar(node: Node) -> tuple[int | None, int | None]:
    constructor = yaml.constructor.SafeConstructor()
    for scalar in _scalar_nodes(node):
        try:
            constructor.construct_object(scalar, deep=True)
        except Exception:
            return _mark(scalar)
    return None, None


def _position(doc: _Document, path: FieldPath, *, prefer_key: bool) -> tuple[int | None, int | None]:
    """Where `path` is in the file; a missing field is reported at its nearest present parent."""
    for depth in range(len(path), -1, -1):
        pos = doc.positions.get(path[:depth])
        if pos is None:
            continue
        exact = depth == len(path)
        use_key = pos.key is not None and (prefer_key or pos.collection or not exact)
        return pos.key if use_key else pos.value  # type: ignore[return-value]
    return None, None


# --- pydantic errors → field paths ----------------------------------------------------------------


def _unwrap(tp: Any) -> tuple[Any, str | None]:
    """Strip Annotated/Optional; return (type, discriminator field name if a tagged union)."""
    discriminator = None
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            args = typing.get_args(tp)
            for meta in args[1:]:
                if isinstance(meta, FieldInfo) and isinstance(meta.discriminator, str):
                    discriminator = meta.discriminator
            tp = args[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
        return tp, discriminator


def _field_type(model: type[BaseModel], name: str) -> tuple[Any, str | None]:
    info = model.model_fields[name]
    tp, disc = _unwrap(info.annotation)
    if disc is None and isinstance(info.discriminator, str):
        disc = info.discriminator
    return tp, disc


def _tag_member(union: Any, disc: str, tag: Any) -> type[BaseModel] | None:
    for member in typing.get_args(union):
        member, _ = _unwrap(member)
        if isinstance(member, type) and issubclass(member, BaseModel) and disc in member.model_fields:
            literal = member.model_fields[disc].annotation
            if tag in typing.get_args(literal):
                return member
    return None


def _resolve_loc(loc: tuple[Any, ...]) -> tuple[FieldPath, type[BaseModel] | None, bool]:
    """Walk a pydantic `loc` against the model's types.

    Returns the data path (discriminator tags dropped), the model class in which the last path
    element is a field (for "unknown field" hints) and whether the error is about a dict key.
    """
    path: list[Any] = []
    tp: Any = Playbook
    disc: str | None = None
    key_error = False
    owner: type[BaseModel] | None = None
    for el in loc:
        if el == "[key]":
            key_error = True
            continue
        origin = typing.get_origin(tp)
        if disc is not None and origin in (typing.Union, types.UnionType):
            member = _tag_member(tp, disc, el)
            if member is not None:  # the discriminator tag: not part of the data
                tp, disc = member, None
                continue
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            path.append(el)
            owner = tp
            if isinstance(el, str) and el in tp.model_fields:
                tp, disc = _field_type(tp, el)
            else:
                tp, disc = Any, None
            continue
        owner = None
        if origin is list and isinstance(el, int):
            path.append(el)
            tp, disc = _unwrap(typing.get_args(tp)[0])
            continue
        if origin is dict:
            path.append(el)
            tp, disc = _unwrap(typing.get_args(tp)[1])
            continue
        path.append(el)
        tp, disc = Any, None
    return tuple(path), owner, key_error


def _friendly(
    err: Mapping[str, Any], path: FieldPath, parent_model: type[BaseModel] | None
) -> tuple[FieldPath, str]:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    message = str(err["msg"])
    if kind == "missing":
        return path, "required field is missing"
    if kind == "extra_forbidden":
        name = path[-1] if path else "?"
        if parent_model is not None:
            allowed = sorted(parent_model.model_fields)
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return path, f"unknown field {name!r} ({hint}allowed: {', '.join(allowed)})"
        return path, f"unknown field {name!r}"
    disc = str(ctx.get("discriminator", "kind")).strip("'")
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        return (*path, disc), f"unknown {disc} {ctx.get('tag')!r} (expected one of: {expected})"
    if kind == "union_tag_not_found":
        kinds = ", ".join(_action_kinds()) if path[:1] == ("actions",) else "see the schema"
        return path, f"missing {disc}: say which kind of entry this is ({kinds})"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == _NAME_PATTERN:
        return path, (
            f"{err.get('input')!r} is not a valid name: use lowercase letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    if kind == "invalid_key":
        return path, "keys must be strings"
    if kind == "value_error" and message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif kind == "assertion_error" and message.startswith("Assertion failed, "):
        message = message[len("Assertion failed, ") :]
    return path, message


def _action_kinds() -> list[str]:
    union = typing.get_args(Action)[0]
    return [typing.get_args(m.model_fields["kind"].annotation)[0] for m in typing.get_args(union)]


def _schema_errors(doc: _Document, exc: ValidationError, filename: str) -> list[LocatedError]:
    out = []
    for err in exc.errors(include_url=False):
        path, owner, key_error = _resolve_loc(tuple(err["loc"]))
        path, message = _friendly(err, path, owner)
        prefer_key = key_error or err["type"] in ("extra_forbidden", "invalid_key")
        line, column = _position(doc, path, prefer_key=prefer_key)
        out.append(LocatedError(filename, line, column, format_path(path), message))
    return out


# --- cross-references -----------------------------------------------------------------------------

_COLLECTIONS = {
    "replicas": "replica",
    "hosts": "host",
    "facts": "fact",
    "gates": "gate",
    "probes": "probe",
    "prometheus": "Prometheus server",
    "guardrails": "guardrail",
    "actions": "action",
    "steps": "step",
    "checklist": "checklist item",
    "exit_criteria": "exit criterion",
    "preconditions": "precondition",
}


def _walk_models(obj: Any, path: FieldPath = ()) -> Iterator[tuple[FieldPath, BaseModel]]:
    if isinstance(obj, BaseModel):
        yield path, obj
        for name in type(obj).model_fields:
            yield from _walk_models(getattr(obj, name), (*path, name))
    elif isinstance(obj, list):
        for index, item in enumerate(obj):
            yield from _walk_models(item, (*path, index))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _walk_models(item, (*path, key))


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


class _CrossCheck:
    """References between sections. On a partial playbook (some entries failed the schema, and
    are None here) names come from the raw data and checks that could be misled are skipped."""

    def __init__(
        self, pb: Playbook, raw: Mapping[str, Any] | None = None, incomplete: AbstractSet[str] = frozenset()
    ):
        self.pb = pb
        self.incomplete = incomplete
        self.problems: list[tuple[FieldPath, str]] = []
        if raw is None:
            self.names = {
                coll: [getattr(x, "name", None) for x in getattr(pb, coll)] for coll in _COLLECTIONS
            }
        else:
            self.names = {coll: _raw_names(raw.get(coll), _DEFAULT_NAMES.get(coll)) for coll in _COLLECTIONS}

    def complete(self, *sections: str) -> bool:
        return self.incomplete.isdisjoint(sections)

    def items(self, coll: str) -> Iterator[tuple[int, Any]]:
        for index, item in enumerate(getattr(self.pb, coll)):
            if item is not None:
                yield index, item

    def add(self, path: FieldPath, message: str) -> None:
        self.problems.append((path, message))

    def ref(self, path: FieldPath, coll: str, name: str | None) -> bool:
        """Report `name` unless it names an entry of `coll`; True when it resolves."""
        if name is None or name in self.names[coll]:
            return True
        known = [n for n in self.names[coll] if n]
        what = _COLLECTIONS[coll]
        hint = f"(known: {', '.join(known)})" if known else f"(no {coll.replace('_', ' ')} are defined)"
        self.add(path, f"no {what} named {name!r} {hint}")
        return False

    def run(self) -> list[tuple[FieldPath, str]]:
        self.unique_names()
        self.replicas_and_balancer()
        self.commands()
        self.placeholders()
        self.facts_and_guardrails()
        self.actions()
        self.steps()
        self.evidence()
        return self.problems

    def unique_names(self) -> None:
        for coll, what in _COLLECTIONS.items():
            first: dict[str, int] = {}
            for index, name in enumerate(self.names[coll]):
                if name is None:
                    continue
                if name in first:
                    self.add(
                        (coll, index, "name"), f"duplicate {what} name {name!r} (also {coll}[{first[name]}])"
                    )
                else:
                    first[name] = index

    def replicas_and_balancer(self) -> None:
        pb = self.pb
        replicas = [r for _, r in self.items("replicas")]
        stable = [r for r in replicas if r.role == "stable"]
        if self.complete("replicas") and replicas and not stable:
            self.add(("replicas",), "at least one replica needs role: stable (the rollback target)")
        lb = pb.load_balancer
        if lb is None:
            return
        for key in lb.weights:
            self.ref(("load_balancer", "weights", key), "replicas", key)
        if lb.identity.json_path is not None and lb.verify.method == "HEAD":
            self.add(("load_balancer", "verify", "method"), "HEAD has no body for identity.json_path to read")
        if not self.complete("replicas"):
            return
        paths = sorted({r.health_path for r in stable})
        if lb.verify.path is None and len(paths) > 1:
            self.add(
                ("load_balancer", "verify", "path"),
                f"the stable replicas have different health paths ({', '.join(paths)}): "
                "say which path verification requests",
            )
        if (
            any(r.labels for r in replicas)
            and stable
            and not any(_labels_match(lb.selector, r.labels) for r in stable)
        ):
            self.add(("load_balancer", "selector"), "the selector matches no stable replica's labels")
        share = lb.synthetic_traffic
        if share and lb.weights and all(r.name in lb.weights for r in replicas):
            total = sum(lb.weights[r.name] for r in replicas)
            cand = sum(lb.weights[r.name] for r in replicas if r.role == "candidate")
            ratio = cand / total if total else 0.0
            low, high = share.candidate_share_min, share.candidate_share_max
            if not low <= ratio <= high:
                self.add(
                    ("load_balancer", "weights"),
                    f"candidates get {ratio:.0%} of the weight; "
                    f"synthetic_traffic allows {low:.0%}-{high:.0%}",
                )

    def commands(self) -> None:
        hosts = self.names["hosts"]
        for path, model in _walk_models(self.pb):
            if isinstance(model, CommandSpec) and model.where != "local" and model.where not in hosts:
                known = ", ".join(["local", *[h for h in hosts if h]])
                self.add((*path, "where"), f"no host named {model.where!r} (known: {known})")

    def placeholders(self) -> None:
        """A filled-in value (a commit, a flag value, a selector) must never become code."""
        for path, spec, names in self._filled_commands():
            for where, name, program in placeholders_in_code(spec, names):
                self.add((*path, *where), spliced_placeholder_message(name, program))

    def _filled_commands(self) -> Iterator[tuple[FieldPath, CommandSpec, tuple[str, ...]]]:
        """The commands whose `{placeholders}` are filled at run time, with the names filled in."""
        for i, action in self.items("actions"):
            if isinstance(action, Redeploy):
                for service, spec in action.services.items():
                    yield ("actions", i, "services", service), spec, Redeploy.PLACEHOLDERS
                if action.prepare is not None:
                    yield ("actions", i, "prepare"), action.prepare, Redeploy.PLACEHOLDERS
            elif isinstance(action, StabiliseFlags):
                yield ("actions", i, "command"), action.command, StabiliseFlags.PLACEHOLDERS
        lb = self.pb.load_balancer
        for name in ("remove", "restore", "read"):
            command: CommandSpec | None = getattr(lb.traffic_control, name) if lb is not None else None
            if command is not None:
                yield ("load_balancer", "traffic_control", name), command, TrafficControl.PLACEHOLDERS

    def facts_and_guardrails(self) -> None:
        has_candidate = any(r.role == "candidate" for _, r in self.items("replicas"))
        know_roles = self.complete("replicas")
        for i, g in self.items("guardrails"):
            here = ("guardrails", i)
            self.ref((*here, "gate"), "gates", g.gate)
            self.ref((*here, "probe"), "probes", g.probe)
            if g.metric == "gate_failed" and g.gate is None:
                self.add((*here, "gate"), "metric gate_failed needs gate: the gate whose failure trips it")
            if g.metric != "gate_failed" and g.gate is not None:
                self.add((*here, "gate"), "gate only applies to metric gate_failed")
            if g.metric == "dead_letters_growth" and g.probe is None:
                self.add(
                    (*here, "probe"), "metric dead_letters_growth needs probe: the dead-letters HTTP probe"
                )
            if g.scope == "candidate" and know_roles and not has_candidate:
                self.add((*here, "scope"), "scope candidate, but no replica has role: candidate")
            if g.metric == "ws_disconnects" and self.pb.realtime is None and self.complete("realtime"):
                self.add(
                    (*here, "metric"),
                    "ws_disconnects cannot be measured: stream sessions need a realtime section "
                    "(its fanout protocol says how to open them)",
                )
            if g.metric == "query":
                self.prometheus_ref((*here, "server"), g.server)
        for i, f in self.items("facts"):
            if f.replicas == "candidate" and know_roles and not has_candidate:
                self.add(("facts", i, "replicas"), "replicas: candidate, but no replica has role: candidate")
            if f.source == "prometheus":
                self.prometheus_ref(("facts", i, "server"), f.server)
        for i, p in self.items("preconditions"):
            for coll, attr in (("facts", "fact"), ("gates", "gate"), ("probes", "probe")):
                self.ref(("preconditions", i, attr), coll, getattr(p, attr))
            self.needs_check(("preconditions", i, "check"), p.check)

    def prometheus_ref(self, path: FieldPath, name: str | None) -> None:
        """A query names its server, or there is exactly one to default to."""
        if name is not None:
            self.ref(path, "prometheus", name)
            return
        servers = [n for n in self.names["prometheus"] if n]
        if len(servers) != 1 and self.complete("prometheus"):
            which = f"{len(servers)} are defined ({', '.join(servers)})" if servers else "none is defined"
            self.add(path, f"a Prometheus query needs server: naming one ({which} under prometheus:)")

    def needs_check(self, path: FieldPath, check: str | None) -> None:
        if check == "fanout" and self.pb.realtime is None and self.complete("realtime"):
            self.add(path, "the fanout check needs a realtime section")
        if check == "traffic" and self.pb.load_balancer is None and self.complete("load_balancer"):
            self.add(path, "the traffic check needs a load_balancer section")

    def actions(self) -> None:
        pb = self.pb
        replicas = {r.name: r for _, r in self.items("replicas")}
        for i, action in self.items("actions"):
            here = ("actions", i)
            if isinstance(action, SelectorRemoval):
                if pb.load_balancer is None and self.complete("load_balancer"):
                    self.add((*here, "kind"), "selector_removal needs a load_balancer section")
                removed = []
                for j, name in enumerate(action.remove_replicas):
                    if not self.ref((*here, "remove_replicas", j), "replicas", name) or name not in replicas:
                        continue
                    if replicas[name].role != "candidate":
                        self.add(
                            (*here, "remove_replicas", j),
                            f"{name!r} has role {replicas[name].role}: "
                            "only candidate replicas can be removed",
                        )
                    removed.append(replicas[name])
                self.kept_candidates(here, action)
                for j, fact in enumerate(action.recheck_facts):
                    self.ref((*here, "recheck_facts", j), "facts", fact)
                after = action.selector_after
                if (
                    after is not None
                    and self.complete("replicas")
                    and any(r.labels for r in replicas.values())
                ):
                    still = [r.name for r in removed if _labels_match(after, r.labels)]
                    if still:
                        self.add(
                            (*here, "selector_after"), f"still matches removed replicas: {', '.join(still)}"
                        )
                    if not any(
                        _labels_match(after, r.labels) for r in replicas.values() if r.role == "stable"
                    ):
                        self.add((*here, "selector_after"), "matches no stable replica: nothing would serve")
            elif isinstance(action, Redeploy):
                self.ref((*here, "last_known_good"), "facts", action.last_known_good)
                for j, fact in enumerate(action.record_facts):
                    self.ref((*here, "record_facts", j), "facts", fact)
            elif isinstance(action, CommandAction):
                for j, probe in enumerate(action.watch):
                    self.ref((*here, "watch", j), "probes", probe)

    def kept_candidates(self, here: FieldPath, action: SelectorRemoval) -> None:
        """`keep_replicas` names replicas the action does not also remove."""
        for j, name in enumerate(action.keep_replicas):
            path = (*here, "keep_replicas", j)
            if self.ref(path, "replicas", name) and name in action.remove_replicas:
                self.add(path, f"{name!r} is also in remove_replicas")

    def steps(self) -> None:
        colls = {
            "fact": "facts",
            "gate": "gates",
            "probe": "probes",
            "action": "actions",
            "guardrail": "guardrails",
        }
        for i, step in self.items("steps"):
            for j, item in enumerate(step.do):
                here = ("steps", i, "do", j)
                kind, value = item.ref
                if kind in colls:
                    self.ref((*here, kind), colls[kind], value)
                if kind == "check":
                    self.needs_check((*here, "check"), value)
                for k, name in enumerate(item.breach_of):
                    self.ref((*here, "breach_of", k), "guardrails", name)

    def evidence(self) -> None:
        rollbacks = [a.name for _, a in self.items("actions") if isinstance(a, SelectorRemoval | Redeploy)]
        entries: list[tuple[str, int, ChecklistItem | ExitCriterion]] = [
            *(("checklist", i, c) for i, c in self.items("checklist")),
            *(("exit_criteria", i, e) for i, e in self.items("exit_criteria")),
        ]
        for coll, i, entry in entries:
            here = (coll, i)
            self.ref((*here, "gate"), "gates", entry.gate)
            self.ref((*here, "fact"), "facts", entry.fact)
            resolved = self.ref((*here, "action"), "actions", entry.action)
            known_kinds = self.complete("actions")
            if resolved and entry.action is not None and known_kinds and entry.action not in rollbacks:
                self.add(
                    (*here, "action"), f"{entry.action!r} is not a rollback (selector_removal or redeploy)"
                )
            rule = entry.rule
            if rule in ("gate_passed", "gate_passed_after_rollback") and entry.gate is None:
                self.add((*here, "gate"), f"rule {rule} needs gate: which gate must pass")
            if rule == "facts_agree" and entry.fact is None:
                self.add((*here, "fact"), "rule facts_agree needs fact: which fact must agree")
            if rule.startswith("fanout_") and self.pb.realtime is None and self.complete("realtime"):
                self.add((*here, "rule"), f"rule {rule} needs a realtime section")
            if rule == "rollback_within_rto" and not rollbacks and known_kinds:
                self.add(
                    (*here, "rule"), "rule rollback_within_rto needs a selector_removal or redeploy action"
                )
            if rule == "all_checklist" and coll == "checklist":
                self.add((*here, "rule"), "rule all_checklist only applies to exit_criteria")


_DEFAULT_NAMES = {"prometheus": "prometheus"}  # sections whose entries have a default name


def _raw_names(raw: Any, default: str | None = None) -> list[str | None]:
    if not isinstance(raw, list):
        return []
    return [
        (item.get("name", default) if isinstance(item.get("name", default), str) else None)
        if isinstance(item, dict)
        else None
        for item in raw
    ]


def _partial_playbook(data: Mapping[str, Any]) -> tuple[Playbook, set[str]]:
    """Validate section by section (entry by entry for lists), keeping what is valid, so that the
    cross-reference pass can run even when the schema pass found errors. Returns the unvalidated
    Playbook (invalid entries are None) and the names of sections that were not fully valid."""
    values: dict[str, Any] = {}
    incomplete: set[str] = set()
    for name, info in Playbook.model_fields.items():
        annotation = info.annotation
        is_list = typing.get_origin(annotation) is list
        if name not in data:
            if info.is_required():
                incomplete.add(name)
                values[name] = [] if is_list else None
            continue
        raw = data[name]
        if is_list and isinstance(raw, list):
            adapter = _adapter(typing.get_args(annotation)[0])
            items = []
            for item in raw:
                try:
                    items.append(adapter.validate_python(item))
                except (ValidationError, ValueError, TypeError):
                    items.append(None)
                    incomplete.add(name)
            values[name] = items
            continue
        try:
            values[name] = _adapter(annotation).validate_python(raw)  # type: ignore[arg-type]
        except (ValidationError, ValueError, TypeError):
            incomplete.add(name)
            values[name] = [] if is_list else None
    return Playbook.model_construct(**values), incomplete


@functools.cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


# --- public API -----------------------------------------------------------------------------------


def load_playbook_text(
    text: str, filename: str = "<string>", warnings: list[LocatedError] | None = None
) -> Playbook:
    """Parse and validate a playbook; raise PlaybookError listing every problem found. `warnings`, when
    given, receives what would only fail when it runs (readiness_warnings), located."""
    doc = _compose(text, filename)
    errors = [LocatedError(filename, *pos, format_path(path), msg) for path, pos, msg in doc.errors]
    playbook: Playbook | None = None
    try:
        playbook = Playbook.model_validate(doc.data)
        check = _CrossCheck(playbook)
    except ValidationError as exc:
        errors += _schema_errors(doc, exc, filename)
        partial, incomplete = _partial_playbook(doc.data)
        check = _CrossCheck(partial, doc.data, incomplete)
    for path, message in check.run():
        line, column = _position(doc, path, prefer_key=False)
        errors.append(LocatedError(filename, line, column, format_path(path), message))
    if errors:
        errors.sort(key=lambda e: (e.line or 0, e.column or 0))
        raise PlaybookError(errors)
    assert playbook is not None
    if warnings is not None:
        for path, message in readiness_warnings(playbook):
            line, column = _position(doc, path, prefer_key=False)
            warnings.append(LocatedError(filename, line, column, format_path(path), message, warning=True))
    return playbook


def readiness_warnings(pb: Playbook) -> list[tuple[FieldPath, str]]:
    """What validates but would fail only at the moment it runs: a local traffic-control program that is
    not on PATH here (found at rollback time, the worst moment), or `python -m rollback_tui…`, which works
    only if the python PATH finds has rollback-tui installed."""
    found: list[tuple[FieldPath, str]] = []
    lb = pb.load_balancer
    if lb is None or lb.traffic_control.driver != "command":
        return found
    for what in ("remove", "restore", "read"):
        spec = getattr(lb.traffic_control, what)
        if spec is None or spec.argv is None or spec.where != "local":
            continue
        problem = _program_problem(spec.argv, what)
        if problem:
            found.append((("load_balancer", "traffic_control", what, "argv", 0), problem))
    return found


def _program_problem(argv: list[str], what: str) -> str | None:
    program = argv[0]
    if ENV_REF.search(program) or program == "rollback-tui":  # rollback-tui: always this installation
        return None
    if "/" in program:
        if not os.access(program, os.X_OK):
            return f"{program} is not an executable file here: the {what} command would fail when it runs"
    elif shutil.which(program) is None:
        return f"{program!r} is not on PATH here: the {what} command would fail when it runs"
    module = argv[2] if len(argv) > 2 and argv[1] == "-m" else ""
    if Path(program).name.startswith("python") and module.startswith("rollback_tui"):
        return (
            f"{program} -m {module} needs rollback-tui installed in whichever {program} PATH finds; "
            "use the console script instead (rollback-tui lb …), which runs this installation"
        )
    return None


def load_playbook(path: str | Path, warnings: list[LocatedError] | None = None) -> Playbook:
    """Read and validate a playbook file; raise PlaybookError (also for unreadable files)."""
    name = str(path)

    def fail(message: str) -> PlaybookError:
        return PlaybookError([LocatedError(name, None, None, "", message)])

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory, not a playbook file") from None
    except OSError as exc:
        raise fail(f"cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line, column = before.count(b"\n") + 1, exc.start - before.rfind(b"\n")
        message = f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise PlaybookError([LocatedError(name, line, column, "", message)]) from None
    return load_playbook_text(text, name, warnings)


def playbook_schema() -> dict[str, Any]:
    """The playbook JSON Schema, for editor completion (yaml-language-server)."""
    schema = Playbook.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rollback-tui playbook",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _bundled_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    return [here.parents[3] / "playbooks", here.parents[1] / "_data" / "playbooks"]


def bundled_playbook_names() -> list[str]:
    names = {p.stem for d in _bundled_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def bundled_playbook(name: str) -> Path:
    """The shipped playbook called `name` ("demo" → playbooks/demo.yaml, in the repo or installed)."""
    stem = name.removesuffix(".yaml")
    for directory in _bundled_dirs():
        candidate = directory / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    known = ", ".join(bundled_playbook_names()) or "none found"
    raise PlaybookError(
        [LocatedError(name, None, None, "", f"no bundled playbook named {stem!r} (known: {known})")]
    )


def referenced_env_vars(pb: Playbook) -> set[str]:
    """Every `${VAR}` the playbook references anywhere (their values are secrets to redact)."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, str):
            found.update(ENV_REF.findall(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(key)
                visit(item)
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)

    visit(pb.model_dump())
    return found
