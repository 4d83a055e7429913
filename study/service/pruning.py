"""The old name of :mod:`study.service.searcher`. Tune pickles a study's searcher by
module path into every experiment snapshot; this keeps snapshots taken before the
rename loadable, so ``study resume`` goes on with them. New code imports
``study.service.searcher``."""

from study.service.searcher import PruningSearcher

__all__ = ["PruningSearcher"]
