import os
import sys

# tests import their oracles as a plain module: `from oracles import ...`
sys.path.insert(0, os.path.dirname(__file__))

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def client():
    """A Dask client of a 2-worker LocalCluster (the library's: processes, one thread each, no dashboard),
    closed even when a test fails."""
    distributed = pytest.importorskip("distributed")
    from backprop_numba import _dask
    with _dask.local_client(distributed, 2) as c:
        yield c
