"""Secret redaction, applied to every journal line, screen string and export.

Two layers: exact values of secrets the session knows about (environment variables that the
playbook references as `${VAR}`, or that look like secrets), and patterns for credentials that
appear in URLs, headers and key=value text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence

from pydantic_core import to_json

MASK = "***"

_SECRET_NAME = re.compile(r"(?i)(token|secret|password|passwd|api[_-]?key|auth|cookie|credential|private)")

_NOT_SECRET = re.compile(r"(_SOCK|_PATH|_FILE|_DIR|_URL_BASE)$")

_KV_TRIGGERS = ("token=", "key=", "secret=", "password=", "passwd=", "sig=", "signature=")

# (cheap lowercase substrings that must be present, pattern, replacement). The triggers keep the
# common case — a line with nothing secret-shaped — to a few substring scans instead of regex runs.
_PATTERNS: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    # scheme://user:password@host → scheme://user:***@host
    (
        ("://",),
        re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/\s:@\"']*:)[^@\s/\"']+(?=@)", re.I),
        rf"\g<keep>{MASK}",
    ),
    # ?token=…&api_key=… in URLs and key=value text
    (
        _KV_TRIGGERS,
        re.compile(
            r"(?P<keep>(?:[?&;\s\"']|^)(?:access_token|refresh_token|token|api_key|apikey|secret|"
            r"password|passwd|sig|signature|client_secret)=)[^&\s\"'#;]+",
            re.I,
        ),
        rf"\g<keep>{MASK}",
    ),
    # Authorization: Bearer xyz / Basic xyz
    (
        ("bearer ", "basic ", "token "),
        re.compile(r"(?P<keep>\b(?:Bearer|Basic|Token)\s+)[A-Za-z0-9._~+/=-]{6,}", re.I),
        rf"\g<keep>{MASK}",
    ),
    # "password": "…", "api_key": "…" inside JSON
    (
        ('password"', 'passwd"', 'secret"', 'token"', 'key"', 'authorization"', 'cookie"'),
        re.compile(
            r"(?P<keep>\"(?:[a-z0-9_-]*(?:password|passwd|secret|token|api[_-]?key|authorization|cookie))\"\s*:\s*\")"
            r"(?:[^\"\\]|\\.)+(?=\")",
            re.I,
        ),
        rf"\g<keep>{MASK}",
    ),
    # KEY=value for secret-looking env names in command lines and output
    (
        # the secret word may sit anywhere in the name (GITHUB_TOKEN_RO=…), so trigger on the word alone
        ("token", "secret", "passw", "api_key", "apikey"),
        re.compile(
            r"(?P<keep>\b[A-Z0-9_]*?(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY)[A-Z0-9_]*=)[^\s\"']+"
        ),
        rf"\g<keep>{MASK}",
    ),
]


# Every trigger above contains one of these; a line that holds none of them (the common case: a fanout
# frame, a health sample) skips the per-pattern checks after ~10 substring scans instead of ~25.
_ANCHORS = ("://", "key", "token", "secret", "passw", "sig", "auth", "cookie", "basic ", "bearer ")
_ANCHORS += tuple(
    sorted({t for triggers, _, _ in _PATTERNS for t in triggers if not any(a in t for a in _ANCHORS)})
)  # a trigger added later without an anchor becomes its own anchor, so the fast path never hides it


# Separators between the tokens of an array of scalars, and the characters of its number and literal tokens.
_TOKEN_SEPARATORS = frozenset('",[]')
_NUMBER_CHARS = frozenset("0123456789.+-eE")
_LITERALS = ("null", "true", "false")


def _within_one_token(pattern: str) -> bool:
    """True if every occurrence of `pattern` in JSON arrays of scalars lies inside one string's content:
    it holds no token separator, and it cannot sit inside a number or a literal."""
    if any(c in _TOKEN_SEPARATORS for c in pattern) or all(c in _NUMBER_CHARS for c in pattern):
        return False
    return not any(pattern.lower() in literal for literal in _LITERALS)


_ANCHORS_WITHIN_ONE_TOKEN = all(_within_one_token(anchor) for anchor in _ANCHORS)


class Redactor:
    """Masks known secret values and credential-shaped text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self._rows_by_string = _ANCHORS_WITHIN_ONE_TOKEN
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        values = set(self._values)
        for secret in secrets:
            if secret and len(secret) >= 4:
                values.add(secret)
                escaped = json.dumps(secret)[1:-1]
                if escaped != secret:
                    values.add(escaped)
        # Longest first so a secret containing another is masked whole.
        self._values = sorted(values, key=len, reverse=True)
        self._rows_by_string = _ANCHORS_WITHIN_ONE_TOKEN and all(_within_one_token(v) for v in self._values)
        self._clean_strings: set[str] = set()  # a new secret may be in any of them

    @classmethod
    def from_env(cls, referenced: Iterable[str] = (), env: Mapping[str, str] | None = None) -> Redactor:
        """Secrets are env vars the playbook references plus any whose name looks secret."""
        env = os.environ if env is None else env
        names = set(referenced) | {k for k in env if _SECRET_NAME.search(k) and not _NOT_SECRET.search(k)}
        return cls(env[name] for name in names if name in env)

    def is_clean(self, text: str) -> bool:
        """True if `self(text)` returns `text` untouched without running a pattern: no known secret value
        in it and no anchor in its lowercase form."""
        for value in self._values:
            if value in text:
                return False
        lowered = text.lower()
        return not any(anchor in lowered for anchor in _ANCHORS)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        lowered = text.lower()
        for anchor in _ANCHORS:
            if anchor in lowered:
                break
        else:
            return text
        for triggers, pattern, repl in _PATTERNS:
            if any(t in lowered for t in triggers):
                text = pattern.sub(repl, text)
        return text

    def json_line(self, line: str) -> str:
        """Redact one serialized JSON document and keep it valid JSON.

        The fast path masks the text as is; if that broke the JSON (a secret overlapping an escape
        sequence, say), the document is parsed and every string in it is masked one by one.
        """
        out = self(line)
        if out == line:
            return line
        try:
            json.loads(out)
            return out
        except ValueError:
            return json.dumps(self._walk(json.loads(line)), ensure_ascii=False, separators=(",", ":"))

    def json_rows_line(self, line: bytes, rows: Sequence[Sequence[object]]) -> bytes:
        """`json_line` for a serialized (UTF-8) document whose last member is `"rows":[…]`, arrays of
        scalars (a fanout tap batch): the same result, usually found by scanning only the distinct
        strings of each column instead of the whole line.

        Why that is enough: every secret value and anchor lies inside one string token wherever it occurs
        in such rows (checked by `_within_one_token`, else this takes the full path), every string token
        of the rows is also a token of the JSON dump of the columns' distinct strings, escaped the same
        way, and numbers, null and booleans can hold no pattern. So if neither that dump nor the text
        before the rows holds a secret or an anchor, neither does the line, and `json_line` would return
        it unchanged. Any other case (a pattern found, a cell that is not a scalar) takes `json_line`.
        """
        if self._rows_by_string:
            start = line.find(b'"rows":[')  # a key: never inside a string value, where `"` is escaped
            if start >= 0 and self.is_clean(line[: start + 8].decode()):
                columns = _string_columns(rows)
                if columns is not None and self._strings_clean(columns):
                    return line
        return self.json_line(line.decode()).encode()

    def _strings_clean(self, columns: list[tuple[set[str], bool]]) -> bool:
        """No secret or anchor in the JSON form of any of these strings. Strings of repeating columns
        that pass are remembered (bounded), so a batch rescans only its new ones (mostly event ids)."""
        known = self._clean_strings
        fresh = [strings - known if known else strings for strings, _ in columns]
        if not self.is_clean(to_json([s for strings in fresh for s in strings]).decode()):
            return False
        if len(known) > CLEAN_STRINGS_KEPT:
            known.clear()
        for strings, (_, repeats) in zip(fresh, columns, strict=True):
            if repeats:
                known.update(strings)
        return True

    def _walk(self, node: object) -> object:
        if isinstance(node, str):
            return self(node)
        if isinstance(node, list):
            return [self._walk(item) for item in node]
        if isinstance(node, dict):
            return {key: self._walk(value) for key, value in node.items()}
        return node


_SCALARS = frozenset({int, float, bool, type(None)})
CLEAN_STRINGS_KEPT = 4096  # strings known to need no masking (channel names, replicas, thread ids)


def _string_columns(rows: Sequence[Sequence[object]]) -> list[tuple[set[str], bool]] | None:
    """(distinct strings, whether they repeat) of each column of strings; None if a cell is neither a
    string nor a scalar, or the rows differ in length."""
    out: list[tuple[set[str], bool]] = []
    try:
        for column in zip(*rows, strict=True):
            distinct = set(column)
            kinds = set(map(type, distinct))
            if kinds == {str}:
                out.append((distinct, len(distinct) < len(column)))  # type: ignore[arg-type]
            elif not kinds <= _SCALARS:
                return None
    except (TypeError, ValueError):  # an unhashable cell; rows of different lengths
        return None
    return out
