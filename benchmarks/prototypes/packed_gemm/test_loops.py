"""Every fast loop (serial and prange) equals its one-loop reference to rounding, over awkward shapes.

|fast - reference| <= rtol * (|left| @ |right|) elementwise (the rounding bound of a sum), rtol 1e-12
float64 and 1e-5 float32; outputs are prefilled with NaN so a missed element fails.
Run: NUMBA_CACHE_DIR=... /work/venv/bin/python -m pytest -q test_loops.py
"""
import ctypes
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".nbcache"))
_tbb = os.path.join(sys.prefix, "lib", "libtbb.so.12")
if os.path.exists(_tbb):
    ctypes.CDLL(_tbb, mode=ctypes.RTLD_GLOBAL)

import loops as L  # noqa: E402

BATCHES = [1, 2, 3, 5, 17, 63, 64, 65, 257]
SIZES = [1, 3, 7, 10, 16, 17, 64, 65, 129, 512, 784]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
SCRATCH = {}


def scratch(dt):
    if dt not in SCRATCH:
        SCRATCH[dt] = L.make_scratch(dt, max(SIZES), 2)
    return SCRATCH[dt]


def check(fast, ref, bound, rtol):
    assert np.all(np.isfinite(fast))
    err = np.abs(fast.astype(np.float64) - ref.astype(np.float64))
    tol = rtol * bound + 1e-30
    bad = err > tol
    assert not bad.any(), f"{bad.sum()} elements off, worst {np.max(err / tol):.2f} x tol"


def n_outs_for(B, n_in):
    """Four n_out per (B, n_in), rotating through SIZES so every pair of sizes is met across batches."""
    i = (BATCHES.index(B) * 3 + SIZES.index(n_in)) % len(SIZES)
    return [SIZES[(i + 3 * t) % len(SIZES)] for t in range(4)]


@pytest.mark.parametrize("dt", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("n_in", SIZES)
@pytest.mark.parametrize("B", BATCHES)
def test_three_loops(dt, B, n_in):
    rng = np.random.default_rng(B * 1000 + n_in)
    Ap, Bp = scratch(dt)
    rtol = RTOL[dt]
    for n_out in n_outs_for(B, n_in):
        W = rng.standard_normal((n_out, n_in)).astype(dt)
        b = rng.standard_normal(n_out).astype(dt)
        A = rng.standard_normal((B, n_in)).astype(dt)
        D = rng.standard_normal((B, n_out)).astype(dt)
        scale = 1.0 / B
        # references
        Zr, Or, Gr = np.empty((B, n_out), dt), np.empty((B, n_in), dt), np.empty((n_out, n_in), dt)
        L._dense_reference(W, b, A, Zr)
        L._backprop_linear_reference(W, D, Or)
        L._outer_sum_reference(D, A, scale, Gr)
        W64, A64, D64 = (np.abs(x.astype(np.float64)) for x in (W, A, D))
        bz = A64 @ W64.T + np.abs(b.astype(np.float64))
        bo = D64 @ W64
        bg = scale * (D64.T @ A64)
        for fwd, bwd, dw in [(L.dense_forward, L.backprop_linear, L.outer_sum),
                             (L.dense_forward_par, L.backprop_linear_par, L.outer_sum_par)]:
            Z, O, G = (np.full(s, np.nan, dt) for s in ((B, n_out), (B, n_in), (n_out, n_in)))
            fwd(W, b, A, Z, Ap, Bp)
            bwd(W, D, O, Ap, Bp)
            dw(D, A, scale, G, Ap, Bp)
            check(Z, Zr, bz, rtol)
            check(O, Or, bo, rtol)
            check(G, Gr, bg, rtol)


def test_reference_matches_numpy():
    rng = np.random.default_rng(1)
    W, b, A, D = rng.random((7, 5)), rng.random(7), rng.random((3, 5)), rng.random((3, 7))
    Z, O, G = np.empty((3, 7)), np.empty((3, 5)), np.empty((7, 5))
    L._dense_reference(W, b, A, Z)
    L._backprop_linear_reference(W, D, O)
    L._outer_sum_reference(D, A, 0.5, G)
    np.testing.assert_allclose(Z, A @ W.T + b, rtol=1e-14)
    np.testing.assert_allclose(O, D @ W, rtol=1e-14)
    np.testing.assert_allclose(G, 0.5 * D.T @ A, rtol=1e-14)


def test_dispatch_matches_reference():
    """The size-based dispatchers (serial below the parallel threshold) give the same results."""
    rng = np.random.default_rng(2)
    for dt in (np.float64, np.float32):
        Ap, Bp = scratch(dt)
        for B, n_in, n_out in [(1, 784, 512), (32, 16, 10), (256, 512, 512), (65, 129, 17)]:
            W = rng.standard_normal((n_out, n_in)).astype(dt)
            b = rng.standard_normal(n_out).astype(dt)
            A = rng.standard_normal((B, n_in)).astype(dt)
            D = rng.standard_normal((B, n_out)).astype(dt)
            Z, O, G = np.empty((B, n_out), dt), np.empty((B, n_in), dt), np.empty((n_out, n_in), dt)
            L.dense(W, b, A, Z, Ap, Bp)
            L.backprop(W, D, O, Ap, Bp)
            L.weight_gradient(D, A, 0.25, G, Ap, Bp)
            Zr, Or, Gr = np.empty_like(Z), np.empty_like(O), np.empty_like(G)
            L._dense_reference(W, b, A, Zr)
            L._backprop_linear_reference(W, D, Or)
            L._outer_sum_reference(D, A, 0.25, Gr)
            tol = dict(rtol=1e-4 if dt == np.float32 else 1e-10, atol=1e-3 if dt == np.float32 else 1e-10)
            np.testing.assert_allclose(Z, Zr, **tol)
            np.testing.assert_allclose(O, Or, **tol)
            np.testing.assert_allclose(G, Gr, **tol)
