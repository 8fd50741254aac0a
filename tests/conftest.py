import os
import sys

# tests import their oracles as a plain module: `from oracles import ...`
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """A Dask client of a 2-worker LocalCluster (processes, one thread each, no dashboard; the scheduler's
    HTTP routes on a free port, since 8787 may be taken), closed even when a test fails."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": ":0"})
    try:
        c = distributed.Client(cluster)
        try:
            yield c
        finally:
            c.close()
    finally:
        cluster.close()
