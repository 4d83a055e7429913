"""The one error every invalid filter spec raises."""

from __future__ import annotations


class FilterSpecError(ValueError):
    """An invalid filter spec.

    ``field`` is the dotted path of the offending field (``"filter.cutoff"``), and the
    message is one line: the field, what was wrong, and what is allowed. Callers that
    embed a filter inside a larger config prefix the path with :meth:`under`.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def under(self, prefix: str) -> FilterSpecError:
        """The same error with ``prefix`` put in front of its field path."""
        field = self.field.removeprefix("filter")
        return FilterSpecError(f"{prefix}{field}", self.problem)
