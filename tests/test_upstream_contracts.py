"""The few places where no public API does the job, pinned so that an upgrade of
Optuna or Ray that moves them fails here, loudly, instead of in a study:

* ``study.service.repair`` marks a failed grid point with GridSampler's ``grid_id``
  system attribute (``-1``) so that the grid offers the point again;
* ``study.service.scheduler.restored_callbacks`` reads ``Tuner._local_tuner`` (pinned in
  ``tests/test_scheduler.py::test_restored_callbacks_share_the_scheduler_with_the_restored_tuner``);
* ``study.service.cluster._starts_an_instance`` asks Ray's own address lookup
  (``ray._private.services.canonicalize_bootstrap_address``) whether ``ray.init`` would
  start a local instance (it falls back to "no" if the lookup moves: this test says so);
* ``study.layers.modules`` and ``study.metrics.polyphase`` pad as ``nn.Conv2d`` does,
  through its ``_reversed_padding_repeated_twice``;
* ``study.service.quiet`` silences named loggers of Ray, Tune and Optuna: a module that
  moves would let its warning through again;
* ``study.service.storage.SnapshotCache`` subclasses Optuna's ``_CachedStorage`` and trims
  its per-study records when pickled;
* ``study.service.searcher.PruningSearcher`` drops a told trial from
  ``OptunaSearch._ot_trials`` (else every experiment snapshot pickles the whole table);
* ``study.convert.placement`` builds a ``GraphModule`` around a container's children by
  copying ``nn.Module``'s registries (``_modules``, ``_parameters``, ``_buffers``,
  ``_non_persistent_buffers_set``).
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


def test_rays_address_lookup_is_where_the_runner_asks_it():
    import inspect

    from ray._private.services import canonicalize_bootstrap_address

    assert next(iter(inspect.signature(canonicalize_bootstrap_address).parameters)) == "addr"
    # an address given is the address (loopback resolved to the node's own IP)
    assert canonicalize_bootstrap_address("127.0.0.1:6390").endswith(":6390")


def test_conv2d_keeps_its_padding_in_functional_pad_order():
    from torch import nn

    conv = nn.Conv2d(1, 1, (3, 5), padding=(1, 2), padding_mode="circular")
    assert list(conv._reversed_padding_repeated_twice) == [2, 2, 1, 1]


def test_the_loggers_the_service_quiets_are_still_there():
    import importlib.util

    from study.service.quiet import IRRELEVANT

    for logger, *_ in IRRELEVANT:
        assert importlib.util.find_spec(logger) is not None, f"{logger} moved"


def test_optunas_storage_cache_keeps_what_the_snapshot_cache_trims(tmp_path):
    """``study.service.storage.SnapshotCache`` subclasses Optuna's private
    ``_CachedStorage`` and trims its per-study records when pickled; the private
    methods of ``RDBStorage`` it waits on are looked up at import (an AttributeError
    there names the one that moved)."""
    from optuna.storages._cached_storage import _CachedStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cache = _CachedStorage(optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'o.db'}"))
    study = optuna.create_study(storage=cache, study_name="contract")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with cache._lock:
        info = cache._studies[study._study_id]
    assert len(info.trials) == 2 and isinstance(info.unfinished_trial_ids, set)
    assert isinstance(info.last_finished_trial_id, int)


def test_optuna_search_keeps_its_trials_in_a_dict_by_tune_trial_id():
    """``PruningSearcher.on_trial_complete`` pops the told trial from this table."""
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = OptunaSearch(
        space=lambda trial: {"x": trial.suggest_float("x", 0, 1)}, metric="y", mode="max"
    )
    search.suggest("t0")
    assert isinstance(search._ot_trials, dict) and list(search._ot_trials) == ["t0"]
    search.on_trial_complete("t0", result={"y": 0.5})
    assert "t0" in search._ot_trials  # kept by Tune: what the service drops


def test_modules_keep_their_children_parameters_and_buffers_in_registries():
    """What ``study.convert.placement`` copies into the ``GraphModule`` it builds."""
    import torch
    from torch import nn

    module = nn.BatchNorm2d(2)
    module.register_buffer("extra", torch.zeros(1), persistent=False)
    container = nn.Sequential(module)
    assert container._modules["0"] is module
    assert set(module._parameters) == {"weight", "bias"}
    assert {"running_mean", "running_var", "extra"} <= set(module._buffers)
    assert module._non_persistent_buffers_set == {"extra"}
