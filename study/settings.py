"""The service's settings from the environment (``STUDY_*``), each validated up front with
a one-line error naming the variable, and :func:`environment` for setting variables for
the length of a block (MLflow and Tune read theirs from the environment)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

#: The durations a study reads from the environment: name -> default seconds.
DURATION_SETTINGS = {
    "STUDY_TRACKING_PATIENCE_S": 1800.0,
    "STUDY_STORAGE_PATIENCE_S": 1800.0,
    "STUDY_FRONT_REFRESH_S": 30.0,
    "STUDY_CHECKPOINT_INTERVAL_S": 30.0,
}


def seconds_setting(name: str) -> float:
    """The duration environment variable ``name`` sets (seconds, finite, >= 0), else its
    default (:data:`DURATION_SETTINGS`); a one-line ``ValueError`` naming it otherwise.

    >>> os.environ["STUDY_FRONT_REFRESH_S"] = "soon"
    >>> seconds_setting("STUDY_FRONT_REFRESH_S")
    Traceback (most recent call last):
    ValueError: STUDY_FRONT_REFRESH_S: 'soon' is not a number of seconds >= 0
    >>> del os.environ["STUDY_FRONT_REFRESH_S"]
    >>> seconds_setting("STUDY_FRONT_REFRESH_S")
    30.0
    """
    raw = os.environ.get(name)
    if raw is None:
        return DURATION_SETTINGS[name]
    if not is_seconds(raw):
        raise ValueError(f"{name}: {raw!r} is not a number of seconds >= 0")
    return float(raw)


def is_seconds(raw: str) -> bool:
    """Whether ``raw`` reads as a duration: a finite number of seconds >= 0."""
    try:
        return 0 <= float(raw) < float("inf")
    except ValueError:
        return False


#: The on/off switches a study reads from the environment: name -> default.
FLAG_SETTINGS = {
    "STUDY_TUNE_RESULT_FILES": False,
}


_FLAG_VALUES = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}


def flag_setting(name: str) -> bool:
    """The switch environment variable ``name`` sets (``1``/``true``/``on`` or
    ``0``/``false``/``off``), else its default (:data:`FLAG_SETTINGS`); a one-line
    ``ValueError`` naming it otherwise.

    >>> os.environ["STUDY_TUNE_RESULT_FILES"] = "yes please"
    >>> flag_setting("STUDY_TUNE_RESULT_FILES")
    Traceback (most recent call last):
    ValueError: STUDY_TUNE_RESULT_FILES: 'yes please' is not one of 1, true, on, 0, false, off
    >>> del os.environ["STUDY_TUNE_RESULT_FILES"]
    >>> flag_setting("STUDY_TUNE_RESULT_FILES")
    False
    """
    raw = os.environ.get(name)
    if raw is None:
        return FLAG_SETTINGS[name]
    value = _FLAG_VALUES.get(raw.strip().lower())
    if value is None:
        raise ValueError(f"{name}: {raw!r} is not one of {', '.join(_FLAG_VALUES)}")
    return value


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then put back what was
    there (MLflow reads its settings from the environment on every call; Tune reads some
    when an experiment starts)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
