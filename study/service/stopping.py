"""The old name of :mod:`study.service.scheduler_settings`. A space's scheduler settings
are pickled with the searcher into every experiment snapshot; this keeps snapshots
taken before the rename loadable, so ``study resume`` goes on with them. New code
imports ``study.service.scheduler_settings``."""

from study.service.scheduler_settings import SchedulerSettings

__all__ = ["SchedulerSettings"]
