"""What the commands share at the console boundary: error messages and output paths.

An error message may quote user input (a path, a ``--set`` value), and that input may hold a
newline, a carriage return or a bidirectional-override character; printed as it is, it
would split the message or rewrite what the terminal shows. :func:`one_line` escapes
every such character the way Python's ``repr`` does.
"""

from __future__ import annotations

import os
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
