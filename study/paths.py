"""Where a study keeps its files when the user does not say.

Relative defaults (``./ray_results``, ``sqlite:///mlflow.db``) resolve against the
folder the user ran ``study`` in, like ``mlflow`` and ``optuna`` do. A driver started
by ``ray job submit --working-dir`` runs inside Ray's temporary copy of that folder,
which Ray deletes when it likes (ray-project/ray#52343): there the defaults resolve
against the home folder instead, as Ray's own ``~/ray_results`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

_RAY_WORKING_DIRS = os.path.join("runtime_resources", "working_dir_files")


def in_ray_working_dir(folder: Path | None = None) -> bool:
    """Whether ``folder`` (default: the current one) is a job's temporary working dir."""
    return _RAY_WORKING_DIRS in str(folder or Path.cwd())


def default_root() -> Path:
    """The folder relative defaults resolve against (see the module docstring)."""
    return Path.home() if in_ray_working_dir() else Path.cwd()


def leave_ray_working_dir() -> None:
    """Step out of a job's temporary working dir once every path is resolved: Ray may
    delete it while the driver runs, and Tune's last step calls ``os.getcwd()``."""
    if in_ray_working_dir():
        os.chdir(Path.home())


def absolute_sqlite(url: str) -> str:
    """``sqlite:///relative.db`` made absolute against :func:`default_root` (trials run
    in their own folders, so a relative database would be a different one there)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return url
    path, _, query = url[len(prefix) :].partition("?")
    if path in ("", ":memory:"):
        return url
    absolute = (default_root() / path).resolve()
    return f"{prefix}{absolute}" + (f"?{query}" if query else "")
