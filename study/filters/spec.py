"""Filter specs: parsing strings and mappings, validating them, and their canonical string.

A spec is written in one of two forms, usable in YAML files, on the command line and
as MLflow params alike:

* a **string**: a short name for the fixed families (``delta``, ``rect-4``,
  ``triangle-5``, ``binomial-7``) or a call with keyword fields
  (``firwin(taps=5, cutoff=0.5, window=hamming)``,
  ``learnable(init=binomial-5, symmetric=true)``);
* a **mapping**: ``{family: firwin, taps: 5, cutoff: 0.5}``; the short families also
  take ``{family: binomial, taps: 5}``.

Every spec has one canonical string (``str(spec)``): fields in the family's order,
defaults filled in, numbers in their shortest round-tripping form. Parsing the canonical
string gives back an equal spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.filters.errors import FilterSpecError
from study.filters.families import FAMILIES, MAX_TAPS, Field

SpecLike = "str | Mapping[str, Any] | FilterSpec"

_SHORT = re.compile(r"^([a-z]+)-(\d+)$")
_TOKEN = re.compile(
    r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)"
    r"|(?P<punct>[()\[\]=,]))"
)


@dataclass(frozen=True)
class FilterSpec:
    """A validated filter spec: its family and its coerced fields, in the family's order.

    >>> spec = parse("firwin(cutoff=0.5, taps=3)")
    >>> str(spec)
    'firwin(taps=3, cutoff=0.5, window=hamming)'
    >>> spec["taps"], spec.learnable
    (3, False)
    >>> str(parse({"family": "binomial", "taps": 5}))
    'binomial-5'
    """

    family: str
    params: tuple[tuple[str, Any], ...] = ()

    def __getitem__(self, name: str) -> Any:
        return dict(self.params)[name]

    def __str__(self) -> str:
        family = FAMILIES[self.family]
        if family.short:
            return f"{self.family}-{self['taps']}"
        if not self.params:
            return self.family
        fields = ", ".join(f"{name}={_format(value)}" for name, value in self.params)
        return f"{self.family}({fields})"

    def __repr__(self) -> str:
        return f"FilterSpec({str(self)!r})"

    @property
    def learnable(self) -> bool:
        """Whether layers built from this spec train their filter."""
        return FAMILIES[self.family].learnable

    def to_dict(self) -> dict[str, Any]:
        """The mapping form, as written in a YAML file (nested specs as mappings)."""
        out: dict[str, Any] = {"family": self.family}
        for name, value in self.params:
            if isinstance(value, FilterSpec):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


def parse(spec: str | Mapping[str, Any] | FilterSpec) -> FilterSpec:
    """Validate a filter spec in any of its forms.

    Raises :class:`FilterSpecError` (a ``ValueError``) naming the offending field.

    >>> parse("binomial-5")
    FilterSpec('binomial-5')
    >>> parse("binomal-5")
    Traceback (most recent call last):
    ...
    study.filters.errors.FilterSpecError: filter.family: unknown family 'binomal'; allowed: ...
    """
    if isinstance(spec, FilterSpec):
        return spec
    if isinstance(spec, str):
        return _from_mapping(_parse_string(spec))
    if isinstance(spec, Mapping):
        return _from_mapping(spec)
    raise FilterSpecError("filter", f"expected a string or a mapping, got {type(spec).__name__}")


def family_names() -> str:
    """The families as a user writes them, for error messages and ``--help``."""
    return ", ".join(f"{n}-N" if f.short else n for n, f in FAMILIES.items())


def _from_mapping(mapping: Mapping[str, Any]) -> FilterSpec:
    if "family" not in mapping:
        raise FilterSpecError("filter.family", f"missing; allowed: {family_names()}")
    name = mapping["family"]
    if not isinstance(name, str) or name not in FAMILIES:
        raise FilterSpecError(
            "filter.family", f"unknown family {name!r}; allowed: {family_names()}"
        )
    family = FAMILIES[name]
    known = {f.name for f in family.fields}
    for key in mapping:
        if key != "family" and key not in known:
            allowed = ", ".join(sorted(known)) or "no fields"
            raise FilterSpecError(f"filter.{key}", f"unknown field for {name}; allowed: {allowed}")
    params: dict[str, Any] = {}
    for fld in family.fields:
        path = f"filter.{fld.name}"
        if fld.name in mapping and mapping[fld.name] is not None:
            params[fld.name] = _coerce(fld, mapping[fld.name], path)
        elif fld.required:
            raise FilterSpecError(path, f"missing; {name} needs {fld.help}")
        elif fld.default is not None:
            params[fld.name] = _coerce(fld, fld.default, path)
    family.check(params)
    try:
        with np.errstate(all="ignore"):
            taps = np.asarray(family.taps(params), dtype=np.float64)
    except ValueError as error:  # scipy rejected the design
        raise FilterSpecError("filter", f"scipy rejected {name}: {error}") from None
    if not np.all(np.isfinite(taps)) or abs(taps.sum()) < 1e-12:
        field = "filter.window" if "window" in params else "filter"
        raise FilterSpecError(
            field,
            f"{name} gives taps with no DC gain ({taps.tolist()}); try more taps or another window",
        )
    return FilterSpec(name, tuple(params.items()))


def _coerce(fld: Field, value: Any, path: str) -> Any:
    """``value`` through the field's coercion; a nested spec (``fld.spec``) is parsed
    first, its errors reported under ``path``."""
    if fld.spec:
        try:
            value = parse(value)
        except FilterSpecError as error:
            raise error.under(path) from None
    return fld.coerce(value, path)


def _parse_string(text: str) -> Mapping[str, Any]:
    stripped = text.strip()
    short = _SHORT.match(stripped)
    if short and short.group(1) in FAMILIES and FAMILIES[short.group(1)].short:
        taps = int(short.group(2))
        if not 1 <= taps <= MAX_TAPS:
            raise FilterSpecError(
                "filter.taps", f"{stripped!r} has {taps} taps; allowed: 1 to {MAX_TAPS}"
            )
        return {"family": short.group(1), "taps": taps}
    tokens = _Tokens(stripped)
    value = tokens.value()
    tokens.expect_end()
    if isinstance(value, str):
        if short and short.group(1) not in FAMILIES:
            value = short.group(1)
        if value in FAMILIES and FAMILIES[value].short:
            raise FilterSpecError("filter", f"{value!r} needs a tap count, e.g. {value}-5")
        return {"family": value}
    if not isinstance(value, dict):
        raise FilterSpecError("filter", f"{text!r} is not a filter spec; allowed: {family_names()}")
    return value


class _Tokens:
    """A recursive-descent reader for ``family(key=value, ...)``, values being numbers,
    names, ``[lists]`` and nested calls."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = list(self._scan(text))
        self.pos = 0

    def _scan(self, text: str) -> Iterator[tuple[str, str]]:
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise FilterSpecError("filter", f"cannot read {text!r} at {text[pos:]!r}")
            kind = match.lastgroup
            assert kind is not None
            yield kind, match.group(kind)
            pos = match.end()

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def _take(self, punct: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if punct is not None and token != ("punct", punct):
            found = token[1] or "the end"
            raise FilterSpecError("filter", f"expected {punct!r} in {self.text!r}, found {found!r}")
        self.pos += 1
        return token

    def expect_end(self) -> None:
        if self._peek()[0] != "end":
            raise FilterSpecError("filter", f"unexpected {self._peek()[1]!r} in {self.text!r}")

    def value(self) -> Any:
        kind, text = self._take()
        if kind == "number":
            number = float(text)
            is_int = number.is_integer() and re.fullmatch(r"[-+]?\d+", text)
            return int(number) if is_int else number
        if kind == "name":
            if self._peek() == ("punct", "("):
                return self._call(text)
            return {"true": True, "false": False}.get(text, text)
        if (kind, text) == ("punct", "["):
            items = []
            while self._peek() != ("punct", "]"):
                items.append(self.value())
                if self._peek() != ("punct", "]"):
                    self._take(",")
            self._take("]")
            return items
        raise FilterSpecError("filter", f"unexpected {text or 'end'!r} in {self.text!r}")

    def _call(self, family: str) -> dict[str, Any]:
        self._take("(")
        fields: dict[str, Any] = {"family": family}
        while self._peek() != ("punct", ")"):
            kind, key = self._take()
            if kind != "name":
                found = key or "the end"
                raise FilterSpecError(
                    "filter", f"expected a field name in {self.text!r}, found {found}"
                )
            self._take("=")
            if key in fields:
                raise FilterSpecError(f"filter.{key}", "given twice")
            fields[key] = self.value()
            if self._peek() != ("punct", ")"):
                self._take(",")
        self._take(")")
        return fields


def _format(value: Any) -> str:
    """Shortest text that parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    return str(value)
