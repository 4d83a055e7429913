"""The few places where no public API does the job, pinned so that an upgrade of
Optuna or Ray that moves them fails here, loudly, instead of in a study:

* ``study.service.repair`` marks a failed grid point with GridSampler's ``grid_id``
  system attribute (``-1``) so that the grid offers the point again;
* ``study.service.scheduler.restored_callbacks`` reads ``Tuner._local_tuner`` (pinned in
  ``tests/test_scheduler.py::test_restored_callbacks_share_the_scheduler_with_the_restored_tuner``).
"""

from __future__ import annotations

import optuna


def test_grid_sampler_records_the_grid_point_as_grid_id():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {"filter": ["delta", "binomial-3", "binomial-5"]}
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    study.optimize(lambda trial: len(trial.suggest_categorical("filter", grid["filter"])), 3)
    ids = sorted(trial.system_attrs["grid_id"] for trial in study.trials)
    assert ids == [0, 1, 2]


def test_a_failed_grid_point_marked_minus_one_is_offered_again():
    """What ``repair._fail`` relies on: GridSampler skips the points whose ``grid_id``
    a finished trial holds, so a failed trial re-marked ``-1`` frees its point."""
    from study.service.repair import _fail

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = {"filter": ["delta", "binomial-3"]}
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    first = study.ask()
    lost = first.suggest_categorical("filter", grid["filter"])
    storage = study._storage  # the in-memory storage this test made (test-only access)
    _fail(storage, first._trial_id, storage.get_trial(first._trial_id))
    offered = []

    def objective(trial: optuna.Trial) -> float:
        offered.append(trial.suggest_categorical("filter", grid["filter"]))
        return 0.0

    study.optimize(objective, n_trials=2)
    assert lost in offered and set(offered) == set(grid["filter"])
