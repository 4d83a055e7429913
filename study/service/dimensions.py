"""Search dimensions inside a space file: where they are (``choice``, ``uniform``,
``loguniform``, ``int`` anywhere in the trial config, nested choices named
``at[label]``), whether they are well formed, how Optuna samples them define-by-run,
and stand-in trials that pick their corners (to validate each alternative once)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from study.trial.config import (
    SEARCH_KEYS,
    ConfigError,
)


@dataclass(frozen=True)
class Dimension:
    """One search dimension found in a space: its parameter name and its spec."""

    name: str
    kind: str
    args: Any


def is_dimension(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in SEARCH_KEYS


def find_dimensions(value: Any, at: str):
    """Every dimension in ``value``, validated, with its parameter name."""
    if is_dimension(value):
        kind, args = next(iter(value.items()))
        _check_dimension(kind, args, at)
        yield Dimension(at, kind, args)
        if kind == "choice":
            for index, alternative in enumerate(args):
                yield from find_dimensions(alternative, f"{at}[{choice_label(alternative, index)}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from find_dimensions(item, f"{at}.{key}" if at else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_dimensions(item, f"{at}.{index}")


def _check_dimension(kind: str, args: Any, at: str) -> None:
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(at, "choice needs a non-empty list of alternatives")
        labels = [choice_label(v, i) for i, v in enumerate(args)]
        if len(set(labels)) != len(labels):
            raise ConfigError(at, f"choice has repeated alternatives: {labels}")
        return
    numbers = isinstance(args, list) and all(
        isinstance(a, int | float) and not isinstance(a, bool) for a in args
    )
    if kind == "int":
        whole = numbers and all(isinstance(a, int) for a in args) and len(args) in (2, 3)
        if not whole or args[0] > args[1] or (len(args) == 3 and args[2] < 1):
            raise ConfigError(
                at, f"int needs [low, high] or [low, high, step] with low <= high, got {args!r}"
            )
        return
    if not numbers or len(args) != 2 or args[0] >= args[1]:
        raise ConfigError(at, f"{kind} needs [low, high] with low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise ConfigError(at, f"loguniform needs low > 0, got {args[0]}")


def choice_label(alternative: Any, index: int) -> Any:
    """The categorical value Optuna stores for an alternative: plain values as they
    are, a mapping by its ``family`` (filters) or its position."""
    if isinstance(alternative, str | int | float | bool) or alternative is None:
        return alternative
    if isinstance(alternative, Mapping) and isinstance(alternative.get("family"), str):
        return alternative["family"]
    return f"option-{index}"


def sample_value(value: Any, at: str, trial) -> Any:
    if is_dimension(value):
        kind, args = next(iter(value.items()))
        if kind == "choice":
            labels = [choice_label(v, i) for i, v in enumerate(args)]
            picked = trial.suggest_categorical(at, labels)
            return sample_value(args[labels.index(picked)], f"{at}[{picked}]", trial)
        if kind == "int":
            low, high, step = (*args, 1)[:3]
            return trial.suggest_int(at, low, high, step=step)
        return trial.suggest_float(at, args[0], args[1], log=kind == "loguniform")
    if isinstance(value, Mapping):
        return {k: sample_value(v, f"{at}.{k}" if at else str(k), trial) for k, v in value.items()}
    if isinstance(value, list):
        return [sample_value(item, f"{at}.{index}", trial) for index, item in enumerate(value)]
    return value


class Corner:
    """A stand-in Optuna trial that picks a fixed alternative per choice and the low
    end of every range: enough to validate each alternative once."""

    def __init__(self, pick: int) -> None:
        self.pick = pick

    def suggest_categorical(self, name, choices):
        return choices[min(self.pick, len(choices) - 1)]

    def suggest_int(self, name, low, high, step=1):
        return low if self.pick % 2 == 0 else high - (high - low) % step

    def suggest_float(self, name, low, high, log=False):
        return low if self.pick % 2 == 0 else high


def allows(distribution: Any, value: Any) -> bool:
    """Whether an Optuna distribution holds ``value`` (through its public fields)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return any(value == c and type(value) is type(c) for c in distribution.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not distribution.low <= value <= distribution.high:
        return False
    if isinstance(distribution, IntDistribution):
        return isinstance(value, int) and (value - distribution.low) % distribution.step == 0
    return True


def allowed(distribution: Any) -> str:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return "allowed: " + ", ".join(map(str, distribution.choices))
    if isinstance(distribution, IntDistribution):
        step = f", step {distribution.step}" if distribution.step != 1 else ""
        return f"a whole number in [{distribution.low}, {distribution.high}{step}]"
    return f"a number in [{distribution.low}, {distribution.high}]"


class Fixed(Corner):
    """A stand-in Optuna trial with some parameters fixed (an enqueued point), the
    others at their low corner."""

    def __init__(self, fixed: dict[str, Any]) -> None:
        super().__init__(0)
        self.fixed = fixed

    def suggest_categorical(self, name, choices):
        return self.fixed.get(name, super().suggest_categorical(name, choices))

    def suggest_int(self, name, low, high, step=1):
        return self.fixed.get(name, super().suggest_int(name, low, high, step))

    def suggest_float(self, name, low, high, log=False):
        return self.fixed.get(name, super().suggest_float(name, low, high, log))
