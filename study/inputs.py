"""What the commands share at the console boundary: error messages and output paths.

An error message may quote user input (a path, a ``--set`` value), and that input may hold a
newline, a carriage return or a bidirectional-override character; printed as it is, it
would split the message or rewrite what the terminal shows. :func:`one_line` escapes
every such character the way Python's ``repr`` does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def one_line(text: str, first_line_only: bool = False) -> str:
    """``text`` with every non-printable character escaped (``\\n`` -> ``\\\\n``).
    ``first_line_only`` keeps the text up to its first newline (a library's message
    whose later lines are detail).

    >>> one_line("config: 'a\\rb' is not allowed")
    "config: 'a\\\\rb' is not allowed"
    >>> one_line("first\\nsecond", first_line_only=True)
    'first'
    """
    if first_line_only:
        text = text.split("\n", 1)[0]
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def output_folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an output folder (it is a file, it lies under no writable
    folder, the system refuses its name), or None when it can."""
    try:
        if path.exists() and not path.is_dir():
            return f"{path} exists and is not a folder; give a folder path"
        parent = next((p for p in [path, *path.parents] if p.exists()), Path("."))
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot write under {parent}; give a writable folder"
    except OSError as error:  # a name too long, a loop of links
        return f"{str(path)[:80]!r}: not a usable path ({error.strerror})"
    return None


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
