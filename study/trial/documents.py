"""Config documents as users write them: a YAML file read within limits (a file is
data: no alias bombs, no nesting deeper than a config needs), ``--set key=value``
overrides applied, then validated into a :class:`~study.trial.config.TrialConfig`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from study.trial.config import ConfigError, TrialConfig, from_mapping

#: Limits on what a config file may hold: a YAML file is data, so anchors and aliases
#: that expand into billions of nodes, or nesting deeper than any config needs, are
#: refused rather than walked.
MAX_NODES = 100_000


MAX_DEPTH = 32


MAX_BYTES = 10_000_000


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = ()
) -> tuple[TrialConfig, dict[str, Any]]:
    """Read a YAML file (or start from the defaults), apply ``--set key=value``
    overrides, validate. Returns the config and the raw mapping (with its ``study``
    section, for the study service)."""
    raw = read_yaml(path) if path is not None else {}
    for override in overrides:
        apply_override(raw, override)
    return from_mapping(raw), raw


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping; a :class:`ConfigError` naming the problem."""
    path = Path(path)
    try:
        if not path.is_file():
            kind = "a folder" if path.is_dir() else "not a file"
            raise ConfigError("config", f"{path} is {kind}; give a YAML file")
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError("config", f"{path} is over {MAX_BYTES // 1_000_000} MB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError("config", f"cannot read {path} ({reason})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("config", f"{path} is not valid YAML{where}") from None
    except RecursionError:
        raise ConfigError("config", f"{path} is nested too deeply") from None
    check_size(raw, str(path))
    if raw is None:
        raise ConfigError(
            "config", f"{path} is empty (or only comments); it must hold a YAML mapping"
        )
    if not isinstance(raw, dict):
        raise ConfigError("config", f"{path} must hold a mapping, not {type(raw).__name__}")
    return raw


def check_size(value: Any, where: str) -> None:
    """Refuse data with more than :data:`MAX_NODES` values (counting each use of a YAML
    alias again: that is what walking it costs) or nested deeper than :data:`MAX_DEPTH`."""
    budget = [MAX_NODES]

    def walk(item: Any, depth: int) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError("config", f"{where} holds over {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise ConfigError("config", f"{where} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                walk(key, depth + 1)
                walk(child, depth + 1)
        elif isinstance(item, list):
            for child in item:
                walk(child, depth + 1)

    walk(value, 0)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` (value read as YAML) to ``raw`` in place."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"{override!r} must look like key=value, e.g. train.lr=0.05")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"--set {key}", f"{text!r} is not a YAML value") from None
    check_size(value, f"--set {key}")
    parts = key.strip().split(".")
    if any(not part for part in parts):
        raise ConfigError("--set", f"{key!r} has an empty part; e.g. train.lr=0.05")
    target = raw
    for depth, part in enumerate(parts[:-1]):
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}", f"{'.'.join(parts[: depth + 1])} is not a section")
        target = child
    target[parts[-1]] = value
