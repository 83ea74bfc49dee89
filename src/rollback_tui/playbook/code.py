"""Which argv items a command runs as code: one table, read by both rules that depend on it.

* A `{placeholder}` value (a commit, a flag value) is never filled into code, where `abc$(touch X)` runs.
* A `${VAR}` in code stays as text only in a POSIX shell's script that the shell reads with the
  environment we give the command (`sh -c SCRIPT`, also behind `env`, `nice`, `timeout`, `xargs` …): the
  shell expands it as data. In any other code (`python3 -c`, `node -e`, the remote command of `ssh`, a
  script behind `sudo`) the value would be spliced into the code, so it is refused.

`INTERPRETERS` says, per program, how its code arguments are found; `WRAPPERS`, per program that runs
another one, where that one starts and whether it keeps our environment. `code_arguments` follows the
wrappers from argv[0] to the program, then looks at every other item too: a shell or an interpreter behind
a program this table does not know (`kubectl exec … --`, `docker run img`) is still found, and its code
never counts as reading our environment.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rollback_tui.playbook.secrets import ENV_REF

# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    """A program's options, as far as finding its code takes (getopt-like: `-lne`, `-e CODE`, `--eval=C`)."""

    values: frozenset[str] = frozenset()  # take a value: attached (-Fx, --file=x) or the next item
    attached: dict[str, str] = field(default_factory=dict)  # option → regex of what it takes attached only
    code: frozenset[str] = frozenset()  # options whose value is code
    last: frozenset[str] = frozenset()  # no more options after these (python -c CODE, -m MOD)
    clusters: bool = True  # -lne is -l -n -e (node has no clusters: -pe is an option of its own)
    plus: bool = False  # +o / +O are options too (POSIX shells)
    permute: bool = False  # options may follow operands (su root -c …)


Seen = list[tuple[str, int | None]]  # (option, index of the item holding its value)


def _parse(argv: Sequence[str], i: int, opts: Options) -> tuple[Seen, int]:
    """The options from argv[i] on, and the index of the first operand (len(argv) when none)."""
    seen: Seen = []
    first: int | None = None
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return seen, first if first is not None else i + 1
        if len(arg) < 2 or (arg[0] != "-" and not (opts.plus and arg[0] == "+")):
            if not opts.permute:
                return seen, i
            first = i if first is None else first
            i += 1
            continue
        i += 1
        if arg.startswith("--") or not opts.clusters:
            name, eq, _ = arg.partition("=")
            if eq:
                seen.append((name, i - 1))
            elif name in opts.values:
                seen.append((name, i if i < len(argv) else None))
                i += 1
            else:
                seen.append((name, None))
        else:
            i = _cluster(argv, i, opts, seen)
        if seen and seen[-1][0] in opts.last:
            break
    return seen, first if first is not None else i


def _cluster(argv: Sequence[str], i: int, opts: Options, seen: Seen) -> int:
    """Read the short options of argv[i - 1], `-lne`; returns the index after what they took."""
    arg, k = argv[i - 1], 1
    while k < len(arg):
        name, k = arg[0] + arg[k], k + 1
        if name in opts.values:
            if k < len(arg):
                seen.append((name, i - 1))  # -Fx: the rest of the cluster
            else:
                seen.append((name, i if i < len(argv) else None))
                i += 1
            return i
        if name in opts.attached:
            taken = re.match(opts.attached[name], arg[k:])
            length = len(taken.group()) if taken else 0
            seen.append((name, i - 1 if length else None))
            k += length
            continue
        seen.append((name, None))
    return i


def _values(seen: Seen, names: frozenset[str]) -> list[int]:
    return [index for name, index in seen if name in names and index is not None]


# ------------------------------------------------------------------------------------------ interpreters

Finder = Callable[[Sequence[str], int], list[int]]  # (argv, index after the program) → code indices


@dataclass(frozen=True)
class Interpreter:
    """A program that runs an argument as code, and how to hand it a value as data instead."""

    find: Finder
    language: str
    as_data: str  # the form that passes a value (%s) as data, for the refusal messages
    from_env: str | None  # how its code reads a variable (%s) from its environment, if it can
    expands_env: bool = False  # a POSIX shell: `${VAR}` in its code is expanded from its environment
    # Behind a program this table does not know, an item right after an option may be that option's
    # value rather than a program: `rsync -e ssh` names ssh, it runs nothing after it.
    after_option: bool = True
    # Found behind a program this table does not know too (`kubectl exec … -- sh -c`); not for names that
    # are everyday words there (`gh run watch ID`, `npm run script`).
    anywhere: bool = True


def _by_options(opts: Options, operand: Callable[[set[str]], bool] | None = None) -> Finder:
    """Code is the value of a code option, and the first operand when `operand(options seen)` says so."""

    def find(argv: Sequence[str], i: int) -> list[int]:
        seen, first = _parse(argv, i, opts)
        code = _values(seen, opts.code)
        if operand is not None and first < len(argv) and operand({name for name, _ in seen}):
            code.append(first)
        return code

    return find


_SHELL = Options(values=frozenset({"-o", "-O", "+o", "+O", "--rcfile", "--init-file"}), plus=True)


def _shell(argv: Sequence[str], i: int) -> list[int]:
    """`sh [options] -c SCRIPT [name [arg…]]`: SCRIPT is the first operand once an option cluster has c."""
    seen, first = _parse(argv, i, _SHELL)
    if first < len(argv) and argv[first] == "-":  # `sh -c - SCRIPT`: a lone - ends the options
        first += 1
    return [first] if first < len(argv) and any(name == "-c" for name, _ in seen) else []


_FISH = Options(
    values=frozenset({"-c", "--command", "-C", "--init-command", "-d", "--debug", "-o", "--debug-output"})
    | {"-f", "--features", "-p", "--profile", "--profile-startup"},
    code=frozenset({"-c", "--command", "-C", "--init-command"}),
)
_PYTHON = Options(
    values=frozenset({"-c", "-m", "-W", "-X", "--check-hash-based-pycs"}),
    code=frozenset({"-c"}),
    last=frozenset({"-c", "-m"}),
)
_NODE_CODE = frozenset({"-e", "--eval", "-p", "--print", "-pe"})
_NODE = Options(
    values=_NODE_CODE
    | {"-r", "--require", "--import", "--loader", "--experimental-loader", "-C", "--conditions"}
    | {"--input-type", "--title", "--env-file", "--experimental-default-type"},
    code=_NODE_CODE,
    clusters=False,
)
_PERL = Options(
    values=frozenset({"-e", "-E", "-I"}),
    attached={"-l": "[0-7]*", "-0": "x[0-9a-fA-F]+|[0-7]*", "-C": "[0-9IOESioDALa]*"}
    | {name: ".*" for name in ("-i", "-M", "-m", "-x", "-d", "-D", "-F", "-V")},
    code=frozenset({"-e", "-E", "-M", "-m"}),  # -M'Mod;system(…)' is a `use` statement: code
)
_RUBY = Options(
    values=frozenset({"-e", "-r", "-I", "-C", "-E", "--encoding", "--external-encoding"})
    | {"--internal-encoding", "--enable", "--disable"},
    attached={"-0": "[0-7]*", "-T": "[0-9]*", "-W": ":.*|[0-9]*", "-K": "."}
    | {name: ".*" for name in ("-x", "-F", "-i")},
    code=frozenset({"-e"}),
)
_PHP_CODE = frozenset({"-r", "-B", "-R", "-E", "--run", "--process-begin", "--process-code", "--process-end"})
_PHP = Options(
    values=_PHP_CODE
    | {"-c", "-d", "-f", "-F", "-S", "-t", "-z", "--php-ini", "--define", "--file", "--process-file"}
    | {"--server", "--docroot", "--zend-extension", "--rf", "--rfunction", "--rc", "--rclass", "--re"}
    | {"--rextension", "--rz", "--rzendextension", "--ri", "--rextinfo"},
    code=_PHP_CODE,
)
_OSASCRIPT = Options(values=frozenset({"-e", "-l", "-s"}), code=frozenset({"-e"}))
_AWK_PROGRAM_GIVEN = frozenset({"-f", "--file", "-E", "--exec", "-e", "--source"})
_AWK = Options(
    values=_AWK_PROGRAM_GIVEN
    | {"-F", "-v", "-W", "-i", "-l", "-Z", "--field-separator", "--assign", "--include", "--load"},
    attached={name: ".*" for name in ("-d", "-D", "-L", "-o", "-p")},
    code=frozenset({"-e", "--source"}),
    last=frozenset({"-E", "--exec"}),
)
_SU = Options(
    values=frozenset({"-c", "--command", "--session-command", "-s", "--shell", "-g", "--group", "-G"})
    | {"--supp-group", "-w", "--whitelist-environment"},
    code=frozenset({"-c", "--command", "--session-command"}),
    permute=True,
)
_DENO_GLOBAL = Options(values=frozenset({"-L", "--log-level"}))
_DENO = Options(
    values=frozenset({"--ext", "--import-map", "-c", "--config", "--cert", "--location", "--seed"})
    | {"--eval", "--eval-file"},
    code=frozenset({"--eval"}),
)


def _deno(argv: Sequence[str], i: int) -> list[int]:
    """`deno eval [options] CODE [arg…]`, `deno repl --eval CODE`."""
    _, sub = _parse(argv, i, _DENO_GLOBAL)
    if sub >= len(argv) or argv[sub] not in ("eval", "repl"):
        return []
    seen, first = _parse(argv, sub + 1, _DENO)
    code = _values(seen, _DENO.code)
    return [*code, first] if argv[sub] == "eval" and first < len(argv) else code


# PowerShell: -Name or --Name, any case, any prefix of the name at least as long as its shortest form.
_PWSH_VALUES = (
    ("executionpolicy", "ex"), ("ep", "ep"), ("workingdirectory", "wo"), ("wd", "wd"),
    ("outputformat", "o"), ("of", "of"), ("inputformat", "in"), ("if", "if"),
    ("configurationname", "config"), ("settingsfile", "settings"), ("windowstyle", "w"),
    ("custompipename", "custompipename"), ("encodedarguments", "encodeda"), ("ea", "ea"),
    ("version", "v"), ("psconsolefile", "psconsolefile"),
)  # fmt: skip
_PWSH_ONE_CODE = (("commandwithargs", "commandw"), ("cwa", "cwa"), ("encodedcommand", "e"), ("ec", "ec"))


def _pwsh_is(key: str, names: Sequence[tuple[str, str]]) -> bool:
    return any(full.startswith(key) and len(key) >= len(shortest) for full, shortest in names)


def _powershell(default_command: bool) -> Finder:
    """`pwsh -Command …` runs every item after it as one command; `-CommandWithArgs CODE arg…` and
    `-EncodedCommand CODE` run one item. Without either, pwsh runs a file (`-File` is the default) and
    Windows PowerShell runs its operands as a command."""

    def find(argv: Sequence[str], i: int) -> list[int]:
        while i < len(argv):
            key = argv[i].lstrip("-").lower()
            if not argv[i].startswith("-") or not key:
                break
            if _pwsh_is(key, _PWSH_ONE_CODE):
                return [i + 1] if i + 1 < len(argv) else []
            if _pwsh_is(key, (("command", "c"),)):
                return list(range(i + 1, len(argv)))
            if _pwsh_is(key, (("file", "f"),)):
                return []
            i += 2 if _pwsh_is(key, _PWSH_VALUES) else 1
        return list(range(i, len(argv))) if default_command else []

    return find


_SSH = Options(values=frozenset("-" + c for c in "BbcDEeFIiJLlmOoPpQRSWw"))
_SSH_COMMAND_OPTION = re.compile(r"(?i)(proxy|local|remote|knownhosts)command")


def _ssh(argv: Sequence[str], i: int) -> list[int]:
    """`ssh [options] HOST [options] [command…]`: every word after the host is joined into one string
    that the remote shell parses; `-o ProxyCommand=…` and its kin are run by a local shell."""
    seen, host = _parse(argv, i, _SSH)
    command: list[int] = []
    if host < len(argv):
        more, start = _parse(argv, host + 1, _SSH)  # OpenSSH reads options after the host too
        seen += more
        command = list(range(start, len(argv)))
    options = [index for index in _values(seen, frozenset({"-o"})) if _SSH_COMMAND_OPTION.search(argv[index])]
    return options + command


_FLOCK = Options(values=frozenset({"-w", "--wait", "--timeout", "-E", "--conflict-exit-code"}))


def _flock(argv: Sequence[str], i: int) -> list[int]:
    """`flock [options] FILE -c COMMAND`: COMMAND goes to `sh -c` (flock stops at its first operand)."""
    _, lock = _parse(argv, i, _FLOCK)
    command = lock + 2
    return [command] if command < len(argv) and argv[lock + 1] in ("-c", "--command") else []


_WATCH = Options(
    values=frozenset({"-n", "--interval", "-q", "--equexit", "-s", "--shotsfile"}),
    attached={"-d": ".*"},
)


def _watch(argv: Sequence[str], i: int) -> list[int]:
    """`watch [options] COMMAND…` joins its operands into one string for `sh -c`; `watch -x` execs them."""
    seen, first = _parse(argv, i, _WATCH)
    if any(name in ("-x", "--exec") for name, _ in seen):
        return []
    return list(range(first, len(argv)))


_SCRIPT = Options(
    values=frozenset({"-c", "--command", "-E", "--echo", "-I", "--log-in", "-O", "--log-out", "-B"})
    | {"--log-io", "-T", "--log-timing", "-m", "--logging-format", "-o", "--output-limit"},
    attached={"-t": ".*"},
    code=frozenset({"-c", "--command"}),
    permute=True,
)


def _first_operand_unless(given: frozenset[str]) -> Callable[[set[str]], bool]:
    return lambda seen: not seen & given


_SH = Interpreter(_shell, "shell", '[sh, -c, \'deploy --commit "$1"\', sh, "%s"]', None, expands_env=True)
INTERPRETERS: dict[str, Interpreter] = {
    **{name: _SH for name in ("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash")},
    "fish": Interpreter(_by_options(_FISH), "fish", "[fish, -c, 'deploy --commit $argv[1]', \"%s\"]", "$%s"),
    "python": Interpreter(
        _by_options(_PYTHON), "Python", "[python3, -c, 'import sys; deploy(sys.argv[1])', \"%s\"]",
        'os.environ["%s"]',
    ),
    "node": Interpreter(
        _by_options(_NODE), "JavaScript", "[node, -e, 'deploy(process.argv[1])', \"%s\"]", "process.env.%s"
    ),
    "perl": Interpreter(_by_options(_PERL), "Perl", "[perl, -e, 'deploy($ARGV[0])', \"%s\"]", "$ENV{%s}"),
    "ruby": Interpreter(_by_options(_RUBY), "Ruby", "[ruby, -e, 'deploy(ARGV[0])', \"%s\"]", 'ENV["%s"]'),
    "php": Interpreter(
        _by_options(_PHP), "PHP", "[php, -r, 'deploy($argv[1]);', --, \"%s\"]", 'getenv("%s")'
    ),
    "deno": Interpreter(
        _deno, "JavaScript", "[deno, eval, 'deploy(Deno.args[0])', \"%s\"]", 'Deno.env.get("%s")'
    ),
    "pwsh": Interpreter(
        _powershell(False), "PowerShell", "[pwsh, -CommandWithArgs, 'deploy $args[0]', \"%s\"]", "$env:%s"
    ),
    "powershell": Interpreter(
        _powershell(True), "PowerShell", "[pwsh, -CommandWithArgs, 'deploy $args[0]', \"%s\"]", "$env:%s"
    ),
    "osascript": Interpreter(
        _by_options(_OSASCRIPT), "AppleScript",
        "[osascript, -e, 'on run argv', -e, 'deploy(item 1 of argv)', -e, 'end run', \"%s\"]",
        'system attribute "%s"',
    ),
    "awk": Interpreter(
        _by_options(_AWK, _first_operand_unless(_AWK_PROGRAM_GIVEN)), "awk",
        "[awk, 'BEGIN { deploy(ARGV[1]) }', \"%s\"]", 'ENVIRON["%s"]',
    ),
    "su": Interpreter(
        _by_options(_SU), "shell (su -c)",
        "[sudo, -u, deploy, sh, -c, 'deploy --commit \"$1\"', sh, \"%s\"]", None,
    ),
    # flock -c, watch and script -c hand their command string to a shell (script: the user's $SHELL, watch:
    # its operands joined): a ${VAR} there is refused rather than trusted to be expanded as data.
    "flock": Interpreter(
        _flock, "shell (flock -c)",
        "[flock, deploy.lock, sh, -c, 'deploy --commit \"$1\"', sh, \"%s\"]", None,
    ),
    "watch": Interpreter(
        _watch, "shell (watch joins its words for sh -c)", "[watch, -x, deploy, --commit, \"%s\"]", None,
        anywhere=False,
    ),
    "script": Interpreter(
        _by_options(_SCRIPT), "shell (script -c runs it with $SHELL)",
        "script -c takes one command string and no arguments: run it without script, "
        "[deploy, --commit, \"%s\"]", None, anywhere=False,
    ),
    # A shell builtin: seen only inside a script, where its words are parsed again as code.
    "eval": Interpreter(
        lambda argv, i: list(range(i, len(argv))), "shell (eval parses its words again)",
        "no eval: [sh, -c, 'deploy --commit \"$1\"', sh, \"%s\"]", None, anywhere=False,
    ),
    "ssh": Interpreter(
        _ssh, "remote shell",
        "ssh joins the words after the host into one command line that the remote shell parses, so a "
        "word of its own or \"$1\" does not help there: run the command on that host with where: <a hosts: "
        "entry> instead of a local ssh (SSH with verified host keys, each argv item stays one word, ${VAR} "
        "travels as an SSH env request), e.g. [deploy, --commit, \"%s\"]",
        None, after_option=False,
    ),
}  # fmt: skip
_ALIASES = {
    "nodejs": "node", "bun": "node", "pypy": "python", "gawk": "awk", "mawk": "awk", "nawk": "awk",
    "runuser": "su",
}  # fmt: skip
_VERSION = re.compile(r"[-.0-9]+$")  # python3.11, perl5.36, php8.2


def program_name(arg: str) -> str:
    """The table's name for a program: its file name, without a version suffix, aliases resolved."""
    name = arg.rsplit("/", 1)[-1]
    if name not in INTERPRETERS and name not in WRAPPERS:
        name = _VERSION.sub("", name)
    return _ALIASES.get(name, name)


# ---------------------------------------------------------------------------------------------- wrappers


@dataclass(frozen=True)
class Hop:
    """What a wrapper runs: the wrapped program's index, and whether it gets our environment."""

    program: int | None
    keeps_env: bool = True
    assigned: frozenset[str] = frozenset()  # names the wrapper sets (env NAME=…): not the operator's
    code: tuple[int, ...] = ()  # the wrapper's own code arguments (env -S STRING)


def _runs_operand(
    opts: Options, skip: int = 0, keeps_env: bool = True
) -> Callable[[Sequence[str], int], Hop]:
    """A wrapper whose (skip+1)th operand is the program: `timeout [opts] DURATION PROGRAM …`."""

    def hop(argv: Sequence[str], i: int) -> Hop:
        _, first = _parse(argv, i, opts)
        program = first + skip
        return Hop(program if program < len(argv) else None, keeps_env)

    return hop


_ENV = Options(
    values=frozenset({"-u", "--unset", "-C", "--chdir", "-S", "--split-string", "-P"}),
)
_ENV_CLEARS = frozenset({"-i", "--ignore-environment", "-u", "--unset"})


def _env(argv: Sequence[str], i: int) -> Hop:
    """`env [options] [NAME=VALUE…] PROGRAM …`; -i / -u change the environment, -S parses a string."""
    seen, first = _parse(argv, i, _ENV)
    names = {name for name, _ in seen}
    keeps = not names & _ENV_CLEARS
    if first < len(argv) and argv[first] == "-":  # `env -` is env -i
        keeps, first = False, first + 1
    split = tuple(_values(seen, frozenset({"-S", "--split-string"})))
    if split:  # the program is inside the string: nothing after it is known
        return Hop(None, False, code=split)
    assigned = set()
    while first < len(argv) and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", argv[first]):
        assigned.add(argv[first].split("=", 1)[0])
        first += 1
    return Hop(first if first < len(argv) else None, keeps, frozenset(assigned))


WRAPPERS: dict[str, Callable[[Sequence[str], int], Hop]] = {
    "env": _env,
    "busybox": _runs_operand(Options()),
    "nice": _runs_operand(Options(values=frozenset({"-n", "--adjustment"}))),
    "nohup": _runs_operand(Options()),
    "timeout": _runs_operand(Options(values=frozenset({"-s", "--signal", "-k", "--kill-after"})), skip=1),
    "xargs": _runs_operand(
        Options(
            values=frozenset({"-a", "--arg-file", "-d", "--delimiter", "-E", "-I", "-L", "-n", "-P", "-s"})
            | {"--max-args", "--max-procs", "--max-chars", "--process-slot-var"},
            attached={"-e": ".*", "-i": ".*", "-l": ".*"},
        )
    ),
    "stdbuf": _runs_operand(Options(values=frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}))),
    "setsid": _runs_operand(Options()),
    "ionice": _runs_operand(Options(values=frozenset({"-c", "--class", "-n", "--classdata"}))),
    "time": _runs_operand(Options(values=frozenset({"-f", "--format", "-o", "--output"}))),
    "sshpass": _runs_operand(Options(values=frozenset({"-f", "-d", "-p", "-P"}))),
    # sudo and doas reset the environment (env_reset): a script behind them cannot read ours.
    "sudo": _runs_operand(
        Options(
            values=frozenset("-" + c for c in "aCcDgpRrTtUu")
            | {"--user", "--group", "--chdir", "--close-from", "--prompt", "--role", "--type"}
            | {"--command-timeout", "--other-user", "--chroot", "--login-class"},
            attached={"-h": ".*"},
        ),
        keeps_env=False,
    ),
    "doas": _runs_operand(Options(values=frozenset({"-a", "-C", "-u"})), keeps_env=False),
}


# ------------------------------------------------------------------------------------------------ lookup


@dataclass(frozen=True)
class CodeArgument:
    """An argv item that `program` runs as code."""

    index: int
    program: str  # a key of INTERPRETERS, or of WRAPPERS for a wrapper's own code (env -S)
    reads_env: bool = False  # a shell reached with our environment: it expands `${VAR}` from it
    assigned: frozenset[str] = frozenset()  # names a wrapper on the way set to its own value
    in_script: bool = False  # code of a command inside that script (`sh -c 'ssh web-1 "…"'`)

    @property
    def interpreter(self) -> Interpreter:
        return INTERPRETERS.get(self.program, _ENV_SPLIT)


_ENV_SPLIT = Interpreter(
    lambda argv, i: [], "env -S (it splits the string into arguments and expands ${VAR} in it)",
    "each argument its own argv item, no -S: [env, deploy, --commit, \"%s\"]", None,
)  # fmt: skip


def code_arguments(argv: Sequence[str]) -> list[CodeArgument]:
    """The argv items run as code, each once, in argv order.

    argv[0] is followed through the wrappers to the program (`env X=1 timeout 5 sh -c SCRIPT`), then
    every other item is looked at as well, so code behind a program this table does not know is found
    too (`kubectl exec api -- sh -c SCRIPT`, `sudo -u x python3 -c CODE`, `sh -c 'exec "$@"' sh node -e
    CODE`). The arguments after a script (`sh -c SCRIPT name "$1"…`) are data, not code.
    """
    found: dict[int, CodeArgument] = {}
    chain = _follow(argv, found)
    for i, arg in enumerate(argv):
        interpreter = INTERPRETERS.get(program_name(arg))
        if i in chain or interpreter is None or not interpreter.anywhere:
            continue
        if not interpreter.after_option and argv[i - 1].startswith("-") and argv[i - 1] != "--":
            continue
        for index in interpreter.find(argv, i + 1):
            found.setdefault(index, CodeArgument(index, program_name(arg)))
    return [found[index] for index in sorted(found)]


def _follow(argv: Sequence[str], found: dict[int, CodeArgument]) -> set[int]:
    """Walk from argv[0] through the wrappers to the program, adding its code to `found`; returns the
    indices of the programs on the way."""
    chain: set[int] = set()
    i: int | None = 0
    keeps_env, assigned = True, frozenset[str]()
    while i is not None and i < len(argv) and i not in chain:
        chain.add(i)
        name = program_name(argv[i])
        if (interpreter := INTERPRETERS.get(name)) is not None:
            reads = keeps_env and interpreter.expands_env
            for index in interpreter.find(argv, i + 1):
                found[index] = CodeArgument(index, name, reads, assigned)
            break
        if (wrapper := WRAPPERS.get(name)) is None:
            break
        hop = wrapper(argv, i + 1)
        for index in hop.code:
            found[index] = CodeArgument(index, name)
        keeps_env, assigned, i = keeps_env and hop.keeps_env, assigned | hop.assigned, hop.program
    return chain


def readable_script(argv: Sequence[str]) -> CodeArgument | None:
    """The script of a shell that reads the environment we give the command (`sh -c SCRIPT`, also
    behind env/nice/timeout/xargs): the one place where `${VAR}` stays as text for the shell to expand.
    (A `shell: true` command runs as `/bin/sh -c RUN`, so its string is such a script too.)"""
    return next((code for code in code_arguments(argv) if code.reads_env), None)


def env_refs_in_code(argv: Sequence[str]) -> list[tuple[CodeArgument, str]]:
    """(code, name) for each `${VAR}` in code that cannot read it from the environment we give: code
    that is not a shell (Python does not expand it), a shell behind `sudo` (it resets the environment)
    or elsewhere (`kubectl exec`, `ssh`). Substituting the value there would splice it into code. In a
    script the shell reads, the shell itself splices it into the code of a command it runs
    (`ssh web-1 "deploy ${TOKEN}"`, `python3 -c "…${TOKEN}…"`)."""
    refused: list[tuple[CodeArgument, str]] = []
    for code in code_arguments(argv):
        if not code.reads_env:
            refused += [(code, name) for name in ENV_REF.findall(argv[code.index])]
            continue
        for program, name in _spliced_in_script(argv[code.index]):
            refused.append((CodeArgument(code.index, program, in_script=True), name))
    return refused


_HEREDOC = re.compile(r"(?<!<)<<-?[ \t]*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")


def _spliced_in_script(script: str) -> list[tuple[str, str]]:
    """(program, name) for each `${VAR}` the shell would splice into the code of a command it runs: a word
    that command takes as code (`ssh web-1 "deploy ${TOKEN}"`), also inside `$(…)` and backticks, and the
    body of an unquoted heredoc or a here-string an interpreter reads as its program (`python3 - <<EOF`)."""
    found: list[tuple[str, str]] = []
    script = _heredocs(script, found)
    script, inner_scripts = _substitutions(script)
    for inner in inner_scripts:
        found += _spliced_in_script(inner)
    words = _words(script)
    for command in _commands(words):
        for code in code_arguments(command):
            found += [(code.program, name) for name in ENV_REF.findall(command[code.index])]
    return found + _here_strings(words)


def _heredocs(script: str, found: list[tuple[str, str]]) -> str:
    """The script without its heredoc bodies; a body the shell expands (unquoted delimiter) that an
    interpreter reads as its program adds its `${VAR}`s to `found`."""
    lines, kept = script.split("\n"), []
    i = 0
    while i < len(lines):
        line = lines[i]
        kept.append(line)
        i += 1
        for match in _HEREDOC.finditer(line):
            quoted, tag = match.group(1), match.group(2)
            body = []
            while i < len(lines) and lines[i].strip() != tag:
                body.append(lines[i])
                i += 1
            i += 1  # the delimiter line
            reader = _commands(_words(line[: match.start()]))
            program = program_name(reader[-1][0]) if reader else ""
            if not quoted and _reads_its_program_from_stdin(program):
                found += [(program, name) for name in ENV_REF.findall("\n".join(body))]
    return "\n".join(kept)


def _substitutions(script: str) -> tuple[str, list[str]]:
    """The script with each command substitution (`$(…)`, backticks) replaced by a plain word, and the
    scripts they hold."""
    inner = re.findall(r"`([^`]*)`", script)
    script = re.sub(r"`[^`]*`", "_", script)
    out, i = [], 0
    while (start := script.find("$(", i)) >= 0:
        depth, j = 0, start + 1
        while j < len(script):
            depth += {"(": 1, ")": -1}.get(script[j], 0)
            if depth == 0:
                break
            j += 1
        out.append(script[i:start] + "_")
        inner.append(script[start + 2 : j])
        i = j + 1
    return "".join(out) + script[i:], inner


_OPERATORS = "();<>|&\n"


def _words(script: str) -> list[str]:
    """A shell script's words and operators as the shell splits them (quotes removed, so a single-quoted
    `${VAR}` counts too: on the safe side); none when it does not parse."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=_OPERATORS)
    lexer.whitespace, lexer.whitespace_split = " \t\r", True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: the shell refuses it before running anything
        return []


def _is_operator(word: str) -> bool:
    return bool(word) and not word.strip(_OPERATORS)


def _reads_its_program_from_stdin(program: str) -> bool:
    """Whether a heredoc or here-string fed to `program` may be its code (`python3 -`, `sh`, `ssh host`):
    any program of the table, on the safe side (awk reads it as data)."""
    return program in INTERPRETERS


def _commands(words: list[str]) -> list[list[str]]:
    """A script's simple commands (from `_words`), each its words."""
    commands: list[list[str]] = [[]]
    for word in words:
        if _is_operator(word):
            commands.append([])
        else:
            commands[-1].append(word)
    return [words for words in commands if words]


def _here_strings(words: list[str]) -> list[tuple[str, str]]:
    """(program, name) for each `${VAR}` in a here-string an interpreter reads as its program
    (`python3 <<< "print('${TOKEN}')"`), from the script's `_words`."""
    found: list[tuple[str, str]] = []
    command: list[str] = []
    for i, word in enumerate(words):
        if word == "<<<" and command and i + 1 < len(words):
            program = program_name(command[0])
            if _reads_its_program_from_stdin(program):
                found += [(program, name) for name in ENV_REF.findall(words[i + 1])]
        command = [] if _is_operator(word) and word != "<<<" else [*command, word]
    return found


def env_ref_in_code_message(code: CodeArgument, name: str) -> str:
    interpreter, ref = code.interpreter, f"${{{name}}}"
    if code.in_script:
        return (
            f"argv[{code.index}]: the script's shell would splice {ref} into the {interpreter.language} code "
            f"of {code.program} (a value with a quote or $(…) in it would run there): pass it as data: "
            f"{interpreter.as_data % ref}"
        )
    read = (
        f' or read {interpreter.from_env % name} with env: {{{name}: "{ref}"}};'
        if interpreter.from_env
        else ""
    )
    return (
        f"argv[{code.index}]: {ref} would be spliced into code that cannot read it from the environment "
        f"({interpreter.language}): pass it as data: {interpreter.as_data % ref};{read} a shell that is the "
        f"program itself (sh -c, shell: true, also behind env, nice, timeout, xargs) expands {ref} from "
        "its environment"
    )


def spliced_placeholder_message(name: str, program: str = "sh") -> str:
    """Why `{name}` may not sit in the code `program` runs, and what to write instead."""
    interpreter = INTERPRETERS.get(program, _ENV_SPLIT)
    return (
        f"{{{name}}} would be spliced into {interpreter.language} code, where a value like abc$(touch X) "
        f"runs as a command: pass it as data instead: {interpreter.as_data % f'{{{name}}}'}"
    )


def value_read_as_option(template: Sequence[str], values: Mapping[str, str]) -> str | None:
    """Where and why a filled value would be read as an option, if one would: a captured commit such as
    `-oProxyCommand=touch X` in `[ssh, "{host}", …]` or `[git, checkout, "{commit}"]` becomes an option of
    the program (ssh runs it). A `--` before it ends the options; `--commit={commit}` keeps it a value."""
    if not values:
        return None
    pattern = re.compile("{(" + "|".join(map(re.escape, values)) + ")}")
    for index, written in enumerate(template):
        if written == "--":
            return None
        placeholder = pattern.match(written)
        filled = pattern.sub(lambda m: values[m.group(1)], written)
        if index and placeholder and filled.startswith("-"):
            name = placeholder.group()
            return (
                f"argv[{index}]: the value of {name} begins with '-' ({filled[:40]!r}) and would be read as "
                f"an option; write the option with its value (--{placeholder.group(1)}={name}) or put -- "
                "before it if the program takes operands after --"
            )
    return None
