"""Redaction of secrets in free text, URLs, headers and JSON."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import encodings, holds_secret
from rollback_tui.core.redact import ENCODED_MIN, MASK, Redactor


def test_known_values_masked_everywhere():
    r = Redactor(["s3cr3t-value"])
    assert r("x s3cr3t-value y s3cr3t-value") == f"x {MASK} y {MASK}"


def test_short_values_are_not_treated_as_secrets():
    # masking "ab" would shred ordinary text; secrets shorter than 4 chars are ignored
    assert Redactor(["ab"])("about") == "about"


def test_url_userinfo_and_query_tokens():
    r = Redactor()
    assert r("redis://:hunter22@127.0.0.1:6379/0") == f"redis://:{MASK}@127.0.0.1:6379/0"
    assert r("https://h/p?access_token=zzz&page=2") == f"https://h/p?access_token={MASK}&page=2"
    assert r("Authorization: Bearer abcdef123456") == f"Authorization: Bearer {MASK}"


def test_env_assignments_and_json_keys():
    r = Redactor()
    assert r("GITHUB_TOKEN=ghp_xxxxx npm run x") == f"GITHUB_TOKEN={MASK} npm run x"
    assert r("GITHUB_TOKEN_RO=abc MY_SECRET_KEY2=zzz") == f"GITHUB_TOKEN_RO={MASK} MY_SECRET_KEY2={MASK}"
    line = json.dumps({"headers": {"authorization": "Basic Zm9vOmJhcg=="}, "password": 'p@ss"word'})
    out = json.loads(r(line))
    assert out["password"] == MASK and MASK in out["headers"]["authorization"]


def test_from_env_picks_referenced_and_secret_looking_names():
    env = {
        "DB_PASSWORD": "pw-123456",
        "KUBE_CONTEXT": "staging-ctx",
        "HOME": "/root",
        "SSH_AUTH_SOCK": "/tmp/a",
    }
    r = Redactor.from_env(["KUBE_CONTEXT"], env=env)
    assert r("pw-123456 staging-ctx /root /tmp/a") == f"{MASK} {MASK} /root /tmp/a"


@given(
    st.text(min_size=6, max_size=40).filter(lambda s: s.strip() == s and "\\" not in s), st.text(max_size=60)
)
def test_redacted_json_line_stays_valid_json_and_hides_secret(secret, noise):
    r = Redactor([secret])
    line = json.dumps({"message": f"{noise}{secret}{noise}"})
    out = r.json_line(line)
    assert secret not in json.loads(out)["message"]


# --- long text (a fanout tap batch is tens of KB): patterns are searched from their rarest character ---

_PIECES = st.sampled_from(
    ["token", "auth", "secret", "key", "://", "sig", "passw", "cookie", "basic ", "bearer ", "Token ", "KEY=",
     "s3cr3t", "hunter22", '"', ",", ":", "c", "k", "u", "0", "1", "TOKEN", "k3y", "ç", "İ", "\u212a",
     # encoded forms of the secrets (whole, and halves that only meet in some texts)
     *(form for secret in ("s3cr3t", "hunter22") for form in encodings(secret).values()),
     "czNjcj", "N0", "733363", "723374", "aHVudGVy", "MjI"]
)  # fmt: skip


@example(["c"] * 20 + ["secret"], "")  # more candidates than are tried one by one, then a match
@example(["cccc"] * 3 + ["aut", "h auth"], "")
@example(["c"] * 9 + ["r"] * 9 + ["s"] * 9 + ["secre", "secret"], "")  # every rare character is frequent
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=60), st.sampled_from(["", "x", "s3cr3t"]))
def test_rare_character_search_finds_exactly_what_a_substring_search_finds(parts, pattern_prefix):
    from rollback_tui.core.redact import _finder, _present

    text = "".join(parts)
    for pattern in ("token", "secret", "auth", "://", "basic ", pattern_prefix + "k3y", "cccc", "s3cr3t"):
        assert _present(text, *_finder(pattern)) == (pattern in text), pattern


@given(st.lists(st.one_of(_PIECES, st.text(max_size=12)), max_size=200))
def test_long_text_is_redacted_exactly_like_short_text(parts):
    r = Redactor(["s3cr3t", "hunter22", 'k3y="x'])
    text = "".join(parts)
    assert r._long(text) == r._short(text)
    padded = "c" * 3000 + text + "secret"  # over LONG_TEXT: what `r(...)` does with it is the long path
    assert r(padded) == r._short(padded)


def test_secret_in_a_long_json_line_is_masked_and_the_line_stays_json():
    r = Redactor(["s3cr3t-redis-passw0rd"])
    rows = [[1.5, f"chat:rt:t{i}", "stable-a", f"t{i}", f"evt-{i}", i, None] for i in range(300)]
    rows[150][4] = "evt-s3cr3t-redis-passw0rd"
    rows[200][3] = "thread token=abcdef"
    line = json.dumps({"kind": "fanout_tap_batch", "rows": rows}, separators=(",", ":"))
    out = json.loads(r.json_line(line))
    assert out["rows"][150][4] == f"evt-{MASK}" and out["rows"][200][3] == f"thread token={MASK}"
    assert out["rows"][149] == rows[149] and len(out["rows"]) == 300


# --- encoded forms of a known secret: URL-encoded, base64 (any alignment), hex ---

ENCODED = "p@ss/w0rd+?~ zed"  # URL-encoding changes it; its base64 holds "+" or "/" (URL-safe: "-", "_")


@pytest.mark.parametrize("form", sorted(encodings(ENCODED)))
def test_each_encoded_form_of_a_known_secret_is_masked(form):
    text = f"sent {encodings(ENCODED)[form]} upstream"
    assert holds_secret(text, ENCODED)
    out = Redactor([ENCODED])(text)
    assert not holds_secret(out, ENCODED) and MASK in out, out
    assert out.startswith("sent ") and out.endswith(" upstream")


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("before", range(6))  # every byte offset mod 3, twice
def test_base64_of_a_secret_inside_longer_data_is_masked_at_every_alignment(before, urlsafe):
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    data = encode(b"H" * before + ENCODED.encode() + b"-trailing-bytes").decode()
    out = Redactor([ENCODED])(f"payload {data} end")
    assert not holds_secret(out, ENCODED), out
    # Only the secret's part goes: what encodes the bytes before and after it stays.
    kept = (before * 8 + 5) // 6  # characters holding any bit of those bytes
    assert out.startswith(f"payload {data[:kept]}***") and out.endswith(f"{data[-16:]} end"), out


def test_short_secrets_are_masked_verbatim_only():
    # "abcde" in hex (6162636465) or base64 (YWJjZGU) would shred ordinary hex and base64 text.
    r = Redactor(["abcde"])
    text = "abcde 6162636465 YWJjZGU"
    assert r(text) == f"{MASK} 6162636465 YWJjZGU"


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=ENCODED_MIN, max_size=24), st.binary(max_size=7), st.binary(max_size=7))
def test_a_secret_encoded_anywhere_in_longer_data_is_masked(secret, before, after):
    data = before + secret.encode() + after
    encoded = (base64.b64encode(data), base64.urlsafe_b64encode(data), data.hex(), data.hex().upper())
    text = " ".join(e if isinstance(e, str) else e.decode() for e in encoded)
    assert not holds_secret(Redactor([secret])(text), secret)
