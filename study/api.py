"""Drive studies from Python: run one, load one, list them, read trials and fronts as
pandas DataFrames.

>>> import study
>>> s = study.run("search_spaces/smoke.yaml", ["train.epochs=2"], name="smoke-nb")  # doctest: +SKIP
>>> s.front()[["filter", "augment", "test_acc", "test_consistency"]]            # doctest: +SKIP
>>> study.load("smoke-nb").trials().groupby("state").size()                   # doctest: +SKIP
>>> study.studies()                                                           # doctest: +SKIP

Everything is read back from MLflow, the study service's source of truth, so
:func:`load` works for a finished study and for one still running elsewhere (as
``study status`` does). Bad input raises the same one-line ``ValueError`` subclasses
(:class:`~study.trial.config.ConfigError`) the command line reports.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from study.service.runner import StudyOutcome


@dataclass(frozen=True)
class Study:
    """A study in a tracking store: ``name`` and the resolved ``tracking_uri``;
    ``outcome`` is set when this process ran it (:func:`run`)."""

    name: str
    tracking_uri: str
    outcome: StudyOutcome | None = None

    def _parent(self) -> Any:
        from study.pareto.store import connect, find_parent

        return find_parent(connect(self.tracking_uri), self.name)

    @property
    def objectives(self) -> dict[str, str]:
        """The study's objectives, ``{metric: "max" | "min"}``."""
        from study.pareto.store import study_objectives

        return study_objectives(self._parent())

    def trials(self) -> pd.DataFrame:
        """Every trial (child run), one row each: ``state`` (``FINISHED`` = complete,
        ``PRUNED`` = stopped early, ``FAILED``, ``RUNNING``, ``KILLED``), ``filter``,
        ``augment``, the final metrics by name (``test_acc``, ``val_consistency``, ...),
        the searched parameters (``optuna.*``), ``run_id`` and ``trial_id``."""
        import pandas as pd

        from study.mlflow_layout import TRIAL_TAG, child_runs, final_metrics, trial_state

        rows = []
        for run in child_runs(self.tracking_uri, self._parent().info.run_id):
            params, metrics = run.data.params, run.data.metrics
            rows.append(
                {
                    "trial_id": run.data.tags.get(TRIAL_TAG, ""),
                    "run_name": run.info.run_name,
                    "state": trial_state(run),
                    "filter": params.get("model.filter", ""),
                    "augment": params.get("augment.kind", ""),
                    **final_metrics(metrics),
                    **{k: v for k, v in params.items() if k.startswith("optuna.")},
                    "run_id": run.info.run_id,
                }
            )
        return pd.DataFrame(rows)

    def front(self, objectives: str | Mapping[str, str] | None = None) -> pd.DataFrame:
        """The Pareto front of the complete trials on ``objectives`` (default: the
        study's own), with the test columns beside them; what ``study pareto`` writes
        to ``pareto.csv``."""
        import pandas as pd

        from study.pareto.store import load_study
        from study.pareto.tables import front_rows

        return pd.DataFrame(front_rows([load_study(self.tracking_uri, self.name, objectives)]))

    def status(self) -> dict[str, int]:
        """Trial counts: planned, complete, stopped, running, failed, killed."""
        import io

        from study.service.status import print_status

        return print_status(self.tracking_uri, self.name, io.StringIO())


def run(
    space: str | Path | Mapping[str, Any],
    overrides: Sequence[str] = (),
    *,
    name: str | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    warm_from: str | None = None,
    ray_dashboard: bool = False,
) -> Study:
    """Run a study to its end, as ``study run`` does, and return it.

    ``space``: a search-space file or the mapping such a file holds; ``overrides`` are
    ``--set`` items (``"train.epochs=2"``); ``address`` a Ray cluster (default:
    ``$RAY_ADDRESS``, else a local instance); ``tracking_uri`` default
    ``$MLFLOW_TRACKING_URI``; ``warm_from`` an earlier study to start the sampler from;
    ``ray_dashboard`` gives a new local Ray instance its dashboard.
    """
    import yaml

    from study.service.plan import plan
    from study.service.runner import run_study
    from study.service.space import SearchSpace
    from study.service.warmstart import check_warm_start

    overrides = [*overrides, *([f"study.tracking_uri={tracking_uri}"] if tracking_uri else [])]
    with tempfile.TemporaryDirectory(prefix="study-space-") as folder:
        if isinstance(space, Mapping):
            path = Path(folder) / f"{name or 'study'}.yaml"
            path.write_text(yaml.safe_dump(dict(space), sort_keys=False))
        else:
            path = Path(space)
        loaded = SearchSpace.load(path, overrides, name)
        study_plan = plan(loaded, path, address)
        if warm_from:
            check_warm_start(warm_from, loaded, study_plan)
        outcome = run_study(
            loaded, study_plan, address, warm_from=warm_from, dashboard=ray_dashboard
        )
    return Study(study_plan.name, study_plan.tracking_uri, outcome)


def load(name: str, tracking_uri: str | None = None) -> Study:
    """A study by name, finished or running (``tracking_uri`` default
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``); a one-line ``ValueError``
    naming the known studies when there is none."""
    from study.mlflow_layout import tracking_uri as resolve
    from study.pareto.store import connect, find_parent

    uri = resolve(tracking_uri)
    find_parent(connect(uri), name)
    return Study(name, uri)


def studies(tracking_uri: str | None = None) -> pd.DataFrame:
    """Every study the tracking store knows, newest first (what ``study list`` shows)."""
    import pandas as pd

    from study.mlflow_layout import tracking_uri as resolve
    from study.service.status import list_studies

    return pd.DataFrame(list_studies(resolve(tracking_uri)))


__all__ = ["Study", "load", "run", "studies"]
