"""The compose stack for real, as a new user runs it, on a machine without GPUs that
cannot pull images. Opt-in (it builds multi-GB images and takes minutes):

    STUDY_TEST_COMPOSE=1 .venv/bin/pytest -s tests/test_compose.py

Needs a Docker Engine with BuildKit, Docker Compose v2.24 or later (``!reset`` in the
override file) and, unless the image ``study-test/debian:bookworm`` exists already,
``debootstrap`` and root to make it. docs/deploy.md says what it ran on and how long it
took.

The project's files (what git tracks, nothing it ignores) are copied to a temporary
folder with a ``.env`` of fresh secrets and free ports, as a user's checkout with
``cp .env.example .env`` would be. There, ``docker compose -f docker-compose.yml -f
docker/compose.test.yml`` (the shipped file plus the test's differences: images built
from a local Debian base, one CPU-only worker) builds the images, starts PostgreSQL,
MLflow, the Ray head and a worker and waits for every health check. The smoke study is
submitted with ``ray job submit`` through the published dashboard port with the token;
its outcome is read from the stack's MLflow (with the admin login) and PostgreSQL. No
secret may be in an image, anonymous MLflow and Ray requests are refused, and ``down
-v`` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from finished_study import check_finished_study
from runs import SMOKE, TINY
from servers import BIN, free_port, study

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "study-compose-test"
DEBIAN_IMAGE = "study-test/debian:bookworm"
STUDY_IMAGE = "study-test/antialiased-study:latest"
BUILT_IMAGES = (STUDY_IMAGE, "study-test/postgres:15")
SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker"}
COMPOSE = ["docker", "compose", "-p", PROJECT, "-f", "docker-compose.yml"]
COMPOSE += ["-f", "docker/compose.test.yml"]
SECRET_NAMES = ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("STUDY_TEST_COMPOSE") != "1",
        reason="builds and runs the whole compose stack (Docker, minutes, GBs): "
        "STUDY_TEST_COMPOSE=1 runs it, see docs/deploy.md",
    ),
]

TIMES: dict[str, float] = {}


def run(*args: str, cwd: Path | None = None, timeout: float = 600, **kwargs: Any) -> str:
    """A command that must succeed; its output (stdout and stderr together)."""
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{output[-5000:]}")
    return output


def timed(name: str, *args: str, **kwargs: Any) -> str:
    start = time.monotonic()
    try:
        return run(*args, **kwargs)
    finally:
        TIMES[name] = time.monotonic() - start


def compose(project: Path, *args: str, timeout: float = 600) -> str:
    return run(*COMPOSE, *args, cwd=project, timeout=timeout)


def check_tools() -> None:
    """Fail (the test was asked for) when Docker or Compose v2 is missing."""
    if shutil.which("docker") is None:
        pytest.fail("STUDY_TEST_COMPOSE=1 but there is no `docker` (docs/deploy.md)")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        pytest.fail(f"the Docker Engine does not answer: {info.stderr.strip()[-300:]}")
    version = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True, check=False
    )
    numbers = version.stdout.strip().lstrip("v").split(".")
    if (
        version.returncode != 0
        or not numbers[0].isdigit()
        or (tuple(int(n) for n in numbers[:2] if n.isdigit()) < (2, 24))
    ):
        pytest.fail(f"needs Docker Compose v2.24 or later, found {version.stdout.strip()!r}")


def debian_image() -> None:
    """``study-test/debian:bookworm``: Debian 12 by debootstrap, imported (once)."""
    found = subprocess.run(["docker", "image", "inspect", DEBIAN_IMAGE], capture_output=True)
    if found.returncode == 0:
        return
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.fail(f"no image {DEBIAN_IMAGE}: making it needs debootstrap and root")
    mirror = os.environ.get("STUDY_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:
        root = Path(folder) / "rootfs"
        timed("debootstrap", "debootstrap", "--variant=minbase", "bookworm", str(root), mirror)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        run("docker", "import", "-", DEBIAN_IMAGE, stdin=tar.stdout)
        assert tar.wait() == 0


def copy_project(target: Path) -> None:
    """The files of a checkout: tracked or untracked, never git-ignored ones."""
    listed = run("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def ca_bundle() -> Path:
    """The host's CA bundle: pip in the image trusts what the host trusts."""
    configured = os.environ.get("STUDY_TEST_CA_BUNDLE") or ssl.get_default_verify_paths().cafile
    for candidate in (configured, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("no CA bundle found: set STUDY_TEST_CA_BUNDLE")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The running stack: its folder, its .env values and published ports."""
    check_tools()
    start = time.monotonic()
    project = tmp_path_factory.mktemp("stack")
    copy_project(project)
    env = {name: secrets.token_hex(24) for name in SECRET_NAMES}
    env.update(
        POSTGRES_PORT=str(free_port()),
        MLFLOW_PORT=str(free_port()),
        RAY_DASHBOARD_PORT=str(free_port()),
        STUDY_IMAGE=STUDY_IMAGE,
        RAY_WORKER_CPUS="2",
        RAY_SHM_SIZE="2gb",
    )
    (project / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    (project / ".env").chmod(0o600)
    shutil.copy(ca_bundle(), project / "docker" / "test" / "ca-certificates.crt")
    try:
        debian_image()
        base = "--profile", "base", "build", "python-base"
        timed("build python-base", *COMPOSE, *base, cwd=project)
        timed("build stack", *COMPOSE, "build", cwd=project, timeout=1800)
        timed("up --wait", *COMPOSE, "up", "-d", "--wait", "--wait-timeout", "600", cwd=project)
        TIMES["ready"] = time.monotonic() - start
        yield {
            "project": project,
            "env": env,
            "mlflow": f"http://127.0.0.1:{env['MLFLOW_PORT']}",
            "dashboard": f"http://127.0.0.1:{env['RAY_DASHBOARD_PORT']}",
            "login": ("admin", env["MLFLOW_ADMIN_PASSWORD"]),
            "start": start,
        }
    except BaseException:
        logs = subprocess.run(
            ["docker", "compose", "-p", PROJECT, "logs", "--no-color", "--tail", "60"],
            capture_output=True,
            text=True,
            cwd=project,
            check=False,
        )
        print(logs.stdout[-8000:], file=sys.stderr)
        raise
    finally:
        subprocess.run(
            ["docker", "compose", "-p", PROJECT, "down", "-v", "--remove-orphans"],
            capture_output=True,
            cwd=project,
            check=False,
        )


def test_every_service_becomes_healthy_without_restarts(stack: dict[str, Any]) -> None:
    listed = compose(stack["project"], "ps", "--all", "--format", "json")
    rows = [json.loads(line) for line in listed.splitlines() if line.startswith("{")]
    assert {row["Service"] for row in rows} == SERVICES
    for row in rows:
        assert row["State"] == "running" and row["Health"] == "healthy", row
        restarts = run("docker", "inspect", "--format", "{{.RestartCount}}", row["Name"])
        # A restart would mean a service started before what it needs was ready.
        assert restarts.strip() == "0", f"{row['Service']} restarted {restarts.strip()} times"


def _scan(image: str, needles: list[bytes]) -> set[bytes]:
    """The needles found anywhere in ``docker save IMAGE`` (every layer, the config)."""
    saved = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert saved.stdout is not None
    found: set[bytes] = set()
    tail = b""
    overlap = max(len(needle) for needle in needles)
    while chunk := saved.stdout.read(16 << 20):
        window = tail + chunk
        found |= {needle for needle in needles if needle in window}
        tail = window[-overlap:]
    assert saved.wait() == 0
    return found


def test_no_secret_is_in_an_image(stack: dict[str, Any]) -> None:
    values = [stack["env"][name] for name in SECRET_NAMES]
    start = time.monotonic()
    for image in BUILT_IMAGES:
        described = run("docker", "image", "inspect", image)
        described += run("docker", "history", "--no-trunc", image)
        assert not [value for value in values if value in described], image
        assert not _scan(image, [value.encode() for value in values]), image
        size = json.loads(run("docker", "image", "inspect", image))[0]["Size"]
        TIMES[f"size of {image} (GB)"] = size / 1e9
    TIMES["scan images for secrets"] = time.monotonic() - start


def _status(url: str, auth: tuple[str, str] | None = None, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    request.add_header("Content-Type", "application/json")
    if auth is not None:
        import base64

        token = base64.b64encode(":".join(auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_anonymous_requests_are_refused(stack: dict[str, Any]) -> None:
    mlflow, dashboard = stack["mlflow"], stack["dashboard"]
    assert _status(f"{mlflow}/health") == 200
    create = f"{mlflow}/api/2.0/mlflow/experiments/create"
    assert _status(create, method="POST") == 401
    assert _status(f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1") == 401
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _status(search, stack["login"]) == 200
    assert _status(f"{dashboard}/api/jobs/") == 401  # Ray's job API wants the token


def test_a_worker_asked_for_a_gpu_on_a_gpu_less_host_says_why(stack: dict[str, Any]) -> None:
    result = subprocess.run(
        [*COMPOSE, "run", "--rm", "--no-deps", "-e", "RAY_WORKER_GPUS=1", "ray-worker"],
        cwd=stack["project"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1
    assert "no nvidia-smi" in result.stderr and "RAY_WORKER_GPUS=0" in result.stderr


def test_smoke_study_as_a_ray_job(stack: dict[str, Any]) -> None:
    project, env = stack["project"], stack["env"]
    client_env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    client_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=env["RAY_AUTH_TOKEN"])
    output = timed(
        "ray job submit (smoke study, 2 trials)",
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        stack["dashboard"],
        "--working-dir",
        ".",
        "--",
        "study",
        "run",
        "search_spaces/smoke.yaml",
        *TINY,
        "--name",
        "smoke-compose",
        cwd=project,
        env=client_env,
        timeout=900,
    )
    assert "succeeded" in output and "2 of 2 trials complete" in output, output[-3000:]

    # The job's upload left .env behind (git-ignored), the driver ran on the head.
    head = run("docker", "compose", "-p", PROJECT, "ps", "-q", "ray-head", cwd=project).strip()
    uploaded = run("docker", "exec", head, "find", "/tmp/ray/session_latest/runtime_resources")
    assert "/search_spaces/smoke.yaml" in uploaded
    assert not [path for path in uploaded.splitlines() if path.endswith("/.env")]

    # The outcome, from the stack's MLflow (with the login) and PostgreSQL.
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin")
    os.environ.update(MLFLOW_TRACKING_PASSWORD=env["MLFLOW_ADMIN_PASSWORD"])
    try:
        url = (
            f"postgresql+psycopg://study:{env['POSTGRES_PASSWORD']}"
            f"@127.0.0.1:{env['POSTGRES_PORT']}/optuna"
        )
        status = study("status", "smoke-compose", "--tracking-uri", stack["mlflow"], cwd=project)
        assert status.returncode == 0, status.stderr
        # The same check as the regular suite's smoke study (tests/finished_study.py).
        check_finished_study(
            stack["mlflow"],
            "smoke-compose",
            trials=2,
            space=str(SMOKE),
            optuna_storage=url,
            status_output=status.stdout,
        )
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
        os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


def test_down_leaves_nothing_behind(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    timed("down -v", "docker", "compose", "-p", PROJECT, "down", "-v", cwd=stack["project"])
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        left = run("docker", *kind, "--quiet", "--filter", label).split()
        assert not left, f"docker {' '.join(kind)}: {left}"
    TIMES["whole test"] = time.monotonic() - stack["start"]
    with capsys.disabled():
        print("\ncompose stack test:")
        for name, value in TIMES.items():
            print(f"  {name:40} {value:8.1f}")
