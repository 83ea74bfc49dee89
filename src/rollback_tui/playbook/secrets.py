"""Where secrets come from, in one place: `${VAR}` references, the names that look secret, and the error a
reference to an unset variable raises.

A playbook never holds a secret, only `${VAR}` references resolved from the operator's environment at the
moment of use; the validator refuses a secret-looking key with a literal value, and the redactor masks the
value of every referenced or secret-looking variable. Both read the vocabulary below, so a name the
validator calls secret is one the redactor masks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ENV_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")

# Words that make a key, header or variable name secret-looking. `auth` counts only as a word of its own
# (AUTH, BASIC_AUTH, auth-token), so GIT_AUTHOR_NAME is not a secret.
_SECRET_NAME = re.compile(
    r"(?i)(token|secret|password|passwd|api[_-]?key|authorization|cookie|credential|private"
    r"|(?:^|[^a-z])auth(?:$|[^a-z]))"
)
_NOT_SECRET = re.compile(r"(?i)(_SOCK|_PATH|_FILE|_DIR|_URL_BASE)$")


def looks_secret(name: str) -> bool:
    """A key, header or environment variable name whose value should never be written down."""
    return bool(_SECRET_NAME.search(name)) and not _NOT_SECRET.search(name)


def is_env_ref(value: str) -> bool:
    return ENV_REF.fullmatch(value.strip()) is not None


class MissingVariable(KeyError):
    """A `${VAR}` whose variable is not set in the operator's environment: nothing could be observed or run
    with it (the probe, fact or gate that needs it is *unknown*, not failed)."""

    def __init__(self, name: str, what: str = "") -> None:
        super().__init__(name)
        self.name = name
        self.what = what

    def __str__(self) -> str:
        needed = f" (needed by {self.what})" if self.what else ""
        return f"environment variable {self.name} is not set{needed}"


def resolve(value: str, environ: Mapping[str, str], what: str = "") -> tuple[str, list[str]]:
    """`value` with every `${VAR}` replaced from `environ`, and the values used (to redact them).

    Raises MissingVariable naming the first unset variable and what needed it.
    """
    used: list[str] = []

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise MissingVariable(name, what)
        used.append(environ[name])
        return environ[name]

    return ENV_REF.sub(sub, value), used
