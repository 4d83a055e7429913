"""Real services for integration tests: PostgreSQL databases, an ``mlflow server``
process, a Ray cluster started with ``ray start`` on loopback, and the ``study`` CLI
as a subprocess. Nothing here is mocked."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("STUDY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
#: Set by CI, whose machine has PostgreSQL: a test that would skip or fall back to SQLite
#: for want of it fails instead, so a broken database setup cannot pass as a skip.
REQUIRE_POSTGRES = os.environ.get("STUDY_TEST_REQUIRE_POSTGRES") == "1"


def _unless_required(reason: str | None) -> str | None:
    if reason is not None and REQUIRE_POSTGRES:
        import pytest

        pytest.fail(f"STUDY_TEST_REQUIRE_POSTGRES=1, but {reason}")
    return reason


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_reason() -> str | None:
    """Why PostgreSQL cannot be used here, or None when it can (a test failure instead
    of a reason under :data:`REQUIRE_POSTGRES`)."""
    try:
        import psycopg
    except ImportError:
        return _unless_required("psycopg is not installed")
    try:
        psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
    except Exception as error:
        reason = f"PostgreSQL at {POSTGRES} is not reachable ({str(error).strip()[:120]})"
        return _unless_required(reason)
    return None


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A fresh, empty database; its URL; dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian's layout), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts[-3])
    return found[-1].parent if found else None


class PostgresCommandFailed(subprocess.CalledProcessError):
    """A PostgreSQL command that failed, shown with its output and the server's log."""

    def __init__(self, code: int, args: tuple[str, ...], output: str, log: str) -> None:
        super().__init__(code, list(args), output)
        self.log = log

    def __str__(self) -> str:
        command = f"{Path(self.cmd[0]).name} {' '.join(self.cmd[-2:])}"
        return (
            f"{command} exited {self.returncode}: {self.output.strip()[-2000:]}\n"
            f"server log:\n{self.log}"
        )


class PrivatePostgres:
    """A PostgreSQL server of the test's own (``initdb`` into ``folder``, trust auth,
    loopback ``port``), so that a test may stop and start it mid-study without touching
    the machine's server. Run as the ``postgres`` user when the tests run as root
    (PostgreSQL refuses root)."""

    def __init__(self, folder: Path) -> None:
        self.bin, self.port = _postgres_bin(), free_port()
        self.data, self.log = folder / "pgdata", folder / "postgres.log"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        folder.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(folder, "postgres")
            folder.chmod(0o755)
            for parent in folder.parents:  # postgres must reach its data folder
                if parent.stat().st_mode & 0o001 == 0:
                    parent.chmod(parent.stat().st_mode | 0o001)

    @staticmethod
    def reason() -> str | None:
        """Why a private server cannot be started here, or None when it can (a test
        failure instead of a reason under :data:`REQUIRE_POSTGRES`)."""
        if _postgres_bin() is None:
            return _unless_required("no PostgreSQL server binaries under /usr/lib/postgresql")
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return _unless_required("running as root without runuser: PostgreSQL refuses root")
        return None

    def _run(self, *args: str) -> None:
        """Run a PostgreSQL command; a failure says what it printed and the server's log."""
        done = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.is_file() else "(no log)"
            raise PostgresCommandFailed(done.returncode, args, done.stdout + done.stderr, log)

    def initdb(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        """A fast shutdown: open connections are cut, as in a restart or a failover."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"


@contextlib.contextmanager
def private_postgres(folder: Path) -> Iterator[PrivatePostgres]:
    """A started :class:`PrivatePostgres`; stopped (if running) afterwards."""
    server = PrivatePostgres(folder)
    server.initdb()
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()


def psycopg_url(url: str) -> str:
    """A ``postgresql://`` URL for SQLAlchemy's psycopg 3 driver (Optuna's storages)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def wait_for(check, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")


def basic_auth_env(
    folder: Path, database_uri: str, username: str, password: str, ini: str | None = None
) -> dict[str, str]:
    """The environment that turns on ``mlflow server --app-name basic-auth``: an auth
    config file in ``folder`` (``ini``'s ``[mlflow]`` settings, if given, with the user
    store at ``database_uri``) and the admin account to create in a new user store."""
    import configparser

    config = configparser.ConfigParser()
    if ini is not None:
        config.read_string(ini)
    else:
        config["mlflow"] = {"default_permission": "READ"}
    config["mlflow"]["database_uri"] = database_uri
    path = folder / "basic_auth.ini"
    with open(path, "w") as file:
        config.write(file)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(path),
        "MLFLOW_AUTH_ADMIN_USERNAME": username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }


S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def s3_reason() -> str | None:
    """Why an S3 server cannot be started here (moto's, from the dev extra), or None."""
    if not (BIN / "moto_server").is_file():
        return "moto_server is not installed (pip install -e '.[dev]')"
    return None


def s3_client(env: Mapping[str, str]):
    """A boto3 S3 client on the server of :func:`s3_server` (``env``: what it yielded)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )


@contextlib.contextmanager
def s3_server(folder: Path, bucket: str) -> Iterator[dict[str, str]]:
    """A real S3 API server on a free loopback port (moto's ``moto_server``, its own
    process) holding ``bucket``; yields the environment that points boto3, pyarrow and
    Ray at it (``AWS_ENDPOINT_URL`` and test credentials)."""
    port = free_port()
    log = open(folder / "s3-server.log", "a")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {(folder / 's3-server.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(answers, 60, "the S3 server")
        s3_client(env).create_bucket(Bucket=bucket)
        yield env
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def mlflow_server(
    backend: str,
    folder: Path,
    app_name: str | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """``mlflow server`` on a free loopback port (or ``port``: a restart) with ``backend``
    as its store and artifacts served by the server; yields its http URL. ``app_name``
    (e.g. ``basic-auth``, with ``env`` from :func:`basic_auth_env`) picks MLflow's app."""
    port = port or free_port()
    log = open(folder / "mlflow-server.log", "a")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *(["--app-name", app_name] if app_name else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # No job runner: its huey workers would outlive the server.
        env={**os.environ, **(env or {}), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited: {(folder / 'mlflow-server.log').read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 120, "mlflow server")
        yield url
    finally:
        stop_group(process)
        log.close()


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM a process group (``mlflow server`` runs uvicorn as a child), SIGKILL what
    is left after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def ray(*args: str, env: dict | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(BIN / "ray"), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"ray {' '.join(args)} failed: {result.stdout}\n{result.stderr}")
    return result.stdout


@contextlib.contextmanager
def ray_cluster(
    nodes: int = 2,
    cpus_per_node: int = 1,
    head_cpus: int | None = None,
    node_env: Mapping[str, str] | None = None,
) -> Iterator[dict]:
    """A real multi-node Ray cluster on loopback: ``ray start --head`` on a free port
    (never 6379, where Redis listens) plus ``nodes - 1`` more ``ray start --address``
    nodes on this machine, with Ray's token authentication on (a fresh token, given to
    every process through ``RAY_AUTH_TOKEN``). ``head_cpus`` (default
    ``cpus_per_node``; 0: trials run on the other nodes only); ``node_env``: more
    environment for the other nodes' processes (their workers inherit it). Yields the
    GCS address, the dashboard URL and the environment that clients of the cluster
    need."""
    port, dashboard = free_port(), free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="raytest-", dir="/tmp"))  # short: socket paths
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--num-gpus", "0", "--disable-usage-stats"]
    head = str(cpus_per_node if head_cpus is None else head_cpus)
    address = f"127.0.0.1:{port}"
    try:
        ray(
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            "--include-dashboard",
            "true",
            "--temp-dir",
            str(temp_dir),
            "--num-cpus",
            head,
            *common,
            env=env,
        )
        for _ in range(nodes - 1):
            ray(
                "start",
                "--address",
                address,
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                str(cpus_per_node),
                *common,
                env={**env, **(node_env or {})},
            )
        yield {
            "address": address,
            "dashboard": f"http://127.0.0.1:{dashboard}",
            "env": env,
            "temp_dir": str(temp_dir),
        }
    finally:
        stop_ray_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_ray_cluster(temp_dir: Path, grace: float = 15.0) -> list[int]:
    """End the processes of the Ray cluster that keeps its files under ``temp_dir`` (the
    ``--temp-dir`` it started with), and only those: ``ray stop`` ends every Ray
    instance of the machine, a user's study running beside the tests included. SIGTERM,
    then SIGKILL after ``grace`` seconds. Returns the pids it found."""
    marker = str(temp_dir)

    def members() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
                links = [] if marker in title else list((entry / "fd").iterdir())
            except OSError:
                continue
            if marker in title or any(marker in _readlink(link) for link in links):
                found.append(int(entry.name))
        return found

    pids = members()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.2)
    for pid in members():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _readlink(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return ""


def study(
    *args: str, cwd: Path, env: dict | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The ``study`` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "study", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
