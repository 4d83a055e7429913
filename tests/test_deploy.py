"""The deployment files, checked without Docker, a GPU or a cloud account.

- ``docker-compose.yml``: interpolated the way Compose does (``${VAR}``, ``${VAR:-x}``,
  ``${VAR:?msg}``, ``$$``) with the values of ``.env.example``, then validated against
  the Compose Specification's JSON schema (``tests/data/compose-spec.json``, see
  ``tests/data/README.md`` for its source and version); plus this project's own
  invariants: loopback-only ports, health checks, the workers' GPU reservation, no
  literal secrets, versions that match the installed Ray, flags that the installed
  ``ray`` and ``mlflow`` accept.
- ``cluster/*.yaml``: prepared and validated by Ray's own cluster-launcher code, as
  ``ray up`` does before it contacts a provider.
- ``docker/Dockerfile``: its base image is the installed Ray's version on Python 3.11.
- ``docker/ray-worker.sh``: workers of one host claim distinct GPUs (with stand-ins for
  ``nvidia-smi`` and ``ray``).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
WORKER_SCRIPT = ROOT / "docker" / "ray-worker.sh"
CLUSTERS = sorted((ROOT / "cluster").glob("*.yaml"))
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

SECRETS = ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY")
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIAL|ACCESS_KEY", re.IGNORECASE)


def _ray_version() -> str:
    import ray

    return ray.__version__


# --- Compose's variable interpolation --------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable is missing."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """One string interpolated as the Compose Specification describes it."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None:
            raise ValueError(f"invalid interpolation in {text!r}")
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        missing = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if missing else value
        if op in ("?", ":?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op in ("+", ":+"):
            return "" if missing else arg
        return value or ""

    return _VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Every string value of a parsed YAML document interpolated (keys are not)."""
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    return node


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose ``.env`` file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def test_interpolation_follows_the_compose_spec() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET} $SET $${SET} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d}", env) == (
        "v v ${SET} d d "
    )
    assert interpolate("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${UNSET+alt}", env) == ("alt||alt|")
    assert interpolate("${SET:?no}", env) == "v"
    with pytest.raises(MissingVariable, match="EMPTY: set it"):
        interpolate("${EMPTY:?set it}", env)
    with pytest.raises(ValueError, match="invalid interpolation"):
        interpolate("cost: $5", env)


# --- docker-compose.yml ----------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(compose_raw: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as Compose sees it with ``cp .env.example .env``."""
    return interpolate_tree(compose_raw, env_example)


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")


def _with_secrets(env: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**(env or {}), **{name: f"test-{name.lower()}" for name in SECRETS}}


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    from jsonschema.validators import validator_for

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=lambda e: e.json_path)
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_compose_schema_check_catches_mistakes(compose: dict[str, Any]) -> None:
    """The schema is strict enough to matter: a misspelt key fails."""
    from jsonschema.validators import validator_for

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    broken = copy.deepcopy(compose)
    broken["services"]["ray-head"]["healthcheck"]["intervall"] = "5s"
    assert list(validator_for(schema)(schema).iter_errors(broken))


def test_compose_file_without_secrets_does_not_start(compose_raw: dict[str, Any]) -> None:
    """Without .env, Compose stops at the first required secret, naming it."""
    with pytest.raises(MissingVariable, match=rf"({'|'.join(SECRETS)}): set .*\.env"):
        interpolate_tree(compose_raw, {})
    for name in SECRETS:
        env = _with_secrets()
        env[name] = ""
        with pytest.raises(MissingVariable, match=name):
            interpolate_tree(compose_raw, env)
    interpolate_tree(compose_raw, _with_secrets())  # the defaults cover everything else


def test_env_example_lists_every_variable_of_the_compose_file(
    compose_raw: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = {
        match["braced"] or match["named"]
        for _, value in _strings(compose_raw)
        for match in _VARIABLE.finditer(value)
        if not match["escaped"] and match["invalid"] is None
    }
    assert used <= set(env_example), f"not in .env.example: {sorted(used - set(env_example))}"


def test_env_example_holds_placeholders_only(env_example: dict[str, str]) -> None:
    for key, value in env_example.items():
        if SECRET_KEY.search(key):
            assert value.startswith("change-me"), f".env.example: {key} must be a placeholder"


def _published(service: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(host address, port spec) of each published port; '' when no address is given."""
    for port in service.get("ports", []):
        if isinstance(port, Mapping):
            yield str(port.get("host_ip", "")), str(port)
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        yield (parts[0] if len(parts) == 3 else ""), str(port)


@pytest.mark.parametrize("env", ["env.example", "defaults"])
def test_published_ports_listen_on_loopback_by_default(
    compose_raw: dict[str, Any], env_example: dict[str, str], env: str
) -> None:
    values = env_example if env == "env.example" else _with_secrets()
    services = interpolate_tree(compose_raw, values)["services"]
    published = [(name, *p) for name, s in services.items() for p in _published(s)]
    assert {name for name, *_ in published} == {"postgres", "mlflow", "ray-head"}
    for name, address, spec in published:
        assert address == "127.0.0.1", f"{name} publishes {spec} beyond loopback"


def test_bind_address_opens_the_ports_on_request(
    compose_raw: dict[str, Any], env_example: dict[str, str]
) -> None:
    services = interpolate_tree(compose_raw, {**env_example, "BIND_ADDRESS": "0.0.0.0"})
    addresses = {a for s in services["services"].values() for a, _ in _published(s)}
    assert addresses == {"0.0.0.0"}


def test_ray_gcs_port_is_not_redis_and_not_published(compose: dict[str, Any]) -> None:
    head = compose["services"]["ray-head"]
    assert "--port=6380" in head["command"]
    assert all(":6379" not in spec and ":6380" not in spec for _, spec in _published(head))


def test_every_service_is_health_checked(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        waits = [
            dependency
            for dependency, spec in (service.get("depends_on") or {}).items()
            if isinstance(spec, Mapping) and spec.get("condition") == "service_healthy"
        ]
        assert "healthcheck" in service or waits, f"{name}: no healthcheck, no depends_on"
        if "healthcheck" in service:
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
        for dependency in waits:
            assert "healthcheck" in services[dependency], f"{name} waits on {dependency}"
        assert service.get("restart") == "unless-stopped", name


def test_ray_workers_reserve_nvidia_gpus_and_scale(compose: dict[str, Any]) -> None:
    worker = compose["services"]["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # `--scale ray-worker=N` needs neither a fixed container name nor host ports.
    assert "container_name" not in worker
    assert not worker.get("ports")
    assert worker["command"] == ["study-ray-worker"]
    assert worker["environment"]["RAY_HEAD_ADDRESS"] == "ray-head:6380"
    for name in ("ray-head", "ray-worker"):
        service = compose["services"][name]
        assert service["shm_size"] == "8gb"
        assert "ray-results:/data/ray_results" in service["volumes"]


def test_ray_nodes_use_token_authentication(compose: dict[str, Any]) -> None:
    for name in ("ray-head", "ray-worker"):
        environment = compose["services"][name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token"
        assert environment["RAY_AUTH_TOKEN"] == "change-me-ray-auth-token"
        assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert environment["STUDY_OPTUNA_STORAGE"].startswith("postgresql+psycopg://study:")
        assert environment["RAY_API_SERVER_ADDRESS"] == "http://ray-head:8265"
        # Jobs and trials log in to MLflow with the admin account of .env.
        assert environment["MLFLOW_TRACKING_USERNAME"] == "admin"
        assert environment["MLFLOW_TRACKING_PASSWORD"] == "change-me-mlflow-admin-password"


def test_mlflow_asks_for_a_login(compose: dict[str, Any]) -> None:
    mlflow = compose["services"]["mlflow"]
    assert "--app-name=basic-auth" in mlflow["command"]
    environment = mlflow["environment"]
    assert environment["MLFLOW_AUTH_ADMIN_PASSWORD"] == "change-me-mlflow-admin-password"
    assert environment["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "change-me-mlflow-secret-key"
    (config,) = mlflow["configs"]
    assert config["target"] == environment["MLFLOW_AUTH_CONFIG_PATH"]
    settings = compose["configs"][config["source"]]["content"]
    assert (
        "database_uri = postgresql+psycopg://study:change-me-postgres-password@postgres:5432/mlflow_auth"
        in settings
    )
    assert "CREATE DATABASE mlflow_auth;" in compose["configs"]["postgres-init"]["content"]


def test_compose_file_holds_no_literal_secrets(compose_raw: dict[str, Any]) -> None:
    """Every secret-named setting and every password in a URL comes from .env."""
    sentinels = {name: f"sentinel-{index}" for index, name in enumerate(SECRETS)}
    interpolated = interpolate_tree(compose_raw, sentinels)
    checked = 0
    for path, value in _strings(interpolated):
        key = path.rsplit(".", 1)[-1]
        if SECRET_KEY.search(key):
            assert value in sentinels.values(), f"{path}: a literal secret"
            checked += 1
        for password in re.findall(r"://[^/@\s]+?:([^@/\s]+)@", value):
            assert password in sentinels.values(), f"{path}: a literal password in a URL"
            checked += 1
    assert checked >= 5  # the secrets and URLs, in each service that has them
    for path, value in _strings(compose_raw):
        if SECRET_KEY.search(path.rsplit(".", 1)[-1]):
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{path}: use ${{VAR:?why}}"


def test_images_are_pinned_and_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("mlflow", "ray-head", "ray-worker"):
        build = services[name]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "docker/Dockerfile"), name
        assert services[name]["image"] == "antialiased-study:latest"
    for name, service in services.items():
        if "build" not in service:
            repository, _, tag = service["image"].rpartition(":")
            assert repository and tag and tag != "latest", f"{name}: pin {service['image']}"


@pytest.fixture(scope="module")
def cli_options() -> dict[str, set[str]]:
    """The options that the installed `ray start` and `mlflow server` accept."""
    with warnings.catch_warnings():  # their imports warn about their own dependencies
        warnings.simplefilter("ignore")
        from mlflow.cli import server
        from ray.scripts.scripts import start

    def options(command: Any) -> set[str]:
        return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}

    return {"ray start": options(start), "mlflow server": options(server)}


def _flags(words: list[str]) -> list[str]:
    return [word.split("=", 1)[0] for word in words if word.startswith("--")]


def test_compose_commands_use_flags_of_the_installed_ray_and_mlflow(
    compose: dict[str, Any], cli_options: dict[str, set[str]]
) -> None:
    services = compose["services"]
    head = services["ray-head"]["command"]
    assert head[:2] == ["ray", "start"]
    assert set(_flags(head)) <= cli_options["ray start"]
    mlflow = services["mlflow"]["command"]
    assert mlflow[:2] == ["mlflow", "server"]
    assert set(_flags(mlflow)) <= cli_options["mlflow server"]
    assert {"--serve-artifacts", "--artifacts-destination", "--allowed-hosts"} <= set(
        _flags(mlflow)
    )
    script = WORKER_SCRIPT.read_text()
    worker_flags = {"--address", "--num-gpus", "--num-cpus", "--block"}
    assert all(flag in script for flag in worker_flags)
    assert worker_flags <= cli_options["ray start"]


def test_secrets_stay_out_of_git_and_images() -> None:
    dockerignore = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv"} <= dockerignore
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", ".env"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "add .env to .gitignore: it holds the stack's secrets"


def _compose_cli() -> list[str] | None:
    """``docker compose`` (v2) or a standalone ``docker-compose`` v2, where installed."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run(
            [*command, "version", "--short"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."):
            return command
    return None


def test_docker_compose_accepts_the_file() -> None:
    """Where Compose v2 is installed (it needs no engine for this): its own check."""
    command = _compose_cli()
    if command is None:
        pytest.skip("no Docker Compose v2 here; the schema test above stands in for it")
    base = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    ok = subprocess.run(
        [*base, "--env-file", str(ENV_EXAMPLE), "config", "--quiet"],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(
        [*base, "--env-file", os.devnull, "config", "--quiet"],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0 and "in .env (see .env.example)" in refused.stderr


# --- docker/Dockerfile -----------------------------------------------------------------


def _dockerfile_base_image(build_args: Mapping[str, str] | None = None) -> str:
    """The first FROM of the Dockerfile with its ARG defaults (or ``build_args``)
    substituted, as the builder does: an ARG's default may use earlier ARGs."""
    args: dict[str, str] = {}

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], text)

    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "ARG" and "=" in words[1]:
            name, _, default = words[1].partition("=")
            args[name] = (build_args or {}).get(name, expand(default))
        if words[0].upper() == "FROM":
            return expand(words[1])
    raise AssertionError("docker/Dockerfile has no FROM")


def test_dockerfile_base_image_matches_the_installed_ray() -> None:
    image = _dockerfile_base_image()
    assert image == f"rayproject/ray:{_ray_version()}-py311-gpu"
    assert _dockerfile_base_image({"RAY_PLATFORM": "cu128"}).endswith("-py311-cu128")
    assert _dockerfile_base_image({"BASE_IMAGE": "study-test/python-base"}) == (
        "study-test/python-base"
    )
    text = DOCKERFILE.read_text()
    flat = re.sub(r"\\\n\s*", "", text)  # continuation lines joined
    # Ray stays the base image's version wherever pip resolves: downloads and installs,
    # of the heavy dependencies and of the project.
    pips = re.findall(r"pip (?:download|install) [^&\n]*", flat)
    assert len(pips) == 4, pips
    assert all('"ray[default,tune]==${RAY_VERSION}"' in pip for pip in pips), pips
    assert re.search(r'pip install --no-index .*"ray\[default,tune\]==\$\{RAY_VERSION\}" \.', flat)
    # A `# syntax=` line would make every build pull docker/dockerfile from Docker Hub.
    assert not text.startswith("# syntax=")
    assert "COPY --chmod=0755 docker/ray-worker.sh /usr/local/bin/study-ray-worker" in text


# --- cluster/*.yaml --------------------------------------------------------------------


def _prepared(path: Path) -> dict[str, Any]:
    """The config as `ray up` has it before asking the provider anything."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(path.read_text()))
    validate_config(config)
    return config


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_cluster_config_passes_rays_validation(path: Path) -> None:
    config = _prepared(path)
    assert config["head_node_type"] in config["available_node_types"]
    assert config["max_workers"] >= 1


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_cluster_config_validation_catches_mistakes(path: Path) -> None:
    from jsonschema import ValidationError
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(path.read_text())
    config["setup_command"] = config.pop("setup_commands")
    with pytest.raises(ValidationError, match="setup_command"):
        validate_config(prepare_config(config))


def test_cluster_configs_cover_cloud_gpus_and_own_machines() -> None:
    assert [p.name for p in CLUSTERS] == ["aws-gpu.yaml", "local.yaml"]
    aws = _prepared(ROOT / "cluster" / "aws-gpu.yaml")
    assert aws["provider"]["type"] == "aws"
    gpu = aws["available_node_types"]["gpu-worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["node_config"]["InstanceType"].startswith("g5.")
    assert aws["docker"]["image"] == f"rayproject/ray:{_ray_version()}-py311-gpu"
    local = _prepared(ROOT / "cluster" / "local.yaml")
    assert local["provider"]["type"] == "local"
    assert local["provider"]["head_ip"] and local["provider"]["worker_ips"]


def _commands(config: Mapping[str, Any]) -> list[str]:
    keys = ("setup_commands", "head_setup_commands", "worker_setup_commands")
    keys += ("head_start_ray_commands", "worker_start_ray_commands")
    return [command for key in keys for command in config.get(key, [])]


def _program_flags(command: str, program: list[str]) -> list[str]:
    words = shlex.split(command)
    flags = []
    for index in range(len(words) - 1):
        if words[index : index + 2] == program:
            for word in words[index + 2 :]:
                if word in (";", "||", "&&", ">", "&") or word.endswith(";"):
                    break
                flags.append(word)
    return _flags(flags)


@pytest.mark.parametrize("path", CLUSTERS, ids=lambda p: p.name)
def test_cluster_config_pins_ray_and_enables_token_auth(
    path: Path, cli_options: dict[str, set[str]]
) -> None:
    raw = yaml.safe_load(path.read_text())
    text = path.read_text()
    installs = [c for c in _commands(raw) if "pip install" in c and "ray[" in c]
    assert installs and all(f'"ray[default,tune]=={_ray_version()}"' in c for c in installs)
    assert "RAY_AUTH_MODE=token" in text
    assert raw["file_mounts"]["~/.ray"] == "~/.ray"  # ~/.ray/auth_token on every node
    assert ".env" in raw["rsync_exclude"]
    head_start = " ; ".join(raw["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    for command in _commands(raw):
        for program in ("ray start", "mlflow server"):
            assert set(_program_flags(command, program.split())) <= cli_options[program]
    assert _program_flags(head_start, ["mlflow", "server"])


# --- docker/ray-worker.sh --------------------------------------------------------------

needs_flock = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("flock") is None,
    reason="needs bash and flock (util-linux)",
)


@pytest.fixture
def fake_host(tmp_path: Path) -> dict[str, str]:
    """PATH with an `nvidia-smi` that lists 3 GPUs and a `ray` that records what it got
    and holds on until released."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nprintf '0\\n1\\n2\\n'\n")
    (bin_dir / "ray").write_text(
        "#!/bin/sh\n"
        'echo "$CUDA_VISIBLE_DEVICES|$*" > "$FAKE_OUT/$$.started"\n'
        "i=0\n"
        'while [ ! -e "$FAKE_OUT/release" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n'
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_OUT": str(out),
        "GPU_LOCK_DIR": str(tmp_path / "locks"),
        "RAY_HEAD_ADDRESS": "ray-head:6380",
    }


def _started(env: Mapping[str, str], count: int) -> list[str]:
    out = Path(env["FAKE_OUT"])
    deadline = time.monotonic() + 30
    while len(found := sorted(out.glob("*.started"))) < count:
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)
    return [path.read_text().strip() for path in found]


@needs_flock
def test_scaled_workers_claim_distinct_gpus(fake_host: dict[str, str]) -> None:
    workers = []
    try:
        for count in (1, 2, 3):
            workers.append(subprocess.Popen(["bash", str(WORKER_SCRIPT)], env=fake_host))
            started = _started(fake_host, count)
        assert sorted(line.split("|")[0] for line in started) == ["0", "1", "2"]
        for line in started:
            assert line.split("|")[1] == "start --address=ray-head:6380 --num-gpus=1 --block"
        # A fourth worker on a host with three GPUs finds none free and says so.
        extra = subprocess.run(
            ["bash", str(WORKER_SCRIPT)], env=fake_host, capture_output=True, text=True
        )
        assert extra.returncode == 1
        assert "wanted 1 free GPU(s), found 0 of 3" in extra.stderr
    finally:
        (Path(fake_host["FAKE_OUT"]) / "release").touch()
        for worker in workers:
            worker.wait(timeout=30)
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    # The locks went with the workers: a new one gets a GPU again.
    (Path(fake_host["FAKE_OUT"]) / "release").unlink()
    for path in Path(fake_host["FAKE_OUT"]).glob("*.started"):
        path.unlink()
    again = subprocess.Popen(["bash", str(WORKER_SCRIPT)], env=fake_host)
    try:
        assert _started(fake_host, 1)[0].startswith("0|")
    finally:
        (Path(fake_host["FAKE_OUT"]) / "release").touch()
        again.wait(timeout=30)


@needs_flock
@pytest.mark.parametrize(
    ("gpus", "cpus", "expected"),
    [
        ("all", "", "0,1,2|start --address=ray-head:6380 --num-gpus=3 --block"),
        ("2", "8", "0,1|start --address=ray-head:6380 --num-gpus=2 --block --num-cpus=8"),
        ("0", "", "|start --address=ray-head:6380 --num-gpus=0 --block"),
    ],
)
def test_worker_gpus_and_cpus_settings(
    fake_host: dict[str, str], gpus: str, cpus: str, expected: str
) -> None:
    (Path(fake_host["FAKE_OUT"]) / "release").touch()
    env = {**fake_host, "RAY_WORKER_GPUS": gpus, "RAY_WORKER_CPUS": cpus}
    subprocess.run(["bash", str(WORKER_SCRIPT)], env=env, check=True, capture_output=True)
    assert _started(fake_host, 1) == [expected]


@needs_flock
@pytest.mark.parametrize(("gpus", "code"), [("two", 2), ("4", 1)])
def test_worker_refuses_bad_gpu_counts(fake_host: dict[str, str], gpus: str, code: int) -> None:
    env = {**fake_host, "RAY_WORKER_GPUS": gpus}
    result = subprocess.run(["bash", str(WORKER_SCRIPT)], env=env, capture_output=True, text=True)
    assert result.returncode == code
    assert result.stderr.startswith("ray-worker: ")
    assert not list(Path(fake_host["FAKE_OUT"]).glob("*.started"))


@needs_flock
def test_worker_without_nvidia_smi_explains(fake_host: dict[str, str]) -> None:
    system = "/usr/bin:/bin"
    if shutil.which("nvidia-smi", path=system):
        pytest.skip("this host has a real nvidia-smi")
    (Path(fake_host["PATH"].split(os.pathsep)[0]) / "nvidia-smi").unlink()
    env = {**fake_host, "PATH": f"{fake_host['PATH'].split(os.pathsep)[0]}:{system}"}
    result = subprocess.run(["bash", str(WORKER_SCRIPT)], env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "no nvidia-smi" in result.stderr and "RAY_WORKER_GPUS=0" in result.stderr


def test_worker_script_is_executable() -> None:
    assert os.access(WORKER_SCRIPT, os.X_OK)
    assert WORKER_SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
