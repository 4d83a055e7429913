"""Joining Ray: the cluster at ``--address``/``RAY_ADDRESS``, a ``ray start`` cluster on
this machine, or a private local instance (what a killed study left ended first)."""

from __future__ import annotations

import logging
import warnings

from study.mlflow_layout import error_gist
from study.secrets import redact
from study.service.plan import (
    runs_locally,
)
from study.trial.config import ConfigError


def warn_if_tracking_is_local(uri: str) -> None:
    """Trials log from whichever machine runs them: a tracking store in a local file
    is only shared by nodes on this machine."""
    import ray

    machines = {n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    if len(machines) > 1 and local:
        warnings.warn(
            f"the cluster spans {len(machines)} machines but the tracking URI {redact(uri)} is "
            "local to this one: trials elsewhere will log to their own copy. Use an "
            "MLflow server (MLFLOW_TRACKING_URI=http://...), see docs/deploy.md",
            stacklevel=2,
        )


def _starts_an_instance(address: str | None) -> bool:
    """Whether ``ray.init(address)`` starts a new local instance rather than joining a
    cluster (``local``, or no address and no ``ray start`` cluster on this machine)."""
    if address == "local":
        return True
    if address is not None:
        return False
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address(None) is None
    except Exception:  # Ray's lookup changed or failed: let ray.init decide, as before
        return False


def connect(address: str | None, dashboard: bool = False) -> None:
    import ray

    if runs_locally(address):  # on this machine: first end what a killed study left
        from study.service.cleanup import reap_orphaned_ray_processes

        for leftover in reap_orphaned_ray_processes():
            print(f"study: ended {leftover}, left by a killed Ray instance", flush=True)
    # A private instance lives as long as the study: its dashboard (a process that
    # starts in seconds and polls on, taking CPU from the trials) only when asked.
    dashboard = {"include_dashboard": dashboard} if _starts_an_instance(address) else {}
    try:
        ray.init(
            address=address,
            ignore_reinit_error=True,
            log_to_driver=False,
            # Ray resets its logger's level to this: keep what study.service.quiet set
            logging_level=logging.getLogger("ray").getEffectiveLevel(),
            **dashboard,
        )
    except (ConnectionError, RuntimeError, ValueError) as error:
        if address is None:  # Ray found a `ray start` cluster on this machine, and failed
            raise ConfigError(
                "ray",
                f"cannot join the Ray cluster running on this machine ({error_gist(error)});"
                " `ray stop` it, or pass --address local for a private instance",
            ) from None
        raise ConfigError(
            "--address", f"cannot connect to Ray at {address}: {error_gist(error)}"
        ) from None
