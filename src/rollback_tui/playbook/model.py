"""The playbook: a pydantic v2 description of a deployment and the runbook to roll it back.

Every step, command, guardrail, checklist item and exit criterion of the two source runbooks
(`shared/seeds/`) is expressible here. Secrets appear only as `${ENV_VAR}` references.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rollback_tui.playbook.code import (
    code_arguments,
    env_ref_in_code_message,
    env_refs_in_code,
    readable_script,
    value_read_as_option,
)
from rollback_tui.playbook.secrets import ENV_REF, is_env_ref, looks_secret

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", max_length=63)]
Severity = Literal["P0", "P1"]

# userinfo password (`scheme://user:PASSWORD@`) or a credential query parameter (`?token=VALUE`).
_URL_PASSWORD = re.compile(r"://[^/:@\s]*:(?P<value>[^@\s/]+)@")
_URL_QUERY_SECRET = re.compile(
    r"(?i)[?&](?:token|access_token|api_key|apikey|key|secret|password|sig)=(?P<value>[^&#\s]*)"
)
# argv items such as `--password=hunter2`, `API_TOKEN=abc`, `Authorization: Bearer abc`.
_ARG_SECRET = re.compile(
    r"(?i)^(?:--?[a-z0-9-]*(?:token|secret|password|passwd|api-?key)[a-z0-9-]*="
    r"|[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY)[A-Z0-9_]*="
    r"|(?:authorization|cookie):\s*(?:bearer\s+|basic\s+)?)(?P<value>.+)$"
)


def _check_secret_mapping(mapping: dict[str, str], what: str) -> dict[str, str]:
    for key, value in mapping.items():
        if looks_secret(key) and not ENV_REF.search(value):
            raise ValueError(f"{what} {key!r} looks like a secret: use a ${{ENV_VAR}} reference")
    return mapping


def _env_ref_only(value: str, what: str) -> str:
    if not is_env_ref(value):
        raise ValueError(f"{what} is a secret: give only a ${{ENV_VAR}} reference, not the value")
    return value


def _check_secret_url(url: str) -> str:
    for pattern in (_URL_PASSWORD, _URL_QUERY_SECRET):
        for match in pattern.finditer(url):
            value = match.group("value")
            if value and not value.startswith("${"):
                raise ValueError("URL carries an inline credential: use a ${ENV_VAR} reference for it")
    return url


def _check_secret_argv(argv: list[str]) -> list[str]:
    for arg in argv:
        match = _ARG_SECRET.match(arg)
        if match and not ENV_REF.search(match.group("value")):
            raise ValueError(
                f"argument {arg.split('=')[0].split(':')[0]!r} carries an inline secret: "
                "use a ${ENV_VAR} reference (or env/env_allow)"
            )
    return argv


def _scalar_to_str(value: Any) -> Any:
    """YAML turns `true`, `3` and `0.5` into bool/int/float; env values and flags are strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _mapping_values_to_str(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scalar_to_str(v) for k, v in value.items()}
    return value


StrMapping = Annotated[dict[str, str], BeforeValidator(_mapping_values_to_str)]
ScalarStr = Annotated[str, BeforeValidator(_scalar_to_str)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- deployment -----------------------------------------------------------------------------------


class HealthFields(Strict):
    """Dotted JSON paths in the health document."""

    status: str = "status"
    image: str = "image"
    commit: str = "commit"
    channel_prefix: str = "realtime.channel_prefix"
    transport: str = "realtime.transport"


StatusValue = Annotated[bool | int | float | str, Field(union_mode="smart")]


def _status_key(value: bool | int | float | str) -> tuple[str, object]:
    """How a status value is compared: by JSON type (true is not 1), strings case-insensitively."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, int | float):
        return "number", float(value)
    return "string", value.strip().lower()


_HEALTHY: tuple[bool | int | float | str, ...] = ("ok", "healthy", "up", "pass")
_DEGRADED: tuple[bool | int | float | str, ...] = ("degraded", "warn")
_FAILING: tuple[bool | int | float | str, ...] = ("down", "fail", "failing", "unhealthy", "error")


class HealthStatusValues(Strict):
    """Which values of the health document's status field (`fields.status`) mean ok, degraded or failing.

    JSON scalars: `true`/`false`, numbers and strings (case-insensitive). `true` and `1` are different
    values. A value in none of the lists makes the replica `junk` (an unknown status)."""

    healthy: list[StatusValue] = Field(default_factory=lambda: list(_HEALTHY))
    degraded: list[StatusValue] = Field(default_factory=lambda: list(_DEGRADED))
    failing: list[StatusValue] = Field(default_factory=lambda: list(_FAILING))

    @model_validator(mode="after")
    def _disjoint(self) -> HealthStatusValues:
        seen: dict[tuple[str, object], str] = {}
        for word in ("healthy", "degraded", "failing"):
            for value in getattr(self, word):
                other = seen.setdefault(_status_key(value), word)
                if other != word:
                    raise ValueError(f"{value!r} is listed under both {other} and {word}")
        return self

    def classify(self, value: Any) -> Literal["ok", "degraded", "failing"] | None:
        """ok / degraded / failing for a reported value, None when it is in no list (or not a scalar)."""
        if not isinstance(value, bool | int | float | str):
            return None
        key = _status_key(value)
        for word, status in (("healthy", "ok"), ("degraded", "degraded"), ("failing", "failing")):
            if any(_status_key(v) == key for v in getattr(self, word)):
                return status  # type: ignore[return-value]
        return None


class LabFaults(Strict):
    """Fault injection for a lab replica (ignored outside the lab)."""

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(0, ge=0, le=60_000)
    ws_drop_rate: float = Field(0.0, ge=0.0, le=1.0)
    dead_letters: int = Field(0, ge=0)


class LabReplica(Strict):
    """How the embedded lab runs this replica."""

    image: str = "sha256:0000000000000000"
    commit: str = "0000000"
    transport: Literal["redis", "memory"] = "redis"
    channel_prefix: str | None = None  # override of realtime.channel_prefix, to reproduce a mismatch
    faults: LabFaults = LabFaults()


class Replica(Strict):
    name: Name
    url: str = Field(description="Base URL of this replica, reached directly (not via the balancer).")
    role: Literal["stable", "candidate"]
    labels: StrMapping = {}
    health_path: str = "/healthz"
    fields: HealthFields = HealthFields()
    status_values: HealthStatusValues = Field(
        default_factory=HealthStatusValues, description="Status field values → ok / degraded / failing."
    )
    health_command: CommandSpec | None = Field(
        None,
        description="Run this instead of GET health_path: stdout is the health document (JSON), or a "
        "bare status value on its last line; a non-zero exit is failing.",
    )
    sensitive: bool = Field(False, description="Hide this replica's URL in share mode.")
    served_as: str | None = Field(
        None,
        description="The value load_balancer.identity carries for this replica when it is not its name "
        "(e.g. the HAProxy server name or pod name).",
    )
    lab: LabReplica | None = None

    @field_validator("url")
    @classmethod
    def _no_inline_secret_url(cls, v: str) -> str:
        return _check_secret_url(v)


Spliced = tuple[tuple[str | int, ...], str, str]  # (field path, placeholder name, program running it)


def placeholders_in_code(spec: CommandSpec, names: Iterable[str]) -> list[Spliced]:
    """(field path, name, program) for every `{name}` that filling would put into code: the string of a
    `shell: true` command, or a code argument (see playbook.code). Empty when filling is safe."""
    wanted = list(names)
    found: list[Spliced] = []
    if spec.run is not None:
        found += [(("run",), n, "sh") for n in wanted if "{" + n + "}" in spec.run]
    argv = spec.argv or []
    for code in code_arguments(argv):
        text = argv[code.index]
        found += [(("argv", code.index), n, code.program) for n in wanted if "{" + n + "}" in text]
    return found


class CommandSpec(Strict):
    """A command: argv (no shell) by default, a string only with explicit `shell: true`.

    `${VAR}` in argv, cwd and env values is replaced from the operator's environment when the
    command runs (never through a shell). In a shell script (a `shell: true` string, SCRIPT of
    `sh -c SCRIPT`) it stays as text and VAR goes into the shell's environment, so the shell expands
    it: the value is neither on the command line nor ever parsed as code. Actions may define extra
    `{placeholders}` (see Redeploy, StabiliseFlags); each argv item stays one argument. A placeholder
    is refused inside code (a `shell: true` string, the SCRIPT of `sh -c SCRIPT`, `python3 -c`, `node
    -e`, the remote command of `ssh`: playbook.code): pass the value as its own argv item after the
    script instead, `[sh, -c, 'deploy --commit "$1"', sh, "{commit}"]`.
    """

    argv: list[ScalarStr] | None = None
    run: str | None = Field(None, description="Shell command string; only allowed with shell: true.")
    shell: bool = False
    where: str = Field("local", description="'local' or the name of an entry in hosts.")
    cwd: str | None = None
    env: StrMapping = {}
    env_allow: list[str] = Field(
        default_factory=list, description="Names passed through from the environment."
    )
    timeout_s: float = Field(300.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _one_form(self) -> CommandSpec:
        if (self.argv is None) == (self.run is None):
            raise ValueError("give exactly one of argv (a list) or run (a string)")
        if self.run is not None and not self.shell:
            raise ValueError("a command string needs explicit shell: true (prefer argv)")
        if self.argv is not None and not self.argv:
            raise ValueError("argv must not be empty")
        argv = self.argv if self.argv is not None else ["/bin/sh", "-c", self.run or ""]
        if refused := env_refs_in_code(argv):
            raise ValueError(env_ref_in_code_message(*refused[0]))
        self._script_env_agrees()
        if self.argv is not None and self.shell:
            raise ValueError("shell: true goes with run (a string), not argv")
        return self

    def _script_env_agrees(self) -> None:
        """A script's `${VAR}` is passed to its shell as VAR: `env:` (or `env VAR=…` in front of the
        shell) may not give VAR another value."""
        script, assigned = self.run, frozenset[str]()
        if self.argv is not None and (code := readable_script(self.argv)) is not None:
            script, assigned = self.argv[code.index], code.assigned
        for name in ENV_REF.findall(script or ""):
            if name in assigned or (name in self.env and self.env[name] != f"${{{name}}}"):
                raise ValueError(
                    f"the script's ${{{name}}} is the operator's {name}, passed to the shell in its "
                    f"environment, but {'env ' + name + '=…' if name in assigned else 'env:'} sets "
                    f"{name} to something else: rename one of them"
                )

    @field_validator("argv")
    @classmethod
    def _no_inline_secret_argv(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_secret_argv(v)

    @field_validator("env")
    @classmethod
    def _no_inline_secret_env(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_secret_mapping(v, "env")


class TrafficControl(Strict):
    """How traffic is steered: the lab's admin endpoint, or commands (kubectl, HAProxy, nginx)."""

    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ("selector_json", "replicas", "replica_set")
    driver: Literal["lab", "command"] = "lab"
    admin_url: str | None = None
    remove: CommandSpec | None = None
    restore: CommandSpec | None = None
    read: CommandSpec | None = None

    @model_validator(mode="after")
    def _driver_needs(self) -> TrafficControl:
        if self.driver == "lab" and not self.admin_url:
            raise ValueError("driver 'lab' needs admin_url")
        if self.driver == "command" and not (self.remove and self.read):
            raise ValueError("driver 'command' needs remove and read commands")
        return self


class ReplicaIdentity(Strict):
    """Where a response names the replica that served it: a response header (default `X-Served-By`) or a
    dotted JSON path in the response body. Traffic split and rollback verification count by it."""

    header: str | None = "X-Served-By"
    json_path: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ReplicaIdentity:
        if "json_path" in self.model_fields_set and "header" not in self.model_fields_set:
            self.header = None  # `identity: {json_path: …}` alone means the body, not the default header
        if (self.header is None) == (self.json_path is None):
            raise ValueError("give exactly one of header or json_path")
        return self


class VerifyRequest(Strict):
    """The request rollback verification sends through the balancer until enough in a row are answered by
    stable replicas (also what synthetic traffic sends when the playbook has no realtime section)."""

    method: Literal["GET", "HEAD", "POST"] = "GET"
    path: str | None = Field(None, description="Default: the stable replicas' health_path.")
    headers: StrMapping = Field(default_factory=dict, description="Values may be ${ENV_VAR} (redacted).")

    @field_validator("headers")
    @classmethod
    def _no_inline_secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_secret_mapping(v, "header")


DEFAULT_SYNTHETIC_RPS = 20.0  # the one default: the cockpit, headless `rehearse` and `check traffic` read it


class SyntheticTraffic(Strict):
    """The synthetic share routed to candidates while they are under test (runbook: 10-20 %)."""

    candidate_share_min: float = Field(0.10, ge=0.0, le=1.0)
    candidate_share_max: float = Field(0.20, ge=0.0, le=1.0)
    rps: float = Field(
        DEFAULT_SYNTHETIC_RPS, gt=0, le=10_000, description="Synthetic requests per second via the balancer."
    )

    @model_validator(mode="after")
    def _ordered(self) -> SyntheticTraffic:
        if self.candidate_share_min > self.candidate_share_max:
            raise ValueError("candidate_share_min is larger than candidate_share_max")
        return self


class LoadBalancer(Strict):
    name: Name = "lb"
    url: str
    selector: StrMapping = Field(description="Label selector currently routing traffic.")
    weights: dict[str, int] = Field(default_factory=dict, description="Replica name → weight.")
    traffic_control: TrafficControl
    synthetic_traffic: SyntheticTraffic | None = None
    identity: ReplicaIdentity = Field(default_factory=ReplicaIdentity)
    verify: VerifyRequest = Field(default_factory=VerifyRequest)


# The `{placeholders}` each protocol template may use (docs/protocol.md lists what each one is).
STREAM_PLACEHOLDERS = ("base", "base_ws", "thread_id", "after")
SEND_PLACEHOLDERS = ("base", "thread_id", "text", "key")
HEADER_PLACEHOLDERS = ("thread_id", "key")
TAP_PLACEHOLDERS = ("prefix", "thread_id")
PLACEHOLDER = re.compile(r"(?<!\$)\{([a-z_][a-z0-9_]*)\}")  # `{name}`; `${VAR}` is an env reference


def _check_placeholders(template: str, allowed: tuple[str, ...], what: str) -> str:
    unknown = [name for name in PLACEHOLDER.findall(template) if name not in allowed]
    if unknown:
        known = ", ".join(f"{{{n}}}" for n in allowed)
        raise ValueError(f"{what} uses unknown placeholder {{{unknown[0]}}} (known: {known})")
    return template


class FanoutProtocol(Strict):
    """The chat API's realtime protocol (docs/protocol.md; the lab's is the default).

    Replay: with `replay: url` a reconnecting session fills `{after}` in stream_url with the last sequence
    number it received; with `replay: last_event_id` it sends a `Last-Event-ID` header instead (the last
    SSE `id:` it received, else the last sequence number)."""

    stream_kind: Literal["websocket", "sse"] = "websocket"
    stream_url: str = "{base_ws}/v1/threads/{thread_id}/stream?after={after}"
    stream_headers: StrMapping = Field(
        default_factory=dict, description="Sent when a stream opens; values may be ${ENV_VAR}."
    )
    replay: Literal["url", "last_event_id"] = "url"
    send_method: Literal["POST", "PUT"] = "POST"
    send_url: str = "{base}/v1/threads/{thread_id}/messages"
    send_body: dict[str, str] = {"text": "{text}"}
    send_headers: StrMapping = Field(default_factory=dict, description="Values may be ${ENV_VAR}.")
    idempotency_header: str = "Idempotency-Key"
    send_event_id_path: str | None = Field(
        None, description="Event id in the send response (default: event_id_path)."
    )
    event_id_path: str = Field("event_id", description="Event id in a stream frame.")
    seq_path: str = "seq"
    thread_id_path: str = "thread_id"
    receive_timeout_s: float = Field(2.0, gt=0, le=120)
    replay_count: int = Field(3, ge=1, le=1000)
    thread_prefix: str = "rehearsal-"

    @model_validator(mode="before")
    @classmethod
    def _removed_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and "replay_param" in data:
            raise ValueError(
                "replay_param was removed (it never did anything): put {after} in stream_url, "
                "or set replay: last_event_id"
            )
        return data

    @field_validator("send_headers", "stream_headers")
    @classmethod
    def _no_inline_secret_headers(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        allowed = HEADER_PLACEHOLDERS if info.field_name == "send_headers" else ("thread_id",)
        for key, value in v.items():
            _check_placeholders(value, allowed, f"header {key}")
        return _check_secret_mapping(v, "header")

    @field_validator("stream_url")
    @classmethod
    def _stream_placeholders(cls, v: str) -> str:
        return _check_placeholders(v, STREAM_PLACEHOLDERS, "stream_url")

    @field_validator("send_url")
    @classmethod
    def _send_placeholders(cls, v: str) -> str:
        return _check_placeholders(v, SEND_PLACEHOLDERS, "send_url")

    @field_validator("send_body")
    @classmethod
    def _body_placeholders(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            _check_placeholders(value, SEND_PLACEHOLDERS, f"send_body.{key}")
        return v

    @model_validator(mode="after")
    def _replay_needs(self) -> FanoutProtocol:
        has_after = "{after}" in self.stream_url
        if self.replay == "url" and not has_after:
            raise ValueError("replay: url needs {after} in stream_url (or set replay: last_event_id)")
        if self.replay == "last_event_id" and has_after:
            raise ValueError(
                "replay: last_event_id sends a Last-Event-ID header: remove {after} from stream_url"
            )
        return self

    @property
    def send_id_path(self) -> str:
        return self.send_event_id_path or self.event_id_path


class TapFormat(Strict):
    """How replicas publish fanout frames to Redis, as the tap reads them (the lab's shape by default).

    `channel` is the pub/sub channel name: `{prefix}` is where the replica's channel prefix goes (the tap
    matches any prefix there, to catch a replica publishing under another one) and `{thread_id}` the
    thread. The paths are dotted JSON paths in the published payload; unset ones follow realtime.fanout."""

    channel: str = "{prefix}{thread_id}"
    event_id_path: str | None = None
    seq_path: str | None = None
    thread_id_path: str | None = None
    origin_replica_path: str = "origin_replica"

    @field_validator("channel")
    @classmethod
    def _channel_placeholders(cls, v: str) -> str:
        _check_placeholders(v, TAP_PLACEHOLDERS, "channel")
        if "{thread_id}" not in v:
            raise ValueError("channel needs {thread_id}: the tap listens to the check's own thread")
        if v.count("{prefix}") > 1 or v.count("{thread_id}") > 1:
            raise ValueError("channel may use {prefix} and {thread_id} once each")
        return v


class Realtime(Strict):
    redis_url: str = Field(description="redis://host:port/db; a password only as ${ENV_VAR}.")
    channel_prefix: str
    transport_expected: str = Field(
        "redis", description="The transport every replica must report (fields.transport), e.g. redis."
    )
    prefix_env: str = Field("CHAT_REALTIME_CHANNEL_PREFIX", description="Env var that sets the prefix.")
    transport_env: str = "CHAT_REALTIME_TRANSPORT"
    fanout: FanoutProtocol = FanoutProtocol()
    redis_tap: bool = True
    tap: TapFormat = Field(default_factory=TapFormat)

    @field_validator("redis_url")
    @classmethod
    def _no_inline_secret_url(cls, v: str) -> str:
        return _check_secret_url(v)


class Mirror(Strict):
    """A live, read-only copy of the session for viewers elsewhere (`rollback-tui watch redis://…/<session>`):
    every journal line, already redacted, is appended to a Redis Stream named after the session."""

    redis_url: str = Field(description="redis://host:port/db to mirror to; a password only as ${ENV_VAR}.")
    max_len: int = Field(
        10_000, ge=100, description="Stream entries kept (each a batch of journal lines); older are trimmed."
    )
    ttl_s: int = Field(7 * 86400, gt=0, description="The mirror expires this long after its last line.")

    @field_validator("redis_url")
    @classmethod
    def _mirror_url(cls, v: str) -> str:
        _check_secret_url(v)
        if not re.match(r"^rediss?://[^/?#]*(/\d+)?/?$", v):
            raise ValueError("expected redis://[:${PASSWORD}@]host[:port][/db] (the session id is added)")
        return v


class SshHost(Strict):
    name: Name
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str
    key_file: str | None = None
    use_agent: bool = True
    known_hosts: str | None = Field(None, description="known_hosts file; default ~/.ssh/known_hosts.")
    host_key_pin: str | None = Field(None, description="Explicit SHA256:… fingerprint pin.")
    connect_timeout_s: float = Field(10.0, gt=0, le=600)
    sensitive: bool = True


# --- checks ---------------------------------------------------------------------------------------


class Gate(CommandSpec):
    name: Name
    title: str
    description: str = ""
    parallel: bool = Field(False, description="May run alongside other parallel gates.")
    required: bool = True
    severity: Severity = Field("P0", description="A failed P0 gate is a rollback trigger.")


class HttpProbe(Strict):
    """An HTTP JSON probe, e.g. the dead-letters count."""

    name: Name
    url: str
    method: Literal["GET", "POST"] = "GET"
    json_path: str | None = Field(None, description="Dotted path of the value to record.")
    headers: dict[str, str] = {}
    timeout_s: float = Field(5.0, gt=0, le=300)
    expect_status: int = 200
    interval_s: float | None = Field(None, gt=0, description="Poll continuously at this interval.")

    @field_validator("url")
    @classmethod
    def _no_inline_secret_url(cls, v: str) -> str:
        return _check_secret_url(v)

    @field_validator("headers")
    @classmethod
    def _no_inline_secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_secret_mapping(v, "header")


class Fact(Strict):
    """A baseline fact captured at the start and re-checked after rollback."""

    name: Name
    title: str
    source: Literal["health", "http", "command", "env", "manual", "prometheus"]
    field: str | None = Field(None, description="health/http: dotted JSON path.")
    query: str | None = Field(
        None, description="prometheus: an instant PromQL query; with {replica} it is asked once per replica."
    )
    server: str | None = Field(None, description="prometheus: which server (default: the only one).")
    label: str | None = Field(None, description="prometheus: record this label of the series, not its value.")
    url: str | None = None
    command: CommandSpec | None = None
    regex: str | None = Field(None, description="command: first group (or whole match) is the value.")
    env_var: str | None = None
    must_agree: bool = Field(False, description="health: every replica must report the same value.")
    replicas: Literal["all", "stable", "candidate"] = "all"
    expect: str | None = Field(None, description="The value the runbook requires (e.g. a pinned version).")

    @model_validator(mode="after")
    def _source_needs(self) -> Fact:
        need = {
            "health": ("field",),
            "http": ("url", "field"),
            "command": ("command",),
            "env": ("env_var",),
            "prometheus": ("query",),
        }
        missing = [f for f in need.get(self.source, ()) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"source {self.source!r} needs {', '.join(missing)}")
        if self.regex is not None:
            re.compile(self.regex)
        if self.source != "prometheus" and (self.query or self.server or self.label):
            raise ValueError("query, server and label only apply to source: prometheus")
        return self


Metric = Literal[
    "http_5xx_rate",
    "ws_disconnects",
    "idempotency_collisions",
    "p95_latency_ms",
    "dead_letters_growth",
    "health_failing",
    "gate_failed",
    "query",
    "http_json",
]
# Metrics a baseline can judge: each is measured for the candidate and the stable replicas alike.
BASELINE_METRICS = ("http_5xx_rate", "p95_latency_ms", "query")
# The placeholders of a Prometheus query; any other brace (a label matcher) is PromQL's own.
QUERY_PLACEHOLDERS = ("replica", "replicas", "scope", "window")


class BasicAuth(Strict):
    username: str
    password: str = Field(description="Only a ${ENV_VAR} reference.")

    @field_validator("password")
    @classmethod
    def _password_is_ref(cls, v: str) -> str:
        return _env_ref_only(v, "basic_auth.password")


class TlsOptions(Strict):
    ca_file: str | None = Field(None, description="CA bundle that signs the server's certificate.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS), with key_file.")
    key_file: str | None = None
    insecure_skip_verify: bool = Field(False, description="Do not verify the server's certificate.")

    @model_validator(mode="after")
    def _pair(self) -> TlsOptions:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class PrometheusServer(Strict):
    """A Prometheus server that guardrails and facts query (instant queries over its HTTP API)."""

    name: Name = "prometheus"
    url: str = Field(description="Base URL, e.g. https://prometheus.staging.internal (no /api/v1).")
    bearer_token: str | None = Field(None, description="Only a ${ENV_VAR} reference.")
    basic_auth: BasicAuth | None = None
    headers: StrMapping = {}
    tls: TlsOptions = TlsOptions()
    timeout_s: float = Field(5.0, gt=0, le=300, description="A query slower than this is unknown.")
    lab: bool = Field(False, description="The embedded lab runs this server, scraping its replicas.")

    @field_validator("url")
    @classmethod
    def _no_inline_secret_url(cls, v: str) -> str:
        return _check_secret_url(v)

    @field_validator("bearer_token")
    @classmethod
    def _token_is_ref(cls, v: str | None) -> str | None:
        return None if v is None else _env_ref_only(v, "bearer_token")

    @field_validator("headers")
    @classmethod
    def _no_inline_secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_secret_mapping(v, "header")

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusServer:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("give bearer_token or basic_auth, not both")
        return self


class Baseline(Strict):
    """Judge the candidate against the stable replicas: the same metric over the same window, compared.

    Load that slows every replica alike moves both sides and trips nothing; a bad candidate still does.
    The guardrail's threshold then applies to the comparison (e.g. 1.5 for a ratio: 50 % slower).
    """

    compare: Literal["ratio", "difference"] = Field(
        "ratio", description="ratio: candidate ÷ stable; difference: candidate - stable."
    )
    min_samples: int = Field(
        10, ge=1, description="Each side needs this many samples (requests) in the window, else no verdict."
    )
    samples_query: str | None = Field(
        None, description="metric query: PromQL giving a side's sample count ({replicas} is that side's)."
    )


class Detection(Strict):
    """How an `http_5xx_rate` guardrail decides.

    `window` (the default): the rate over `window_s`, judged once the window holds at least 10 in-scope
    requests, each time a traffic window closes. `sequential`: a sequential test evaluated on every
    response (core/sequential.py): a breach as soon as the evidence that the rate is over the threshold
    is conclusive, with at most one false alarm per `1 / false_alarm_rate` in-scope responses on average
    while the true rate is at or under the threshold; `window_s` is how far back its evidence reaches.
    """

    mode: Literal["window", "sequential"] = "window"
    false_alarm_rate: float = Field(
        0.001,
        gt=0,
        le=0.05,
        description=(
            "sequential: false alarms per in-scope response, at worst (the true rate at the threshold)."
        ),
    )
    detect_rates: list[float] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="sequential: the 5xx rates it is tuned to catch soonest, each over the threshold "
        "(default 2, 5 and 10 times the threshold, none past halfway from it to 1).",
    )

    @field_validator("detect_rates")
    @classmethod
    def _rates(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(0 < r < 1 for r in v):
            raise ValueError("detect_rates are 5xx rates: each between 0 and 1")
        return v


class Guardrail(Strict):
    """Breached when the metric's value over `window_s` exceeds `threshold` (held `sustained_s`).

    `metric: query` reads an instant PromQL query from a Prometheus server (`server`, `query`), evaluated
    every `interval_s`; `{replica}`, `{replicas}` (a regex alternation), `{scope}` and `{window}` are
    filled in. `metric: http_json` reads the value of an HTTP JSON probe (its last value, or its growth
    over the window). A source that cannot answer is unknown with its reason: never ok, never a breach.
    """

    name: Name
    title: str
    metric: Metric
    threshold: float = Field(ge=0)
    window_s: float = Field(10.0, gt=0, le=3600)
    sustained_s: float = Field(0.0, ge=0, le=3600, description="Breach only when held this long.")
    scope: Literal["candidate", "stable", "all"] = "all"
    severity: Severity = "P0"
    gate: str | None = Field(None, description="gate_failed: which gate.")
    probe: str | None = Field(None, description="http_json / dead_letters_growth: which HTTP probe.")
    reduce: Literal["last", "growth"] = Field(
        "last", description="http_json: the probe's last value, or its growth over the window."
    )
    server: str | None = Field(None, description="query: which Prometheus server (default: the only one).")
    query: str | None = Field(None, description="query: the PromQL instant query.")
    interval_s: float = Field(5.0, gt=0, le=3600, description="query: how often it is evaluated.")
    unit: Literal["ratio", "ms", "s", "count"] = Field(
        "count", description="query: how its value, threshold and breach read (a ratio as %)."
    )
    samples_query: str | None = Field(
        None, description="query: PromQL giving the sample count in the window (with min_samples)."
    )
    min_samples: int | None = Field(
        None, ge=1, description="query: no verdict below this many samples (needs samples_query)."
    )
    baseline: Baseline | None = Field(None, description="Judge the candidate against the stable replicas.")
    detection: Detection | None = Field(
        None, description="http_5xx_rate: decide over fixed windows (default) or by a sequential test."
    )

    @property
    def sequential(self) -> bool:
        return self.detection is not None and self.detection.mode == "sequential"

    @model_validator(mode="after")
    def _metric_needs(self) -> Guardrail:
        if self.metric == "query" and not self.query:
            raise ValueError("metric query needs query: the PromQL to evaluate")
        if self.metric != "query":
            given = [f for f in ("query", "server", "samples_query", "min_samples") if getattr(self, f)]
            if given:
                raise ValueError(f"{', '.join(given)} only apply to metric: query")
        if self.metric == "http_json" and self.probe is None:
            raise ValueError("metric http_json needs probe: the HTTP JSON probe whose value it judges")
        if self.reduce != "last" and self.metric != "http_json":
            raise ValueError("reduce only applies to metric: http_json")
        if (self.min_samples is None) != (self.samples_query is None) and self.baseline is None:
            raise ValueError("min_samples and samples_query go together")
        if self.baseline is not None:
            self._check_baseline(self.baseline)
        if self.detection is not None:
            self._check_detection(self.detection)
        return self

    def _check_detection(self, detection: Detection) -> None:
        if self.metric != "http_5xx_rate":
            raise ValueError("detection applies to metric http_5xx_rate")
        if detection.mode != "sequential":
            return
        if self.baseline is not None:
            raise ValueError("sequential detection judges the rate against the threshold, not a baseline")
        if self.sustained_s:
            raise ValueError("sequential detection decides on its evidence: sustained_s does not apply")
        if not 0 < self.threshold < 1:
            raise ValueError("sequential detection needs a threshold between 0 and 1 (a 5xx rate)")
        low = [r for r in detection.detect_rates or () if r <= self.threshold]
        if low:
            raise ValueError(f"detect_rates must be over the threshold {self.threshold:g}: {low}")

    def _check_baseline(self, baseline: Baseline) -> None:
        if self.metric not in BASELINE_METRICS:
            raise ValueError(f"baseline applies to metric {', '.join(BASELINE_METRICS)}, not {self.metric}")
        if self.scope != "candidate":
            raise ValueError("baseline compares the candidate with the stable replicas: use scope: candidate")
        if self.metric == "query":
            if not baseline.samples_query:
                raise ValueError("a query baseline needs baseline.samples_query to count each side's samples")
            if "{replica}" in (self.query or ""):
                raise ValueError("a baseline query takes each side's {replicas}, not one {replica}")
            if self.samples_query or self.min_samples:
                raise ValueError("with a baseline, samples_query and min_samples go under baseline")
        elif baseline.samples_query:
            raise ValueError("baseline.samples_query only applies to metric: query")


# --- actions, steps, evidence ---------------------------------------------------------------------


_CHANGES = (
    "Whether running it changes the system: a change is typed-confirmed in the cockpit with a preview of "
    "the resolved command, and runs headless only with --allow-destructive. Default: true for redeploy, "
    "stabilise_flags and selector_removal, and for every action of an `environment: production` playbook; "
    "declare `changes: false` for a read-only one."
)


class SelectorRemoval(Strict):
    kind: Literal["selector_removal"]
    name: Name
    title: str
    changes: bool | None = Field(None, description=_CHANGES)
    replica_set: str = Field(description="What the operator types to confirm, e.g. blue-next.")
    remove_replicas: list[str] = Field(min_length=1)
    keep_replicas: list[str] = Field(
        default_factory=list,
        description="Candidate replicas this rollback leaves in traffic on purpose: verification counts "
        "their answers as kept (otherwise only stable replicas are).",
    )
    verify_requests: int = Field(200, ge=1, le=100_000)
    rto_budget_s: float = Field(60.0, gt=0)
    selector_after: dict[str, str] | None = Field(
        None, description="The selector once the candidates are removed (e.g. adds track: stable)."
    )
    trigger_severity: Severity | None = Field(
        "P0", description="A breach or failed gate of this severity offers this rollback at once."
    )
    recheck_facts: list[str] = Field(
        default_factory=list, description="Facts that must still equal their baseline after rollback."
    )


class Redeploy(Strict):
    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ("commit", "service")

    kind: Literal["redeploy"]
    name: Name
    title: str
    changes: bool | None = Field(None, description=_CHANGES)
    services: dict[str, CommandSpec] = Field(
        min_length=1,
        description="service → deploy command; `{commit}` in argv is the last known good commit.",
    )
    last_known_good: str = Field(description="Fact holding the last known good commit.")
    forbid_destructive_migrations: bool = True
    prepare: CommandSpec | None = Field(
        None, description="Run once before the services (e.g. check out `{commit}` into a worktree)."
    )
    record_facts: list[str] = Field(
        default_factory=list, description="Facts captured after the redeploy (e.g. new deployment IDs)."
    )


class FlagChange(Strict):
    flag: str
    value: ScalarStr
    reason: str = ""
    optional: bool = Field(
        False, description="Only if needed: the operator decides, nothing applies it alone."
    )


class StabiliseFlags(Strict):
    PLACEHOLDERS: ClassVar[tuple[str, ...]] = ("flag", "value")

    kind: Literal["stabilise_flags"]
    name: Name
    title: str
    changes: bool | None = Field(None, description=_CHANGES)
    command: CommandSpec = Field(
        description="Run once per change; `{flag}` and `{value}` in argv are replaced."
    )
    set: list[FlagChange] = []
    must_stay_on: list[str] = Field(default_factory=list, description="Flags never relaxed (auth, CSRF…).")
    verify: CommandSpec | None = Field(
        None,
        description="Reads the current flags (KEY=value lines): run before the change (current → new, and "
        "every must_stay_on flag on) and after it (protected flags unchanged, the new values in place). "
        "Without it a playbook with must_stay_on flags cannot change any flag.",
    )

    @model_validator(mode="after")
    def _never_relax_protected(self) -> StabiliseFlags:
        protected = set(self.must_stay_on)
        touched = [change.flag for change in self.set if change.flag in protected]
        if touched:
            raise ValueError(f"flags {', '.join(touched)} are listed in must_stay_on and may not be changed")
        for i, change in enumerate(self.set):  # known at load: said here, not when the change is applied
            values = {"flag": change.flag, "value": change.value}
            if self.command.argv and (why := value_read_as_option(self.command.argv, values)):
                raise ValueError(f"set[{i}] ({change.flag}): command.{why}")
        return self


class CommandAction(Strict):
    kind: Literal["command"]
    name: Name
    title: str
    command: CommandSpec
    changes: bool | None = Field(None, description=_CHANGES)
    destructive: bool = Field(False, description="The older name of `changes` (outside production).")
    watch: list[str] = Field(
        default_factory=list,
        description="Probes polled while it runs and for the rest of the session (e.g. the dead-letters "
        "probe for a replay), so a queue that is poisoned again shows at once.",
    )

    @model_validator(mode="after")
    def _changes_agrees_with_destructive(self) -> CommandAction:
        given = "destructive" in self.model_fields_set and self.changes is not None
        if given and self.changes != self.destructive:
            raise ValueError("changes and destructive disagree: give only changes")
        return self


Action = Annotated[SelectorRemoval | Redeploy | StabiliseFlags | CommandAction, Field(discriminator="kind")]


def action_changes(
    playbook: Playbook, action: SelectorRemoval | Redeploy | StabiliseFlags | CommandAction
) -> bool:
    """Whether `action` changes the system (see `changes`): what it declares, else true for the kinds that
    change by nature and for anything in production; `destructive` counts only outside production, where
    `destructive: false` was never a declaration that an action is read-only."""
    if action.changes is not None:
        return action.changes
    if not isinstance(action, CommandAction) or playbook.environment == "production":
        return True
    return action.destructive


StepUse = Literal["fact", "gate", "probe", "action", "check", "guardrail", "manual"]
STEP_USES: tuple[str, ...] = ("fact", "gate", "probe", "action", "check", "guardrail", "manual")

Evidence = Literal[
    "command_output",
    "gate_results",
    "deployment_timestamps",
    "traffic_distribution",
    "fanout_payload_ids",
    "facts",
    "guardrail_breaches",
    "operator_actions",
]


class StepItem(Strict):
    """One thing a step does: a ref to a gate/fact/probe/action/guardrail, a built-in check, or a
    manual task.

    `when`: `always`; `on_breach` — only once a guardrail (any P0, or one of `breach_of`) is breached;
    `on_failure` — only if an earlier gate or check in the same step failed; `optional` — the
    operator decides ("only if needed"), with `condition` saying when.
    """

    fact: str | None = None
    gate: str | None = None
    probe: str | None = None
    action: str | None = None
    check: Literal["fanout", "traffic", "guardrail_watch", "cleanup", "export"] | None = None
    guardrail: str | None = Field(None, description="Confirm this guardrail is clear now.")
    manual: str | None = None
    when: Literal["always", "on_breach", "on_failure", "optional"] = "always"
    breach_of: list[str] = Field(default_factory=list, description="on_breach: only these guardrails.")
    condition: str = Field("", description="In the runbook's words, when this item applies.")
    note: str = Field("", description="What this item records or confirms, in the runbook's words.")
    keep: list[Evidence] = Field(default_factory=list, description="check: export — what the export keeps.")

    @model_validator(mode="after")
    def _exactly_one(self) -> StepItem:
        given = [k for k in STEP_USES if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "each step item names exactly one of fact, gate, probe, action, check, guardrail, manual"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.breach_of and self.when != "on_breach":
            raise ValueError("breach_of only applies with when: on_breach")
        if self.keep and self.check != "export":
            raise ValueError("keep only applies to check: export")
        return self

    @property
    def ref(self) -> tuple[str, str]:
        for key in STEP_USES:
            value = getattr(self, key)
            if value:
                return key, value
        raise AssertionError("validated")


class Step(Strict):
    name: Name
    title: str
    description: str = ""
    do: list[StepItem] = Field(min_length=1)
    verifies_rollback: bool = Field(
        False,
        description="The step verifies the rollback: an item passes only if it ran after a rollback was "
        "applied (otherwise it is unknown, or failed when the rollback failed).",
    )


Rule = Literal[
    "manual",
    "gate_passed",
    "gate_passed_after_rollback",
    "rollback_within_rto",
    "fanout_passed_after_rollback",
    "fanout_ordering_ok",
    "facts_agree",
    "guardrails_clear",
    "report_exported",
    "all_checklist",
]


class ChecklistItem(Strict):
    """An evidence item; `rule` ticks it automatically from the journal, `manual` needs the operator."""

    name: Name
    text: str
    rule: Rule = "manual"
    gate: str | None = None
    fact: str | None = None
    rto_s: float | None = Field(None, gt=0)
    action: str | None = Field(None, description="rollback_within_rto: which rollback action (default: any).")


class ExitCriterion(Strict):
    name: Name
    text: str
    rule: Rule = "manual"
    rto_s: float | None = Field(None, gt=0)
    gate: str | None = Field(None, description="gate_passed / gate_passed_after_rollback: which gate.")
    fact: str | None = Field(None, description="facts_agree: which fact.")
    action: str | None = Field(None, description="rollback_within_rto: which rollback action.")


class Precondition(Strict):
    """Something that must hold before starting; checked by a fact/gate/probe/check or by the operator."""

    name: Name
    text: str
    fact: str | None = None
    gate: str | None = None
    probe: str | None = None
    check: Literal["fanout", "traffic", "guardrail_watch"] | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Precondition:
        given = [k for k in ("fact", "gate", "probe", "check") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(
                f"a precondition is checked by at most one of fact, gate, probe, check (got {given})"
            )
        return self


class Playbook(Strict):
    version: Literal[1] = 1
    name: Name
    title: str
    environment: str = "staging"
    description: str = ""
    objective: str = ""
    preconditions: list[Precondition] = []
    replicas: list[Replica] = Field(min_length=1)
    load_balancer: LoadBalancer | None = None
    realtime: Realtime | None = None
    mirror: Mirror | None = None
    hosts: list[SshHost] = []
    facts: list[Fact] = []
    gates: list[Gate] = []
    probes: list[HttpProbe] = []
    prometheus: list[PrometheusServer] = Field(
        default_factory=list, description="Prometheus servers that guardrails and facts query."
    )
    guardrails: list[Guardrail] = []
    actions: list[Action] = []
    steps: list[Step] = Field(min_length=1)
    checklist: list[ChecklistItem] = []
    exit_criteria: list[ExitCriterion] = []
    follow_up: list[str] = Field(default_factory=list, description="Incident follow-up report sections.")
    sensitive_patterns: list[str] = Field(default_factory=list, description="Regexes hidden in share mode.")
    health_interval_s: float = Field(1.0, gt=0, le=300)
    health_timeout_s: float = Field(2.0, gt=0, le=300)

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def gate(self, name: str) -> Gate:
        return next(g for g in self.gates if g.name == name)

    def prometheus_server(self, name: str | None) -> PrometheusServer | None:
        """The named Prometheus server; unnamed, the only one (None when that does not resolve)."""
        if name is None:
            return self.prometheus[0] if len(self.prometheus) == 1 else None
        return next((p for p in self.prometheus if p.name == name), None)

    def action(self, name: str) -> SelectorRemoval | Redeploy | StabiliseFlags | CommandAction:
        return next(a for a in self.actions if a.name == name)

    def kept_by(self, removal: SelectorRemoval) -> list[str]:
        """The replicas a rollback's verification may find answering: the stable ones it does not remove and
        the candidates it keeps on purpose. Any other answer (a second candidate still selected) fails it."""
        kept = [r for r in self.replicas if r.role == "stable" or r.name in removal.keep_replicas]
        return [r.name for r in kept if r.name not in removal.remove_replicas]

    @property
    def synthetic_rps(self) -> float:
        """The synthetic traffic rate the playbook asks for (every front end starts traffic at this)."""
        lb = self.load_balancer
        if lb is not None and lb.synthetic_traffic is not None:
            return lb.synthetic_traffic.rps
        return DEFAULT_SYNTHETIC_RPS
