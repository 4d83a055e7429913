"""Credentials in storage URLs: shown and stored redacted, used whole only where needed.

A study names storages by URL (the Optuna storage ``postgresql+psycopg://study:PASSWORD@
postgres:5432/optuna``, sometimes an MLflow tracking URI with a login in it). Whatever
is written down (the parent run's params and ``study.yaml``, Tune's experiment state
and trial configs, printed lines) holds the redacted form, ``study:***@postgres``;
the real URL lives only in the process that opens the connection.

Where the real URL comes back from, given its redacted form (:func:`reveal`): the
environment variables the study reads it from in the first place
(``STUDY_OPTUNA_STORAGE``, ``MLFLOW_TRACKING_URI``), or a value given on the command
line. A candidate counts only when its own redacted form equals the recorded one, so a
secret is never paired with another server's URL. Better still, keep passwords out of
URLs: PostgreSQL clients read ``PGPASSWORD`` or ``~/.pgpass``, MLflow's client reads
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``.

>>> redact("postgresql+psycopg://study:s3cret@postgres:5432/optuna")
'postgresql+psycopg://study:***@postgres:5432/optuna'
>>> redact("http://127.0.0.1:5000"), redact("/tmp/optuna.journal")
('http://127.0.0.1:5000', '/tmp/optuna.journal')
>>> redact("postgresql://db/optuna?user=study&password=s3cret&sslmode=require")
'postgresql://db/optuna?user=study&password=***&sslmode=require'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "***"
_USERINFO = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/?#]*):(?P<secret>[^@/?#]*)@"
)
_QUERY = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|secret|token|access_key|secret_key)=)(?P<secret>[^&#]*)",
    re.IGNORECASE,
)
#: Where a study reads its storage URLs from, and so where their secrets come back from.
SOURCES = ("STUDY_OPTUNA_STORAGE", "MLFLOW_TRACKING_URI")


class SecretMissing(ValueError):
    """A redacted URL whose secret is nowhere to be found; the message says where to put it."""


def redact(url: str) -> str:
    """``url`` with the password of its login and any password-like query value
    replaced by ``***``; anything else (paths, URLs without a secret) unchanged."""
    url = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@" if m["secret"] else m[0], url)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}" if m["secret"] else m[0], url)


_IN_TEXT = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/?#\s'\"]*):(?P<secret>[^@/?#\s'\"]+)@"
)


def redact_text(text: str) -> str:
    """Every URL login's password in a whole text (a space file as written, a log line)
    replaced by ``***``, and password-like query values too.

    >>> redact_text("optuna_storage: postgresql://study:pw@db/optuna  # prod")
    'optuna_storage: postgresql://study:***@db/optuna  # prod'
    """
    text = _IN_TEXT.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _QUERY.sub(lambda m: f"{m['key']}{MASK}" if m["secret"] else m[0], text)


def is_redacted(url: str) -> bool:
    """Whether ``url`` is a redacted form (its secret has to come from elsewhere)."""
    return redact(url) == url and MASK in url and has_secret(url.replace(MASK, "x"))


def has_secret(url: str) -> bool:
    """Whether ``url`` carries a secret that :func:`redact` would hide."""
    return redact(url) != url


def reveal(recorded: str, field: str, given: Iterable[str | None] = ()) -> str:
    """The real URL of a ``recorded`` one: itself when it holds no redacted secret;
    else the first of ``given`` (e.g. a command-line value) or of the environment
    variables in :data:`SOURCES` whose redacted form equals ``recorded``. Raises
    :class:`SecretMissing`, one line naming ``field``, when there is none."""
    if not is_redacted(recorded):
        return recorded
    candidates = [*given, *(os.environ.get(name) for name in SOURCES)]
    for candidate in candidates:
        if candidate and redact(candidate) == recorded:
            return candidate
    raise SecretMissing(
        f"{field}: {recorded} was recorded without its password; export "
        f"{'STUDY_OPTUNA_STORAGE' if 'optuna' in field else 'MLFLOW_TRACKING_URI'}=<the "
        "same URL with the password> (or keep the password out of the URL: PGPASSWORD, "
        "~/.pgpass, MLFLOW_TRACKING_USERNAME/PASSWORD)"
    )


__all__ = [
    "MASK",
    "SOURCES",
    "SecretMissing",
    "has_secret",
    "is_redacted",
    "redact",
    "redact_text",
    "reveal",
]
