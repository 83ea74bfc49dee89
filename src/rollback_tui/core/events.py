"""Typed session events: every observation and every operator action is one of these.

Events are pydantic models in a discriminated union on `kind`. The journal assigns `n` (a
monotonically increasing sequence number) when it appends; `ts` is wall-clock epoch seconds.

Each kind declares its traits on its class (ClassVar flags, below on `Event`); the kind sets the hot paths
test (`DURABLE`, `HIGH_RATE`, `EVIDENCE`, `TIMELINE`, `FOLDED`) are derived from the classes once, at import,
so a per-event check stays one frozenset lookup on `event.kind`.
"""

from __future__ import annotations

import functools
import time
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

E = TypeVar("E", bound="Event")
NoticeLevel = Literal["info", "warning", "error"]


class Event(BaseModel):
    # Validators and serializers are built on a kind's first use, not at import: startup pays only for
    # the few kinds a session emits before its first frame.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    # Traits of the kind (tests/test_event_traits.py holds every kind to them):
    durable: ClassVar[bool] = False  # fsync'd before the append returns (operator intents, outcomes)
    high_rate: ClassVar[bool] = False  # flushed in batches (≤ 200 ms)
    evidence: ClassVar[bool] = False  # may change an automatic checklist rule: the engine re-evaluates
    timeline: ClassVar[bool] = False  # one line in the headless log and the report (core/read/timeline.py)
    folded: ClassVar[bool] = True  # SessionState folds it (core/state.py has its handler)

    kind: str
    ts: float = Field(default_factory=time.time)
    n: int = 0


# --- session ---------------------------------------------------------------------------------------


class SessionStarted(Event):
    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["session_started"] = "session_started"
    playbook: str
    playbook_name: str
    playbook_title: str
    environment: str
    operator: str
    host: str
    version: str
    replicas: list[dict[str, Any]] = []  # name, role, url, labels — what the panes lay out before samples
    # The realtime transport every replica must report (the playbook's realtime.transport_expected);
    # journals written before this field expect "redis".
    transport_expected: str | None = None
    # True: each runbook step's status comes from its items' StepItemStarted/Finished events (the runner,
    # session/runbook.py). Journals written before the runner existed read as False: from the evidence.
    runbook_items: bool = False


class SessionResumed(Event):
    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["session_resumed"] = "session_resumed"
    operator: str
    recovered_events: int
    skipped_lines: int = 0


class SessionEnded(Event):
    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["session_ended"] = "session_ended"
    reason: str = "quit"


class Notice(Event):
    """Something the operator should see that is not a measurement (a feed went down, a warning)."""

    timeline: ClassVar[bool] = True
    kind: Literal["notice"] = "notice"
    level: NoticeLevel = "info"
    source: str
    message: str


class StepEntered(Event):
    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["step_entered"] = "step_entered"
    step: str
    actor: str = "engine"


ItemOutcome = Literal["passed", "failed", "unknown", "skipped", "needs_input", "cancelled"]


class StepItemStarted(Event):
    """The runbook runner began one item of a step (a step's status comes from its items' outcomes, never
    from the tracker having entered it)."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["step_item_started"] = "step_item_started"
    step: str
    index: int  # 0-based position in the step's `do`
    item: str  # `gate: smoke`, `manual: Keep auth …`
    actor: str = "engine"


class StepItemFinished(Event):
    """What one item of a step showed. `unknown`: it could not run or could not look (never a failure,
    so it does not trigger `on_failure` items); `needs_input`: a manual fact or task nobody answered;
    `skipped`: its condition did not hold, or it changes the system and was not allowed to. `due`: a
    conditional item (on breach, on failure) whose condition held — it had to run, so a skip is not a
    condition that did not apply."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["step_item_finished"] = "step_item_finished"
    step: str
    index: int
    item: str
    outcome: ItemOutcome
    reason: str = ""  # in words
    note: str = ""  # the operator's note (a manual task)
    actor: str = "engine"
    due: bool = False


class IncidentRecorded(Event):
    """Who runs the incident and which one it is (`--incident`, `--commander`, `--scribe`): the report's
    header and the status bar. The latest one holds every field (the engine merges what was recorded)."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["incident_recorded"] = "incident_recorded"
    incident: str | None = None  # an ID or a URL
    commander: str | None = None
    scribe: str | None = None
    actor: str


class NeedStatus(BaseModel):
    """One thing an item needs from the machine the session runs on, and whether it has it."""

    model_config = ConfigDict(extra="forbid")

    need: str  # env | binary | file | known_hosts | kube_context | host | tcp | item (core/readiness.py)
    target: str  # the variable, program, path, host, host:port, context, or the item ("gate smoke")
    ok: bool
    status: str  # present | missing | resolvable | unresolvable | reachable | unreachable | unknown | …
    why: str = ""


class ItemReadiness(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item: str  # replica | load_balancer | realtime | probe | fact | gate | action | guardrail | check | step
    name: str
    needs: list[NeedStatus] = []

    @property
    def ready(self) -> bool:
        return all(n.ok for n in self.needs)

    @property
    def label(self) -> str:
        return f"{self.item} {self.name}"


class ReadinessChecked(Event):
    """What every playbook item needs from here (env vars, binaries, SSH hosts, kube context, host names)
    and whether each is present / resolvable / reachable, checked at the start of the session."""

    timeline: ClassVar[bool] = True
    kind: Literal["readiness_checked"] = "readiness_checked"
    host: str  # where it was checked from
    items: list[ItemReadiness]
    duration_s: float = 0.0


# --- health ----------------------------------------------------------------------------------------


class HealthSample(Event):
    """One health poll. `unknown`: it could not observe the replica from here (its host name does not
    resolve, auth refused, a bad URL); `error` says why. A replica that does not answer is `down`."""

    high_rate: ClassVar[bool] = True
    kind: Literal["health_sample"] = "health_sample"
    replica: str
    status: Literal["ok", "degraded", "down", "junk", "timeout", "unknown"]
    latency_ms: float | None = None
    http_status: int | None = None
    image: str | None = None
    commit: str | None = None
    channel_prefix: str | None = None
    transport: str | None = None
    error: str | None = None


# --- facts, probes ---------------------------------------------------------------------------------


class FactCaptured(Event):
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["fact_captured"] = "fact_captured"
    fact: str
    phase: Literal["baseline", "after_rollback", "check"] = "baseline"
    values: dict[str, str | None]  # replica (or "-") → value
    source: str
    agree: bool | None = None
    error: str | None = None
    # False: it could not be observed (unset ${VAR}, unresolvable host, missing binary, auth refused);
    # `error` says why. Journals written before this field read as observed.
    observed: bool = True

    def values_text(self) -> str:
        """The values in words: `stable-a: x; stable-b: y`, a lone unkeyed value as itself."""
        if all(v is None for v in self.values.values()):
            return "pending: record it by hand" if self.source == "manual:pending" else "no value"
        if list(self.values) == ["-"]:
            return str(self.values["-"])
        return "; ".join(f"{k}: {'—' if v is None else v}" for k, v in self.values.items())


class DeadLettersInspected(Event):
    """The dead-letter queue looked at: its count and the newest items (one line each, in the endpoint's
    order), read from the dead-letters probe's endpoint."""

    timeline: ClassVar[bool] = True
    kind: Literal["dead_letters_inspected"] = "dead_letters_inspected"
    probe: str
    count: int | None = None
    newest: list[str] = []
    observed: bool = True
    error: str | None = None


class ProbeResult(Event):
    """One probe request. `ok` false with `observed` true: the target failed (refused, timed out, 5xx);
    `observed` false: it could not look (unset ${VAR}, unresolvable host, auth refused) — `error` says why."""

    timeline: ClassVar[bool] = True
    kind: Literal["probe_result"] = "probe_result"
    probe: str
    ok: bool
    value: Any = None
    http_status: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    observed: bool = True

    @property
    def status(self) -> Literal["ok", "failed", "unknown"]:
        return "unknown" if not self.observed else ("ok" if self.ok else "failed")


# --- fanout ----------------------------------------------------------------------------------------


class FanoutFrame(Event):
    high_rate: ClassVar[bool] = True
    kind: Literal["fanout_frame"] = "fanout_frame"
    run: str
    session: Literal["A", "B", "tap"]
    replica: str
    thread_id: str
    event_id: str
    seq: int | None = None
    sent_at: float | None = None
    received_at: float
    latency_ms: float | None = None
    replay: bool = False


TapRow = tuple[float, str, str, str, str, int | None, float | None]
TAP_COLUMNS = ("received_at", "channel", "replica", "thread_id", "event_id", "seq", "sent_at")


class FanoutTapBatch(Event):
    """Raw frames the Redis tap read in one go: one journal line per socket read, one row per frame.

    The tap can see tens of thousands of frames a second; a row is a few µs where a whole event each
    would be tens. Rows follow TAP_COLUMNS; the fold turns the newest ones into frames for the panes.
    """

    high_rate: ClassVar[bool] = True
    kind: Literal["fanout_tap_batch"] = "fanout_tap_batch"
    run: str
    rows: list[TapRow]


class FanoutSessionState(Event):
    kind: Literal["fanout_session"] = "fanout_session"
    run: str
    session: Literal["A", "B", "tap"]
    replica: str
    state: Literal["connecting", "open", "dropped", "reconnecting", "closed"]
    detail: str | None = None


class FanoutResult(Event):
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["fanout_result"] = "fanout_result"
    run: str
    thread_id: str
    passed: bool
    phase: Literal["before_rollback", "after_rollback", "adhoc"] = "adhoc"
    reasons: list[str] = []
    sent: list[str] = []  # event ids
    received: dict[str, list[str]] = {}  # session → event ids in order
    cross_latency_ms: float | None = None
    replay_ok: bool | None = None
    ordering_ok: bool | None = None
    prefixes_seen: list[str] = []


# --- traffic, guardrails, rollback -------------------------------------------------------------------


class TrafficWindow(Event):
    """One window of synthetic traffic through the balancer.

    `requests` counts every request with an outcome: those served by a replica that named itself
    (`per_replica`, `errors_5xx`) and those that were not (`unattributed`: the reason in words → count,
    e.g. "no replica identified (HTTP 502)", "balancer unreachable"). An unattributed request is a
    failure of the service: no replica answered it. `transport_errors` counts the unanswered ones.
    """

    high_rate: ClassVar[bool] = True
    kind: Literal["traffic_window"] = "traffic_window"
    window_s: float
    requests: int
    per_replica: dict[str, int]
    errors_5xx: dict[str, int] = {}
    p50_ms: float | None = None
    p95_ms: float | None = None
    p95_by_replica: dict[str, float] = {}  # each replica's own p95, for judging a candidate against stable
    ws_disconnects: int = 0
    idempotency_collisions: int = 0
    transport_errors: int = 0
    unattributed: dict[str, int] = {}
    # Every answer in the order it came back, one character each, so a sequential test replays from the
    # journal exactly as it ran: the replica's position in sorted(per_replica) as a letter (a, b, …),
    # uppercase for a 5xx; "." for a request no replica answered. Empty: the order is not recorded.
    sequence: str = ""

    @property
    def failed_unattributed(self) -> int:
        return sum(self.unattributed.values())

    def responses(self) -> list[tuple[str | None, bool]] | None:
        """(replica, 5xx) per response in order (None: no replica answered it, a failure), or None when
        the window does not say the order (not recorded, or not the window's own counts)."""
        names = sorted(self.per_replica)
        if not self.sequence or len(self.sequence) != self.requests or len(names) > len(_LETTERS):
            return None
        out: list[tuple[str | None, bool]] = []
        for char in self.sequence:
            if char == ".":
                out.append((None, True))
                continue
            index = _LETTERS.find(char.lower())
            if index < 0 or index >= len(names):
                return None
            out.append((names[index], char.isupper()))
        return out


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def response_sequence(outcomes: list[tuple[str | None, bool]]) -> str:
    """TrafficWindow.sequence of (replica or None, 5xx) answers in order; "" past 26 replicas."""
    names = sorted({r for r, _ in outcomes if r is not None})
    if len(names) > len(_LETTERS):
        return ""
    letter = {name: _LETTERS[i] for i, name in enumerate(names)}
    return "".join("." if r is None else letter[r].upper() if bad else letter[r] for r, bad in outcomes)


class SelectorState(Event):
    timeline: ClassVar[bool] = True
    kind: Literal["selector_state"] = "selector_state"
    selector: dict[str, str]
    weights: dict[str, int] = {}
    backends: list[str] = []
    source: str


class GuardrailBreach(Event):
    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["guardrail_breach"] = "guardrail_breach"
    guardrail: str
    severity: Literal["P0", "P1"]
    metric: str
    value: float
    threshold: float
    window_s: float
    first_bad_ts: float | None = None
    scope: str | None = None  # candidate | stable | all: a candidate breach is mitigated by its rollback
    # A query's unit as its playbook declares it (ratio | ms | s | count): a breach reads in it wherever
    # it is told, without the playbook. None: the metric names its unit (an http_5xx_rate is a ratio).
    unit: Literal["ratio", "ms", "s", "count"] | None = None
    # Judged against the baseline: `value` is the comparison, these are the two sides it compared.
    candidate: float | None = None
    baseline: float | None = None
    compare: Literal["ratio", "difference"] | None = None
    # Decided by the sequential test (core/sequential.py): its run of `requests` in-scope responses with
    # `errors` failed (`value` is their rate), its `statistic` against the 5xx rate `alternative`, at or
    # over `bound`. None for a guardrail judged over fixed windows.
    requests: int | None = None
    errors: int | None = None
    statistic: float | None = None
    bound: float | None = None
    alternative: float | None = None


class GuardrailRecovered(Event):
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["guardrail_recovered"] = "guardrail_recovered"
    guardrail: str
    value: float
    # How `value` reads, as its breach read (see GuardrailBreach): None in journals written before these.
    metric: str | None = None
    unit: Literal["ratio", "ms", "s", "count"] | None = None
    compare: Literal["ratio", "difference"] | None = None


class GuardrailStatus(Event):
    """Whether a guardrail can judge: journaled when it first has data over its window (`observed`), when
    it cannot observe (`unknown`, with the reason) and when that clears (`observed` or `waiting`)."""

    evidence: ClassVar[bool] = True
    kind: Literal["guardrail_status"] = "guardrail_status"
    guardrail: str
    status: Literal["observed", "unknown", "waiting"]
    reason: str | None = None


class MetricSample(Event):
    """One evaluation of a guardrail's metric query (a Prometheus instant query), as it came back.

    `errors` says what could not be observed and why (server unreachable, a query error or timeout, no
    series, NaN, an unset ${VAR}, auth refused), keyed by the part that failed: value, samples, baseline,
    baseline_samples. The core judges it (core/guardrails.py): an error is *unknown*, never ok. With a
    baseline, `value`/`samples` are the candidate's side and `baseline`/`baseline_samples` the stable one.
    """

    kind: Literal["metric_sample"] = "metric_sample"
    high_rate: ClassVar[bool] = True
    guardrail: str
    server: str
    query: str  # as evaluated: placeholders filled in (the candidate's side with a baseline)
    window_s: float
    value: float | None = None
    samples: float | None = None
    baseline: float | None = None
    baseline_samples: float | None = None
    series: str | None = None  # which series gave `value` when several answered (the largest is judged)
    errors: dict[str, str] = {}
    took_ms: float | None = None


# The rollback is a state machine (core/rollback.py folds these): requested → applying → applied →
# verified, or failed (with the reason in words) or cancelled. Only *applied* (and verified) make the
# session "after rollback".


class RollbackRequested(Event):
    """The operator (or the auto-rollback policy) confirmed a rollback; nothing has changed yet."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["rollback_requested"] = "rollback_requested"
    action: str
    actor: str
    confirmed_text: str
    reason: str = ""
    replicas: list[str] = []  # the replicas the rollback takes out of traffic


class RollbackApplying(Event):
    """The routing was read and the change is being made (journaled before the driver acts)."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["rollback_applying"] = "rollback_applying"
    action: str
    driver: str
    before: dict[str, Any] = {}


class RollbackApplied(Event):
    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["rollback_applied"] = "rollback_applied"
    action: str
    driver: str
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    ok: bool = True
    error: str | None = None


class RollbackVerified(Event):
    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["rollback_verified"] = "rollback_verified"
    action: str
    ok: bool
    stable_share: float
    requests: int
    time_to_detect_s: float | None = None
    rto_s: float | None = None
    time_to_mitigate_s: float | None = None  # first bad sample → verified
    error: str | None = None  # why it is not verified, in words


class RollbackFailed(Event):
    """A rollback that did not complete for a reason the other events cannot carry (a crash of the
    driver, the session ending mid-rollback, a resumed session finding it unfinished)."""

    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["rollback_failed"] = "rollback_failed"
    action: str
    stage: str  # where it stopped: requested | applying | applied
    reason: str


class RollbackCancelled(Event):
    """The operator declined the rollback at its confirmation (journaled with who, and what was active)."""

    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["rollback_cancelled"] = "rollback_cancelled"
    action: str
    actor: str
    reason: str = ""


# --- gates -----------------------------------------------------------------------------------------


class GateStarted(Event):
    durable: ClassVar[bool] = True  # so that resume knows every gate that may have been running
    timeline: ClassVar[bool] = True
    kind: Literal["gate_started"] = "gate_started"
    gate: str
    run: str
    argv: list[str]
    where: str
    actor: str = "engine"


class GateOutput(Event):
    high_rate: ClassVar[bool] = True
    kind: Literal["gate_output"] = "gate_output"
    gate: str
    run: str
    stream: Literal["stdout", "stderr"]
    line: str


class GateFinished(Event):
    """How a gate run ended. `interrupted`: the cockpit stopped while it ran (its process died with the
    cockpit); journaled on resume, with `last_seen_ts` — the run's last journaled line — and `duration_s`
    up to then, since when exactly it died is unknown."""

    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["gate_finished"] = "gate_finished"
    gate: str
    run: str
    outcome: Literal["passed", "failed", "timed_out", "cancelled", "error", "interrupted"]
    exit_code: int | None = None
    duration_s: float
    output_lines: int = 0
    artefact: str | None = None
    error: str | None = None
    last_seen_ts: float | None = None

    @property
    def started_ts(self) -> float:
        return (self.ts if self.last_seen_ts is None else self.last_seen_ts) - self.duration_s

    @property
    def failed(self) -> bool | None:
        """Not passed; None when unknown (interrupted), which never counts as a failure or a breach."""
        return None if self.outcome == "interrupted" else self.outcome != "passed"


# --- command actions (redeploy, flags, queue recovery) ----------------------------------------------


class ActionConfirmed(Event):
    """The operator confirmed an action that changes the system, with what they typed and the commands
    they were shown (argv with ${VAR} as the variable's name); journaled before anything runs."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True  # folded into the event log only (SessionState.log)
    kind: Literal["action_confirmed"] = "action_confirmed"
    action: str
    actor: str
    typed: str
    via: str = "typed"  # typed | --allow-destructive (headless)
    commands: list[dict[str, Any]] = []  # {"label", "argv", "where"}


ActionOutcome = Literal["passed", "failed", "timed_out", "cancelled", "error", "interrupted"]


class ActionStarted(Event):
    """An action, or one part of it (`part`: a redeploy's service or `prepare`, a flag), starts. The whole
    action is `part` ""; its ActionFinished carries the outcome and the reason in words."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["action_started"] = "action_started"
    action: str
    part: str = ""
    argv: list[str] = []  # as previewed: placeholders filled, ${VAR} left as the variable's name
    where: str = "local"
    actor: str = "engine"


class ActionFinished(Event):
    """`error`: it could not run (missing binary, unset ${VAR}, no value for a placeholder) — unknown, not
    failed; `interrupted`: the cockpit stopped while it ran (journaled on resume)."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["action_finished"] = "action_finished"
    action: str
    part: str = ""
    outcome: ActionOutcome
    exit_code: int | None = None
    duration_s: float = 0.0
    output: list[str] = []  # the last lines it printed
    error: str | None = None  # why it did not pass, in words


class FlagsRead(Event):
    """The flags a stabilise_flags action names (its changes and its must_stay_on flags), read before and
    after it changes anything. Only those flags are kept: the read command may print every variable."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["flags_read"] = "flags_read"
    action: str
    phase: Literal["before", "after"]
    values: dict[str, str | None]  # flag → value; None: the read did not print it
    observed: bool = True
    error: str | None = None


# --- evidence --------------------------------------------------------------------------------------


class OperatorAction(Event):
    """Any operator key press that changes something; fsync'd before it is acknowledged."""

    durable: ClassVar[bool] = True
    timeline: ClassVar[bool] = True  # folded into the event log only (SessionState.log)
    kind: Literal["operator_action"] = "operator_action"
    action: str
    actor: str
    detail: dict[str, Any] = {}


class ChecklistTicked(Event):
    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["checklist_ticked"] = "checklist_ticked"
    item: str
    checked: bool
    actor: str
    note: str = ""
    auto: bool = False


class ExportWritten(Event):
    durable: ClassVar[bool] = True
    evidence: ClassVar[bool] = True
    timeline: ClassVar[bool] = True
    kind: Literal["export_written"] = "export_written"
    directory: str
    files: list[str]
    actor: str


AnyEvent = Annotated[
    SessionStarted
    | SessionResumed
    | SessionEnded
    | Notice
    | StepEntered
    | StepItemStarted
    | StepItemFinished
    | IncidentRecorded
    | ReadinessChecked
    | HealthSample
    | FactCaptured
    | DeadLettersInspected
    | ProbeResult
    | FanoutFrame
    | FanoutTapBatch
    | FanoutSessionState
    | FanoutResult
    | TrafficWindow
    | SelectorState
    | GuardrailBreach
    | GuardrailRecovered
    | GuardrailStatus
    | MetricSample
    | RollbackRequested
    | RollbackApplying
    | RollbackApplied
    | RollbackVerified
    | RollbackFailed
    | RollbackCancelled
    | GateStarted
    | GateOutput
    | GateFinished
    | ActionConfirmed
    | ActionStarted
    | ActionFinished
    | FlagsRead
    | OperatorAction
    | ChecklistTicked
    | ExportWritten,
    Field(discriminator="kind"),
]


@functools.cache
def event_adapter() -> TypeAdapter[AnyEvent]:
    """The validator of any journal line, built when a journal is first read back."""
    return TypeAdapter(AnyEvent)


EVENT_CLASSES: tuple[type[Event], ...] = get_args(get_args(AnyEvent)[0])


def kind_of(cls: type[Event]) -> str:
    return cls.model_fields["kind"].default


def _kinds(trait: str) -> frozenset[str]:
    return frozenset(kind_of(cls) for cls in EVENT_CLASSES if getattr(cls, trait))


DURABLE = _kinds("durable")
HIGH_RATE = _kinds("high_rate")
EVIDENCE = _kinds("evidence")
TIMELINE = _kinds("timeline")
FOLDED = _kinds("folded")


_TRUSTED: dict[type, tuple[tuple[str, ...], str]] = {}  # class → (field names in order, kind)


def trusted(cls: type[E], **values: Any) -> E:
    """Build an event from values the caller has already typed, skipping validation (hot paths only).

    Every field must be given; `n` is stamped by the journal. Several times cheaper than the validating
    constructor and than `model_construct`, which matters at tens of thousands of frames per second.
    """
    spec = _TRUSTED.get(cls)
    if spec is None:
        spec = _TRUSTED[cls] = (tuple(cls.model_fields), cls.model_fields["kind"].default)
    names, kind = spec
    values.setdefault("n", 0)
    values["kind"] = kind
    ordered = {name: values[name] for name in names}  # declared order: `kind` leads the line
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", ordered)
    object.__setattr__(obj, "__pydantic_fields_set__", set(ordered))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def parse_event(line: str | bytes) -> Event:
    """Parse one journal line into its typed event (raises pydantic.ValidationError)."""
    return event_adapter().validate_json(line)
