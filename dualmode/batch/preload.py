"""Importing this module imports everything a folder needs (:func:`dualmode.batch.warm.warm_imports`).

It is the local cluster's forkserver preload (:func:`dualmode.batch.cluster.start_method`):
the forkserver imports the heavy modules once and forks every worker from that state.
Nothing else should import it.
"""

from .warm import warm_imports

warm_imports()
