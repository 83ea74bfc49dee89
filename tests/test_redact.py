"""Redaction of secrets in free text, URLs, headers and JSON."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from rollback_tui.core.redact import MASK, Redactor


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
