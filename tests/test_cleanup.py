"""A `study run` killed with SIGKILL never runs Ray's shutdown: the Ray agents of its
local instance outlive it, adopted by PID 1. The next `study run` on the machine ends
them (and only them) before it starts its own instance. Real processes throughout."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from runs import SMOKE, TINY, environment, start_driver
from servers import ray_cluster, study, wait_for

from study.service.cleanup import orphaned_ray_processes


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _a_trial_started(folder: Path) -> bool:
    return any((folder / "ray_results" / "killed").glob("*/result.json"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reaping reads /proc: Linux only")
def test_the_next_study_ends_what_a_killed_one_left_behind(tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**environment(tracking), "STUDY_TUNE_RESULT_FILES": "1"}  # a trial's result.json
    with ray_cluster(nodes=1) as cluster:  # a live `ray start` instance must be spared
        spared = _cluster_processes(cluster["temp_dir"])
        assert spared, "no process of the `ray start` cluster found"
        slow = ["--set", "train.epochs=50", "--name", "killed"]
        driver = start_driver([*TINY, *slow], tmp_path, env)
        try:
            started = lambda: _a_trial_started(tmp_path) or driver.poll() is not None  # noqa: E731
            wait_for(started, 300, "a trial")
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        deadline = time.monotonic() + 30
        while not (orphans := orphaned_ray_processes()) and time.monotonic() < deadline:
            time.sleep(0.5)  # the raylet and GCS notice their driver died, and exit
        if not orphans:
            pytest.skip("this Ray left no orphaned processes after a SIGKILL: nothing to end")
        assert all(not (p.sessions & _sessions(cluster["temp_dir"])) for p in orphans)

        rerun = study(
            "run", str(SMOKE), *TINY, "--set", "train.epochs=1", "--name", "after",
            cwd=tmp_path, env=env,
        )  # fmt: skip
        assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
        ended = re.findall(r"ended (ray::\S+) \(pid (\d+), (session_\S+)\)", rerun.stdout)
        assert ended, rerun.stdout[-3000:]  # (some orphans may also exit on their own)
        killed_sessions = {session.lstrip("/") for p in orphans for session in p.sessions}
        assert {session for _, _, session in ended} <= killed_sessions  # nothing else
        assert not any(_alive(p.pid) for p in orphans)
        assert all(_alive(pid) for pid in spared)  # the `ray start` instance untouched


LONG_LIVED = ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _cluster_processes(temp_dir: str) -> set[int]:
    """The pids of the cluster's GCS, raylet and agents: they live as long as it does."""
    from study.service.cleanup import _processes

    sessions = _sessions(temp_dir)
    return {
        p.pid
        for p in _processes()
        if p.sessions & sessions and any(name in p.title for name in LONG_LIVED)
    }


def _sessions(temp_dir: str) -> frozenset[str]:
    """The session folders (as the cleanup module names them) under ``temp_dir``."""
    return frozenset(f"/{p.name}" for p in Path(temp_dir).glob("session_2*"))
