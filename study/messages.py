"""How an error reaches the console: one line, whatever it quotes.

A message may quote user input (a path, a ``--set`` value), and that input may hold a
newline, a carriage return or a bidirectional-override character; printed as it is, it
would split the message or rewrite what the terminal shows. :func:`one_line` escapes
every such character the way Python's ``repr`` does.
"""

from __future__ import annotations


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
