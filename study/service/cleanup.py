"""Processes a killed study leaves behind on its machine.

A ``study run`` that starts its own local Ray instance and is killed with SIGKILL never
runs Ray's shutdown: the raylet and the GCS server go with it, but the raylet's
``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` live on, adopted by PID 1, holding
ports and memory (seen with Ray 2.60). :func:`reap_orphaned_ray_processes` finds such
processes and ends them; ``study run`` and ``study resume`` call it before they start a
local Ray instance.

A process counts as orphaned only when all of these hold, so nothing of a live Ray
instance (a ``ray start`` cluster, another user's study) is ever touched: its title is
a Ray worker's (``ray::...``), it belongs to this user, its parent is PID 1, and no
``gcs_server`` or ``raylet`` of its session (the ``/tmp/ray/session_*`` folder its open
files live in) is still running. Linux only (it reads ``/proc``); elsewhere it does
nothing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

_SESSION = re.compile(r"/session_\d{4}-\d\d-\d\d_[0-9_-]+")
_PROC = Path("/proc")


@dataclass(frozen=True)
class _Process:
    pid: int
    parent: int
    uid: int
    title: str
    sessions: frozenset[str]


def _read(pid: int) -> _Process | None:
    folder = _PROC / str(pid)
    try:
        title = (folder / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        stat = (folder / "stat").read_text()
        uid = folder.stat().st_uid
    except OSError:
        return None
    parent = int(stat.rsplit(")", 1)[1].split()[1])  # the title may hold spaces and ')'
    sessions = set(_SESSION.findall(title))
    with contextlib.suppress(OSError):
        for link in (folder / "fd").iterdir():
            with contextlib.suppress(OSError):
                sessions.update(_SESSION.findall(os.readlink(link)))
    return _Process(pid, parent, uid, title.strip(), frozenset(sessions))


def _processes() -> list[_Process]:
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (process := _read(int(entry.name))) is not None:
            found.append(process)
    return found


def orphaned_ray_processes() -> list[_Process]:
    """This user's Ray processes whose session has no GCS server or raylet left."""
    if not _PROC.is_dir():
        return []
    everything = _processes()
    alive = set()
    for process in everything:
        if "gcs_server" in process.title or "/raylet " in f"{process.title} ":
            alive |= process.sessions
    uid = os.getuid()
    return [
        p
        for p in everything
        if p.title.startswith("ray::")
        and p.parent == 1
        and p.uid == uid
        and p.sessions
        and not p.sessions & alive
    ]


def reap_orphaned_ray_processes(grace: float = 5.0) -> list[str]:
    """End the processes of :func:`orphaned_ray_processes` (SIGTERM, then SIGKILL after
    ``grace`` seconds); returns a description of each, e.g. ``ray::DashboardAgent
    (pid 7769, session_2026-11-30_10-27-43_905588_7465)``."""
    orphans = orphaned_ray_processes()
    for process in orphans:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = list(orphans)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [p for p in remaining if _PROC.joinpath(str(p.pid)).exists()]
    for process in remaining:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(process.pid, signal.SIGKILL)
    return [
        f"{p.title.split()[0]} (pid {p.pid}, {sorted(p.sessions)[0].lstrip('/')})" for p in orphans
    ]


__all__ = ["orphaned_ray_processes", "reap_orphaned_ray_processes"]
