"""Credentials in storage URLs: redacted wherever they are written down, revealed only
from where the user keeps them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from study.secrets import SecretMissing, has_secret, is_redacted, redact, reveal

SECRET = "s3cr:et%2F"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql+psycopg://study:{SECRET}@postgres:5432/optuna",
            "postgresql+psycopg://study:***@postgres:5432/optuna",
        ),
        ("mysql://root:pw@127.0.0.1/db?charset=utf8", "mysql://root:***@127.0.0.1/db?charset=utf8"),
        ("https://alice:pw@mlflow.example:443/", "https://alice:***@mlflow.example:443/"),
        ("postgresql://study@postgres/optuna", "postgresql://study@postgres/optuna"),
        ("postgresql://study:@postgres/optuna", "postgresql://study:@postgres/optuna"),
        ("sqlite:////tmp/a:b@c.db", "sqlite:////tmp/a:b@c.db"),
        ("/data/ray_results/x/optuna.journal", "/data/ray_results/x/optuna.journal"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        (
            "postgresql://h/db?password=pw&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("s3://bucket/x?secret_key=abc", "s3://bucket/x?secret_key=***"),
    ],
)
def test_redact(url, expected):
    assert redact(url) == expected
    assert redact(expected) == expected  # idempotent
    assert has_secret(url) == (url != expected)


@given(
    user=st.text("abcdefghijklmnopqrstuvwxyz0123456789_.-", min_size=1, max_size=12),
    secret=st.text(
        st.characters(blacklist_characters="@/?#", blacklist_categories=("Cs",)), min_size=1
    ),
    host=st.sampled_from(["postgres", "127.0.0.1:5432", "db.example.org"]),
)
def test_no_secret_survives_redaction(user, secret, host):
    url = f"postgresql://{user}:{secret}@{host}/optuna"
    shown = redact(url)
    assert shown == f"postgresql://{user}:***@{host}/optuna"
    assert is_redacted(shown) and not is_redacted(url)


def test_reveal_takes_the_secret_only_from_a_matching_url(monkeypatch):
    real = f"postgresql://study:{SECRET}@postgres:5432/optuna"
    recorded = redact(real)
    monkeypatch.delenv("STUDY_OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(
        SecretMissing, match=r"^study.optuna_storage: .*\*\*\*@postgres:5432/optuna was recorded"
    ):
        reveal(recorded, "study.optuna_storage")
    monkeypatch.setenv("STUDY_OPTUNA_STORAGE", real.replace("postgres:5432", "other:5432"))
    with pytest.raises(SecretMissing):
        reveal(recorded, "study.optuna_storage")  # another server's password is not taken
    monkeypatch.setenv("STUDY_OPTUNA_STORAGE", real)
    assert reveal(recorded, "study.optuna_storage") == real
    assert reveal(recorded, "study.optuna_storage", given=[None]) == real
    assert reveal("/tmp/x.journal", "study.optuna_storage") == "/tmp/x.journal"


def test_a_given_value_wins_over_the_environment(monkeypatch):
    real = "postgresql://study:one@postgres/optuna"
    monkeypatch.setenv("STUDY_OPTUNA_STORAGE", "postgresql://study:two@postgres/optuna")
    assert reveal(redact(real), "study.optuna_storage", given=[real]) == real
