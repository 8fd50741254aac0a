"""The Dask plumbing that sweeps (``sweep.py``) and data-parallel training (``data_parallel.py``) share.

Dask (``dask``, ``distributed``) is an optional extra, imported only here and
only when one of them runs.
"""

import contextlib


def import_distributed(what):
    """The ``distributed`` module, or an ImportError that says what needs it and how to install it."""
    try:
        import distributed
    except ImportError:
        raise ImportError(f"{what} runs on Dask's distributed: pip install 'backprop_numba[dask]'") from None
    return distributed


@contextlib.contextmanager
def local_client(distributed, n_workers):
    """A Client of a new LocalCluster of n_workers processes, both closed at the end (after an error too).

    One thread per worker process and NUMBA_NUM_THREADS=1: the workers are the
    parallelism, so nothing runs more threads than there are workers (Dask
    already sets OMP/MKL/OPENBLAS to 1).  No dashboard; the scheduler's HTTP
    routes (health checks) on a free port, not on 8787, where a second cluster
    on the machine would warn "Port 8787 is already in use".
    """
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"},
                                       env={"NUMBA_NUM_THREADS": "1"})
    try:
        client = distributed.Client(cluster)
        try:
            yield client
        finally:
            # a worker whose heartbeat meets the closing scheduler logs the failure with a traceback (seen
            # once, in a fresh-clone CI run of the sweep test, 2026-12-02): the run is over, so they go quiet
            for nanny in (False, True):
                with contextlib.suppress(Exception):  # a worker already gone has nothing left to say
                    client.run(quiet_at_shutdown, nanny=nanny)
            client.close()
    finally:
        cluster.close()


def quiet_at_shutdown():
    """Raise this process's distributed loggers to CRITICAL (run on each worker and nanny before the close)."""
    import logging
    for name in ("distributed", "distributed.worker", "distributed.nanny", "distributed.core", "distributed.comm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def connect(distributed, scheduler, timeout):
    """A Client of the scheduler at this address, or a TimeoutError after timeout seconds (never a hang)."""
    try:
        return distributed.Client(scheduler, timeout=timeout)
    except Exception as exc:  # a timeout (OSError), or something at the address that speaks no Dask
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise TimeoutError(f"no Dask scheduler reached at {scheduler} within {timeout:g} s ({detail}); "
                           "start one with `dask scheduler`") from None
