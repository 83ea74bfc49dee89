"""Secret redaction, applied to every journal line, screen string and export.

Two layers: exact values of secrets the session knows about (environment variables that the
playbook references as `${VAR}`, or that look like secrets) and the forms they travel in (JSON-escaped,
URL-encoded, base64, hex), and patterns for credentials that appear in URLs, headers and key=value text.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

from rollback_tui.playbook.secrets import looks_secret

MASK = "***"
ENCODED_MIN = 6  # secrets shorter than this keep only their verbatim forms: their encodings would be noise

_URLSAFE = str.maketrans("+/", "-_")


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
# frame, a health sample) skips the per-pattern checks after ~10 substring scans instead of ~25. Longer
# anchors with a rare letter (`authorization`, not `auth`) are cheaper to rule out on long lines.
_ANCHORS: tuple[str, ...] = (
    "://",
    "key",
    "token",
    "secret",
    "passw",
    "sig",
    "authorization",
    "cookie",
    "basic ",
    "bearer ",
)
_ANCHORS += tuple(
    sorted({t for triggers, _, _ in _PATTERNS for t in triggers if not any(a in t for a in _ANCHORS)})
)  # a trigger added later without an anchor becomes its own anchor, so the fast path never hides it


# Characters roughly from commonest to rarest in journal lines (compact JSON); unlisted ones count as rarest.
_COMMON_FIRST = '"0123456789.,:etaoinsrhldcu-_mpfgb[]{}wyvk /=xjqz'
_RANK = {c: i for i, c in enumerate(_COMMON_FIRST)}
LONG_TEXT = 2048  # from this length on, patterns are searched from their rarest character
_CANDIDATES = 8  # occurrences of that character tried one by one before a plain substring search


def encoded_forms(secret: str) -> set[str]:
    """The ways `secret` is written when it is URL-encoded, base64- or hex-encoded (its value included).

    base64 of a secret inside a longer encoded string depends on the secret's byte offset mod 3: for each
    offset the needle is the run of characters made of the secret's bits alone, which every such string
    holds whatever surrounds the secret. The standalone encoding is a needle too (without its `=` padding,
    which carries no bits), so a secret encoded on its own is masked whole. Each base64 form also in its
    URL-safe alphabet.
    """
    try:
        raw = secret.encode("utf-8", "surrogateescape")  # an env value's undecodable bytes, as they were
    except UnicodeEncodeError:
        raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, quote(raw, safe=""), quote(raw), quote_plus(raw), raw.hex(), raw.hex().upper()}
    b64 = {base64.b64encode(raw).decode().rstrip("=")}
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw).decode()
        # Character i holds bits 6i..6i+5; the secret's bits run from 8*offset to 8*(offset + len(raw)).
        b64.add(encoded[(8 * offset + 5) // 6 : 8 * (offset + len(raw)) // 6])
    return forms | b64 | {form.translate(_URLSAFE) for form in b64}


def _finder(pattern: str) -> tuple[str, str, int]:
    """(pattern, its rarest character, that character's index in it)."""
    rare = max(pattern, key=lambda c: _RANK.get(c, len(_RANK)))
    return pattern, rare, pattern.index(rare)


_ANCHOR_FINDERS = [_finder(anchor) for anchor in _ANCHORS]


def _present(text: str, pattern: str, rare: str, at: int) -> bool:
    """`pattern in text`, faster on long text: every match has `rare` at offset `at`, and a one-character
    search runs at memchr speed, so a pattern whose rare character is absent or seldom there costs a
    fraction of a substring search. Exact: each occurrence of `rare` is checked, in order."""
    find = text.find
    pos = find(rare, at)
    for _ in range(_CANDIDATES):
        if pos < 0:
            return False
        if text.startswith(pattern, pos - at):
            return True
        pos = find(rare, pos + 1)
    # Frequent here: no match starts before the current candidate, so search on from there.
    return pos >= 0 and find(pattern, pos - at) >= 0


class Redactor:
    """Masks known secret values and credential-shaped text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: list[str] = []
        self._value_finders: list[tuple[str, str, int]] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        values = set(self._values)
        for secret in secrets:
            if secret and len(secret) >= 4:
                values.add(secret)
                escaped = json.dumps(secret)[1:-1]
                if escaped != secret:
                    values.add(escaped)
                if len(secret) >= ENCODED_MIN:
                    # More literal needles, found by the same exact-value search (line and block alike).
                    values |= encoded_forms(secret)
        # Longest first so a secret containing another (and an encoding, its shorter runs) is masked whole.
        self._values = sorted(values, key=len, reverse=True)
        self._value_finders = [_finder(value) for value in self._values]

    @classmethod
    def from_env(cls, referenced: Iterable[str] = (), env: Mapping[str, str] | None = None) -> Redactor:
        """Secrets are env vars the playbook references plus any whose name looks secret."""
        env = os.environ if env is None else env
        names = set(referenced) | {k for k in env if looks_secret(k)}
        return cls(env[name] for name in names if name in env)

    def __call__(self, text: str) -> str:
        return self._long(text) if len(text) >= LONG_TEXT else self._short(text)

    def _short(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        lowered = text.lower()
        for anchor in _ANCHORS:
            if anchor in lowered:
                break
        else:
            return text
        return self._patterns(text, lowered)

    def _long(self, text: str) -> str:
        """`_short` for long text (a fanout tap batch is tens of KB): the same result, with each secret
        and anchor searched from its rarest character (see `_present`)."""
        for value, rare, at in self._value_finders:
            if _present(text, value, rare, at):
                text = text.replace(value, MASK)
        lowered = text.lower()
        for anchor, rare, at in _ANCHOR_FINDERS:
            if _present(lowered, anchor, rare, at):
                break
        else:
            return text
        return self._patterns(text, lowered)

    @staticmethod
    def _patterns(text: str, lowered: str) -> str:
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

    def _walk(self, node: object) -> object:
        if isinstance(node, str):
            return self(node)
        if isinstance(node, list):
            return [self._walk(item) for item in node]
        if isinstance(node, dict):
            return {key: self._walk(value) for key, value in node.items()}
        return node
