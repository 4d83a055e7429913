"""Names that experiments started by earlier versions pickled, and that ``study resume``
must still find where they were: Tune pickles the tuner (its trial name and folder
functions), the searcher (with the space and its settings), the scheduler (with its
decision log) and the callbacks by module path, and MLflow pickles a logged network by
its class. Moving one of these without leaving its old name behind breaks the resume of
every study started before the move (checked by hand on 2026-12-08: a study started by
the code before the modules were split, interrupted, resumed and completed by the code
after)."""

from __future__ import annotations

import importlib

import pytest

PICKLED = {
    "study.service.runner": ["_trial_name", "_trial_dirname"],
    "study.service.pruning": ["PruningSearcher"],
    "study.service.stopping": ["SchedulerSettings"],
    "study.service.scheduler": [
        "MultiObjectiveASHA",
        "LiveFIFOScheduler",
        "SchedulerState",
        "RungDecision",
    ],
    "study.service.space": ["SearchSpace", "StudySettings", "Dimension"],
    "study.service.trainable": ["DefineByRun", "trainable"],
    "study.service.progress": ["StudyProgress"],
    "study.service.storage": ["SnapshotCache", "RedactingRDBStorage"],
    "study.models": ["VGG", "DenseNet", "ResNet", "BasicBlock"],
}


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, ns in PICKLED.items() for n in ns])
def test_a_name_older_snapshots_pickled_still_resolves(module, name):
    """``pickle`` finds a class or function by ``getattr(import_module(module), name)``."""
    assert callable(getattr(importlib.import_module(module), name))
