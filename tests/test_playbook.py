"""Playbook loading: the shipped playbooks validate and encode their runbooks; broken playbooks are
rejected with every error at its file:line:column and field path; the demo gates really run."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from rollback_tui.playbook.load import (
    LocatedError,
    PlaybookError,
    bundled_playbook,
    bundled_playbook_names,
    load_playbook,
    load_playbook_text,
    playbook_schema,
    referenced_env_vars,
)
from rollback_tui.playbook.model import CommandSpec, Gate, Playbook, Redeploy, SelectorRemoval, StabiliseFlags

DATA = Path(__file__).parent / "data" / "playbooks"
SHIPPED = ["demo", "realtime-surreal-rehearsal", "production-rollback"]


def errors_of(path: Path | str) -> list[tuple[int | None, int | None, str, str]]:
    with pytest.raises(PlaybookError) as info:
        load_playbook(path)
    for err in info.value.errors:
        assert err.file == str(path)
    return [(e.line, e.column, e.path, e.message) for e in info.value.errors]


def where(errors: list[tuple[int | None, int | None, str, str]]) -> list[tuple[int | None, int | None, str]]:
    return [(line, col, path) for line, col, path, _ in errors]


# --- shipped playbooks ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_playbooks_validate(name: str) -> None:
    path = bundled_playbook(name)
    assert path.name == f"{name}.yaml" and path.is_file()
    pb = load_playbook(path)
    assert pb.name == name
    assert name in bundled_playbook_names()


def test_unknown_bundled_playbook_is_a_playbook_error() -> None:
    with pytest.raises(PlaybookError, match=r"no bundled playbook named 'nope'.*demo"):
        bundled_playbook("nope")


def _rehearsal_shape(pb: Playbook) -> None:
    """What the realtime + Surreal rehearsal runbook requires, for the rehearsal and the demo."""
    assert [s.title.split(". ", 1)[1] for s in pb.steps] == [
        "Capture baseline evidence",
        "Validate realtime fanout before rollback",
        "Introduce controlled issue",
        "Trigger rollback condition",
        "Rollback verification",
        "Post-rehearsal cleanup",
    ]
    stable = [r.name for r in pb.replicas if r.role == "stable"]
    assert len(stable) == 2 and [r.name for r in pb.replicas if r.role == "candidate"] == ["blue-next"]
    assert pb.realtime is not None and pb.realtime.transport_expected == "redis"
    assert pb.realtime.prefix_env == "CHAT_REALTIME_CHANNEL_PREFIX"
    prefix = next(f for f in pb.facts if f.field == "realtime.channel_prefix")
    assert prefix.must_agree and prefix.source == "health"
    assert {f.field for f in pb.facts if f.source == "health"} >= {"image", "commit", "realtime.transport"}

    guardrails = {g.metric: g for g in pb.guardrails}
    for metric in ("http_5xx_rate", "ws_disconnects", "idempotency_collisions"):
        assert guardrails[metric].severity == "P0"
    assert guardrails["p95_latency_ms"].severity == "P1"
    # Latency is judged against the stable replicas: host-wide slowness is not a bad release.
    p95 = guardrails["p95_latency_ms"]
    assert p95.scope == "candidate" and p95.baseline is not None and p95.baseline.compare == "ratio"

    rollback = next(a for a in pb.actions if isinstance(a, SelectorRemoval))
    assert rollback.remove_replicas == ["blue-next"] and rollback.replica_set == "blue-next"
    step4 = pb.steps[3].do
    assert any(i.action == rollback.name and i.when == "on_breach" for i in step4)
    assert any(i.manual and "same runtime profile" in i.manual for i in step4)
    assert [i.ref for i in pb.steps[4].do][:2] == [("gate", "release-gates-surreal"), ("check", "fanout")]
    assert [i.ref for i in pb.steps[5].do] == [("check", "cleanup"), ("check", "export")]
    assert set(pb.steps[5].do[1].keep) == {
        "command_output",
        "deployment_timestamps",
        "traffic_distribution",
        "fanout_payload_ids",
    }

    rules = {c.rule: c for c in pb.checklist}
    assert len(pb.checklist) == 5
    assert rules["gate_passed_after_rollback"].gate == "release-gates-surreal"
    assert {
        "rollback_within_rto",
        "fanout_passed_after_rollback",
        "fanout_ordering_ok",
        "report_exported",
    } <= set(rules)
    assert [e.rule for e in pb.exit_criteria] == ["all_checklist", "rollback_within_rto", "manual"]
    assert "PR-15" in pb.exit_criteria[2].text


def test_rehearsal_playbook_encodes_the_runbook() -> None:
    pb = load_playbook(bundled_playbook("realtime-surreal-rehearsal"))
    _rehearsal_shape(pb)
    assert pb.gate("release-gates-surreal").argv == ["just", "release-gates-surreal"]
    # '*' is one literal argument: no shell ever sees it.
    api_tests = pb.gate("api-tests")
    assert api_tests.argv == ["cargo", "test", "-p", "gotong-api", "--test", "*"] and not api_tests.shell
    lb = pb.load_balancer
    assert lb is not None and lb.traffic_control.driver == "command"
    remove = lb.traffic_control.remove
    assert remove is not None and remove.argv is not None
    assert remove.argv[:3] == ["kubectl", "--context", "${KUBE_CONTEXT}"] and "patch" in remove.argv
    assert json.loads(remove.argv[-1]) == {"spec": {"selector": {"app": "gotong-api", "track": "stable"}}}
    weights = lb.weights
    assert 0.10 <= weights["blue-next"] / sum(weights.values()) <= 0.20
    surreal = next(f for f in pb.facts if f.name == "surreal-image-tag")
    assert surreal.source == "command" and surreal.regex and surreal.expect == "3.0.0"
    assert {"KUBE_CONTEXT", "REDIS_PASSWORD", "CANDIDATE_IMAGE"} <= referenced_env_vars(pb)


def test_demo_playbook_is_the_rehearsal_on_the_lab() -> None:
    pb = load_playbook(bundled_playbook("demo"))
    _rehearsal_shape(pb)
    assert [r.url for r in pb.replicas] == [f"http://127.0.0.1:{p}" for p in (18081, 18082, 18083)]
    assert [r.labels for r in pb.replicas] == [
        {"app": "api", "track": "stable"},
        {"app": "api", "track": "stable"},
        {"app": "api", "track": "blue-next"},
    ]
    assert all(r.lab is not None for r in pb.replicas)
    assert pb.replicas[0].lab.image == pb.replicas[1].lab.image != pb.replicas[2].lab.image  # type: ignore[union-attr]
    assert pb.replicas[0].lab.commit != pb.replicas[2].lab.commit  # type: ignore[union-attr]
    lb = pb.load_balancer
    assert lb is not None and lb.url == "http://127.0.0.1:18080"
    assert lb.traffic_control.admin_url == "http://127.0.0.1:18090" and lb.selector == {"app": "api"}
    assert lb.weights["blue-next"] / sum(lb.weights.values()) == pytest.approx(0.15, abs=0.03)
    assert pb.realtime is not None and pb.realtime.redis_url == "redis://127.0.0.1:16379/0"
    assert pb.realtime.channel_prefix == "chat:rt:"
    assert [p.url for p in pb.probes] == ["http://127.0.0.1:18081/api/ops/dead-letters"]
    assert pb.health_interval_s == 1
    for gate in pb.gates:  # fast, argv, no shell, nothing the fresh machine lacks
        assert gate.argv and gate.argv[0] == "python3" and not gate.shell and gate.timeout_s <= 60


def test_production_playbook_encodes_the_runbook() -> None:
    pb = load_playbook(bundled_playbook("production-rollback"))
    assert pb.environment == "production" and len(pb.steps) == 7
    triggers = {g.name: g for g in pb.guardrails}
    assert {(g.metric, g.gate) for g in triggers.values() if g.metric == "gate_failed"} == {
        ("gate_failed", "e2e-auth-session"),
        ("gate_failed", "smoke"),
    }
    assert {"health_failing", "dead_letters_growth", "p95_latency_ms"} <= {g.metric for g in pb.guardrails}
    assert triggers["p95-sustained"].sustained_s > 0
    dead = next(p for p in pb.probes if p.name == "dead-letters")
    assert dead.url == "https://api.kezilu.com/api/ops/dead-letters"
    assert next(g for g in pb.guardrails if g.metric == "dead_letters_growth").probe == "dead-letters"

    redeploy = next(a for a in pb.actions if isinstance(a, Redeploy))
    assert set(redeploy.services) == {"web", "api", "worker"} and redeploy.forbid_destructive_migrations
    lkg = next(f for f in pb.facts if f.name == redeploy.last_known_good)
    assert lkg.source == "command" and lkg.regex
    assert sum(f.name.startswith("railway-deployment-") for f in pb.facts) == 3

    flags = next(a for a in pb.actions if isinstance(a, StabiliseFlags))
    assert [(c.flag, c.value, c.optional) for c in flags.set] == [("S3_STARTUP_CHECK_STRICT", "false", True)]
    assert any("AUTH" in f for f in flags.must_stay_on) and any("CSRF" in f for f in flags.must_stay_on)
    assert any("COOKIE" in f for f in flags.must_stay_on)

    backfill: Gate = pb.gate("verify-backfill")
    assert backfill.argv == ["npm", "run", "verify:backfill"]
    assert backfill.env == {"BACKFILL_VERIFY_STRICT": "true", "DATABASE_URL": "${DATABASE_URL}"}
    smoke = pb.gate("smoke")
    assert smoke.argv == ["node", "scripts/smoke_post_deploy.mjs"]
    assert (
        smoke.env["SMOKE_API_BASE_URL"]
        == smoke.env["RELEASE_REQUIRED_API_ORIGIN"]
        == "https://api.kezilu.com"
    )
    assert "browser-e2e" in {g.name for g in pb.gates}

    queue = pb.steps[3].do
    assert [i.ref[0] for i in queue].count("probe") == 2
    assert queue[0].action == "pause-ingestion" and queue[0].breach_of == ["dead-letters-growth"]
    assert any(i.action == "replay-dead-letters" for i in queue)
    assert any(i.guardrail == "dead-letters-growth" for i in queue)  # re-poison check

    checklist_text = " ".join(c.text.lower() for c in pb.checklist)
    for flow in ("auth/session", "import", "analysis", "export"):
        assert flow in checklist_text
    assert pb.follow_up[:4] == ["timeline", "impact", "root cause", "corrective actions"]
    assert {e.gate for e in pb.exit_criteria if e.rule == "gate_passed"} == {"smoke", "browser-e2e"}
    assert {"DATABASE_URL", "OPS_API_TOKEN"} <= referenced_env_vars(pb)


def test_schema_is_json_schema_for_the_model() -> None:
    schema = playbook_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "rollback-tui playbook"
    assert {"replicas", "steps", "guardrails", "actions"} <= set(schema["properties"])
    assert set(schema["required"]) == {"name", "title", "replicas", "steps"}
    json.dumps(schema)


# --- broken playbooks: every error at file:line:column and field ---------------------------------


def test_bad_role_is_located() -> None:
    path = DATA / "bad-role.yaml"
    errors = errors_of(path)
    assert errors == [(9, 11, "replicas[1].role", "Input should be 'stable' or 'candidate'")]
    with pytest.raises(PlaybookError) as info:
        load_playbook(path)
    assert str(info.value) == f"{path}:9:11: replicas[1].role: Input should be 'stable' or 'candidate'"


def test_missing_unknown_and_model_errors_all_reported() -> None:
    errors = errors_of(DATA / "missing-and-unknown.yaml")
    assert where(errors) == [
        (4, 11, "replicas[0].name"),
        (7, 1, "load_balancer.url"),  # missing field: at the parent's key
        (8, 3, "load_balancer.selectr"),  # unknown field: at its key
        (10, 3, "load_balancer.traffic_control"),
    ]
    messages = [m for *_, m in errors]
    assert "'Stable A' is not a valid name" in messages[0]
    assert messages[1] == "required field is missing"
    assert "did you mean 'selector'?" in messages[2]
    assert messages[3] == "driver 'lab' needs admin_url"


def test_dangling_references_are_located() -> None:
    errors = errors_of(DATA / "dangling-refs.yaml")
    assert where(errors) == [
        (15, 37, "load_balancer.weights.blue-nxt"),
        (24, 12, "gates[1].where"),
        (30, 11, "guardrails[0].gate"),
        (36, 23, "actions[0].remove_replicas[0]"),
        (49, 15, "steps[2].do[0].gate"),
        (54, 11, "checklist[0].fact"),
    ]
    messages = dict(((p, m) for _, _, p, m in errors))
    assert messages["steps[2].do[0].gate"] == (
        "no gate named 'release-gatez' (known: release-gates-surreal, api-tests)"
    )
    assert messages["gates[1].where"] == "no host named 'bastion' (known: local)"
    assert "only candidate replicas" in messages["actions[0].remove_replicas[0]"]
    assert messages["checklist[0].fact"] == "no fact named 'channel-prefix' (no facts are defined)"


def test_a_kept_candidate_is_a_replica_the_rollback_does_not_also_remove(tmp_path: Path) -> None:
    text = bundled_playbook("demo").read_text()
    kept = "    remove_replicas: [blue-next]\n    keep_replicas: [blue-next, blue-nxt]\n"
    path = tmp_path / "kept.yaml"
    path.write_text(text.replace("    remove_replicas: [blue-next]\n", kept, 1))
    messages = {p: m for _, _, p, m in errors_of(path)}
    assert messages["actions[1].keep_replicas[0]"] == "'blue-next' is also in remove_replicas"
    assert messages["actions[1].keep_replicas[1]"].startswith("no replica named 'blue-nxt'")
    assert len(messages) == 2


def test_inline_secrets_and_shell_strings_are_rejected() -> None:
    errors = errors_of(DATA / "secrets-and-shell.yaml")
    assert where(errors) == [
        (5, 10, "replicas[0].url"),
        (8, 5, "gates[0]"),
        (14, 5, "gates[1].env"),
        (19, 10, "probes[0].url"),
    ]
    messages = [m for *_, m in errors]
    assert "inline credential" in messages[0] and "inline credential" in messages[3]
    assert messages[1] == "a command string needs explicit shell: true (prefer argv)"
    assert "'API_TOKEN' looks like a secret" in messages[2]


def test_yaml_syntax_error_is_located() -> None:
    errors = errors_of(DATA / "syntax-error.yaml")
    assert len(errors) == 1
    line, column, path, message = errors[0]
    assert (line, column, path) == (7, 4, "")
    assert message.startswith("YAML syntax error:")


def test_duplicate_keys_and_names_are_located() -> None:
    errors = errors_of(DATA / "duplicates.yaml")
    assert errors == [
        (7, 5, "replicas[0].url", "duplicate key 'url' (first defined at line 5)"),
        (8, 11, "replicas[1].name", "duplicate replica name 'stable-a' (also replicas[0])"),
    ]


def test_action_kind_errors_are_located() -> None:
    errors = errors_of(DATA / "bad-action.yaml")
    assert where(errors) == [(8, 11, "actions[0].kind"), (11, 5, "actions[1].title"), (15, 5, "actions[2]")]
    assert "expected one of: selector_removal, redeploy, stabilise_flags, command" in errors[0][3]
    assert errors[2][3].startswith("missing kind")


def test_no_stable_replica() -> None:
    assert errors_of(DATA / "no-stable.yaml") == [
        (3, 1, "replicas", "at least one replica needs role: stable (the rollback target)")
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.yaml", "the playbook is empty"),
        ("not-a-mapping.yaml", "the top level must be a mapping of playbook fields, got list"),
        ("does-not-exist.yaml", "no such file"),
    ],
)
def test_document_level_errors(name: str, message: str) -> None:
    errors = errors_of(DATA / name)
    assert [m for *_, m in errors] == [message]


def test_directory_and_non_utf8_are_playbook_errors(tmp_path: Path) -> None:
    assert errors_of(tmp_path)[0][3] == "is a directory, not a playbook file"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: x\ntitle: caf\xe9\n")
    assert errors_of(bad) == [(2, 11, "", "not UTF-8 text (byte 0xe9 at offset 18)")]


def test_minimal_fixture_is_valid() -> None:
    pb = load_playbook(DATA / "minimal.yaml")
    assert pb.name == "minimal" and pb.steps[0].do[0].ref == ("manual", "Look at the dashboard.")


# --- model rules through the loader ---------------------------------------------------------------

BASE = """\
name: t
title: T
replicas:
  - {name: a, url: "http://127.0.0.1:1", role: stable}
steps:
  - {name: s, title: S, do: [{manual: m}]}
"""


def one_error(extra: str) -> LocatedError:
    with pytest.raises(PlaybookError) as info:
        load_playbook_text(BASE + extra, "t.yaml")
    assert len(info.value.errors) == 1, str(info.value)
    return info.value.errors[0]


def test_secret_argv_rejected_but_env_ref_allowed() -> None:
    err = one_error("gates:\n  - {name: g, title: G, argv: [curl, '--password=hunter2', x]}\n")
    assert (err.line, err.path) == (8, "gates[0].argv") and "inline secret" in err.message
    pb = load_playbook_text(BASE + "gates:\n  - {name: g, title: G, argv: [curl, '--password=${PW}']}\n")
    assert referenced_env_vars(pb) == {"PW"}


def test_userinfo_password_as_env_ref_is_allowed() -> None:
    text = (
        BASE + 'realtime: {redis_url: "redis://default:${REDIS_PASSWORD}@r:6379/0", channel_prefix: "p:"}\n'
    )
    assert referenced_env_vars(load_playbook_text(text)) == {"REDIS_PASSWORD"}
    err = one_error('realtime: {redis_url: "redis://default:pw@r:6379/0", channel_prefix: "p:"}\n')
    assert (err.line, err.path) == (7, "realtime.redis_url")


def test_shell_true_with_a_string_is_allowed_and_its_env_references_are_for_the_shell() -> None:
    pb = load_playbook_text(BASE + "gates:\n  - {name: g, title: G, run: 'ls | wc -l', shell: true}\n")
    assert pb.gates[0].run == "ls | wc -l"
    # ${X} in a shell script is expanded by the shell from its environment (test_gates_local runs it).
    pb = load_playbook_text(BASE + "gates:\n  - {name: g, title: G, run: 'echo \"${X}\"', shell: true}\n")
    assert referenced_env_vars(pb) == {"X"}


SH_DATA = """[sh, -c, 'deploy --commit "$1"', sh, "${TOKEN}"]"""


@pytest.mark.parametrize(
    ("argv", "index", "instead"),
    [
        ("[sudo, sh, -c, 'curl -H \"Authorization: Bearer ${TOKEN}\" x']", 3, SH_DATA),  # sudo resets the env
        ("[kubectl, exec, api, --, sh, -c, 'redis-cli -a ${TOKEN}']", 6, SH_DATA),  # runs elsewhere
        ("[python3, -c, 'print(\"${TOKEN}\")']", 2, 'os.environ["TOKEN"]'),  # Python does not expand ${VAR}
        ("[fish, -c, 'echo ${TOKEN}']", 2, "$TOKEN"),  # nor does fish
        # Before: accepted, and the value was spliced into the code (and shown by `ps`).
        ("[node, -e, 'fetch(u, {headers: {a: \"${TOKEN}\"}})']", 2, "process.env.TOKEN"),
        ("[perl, -lne, 'print \"${TOKEN}\"', file]", 2, "$ENV{TOKEN}"),
        ("[awk, 'BEGIN { print \"${TOKEN}\" }']", 1, 'ENVIRON["TOKEN"]'),
        ("[env, -i, sh, -c, 'echo ${TOKEN}']", 4, SH_DATA),  # env -i: the shell gets none of our variables
        # The remote shell parses every word after the host, a word of its own too: `-a x;reboot`.
        ("[ssh, web-1, 'curl -H \"Authorization: Bearer ${TOKEN}\" x']", 2, "where: <a hosts: entry>"),
        ("[ssh, -p, '2222', web-1, redis-cli, -a, '${TOKEN}']", 6, "where: <a hosts: entry>"),
        # These hand a string to a shell of their choosing: not trusted to expand it as data.
        ("[flock, /run/lock/x, -c, 'curl -u ${TOKEN} x']", 3, "[flock, deploy.lock, sh, -c"),
        ("[watch, curl, -u, '${TOKEN}', x]", 3, "[watch, -x, deploy"),
    ],
)
def test_an_env_reference_in_code_that_cannot_read_it_is_refused(argv: str, index: int, instead: str) -> None:
    err = one_error(f"gates:\n  - {{name: g, title: G, argv: {argv}}}\n")
    assert f"argv[{index}]: ${{TOKEN}} would be spliced into code" in err.message, err
    assert instead in err.message, err


@pytest.mark.parametrize(
    "argv",
    [
        "[env, LANG=C, sh, -c, 'echo ${TOKEN}']",
        "[nice, -n, '5', bash, -c, 'echo ${TOKEN}']",
        "[timeout, -k, '5', '300', sh, -c, 'echo ${TOKEN}']",
        "[xargs, '-0', sh, -c, 'echo ${TOKEN}']",  # (a YAML -0 is the number 0)
        "[env, LANG=C, timeout, '300', nice, stdbuf, -oL, dash, -e, -c, 'echo ${TOKEN}']",
    ],
)
def test_an_env_reference_in_a_shell_behind_env_nice_timeout_xargs_is_for_the_shell(argv: str) -> None:
    # These keep the environment they are given, so the shell expands ${TOKEN} itself (test_gates_local
    # runs one). Before, only a shell that was argv[0] counted: these were refused.
    pb = load_playbook_text(BASE + f"gates:\n  - {{name: g, title: G, argv: {argv}}}\n")
    assert referenced_env_vars(pb) == {"TOKEN"}


def test_env_in_front_of_a_shell_may_not_give_the_scripts_variable_another_value() -> None:
    err = one_error("gates:\n  - {name: g, title: G, argv: [env, WHO=x, sh, -c, 'echo ${WHO}']}\n")
    assert "the script's ${WHO} is the operator's WHO" in err.message, err
    assert "env WHO=… sets WHO to something else" in err.message, err


@pytest.mark.parametrize(
    ("command", "program", "instead"),
    [
        # The script's shell expands ${TOKEN} inside double quotes, into the remote command line ssh sends.
        ("argv: [sh, -c, 'ssh web-1 \"deploy --token ${TOKEN}\"']", "ssh", "where: <a hosts: entry>"),
        ('argv: [bash, -c, \'cd /srv && python3 -c "login(\\"${TOKEN}\\")"\']', "python", "sys.argv[1]"),
        ("{shell: true, run: 'echo start; node -e \"login(${TOKEN})\" | tee log'}", "node", "argv[1]"),
        # in a command substitution, backticks, an eval, a heredoc an interpreter reads as its program
        ('argv: [sh, -c, \'echo "$(python3 -c "print(${TOKEN})")"\']', "python", "sys.argv[1]"),
        ("argv: [sh, -c, 'x=`node -e \"f(${TOKEN})\"`']", "node", "argv[1]"),
        ("argv: [sh, -c, 'eval \"deploy ${TOKEN}\"']", "eval", "no eval"),
        ("argv: [sh, -c, 'python3 <<< \"login(${TOKEN})\"']", "python", "sys.argv[1]"),  # a here-string
        ("{shell: true, run: \"python3 - <<EOF\\nprint('${TOKEN}')\\nEOF\\n\"}", "python", "sys.argv[1]"),
    ],
)
def test_an_env_reference_the_script_splices_into_a_command_s_code_is_refused(
    command: str, program: str, instead: str
) -> None:
    err = one_error(f"gates:\n  - {{name: g, title: G, {command.removeprefix('{').removesuffix('}')}}}\n")
    assert "argv[2]: the script's shell would splice ${TOKEN} into the" in err.message, err
    assert f"code of {program}" in err.message and instead in err.message, err


def test_an_env_reference_beside_code_or_in_a_script_the_shell_runs_is_accepted() -> None:
    gates = [
        "[sh, -c, 'curl -H \"Authorization: Bearer $1\" x', sh, '${TOKEN}']",  # data after the script
        "[bash, -euo, pipefail, -c, 'curl -H \"Authorization: Bearer ${TOKEN}\" x']",
        # a heredoc the shell does not expand (quoted delimiter), or that is data (cat, kubectl apply -f -)
        "[sh, -c, \"python3 - <<'EOF'\\nprint('${TOKEN}')\\nEOF\"]",
        '[sh, -c, "kubectl apply -f - <<EOF\\nkey: ${TOKEN}\\nEOF"]',
        "[sh, -c, 'grep -q ok <<< \"${TOKEN}\"']",  # a here-string as data
        # ${TOKEN} only in curl's words; python3's code is its own
        '[sh, -c, \'curl -H "Authorization: Bearer ${TOKEN}" x | python3 -c "import sys; print(1)"\']',
        "[python3, -c, 'import sys; print(sys.argv[1])', '${TOKEN}']",
    ]
    text = "gates:\n" + "".join(f"  - {{name: g{i}, title: G, argv: {a}}}\n" for i, a in enumerate(gates))
    assert referenced_env_vars(load_playbook_text(BASE + text)) == {"TOKEN"}


def test_a_script_reference_and_env_may_not_give_the_variable_two_values() -> None:
    gate = "{name: g, title: G, argv: [sh, -c, 'echo ${TOKEN}'], env: {TOKEN: '${OTHER}'}}"
    err = one_error(f"gates:\n  - {gate}\n")
    assert "env: sets TOKEN to something else" in err.message
    same = "{name: g, title: G, argv: [sh, -c, 'echo ${TOKEN}'], env: {TOKEN: '${TOKEN}'}}"
    load_playbook_text(BASE + f"gates:\n  - {same}\n")


REDEPLOY = """\
facts:
  - {name: lkg, title: Last known good, source: manual}
actions:
  - kind: redeploy
    name: redeploy
    title: Redeploy
    last_known_good: lkg
    services:
      web: %s
"""


@pytest.mark.parametrize(
    ("command", "field"),
    [
        ('{argv: [sh, -c, "deploy --commit {commit}"]}', "argv[2]"),
        ('{argv: [/bin/bash, -lc, "deploy {commit}"]}', "argv[2]"),
        ('{argv: [env, dash, -e, -c, "deploy {commit}"]}', "argv[4]"),
        ('{argv: [zsh, -euo, pipefail, -c, "deploy {commit}"]}', "argv[4]"),
        ('{argv: [kubectl, exec, api, --, sh, -ec, "deploy {service}"]}', "argv[6]"),
        ("{argv: [python3, -c, \"import os; os.system('deploy {commit}')\"]}", "argv[2]"),
        ('{run: "deploy --commit {commit}", shell: true}', "run"),
    ],
)
def test_a_placeholder_inside_shell_or_python_code_is_refused_where_it_is(command: str, field: str) -> None:
    err = one_error(REDEPLOY % command)
    assert (err.line, err.path) == (15, f"actions[0].services.web.{field}"), err
    assert "abc$(touch X)" in err.message and "pass it as data instead: [" in err.message


@pytest.mark.parametrize(
    "command",
    [
        '{argv: [sh, -c, \'deploy --commit "$1"\', sh, "{commit}"]}',  # a positional parameter: data
        '{argv: [deploy, --commit, "{commit}"]}',
        '{argv: [sh, deploy.sh, "{commit}"]}',  # a script file, not a script string
        '{argv: [python3, deploy.py, -c, "{commit}"]}',  # deploy.py's own -c option
        '{argv: [python3, -W, ignore, -c, "import sys; print(sys.argv[1])", "{commit}"]}',
    ],
)
def test_a_placeholder_as_its_own_argument_is_accepted(command: str) -> None:
    load_playbook_text(BASE + REDEPLOY % command)


# Code arguments the shell/Python-only detection missed: (argv, index of the code, what to write instead).
CODE_ARGUMENTS = [
    (["node", "-e", "deploy('{commit}')"], 2, "process.argv[1]"),
    (["nodejs", "-r", "dotenv/config", "--eval", "deploy('{commit}')"], 4, "process.argv[1]"),
    (["node", "-p", "deploy('{commit}')"], 2, "process.argv[1]"),
    (["perl", "-lne", "print '{commit}'", "deploy.log"], 2, "$ARGV[0]"),
    (["perl", "-E", "say '{commit}'"], 2, "$ARGV[0]"),
    (["ruby", "-rjson", "-e", "deploy('{commit}')"], 3, "ARGV[0]"),
    (["php", "-r", "deploy('{commit}');"], 2, "$argv[1]"),
    (["deno", "eval", "--ext", "ts", "deploy('{commit}')"], 4, "Deno.args[0]"),
    (["pwsh", "-NoProfile", "-ExecutionPolicy", "Bypass", "-Command", "deploy", "{commit}"], 6, "$args[0]"),
    (["pwsh", "-c", "deploy {commit}"], 2, "$args[0]"),
    (["osascript", "-e", 'do shell script "deploy {commit}"'], 2, "item 1 of argv"),
    (["awk", "-F:", 'BEGIN { system("deploy {commit}") }'], 2, "ARGV[1]"),
    (["ssh", "-p", "2222", "deploy@web-1", "deploy --commit {commit}"], 4, "where: <a hosts: entry>"),
    (["ssh", "deploy@web-1", "deploy", "--commit", "{commit}"], 4, "where: <a hosts: entry>"),
    (["bash", "--rcfile", "ops.rc", "-c", "deploy {commit}"], 4, """'deploy --commit "$1"', sh"""),
    (["sh", "-c", "-", "deploy {commit}"], 3, """'deploy --commit "$1"', sh"""),
    (["flock", "-w", "30", "/run/lock/deploy", "-c", "deploy {commit}"], 5, "[flock, deploy.lock, sh, -c"),
    (["watch", "-n", "2", "kubectl", "rollout", "status", "deploy/{commit}"], 6, "[watch, -x, deploy"),
    (["sudo", "watch", "-d", "deploy --commit {commit}"], 3, "[watch, -x, deploy"),
    (["script", "-q", "-c", "deploy {commit}", "/dev/null"], 3, "run it without script"),
]


@pytest.mark.parametrize(("argv", "index", "instead"), CODE_ARGUMENTS, ids=lambda v: str(v)[:40])
def test_a_placeholder_in_any_interpreters_code_is_refused_where_it_is(
    argv: list[str], index: int, instead: str
) -> None:
    err = one_error(REDEPLOY % json.dumps({"argv": argv}))
    assert (err.line, err.path) == (15, f"actions[0].services.web.argv[{index}]"), err
    assert "{commit} would be spliced into" in err.message and "abc$(touch X)" in err.message, err
    assert instead in err.message, err


@pytest.mark.parametrize(("argv", "index", "instead"), CODE_ARGUMENTS, ids=lambda v: str(v)[:40])
def test_fill_refuses_the_code_validate_refuses(argv: list[str], index: int, instead: str) -> None:
    # The run-time check reads the same table: a spec built in code meets the same refusal, same place.
    from rollback_tui.exec.commands import CommandError, fill

    with pytest.raises(
        CommandError, match=rf"^refusing to fill argv\[{index}\]: \{{commit\}} would be"
    ) as info:
        fill(CommandSpec(argv=argv), {"commit": "abc"})
    assert instead in str(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["node", "-e", "deploy(process.argv[1])", "{commit}"],
        ["node", "scripts/deploy.mjs", "-e", "{commit}"],  # the script's own -e
        ["perl", "-e", "deploy($ARGV[0])", "{commit}"],
        ["php", "-r", "deploy($argv[1]);", "--", "{commit}"],
        ["pwsh", "-CommandWithArgs", "deploy $args[0]", "{commit}"],
        ["pwsh", "-File", "deploy.ps1", "{commit}"],
        ["awk", "-v", "commit={commit}", "BEGIN { print commit }"],
        ["gawk", "-f", "deploy.awk", "{commit}"],
        ["rsync", "-e", "ssh", "build/", "web-1:/srv/{commit}"],  # ssh named as a value: no words of its own
        ["timeout", "300", "sh", "-c", 'deploy --commit "$1"', "sh", "{commit}"],
        ["flock", "/run/lock/deploy", "deploy", "--commit", "{commit}"],  # flock runs a program: argv
        ["watch", "-x", "-n", "2", "deploy", "--commit", "{commit}"],  # watch -x execs it: argv
        ["gh", "run", "watch", "{commit}"],  # a program's own word: not the watch program
        ["npm", "run", "script", "--", "{commit}"],
    ],
    ids=lambda v: str(v)[:40],
)
def test_a_placeholder_as_data_of_an_interpreter_is_accepted(argv: list[str]) -> None:
    load_playbook_text(BASE + REDEPLOY % json.dumps({"argv": argv}))


def test_flag_and_traffic_control_placeholders_in_code_are_refused_too() -> None:
    text = BASE + (
        "load_balancer:\n"
        "  url: http://127.0.0.1:2\n"
        "  selector: {app: api}\n"
        "  traffic_control:\n"
        "    driver: command\n"
        '    remove: {argv: [sh, -c, "drain {replicas}"]}\n'
        "    read: {argv: [cat, state.json]}\n"
        "actions:\n"
        "  - kind: stabilise_flags\n"
        "    name: flags\n"
        "    title: Flags\n"
        '    command: {argv: [bash, -c, "flags --set {flag}={value}"]}\n'
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook_text(text, "t.yaml")
    assert [(e.line, e.path, e.message.split()[0]) for e in info.value.errors] == [
        (12, "load_balancer.traffic_control.remove.argv[2]", "{replicas}"),
        (18, "actions[0].command.argv[2]", "{flag}"),
        (18, "actions[0].command.argv[2]", "{value}"),
    ]


def test_yaml_scalars_become_strings_in_env_and_argv() -> None:
    pb = load_playbook_text(
        BASE + "gates:\n  - {name: g, title: G, argv: [redis-cli, -p, 6379], env: {STRICT: true}}\n"
    )
    assert pb.gates[0].argv == ["redis-cli", "-p", "6379"] and pb.gates[0].env == {"STRICT": "true"}


def test_flags_in_must_stay_on_cannot_be_relaxed() -> None:
    err = one_error(
        "actions:\n"
        "  - kind: stabilise_flags\n"
        "    name: f\n"
        "    title: F\n"
        "    command: {argv: [railway, variables, --set, '{flag}={value}']}\n"
        "    set: [{flag: CSRF_PROTECTION, value: false}]\n"
        "    must_stay_on: [CSRF_PROTECTION]\n"
    )
    assert (err.line, err.path) == (8, "actions[0]") and "must_stay_on" in err.message


def test_candidate_share_outside_synthetic_range() -> None:
    text = BASE.replace(
        "steps:",
        "  - {name: b, url: 'http://127.0.0.1:2', role: candidate}\n"
        "load_balancer:\n"
        "  url: http://127.0.0.1:3\n"
        "  selector: {}\n"
        "  weights: {a: 50, b: 50}\n"
        "  synthetic_traffic: {}\n"
        "  traffic_control: {driver: lab, admin_url: 'http://127.0.0.1:4'}\n"
        "steps:",
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook_text(text)
    [err] = info.value.errors
    assert (err.line, err.path) == (9, "load_balancer.weights")
    assert err.message == "candidates get 50% of the weight; synthetic_traffic allows 10%-20%"


def test_cross_references_still_checked_when_schema_errors_exist() -> None:
    text = BASE + (
        "gates:\n"
        "  - {name: g, title: G, argv: [x], bogus: 1}\n"
        "  - {name: h, title: H, argv: [y]}\n"
        "guardrails:\n"
        "  - {name: r, title: R, metric: gate_failed, threshold: 0, gate: g}\n"
        "  - {name: q, title: Q, metric: gate_failed, threshold: 0, gate: nope}\n"
    )
    with pytest.raises(PlaybookError) as info:
        load_playbook_text(text)
    # the invalid gate 'g' still counts as a name; the dangling 'nope' is reported alongside.
    assert [(e.line, e.path) for e in info.value.errors] == [
        (8, "gates[0].bogus"),
        (12, "guardrails[1].gate"),
    ]


def test_playbook_error_str_joins_lines() -> None:
    err = PlaybookError(
        [LocatedError("x.yaml", 1, 2, "a", "first"), LocatedError("x.yaml", None, None, "", "second")]
    )
    assert str(err) == "x.yaml:1:2: a: first\nx.yaml: second"


def test_one_secrets_vocabulary_and_one_missing_variable_error() -> None:
    from rollback_tui.core.redact import Redactor
    from rollback_tui.exec.commands import CommandError, resolve_refs
    from rollback_tui.playbook.secrets import MissingVariable, looks_secret, resolve

    assert resolve("--context=${CTX}", {"CTX": "stg"}) == ("--context=stg", ["stg"])
    with pytest.raises(MissingVariable, match=r"NOPE is not set \(needed by a probe\)"):
        resolve("${NOPE}", {}, "a probe")
    with pytest.raises(CommandError, match="environment variable NOPE is not set") as info:
        resolve_refs("${NOPE}", {}, "env X")
    assert isinstance(info.value.__cause__, MissingVariable)
    # The validator and the redactor agree on what looks secret; AUTHOR is not AUTH.
    for name in ("API_TOKEN", "X-Auth", "BASIC_AUTH", "db_password", "PRIVATE_KEY", "Cookie"):
        assert looks_secret(name), name
    for name in ("GIT_AUTHOR_NAME", "AUTHORITY", "SSH_AUTH_SOCK", "HOME"):
        assert not looks_secret(name), name
    redactor = Redactor.from_env(env={"GIT_AUTHOR_NAME": "alice", "DB_PASSWORD": "hunter2-long"})
    assert redactor("alice hunter2-long") == "alice ***"
    with pytest.raises(ValidationError, match="looks like a secret"):
        CommandSpec.model_validate({"argv": ["true"], "env": {"X_AUTH": "literal"}})


# --- the demo gates and the controlled issue really run against the lab ------------------------------


@pytest.fixture
def lab_playbook() -> Playbook:
    return load_playbook(bundled_playbook("demo"))


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _post_json(url: str, doc: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


async def test_demo_gates_pass_on_the_lab_and_catch_a_transport_mismatch(lab: Any) -> None:
    pb: Playbook = lab.playbook
    for gate in pb.gates:
        assert gate.argv is not None
        done = await asyncio.to_thread(_run, gate.argv)
        assert done.returncode == 0, f"{gate.name}: {done.stdout}{done.stderr}"
        assert "PASS" in done.stdout

    stable_b = pb.replica("stable-b").url
    await asyncio.to_thread(_post_json, f"{stable_b}/_lab/faults", {"transport": "memory"})
    argv = pb.gate("release-gates-surreal").argv
    assert argv is not None
    done = await asyncio.to_thread(_run, argv)
    assert done.returncode == 1
    assert "stable-b: transport 'memory', expected 'redis'" in done.stdout


async def test_demo_controlled_issue_injects_the_fault_on_blue_next(lab: Any) -> None:
    pb: Playbook = lab.playbook
    inject = next(a for a in pb.actions if a.name == "inject-blue-next-fault")
    argv = inject.command.argv  # type: ignore[union-attr]
    done = await asyncio.to_thread(_run, argv)
    assert done.returncode == 0, done.stderr

    def faults(url: str) -> dict[str, object]:
        with urllib.request.urlopen(f"{url}/_lab/faults", timeout=5) as resp:
            return json.load(resp)

    assert (await asyncio.to_thread(faults, pb.replica("blue-next").url))["error_rate"] == 0.25
    assert (await asyncio.to_thread(faults, pb.replica("stable-a").url))["error_rate"] == 0.0


# --- metric sources: Prometheus servers, query guardrails and facts, baselines ----------------------

PROM = 'prometheus:\n  - {name: prom, url: "http://127.0.0.1:9090", bearer_token: "${PROM_TOKEN}"}\n'
CANDIDATE = '  - {name: c, url: "http://127.0.0.1:2", role: candidate}\n'


def test_query_guardrails_and_prometheus_facts_validate() -> None:
    rails = """\
guardrails:
  - {name: q, title: Q, metric: query, query: 'sum(rate(x{replica=~"{replicas}"}[{window}]))',
     threshold: 0.05, interval_s: 1, unit: ratio, samples_query: 'sum(y)', min_samples: 10}
  - name: lat
    title: L
    metric: p95_latency_ms
    threshold: 1.5
    scope: candidate
    baseline: {compare: ratio, min_samples: 20}
facts:
  - {name: f, title: F, source: prometheus, query: 'build_info{replica="{replica}"}', label: commit}
"""
    text = BASE.replace("steps:", CANDIDATE.rstrip("\n") + "\nsteps:") + PROM + rails
    pb = load_playbook_text(text)
    assert pb.prometheus_server(None) is pb.prometheus[0] and pb.prometheus_server("nope") is None
    assert pb.guardrails[1].baseline is not None and pb.guardrails[1].baseline.compare == "ratio"
    assert referenced_env_vars(pb) == {"PROM_TOKEN"}


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        (
            'prometheus:\n  - {url: "http://p:9090", bearer_token: "abc123"}\n',
            "prometheus[0].bearer_token",
            "bearer_token is a secret: give only a ${ENV_VAR} reference",
        ),
        (
            'prometheus:\n  - {url: "http://p:9090", basic_auth: {username: u, password: hunter2}}\n',
            "prometheus[0].basic_auth.password",
            "basic_auth.password is a secret",
        ),
        (
            "guardrails:\n  - {name: q, title: Q, metric: query, query: up, threshold: 1}\n",
            "guardrails[0].server",
            "a Prometheus query needs server: naming one (none is defined under prometheus:)",
        ),
        (
            PROM + "guardrails:\n  - {name: q, title: Q, metric: query, server: other, query: up,"
            " threshold: 1}\n",
            "guardrails[0].server",
            "no Prometheus server named 'other' (known: prom)",
        ),
        (
            "guardrails:\n  - {name: q, title: Q, metric: query, threshold: 1}\n",
            "guardrails[0]",
            "metric query needs query",
        ),
        (
            "guardrails:\n  - {name: q, title: Q, metric: p95_latency_ms, threshold: 1,"
            " baseline: {compare: ratio}}\n",
            "guardrails[0]",
            "use scope: candidate",
        ),
        (
            "guardrails:\n  - {name: q, title: Q, metric: ws_disconnects, threshold: 1, scope: candidate,"
            " baseline: {compare: ratio}}\n",
            "guardrails[0]",
            "baseline applies to metric",
        ),
        (
            "guardrails:\n  - {name: q, title: Q, metric: http_json, threshold: 1}\n",
            "guardrails[0]",
            "metric http_json needs probe",
        ),
    ],
)
def test_metric_source_mistakes_are_located(extra: str, path: str, message: str) -> None:
    text = BASE.replace("steps:", CANDIDATE.rstrip("\n") + "\nsteps:") + extra
    with pytest.raises(PlaybookError) as info:
        load_playbook_text(text, "t.yaml")
    found = {e.path: e.message for e in info.value.errors}
    assert path in found, found
    assert message in found[path]
