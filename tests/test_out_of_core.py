"""Data larger than memory: fit from an np.memmap and from an iterable of chunks.

Without shuffling the mini-batches are exactly those of the same data in
memory (blocks are whole multiples of the batch size), so the parameters are
bit-identical; a child process with a data-segment limit far below the file
size trains on a memory-mapped file and reports its peak anonymous memory.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from backprop_numba import MLP, training


def _data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    return X, np.stack([X[:, 0] * X[:, 1], np.tanh(X[:, 2])], axis=1)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(training, "BLOCK_BYTES", 6 * 8 * 96)  # 96 rows of float64: several blocks


def test_memmap_equals_in_memory_without_shuffle(tmp_path, small_blocks):
    X, Y = _data()
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xm = np.load(path, mmap_mode="r")
    a, b = MLP([6, 8, 2], seed=0), MLP([6, 8, 2], seed=0)
    kw = dict(epochs=3, batch_size=32, learning_rate=0.05, optimizer="adam", shuffle=False, progress=False)
    ha = a.fit(X, Y, **kw)
    hb = b.fit(Xm, Y, **kw)
    assert a.theta.tobytes() == b.theta.tobytes() and ha["loss"] == hb["loss"]


def test_memmap_shuffled_trains_and_is_reproducible(tmp_path, small_blocks):
    X, Y = _data()
    path = tmp_path / "X.npy"
    np.save(path, X)
    nets = [MLP([6, 8, 2], seed=0) for _ in range(2)]
    hs = [n.fit(np.load(path, mmap_mode="r"), Y, epochs=5, batch_size=32, learning_rate=0.05, optimizer="adam",
                seed=3, validation_data=(X[:100], Y[:100]), progress=False) for n in nets]
    assert hs[0]["loss"][-1] < hs[0]["loss"][0] and hs[0]["loss"] == hs[1]["loss"]
    assert nets[0].theta.tobytes() == nets[1].theta.tobytes()


def test_chunks_equal_in_memory_without_shuffle():
    X, Y = _data(640)
    chunks = [(X[i:i + 128], Y[i:i + 128]) for i in range(0, 640, 128)]
    a, b = MLP([6, 5, 2], seed=1), MLP([6, 5, 2], seed=1)
    kw = dict(epochs=2, batch_size=32, learning_rate=0.1, shuffle=False, progress=False)
    a.fit(X, Y, **kw)
    b.fit(chunks, **kw)
    assert a.theta.tobytes() == b.theta.tobytes()
    c = MLP([6, 5, 2], seed=1)
    c.fit(lambda: iter(chunks), **dict(kw, shuffle=True))  # a callable: a fresh iterator each epoch


def test_chunk_errors(tmp_path):
    X, Y = _data(64)
    with pytest.raises(ValueError, match="one-shot iterator of chunks"):
        MLP([6, 2]).fit(((X, Y) for _ in range(1)), epochs=2, progress=False)
    with pytest.raises(ValueError, match="chunk 1: X must be finite"):
        MLP([6, 2]).fit([(X, Y), (X * np.nan, Y)], epochs=1, progress=False)
    with pytest.raises(TypeError, match="must yield \\(X, Y\\)"):
        MLP([6, 2]).fit([X], epochs=1, progress=False)
    with pytest.raises(ValueError, match="validation_fraction needs the data in memory"):
        MLP([6, 2]).fit([(X, Y)], validation_fraction=0.2, progress=False)
    with pytest.raises(ValueError, match="Y must be given"):
        MLP([6, 2]).fit(X, progress=False)
    bad = X.copy()
    bad[40, 2] = np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"rows 0\.\.63 of X: X must be finite"):
        MLP([6, 2]).fit(np.load(tmp_path / "bad.npy", mmap_mode="r"), Y, progress=False)


CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    path, n_rows, n_features, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    from backprop_numba import MLP
    net = MLP([n_features, 16, 1], seed=0, dtype=np.float32)
    net.fit(np.zeros((64, n_features), np.float32), np.zeros(64, np.float32), epochs=1, progress=False)  # compile
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    X = np.load(path, mmap_mode="r")
    Y = X[:, 0].copy()   # in memory: n_rows float32 values
    try:
        np.array(X)      # the whole file cannot be loaded under this limit
        loaded = True
    except MemoryError:
        loaded = False
    h = net.fit(X, Y, epochs=1, batch_size=256, learning_rate=0.01, progress=False)
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    print(json.dumps({"loaded": loaded, "loss": h["loss"][-1], "peak_rss": status("VmHWM"),
                      "rss_anon": status("RssAnon"), "data_segment": status("VmData")}))
""")


def test_trains_on_a_memmap_larger_than_the_memory_limit(tmp_path):
    n_rows, n_features = 1_200_000, 128                      # 614 MB of float32
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_rows, n_features))
    rng = np.random.default_rng(0)
    for start in range(0, n_rows, 100_000):
        X[start:start + 100_000] = rng.standard_normal((min(100_000, n_rows - start), n_features), np.float32)
    X.flush()
    del X
    probe = subprocess.run([sys.executable, "-c", "import backprop_numba, numpy; print(open('/proc/self/status')"
                            ".read().split('VmData:')[1].split()[0])"], capture_output=True, text=True, timeout=120)
    baseline = int(probe.stdout.strip()) * 1024
    limit = baseline + (400 << 20)                           # below the 586 MB file, even without the baseline
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), str(n_rows), str(n_features), str(limit)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["loaded"] and np.isfinite(out["loss"])
    print(f"\nmemmap fit: file {path.stat().st_size / 2**20:.0f} MB, data limit {limit / 2**20:.0f} MB, "
          f"peak RSS {out['peak_rss'] / 2**20:.0f} MB (file pages included), "
          f"anonymous RSS at the end {out['rss_anon'] / 2**20:.0f} MB")
