"""Run the pipeline over many acquisition folders, never losing, mixing or hiding a result.

Execution (:func:`run_batch`)
    In this process, one folder after the other (``workers=1``, a single folder or one
    core); several folders in local worker processes forked from this process once it has
    imported the pipeline (:mod:`dualmode.batch.forked`: no cluster to start, one folder at
    a time per worker, each with its share of the cores: numba, BLAS, FFT; SimpleITK at a
    fixed thread count), chosen automatically and reported in ``summary.json["execution"]``;
    a loopback-only ``distributed.LocalCluster`` (``scheduler="local"``), started in the
    background while this process works on the first folders; or any existing
    ``dask.distributed`` scheduler (``scheduler="tcp://host:8786"`` or ``tls://``, or a
    ``Client``). Workers must see the input and output folders under the same paths and
    have dualmode installed.
Outputs (:mod:`dualmode.outputs`, :mod:`dualmode.atomic`)
    Each folder's outputs are written into ``OUT/.<name>.staging-*`` and swapped in whole:
    ``OUT/<name>`` holds the previous complete result or the new one, never a mix.
    ``report.json["outputs"]`` lists every file with its sha256. Leftovers of killed runs
    are removed when a run starts; ``OUT/<name>/log.txt`` holds the folder's log records.
Faults
    :func:`run_one` never raises: an error becomes a ``"failed"`` entry naming the file.
    Per-folder time limit (``timeout``); a worker that dies is replaced and the folder
    retried (once by a local worker process, by Dask's rules on Dask), then reported failed. Ctrl-C or SIGTERM stop the batch within
    seconds with ``summary.json`` ``"state": "interrupted"``. One run per OUT (a lock).
"""

from .folder import DEFAULT_TIMEOUT, FolderTimeout, reset_peak_rss, run_one
from .logs import folder_log
from .outroot import OutputLocked
from .resume import completed_report, folder_name, resume_entry
from .run import choose_execution, expand_folders, run_batch
from .threads import ITK_THREADS, default_workers, pinned_threads, thread_env

__all__ = ["DEFAULT_TIMEOUT", "FolderTimeout", "ITK_THREADS", "OutputLocked", "choose_execution",
           "completed_report", "default_workers", "expand_folders", "folder_log", "folder_name",
           "pinned_threads", "reset_peak_rss", "resume_entry", "run_batch", "run_one", "thread_env"]
