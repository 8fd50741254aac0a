"""Each blocked loop against its one-loop reference form, over awkward shapes.

The register- and cache-blocked loops of ``_kernels.py`` (4x4 and 4x3 tiles, sample
and input blocks, the dot-product form of dC/dW) must equal the plain loops
kept beside them (``_dense_reference``, ``_backprop_linear_reference``,
``_outer_sum_reference``) to rounding, whatever the remainders of the tiles
and blocks; the public wrappers in ``backprop_numba.loops`` run the same
kernels.
"""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from backprop_numba import _kernels as K
from backprop_numba import loops
from backprop_numba._threads import kernel_threads

# Start numba's threading layer first, as every public entry point does
# (_threads.call_kernel): the register-tile tests below call kernels that call
# a parallel loop, and a cached such kernel called first in a fresh process
# crashes before the layer is started (numba #8578; see test_bounds.py).
kernel_threads()

# Batch sizes and widths around every tile (4 x 4 row updates, 4 x 3 dot
# products), block (64 samples, 128 inputs) and path thresholds (32 samples and
# B n_out >= 8192 and 32 units for the dot-product dC/dW; 64 samples for W^T delta over W^T).
BATCHES = [1, 2, 3, 5, 15, 16, 17, 63, 64, 65, 129]
WIDTHS = [(1, 1), (3, 7), (7, 3), (10, 16), (17, 5), (64, 65), (65, 64), (129, 130), (300, 70), (600, 13), (600, 30), (1030, 25)]
RTOL = {np.float64: 1e-12, np.float32: 2e-5}


def _data(B, n_in, n_out, dtype, seed):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    A = rng.standard_normal((B, n_in)).astype(dtype)
    D = rng.standard_normal((B, n_out)).astype(dtype)
    return W, b, A, D


def _close(fast, ref, dtype, scale):
    np.testing.assert_allclose(fast, ref, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_in,n_out", WIDTHS)
def test_blocked_loops_equal_their_reference_forms(n_in, n_out, dtype):
    for i, B in enumerate(BATCHES):
        W, b, A, D = _data(B, n_in, n_out, dtype, seed=1000 * n_in + n_out + i)
        # z = W a + b
        z_fast, z_ref = np.empty((B, n_out), dtype), np.empty((B, n_out), dtype)
        K._dense_units(W, b, A, z_fast, 0, n_out)
        K._dense_reference(W, b, A, z_ref)
        _close(z_fast, z_ref, dtype, np.sqrt(n_in))
        # z = W a without a bias (b empty), the form W^T delta takes below
        z_nob = np.empty((B, n_out), dtype)
        K._dense_units(W, b[:0], A, z_nob, 0, n_out)
        _close(z_nob, z_ref - b, dtype, np.sqrt(n_in))
        # W^T delta: row updates (no scratch), and the dense tiles over W^T (scratch, from
        # TRANSPOSE_MIN_BATCH samples and TRANSPOSE_MIN_BYTES of units)
        o_ref = np.empty((B, n_in), dtype)
        K._backprop_linear_reference(W, D, o_ref)
        for scratch in (W[:0].ravel(), np.empty(W.size, dtype)):
            o_fast = np.full((B, n_in), np.nan, dtype)
            K._backprop_linear(W, D, o_fast, scratch, 1)
            _close(o_fast, o_ref, dtype, np.sqrt(n_out))
        # dC/dW = delta a^T summed over samples, both blocked forms
        scale = dtype(1.0 / B)
        g_ref = np.empty((n_out, n_in), dtype)
        K._outer_sum_reference(D, A, scale, g_ref)
        g_rows = np.empty((n_out, n_in), dtype)
        K._outer_sum_units(D, A, scale, g_rows, 0, n_out)
        _close(g_rows, g_ref, dtype, 1.0)
        g_dot = np.full((n_out, n_in), np.nan, dtype)
        K._outer_sum_dot(D, A, scale, g_dot, np.empty(B * (n_in + n_out), dtype), 1)
        _close(g_dot, g_ref, dtype, 1.0)



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_slices", [1, 2, 3])
@pytest.mark.parametrize("B,n_in,n_out", [(3, 32, 3), (4, 33, 4), (32, 784, 10), (31, 50, 17), (65, 160, 130), (130, 70, 300),
                                         (150, 784, 40), (10, 112, 200)])
def test_register_tiles_equal_their_reference_forms(B, n_in, n_out, n_slices, dtype):
    """The register tiles (K._tile: 3 x 16 float64 and 3 x 32 float32, twice as wide on AVX-512) of W^T delta and dC/dW, on 1-3 slices.

    The shapes leave every remainder (B % 3 samples, n_out % 3 units, inputs
    past the last whole panel, by row updates or by the padded tile where
    K._tail_pays: in dC/dW 150 x 784 -> 40 in both dtypes and 65 x 160 in
    float32, in W^T delta 112 -> 200 in both and 160 -> 130 in float32;
    70 -> 300 has at most 6 inputs past the panels, by row updates) and span
    more than one J_BLOCK of units and S_BLOCK of samples.
    """
    W, b, A, D = _data(B, n_in, n_out, dtype, seed=B * n_in + n_out)
    o_ref = np.empty((B, n_in), dtype)
    K._backprop_linear_reference(W, D, o_ref)
    o_tile = np.full((B, n_in), np.nan, dtype)
    K._backprop_linear_tiled(W, D, o_tile, np.full(K._tile_scratch_need(B, n_out, n_slices), np.nan, dtype), n_slices)
    _close(o_tile, o_ref, dtype, np.sqrt(n_out))
    scale = dtype(1.0 / B)
    g_ref = np.empty((n_out, n_in), dtype)
    K._outer_sum_reference(D, A, scale, g_ref)
    g_tile = np.full((n_out, n_in), np.nan, dtype)
    K._outer_sum_tiled(D, A, scale, g_tile, np.full(K._tile_scratch_need(n_out, B, n_slices), np.nan, dtype), n_slices)
    _close(g_tile, g_ref, dtype, 1.0)
    # the dispatchers take the tiles where they pay and the scratch holds them
    if K._tiles_pay(B, n_out, K.TILE_MIN_UNITS):
        o_disp = np.full((B, n_in), np.nan, dtype)
        K._backprop_linear(W, D, o_disp, np.empty(K._tile_scratch_need(B, n_out, 8), dtype), 1)
        np.testing.assert_array_equal(o_disp, o_tile)


@pytest.mark.skipif(not K.WIDE, reason="needs an AVX-512 host: the 256-bit panels run anywhere, the 512-bit ones only there")
def test_register_tiles_at_the_other_panel_width(tmp_path):
    """The tiles of AVX2 hosts (128-byte panels: _tile16 for float64, _tile32 for float32) on this AVX-512 host.

    K.PANEL_BYTES follows the CPU features numba compiles for; with AVX-512
    masked out (NUMBA_CPU_FEATURES, a fresh cache) a new process takes the
    other width, and the equivalence test above runs there too.
    """
    from numba.core.codegen import get_host_cpu_features
    features = ",".join("-" + f[1:] if f.startswith("+avx512") else f for f in get_host_cpu_features().split(","))
    env = dict(os.environ, NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path))
    check = subprocess.run([sys.executable, "-c", "from backprop_numba import _kernels as K; print(K.WIDE, K.PANEL_BYTES)"],
                           env=env, capture_output=True, text=True, check=True)
    assert check.stdout.split() == ["False", "128"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                          "-k", "register_tiles_equal_their_reference_forms or register_tile_is_vectorised"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-500:]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="checks x86 vector instructions")
def test_register_tile_is_vectorised(tmp_path):
    """LLVM's SLP pass packs the tiles' sums into vectors (the tiles are compiled with it on, _jit._SLPCompiler).

    In a fresh process with an empty cache, so the tile is compiled there and
    its assembly can be read.
    """
    code = (
        "import re, numpy as np\n"
        "from backprop_numba import _kernels as K\n"
        "tiles = {16: K._tile16, 32: K._tile32, 64: K._tile64}\n"
        "for dt, p in ((np.float64, 'd'), (np.float32, 's')):\n"
        "    w = K.PANEL_BYTES // np.dtype(dt).itemsize\n"
        "    tile = tiles[w]\n"
        "    C = np.zeros((3, w), dt)\n"
        "    C[:] = np.nan\n"
        "    tile(np.ones(30, dt), 0, 10, np.ones(10 * w, dt), C, 0, 0, dt(1), False)\n"  # writes: C's NaNs unread
        "    tile(np.ones(30, dt), 0, 10, np.ones(10 * w, dt), C, 0, 0, dt(1), True)\n"  # adds
        "    assert (C == 20).all()\n"
        "    asm = ''.join(tile.inspect_asm().values())\n"
        "    print(len(re.findall(r'vfmadd\\w*p' + p, asm)), len(re.findall(r'vfmadd\\w*s' + p, asm)))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        packed, scalar = map(int, line.split())
        assert packed >= 12 and scalar == 0, f"a register tile was not vectorised: {packed} packed, {scalar} scalar FMAs"


def test_reference_forms_against_numpy():
    """The reference forms are the equations: NumPy's products give the same numbers."""
    W, b, A, D = _data(7, 5, 3, np.float64, seed=0)
    z = np.empty((7, 3))
    K._dense_reference(W, b, A, z)
    np.testing.assert_allclose(z, A @ W.T + b, rtol=1e-13)
    out = np.empty((7, 5))
    K._backprop_linear_reference(W, D, out)
    np.testing.assert_allclose(out, D @ W, rtol=1e-13)
    g = np.empty((3, 5))
    K._outer_sum_reference(D, A, 0.5, g)
    np.testing.assert_allclose(g, 0.5 * D.T @ A, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_public_loops(dtype):
    W, b, A, D = _data(33, 70, 65, dtype, seed=3)
    _close(loops.dense(W, b, A), A.astype(np.float64) @ W.T.astype(np.float64) + b, dtype, 10)
    _close(loops.dense_transpose(W, D), D.astype(np.float64) @ W.astype(np.float64), dtype, 10)
    _close(loops.outer_sum(D, A, scale=0.25), 0.25 * D.T.astype(np.float64) @ A, dtype, 10)
    Z = np.empty((33, 65), dtype)
    assert loops.dense(W, b, A, Z) is Z


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("B", [1, 33, K.TRANSPOSE_MIN_BATCH + 1])
def test_public_loops_with_their_scratch(B, dtype):
    """scratch_size values of scratch (NaN-filled: only working space, never read before written) give the same
    numbers as the loops' own allocation, at batches that take the row updates, the register tiles and W^T."""
    W, b, A, D = _data(B, 70, 65, dtype, seed=4)
    S = np.full(loops.scratch_size(B, 70, 65), np.nan, dtype)
    OUT, dW = np.empty((B, 70), dtype), np.empty((65, 70), dtype)
    assert loops.dense_transpose(W, D, OUT, scratch=S) is OUT
    np.testing.assert_array_equal(OUT, loops.dense_transpose(W, D))
    S[:] = np.nan
    assert loops.outer_sum(D, A, dW, 0.5, scratch=S) is dW
    np.testing.assert_array_equal(dW, loops.outer_sum(D, A, scale=0.5))


@pytest.mark.parametrize("call, error, match", [
    (lambda: loops.dense(np.ones((3, 2)), np.ones(3), np.ones((4, 5))), ValueError, r"A must have shape \(4, 2\)"),
    (lambda: loops.dense(np.ones((3, 2)), np.ones(2), np.ones((4, 2))), ValueError, r"b must be a \(3,\) array"),
    (lambda: loops.dense(np.ones((3, 2), np.float32), np.ones(3, np.float32), np.ones((4, 2))), TypeError,
     r"A must have dtype float32"),
    (lambda: loops.dense_transpose(np.ones((3, 2)), np.ones((4, 3)), np.ones((4, 3))), ValueError,
     r"OUT must have shape \(4, 2\)"),
    (lambda: loops.outer_sum(np.ones((4, 3)), np.ones((4, 2))[:, ::-1]), ValueError, r"A must be C-contiguous"),
    (lambda: loops.outer_sum(np.ones((4, 3)), np.ones((4, 2)), scratch=np.ones(3)), ValueError,
     r"scratch must be"),
    (lambda: loops.dense_transpose(np.ones((3, 2)), np.ones((4, 3)), scratch=np.ones(5)), ValueError,
     r"scratch must be .* at least \d+ values \(loops.scratch_size\)"),
    (lambda: loops.dense_transpose(np.ones((3, 2)), np.ones((4, 3)), scratch=np.ones(6, np.float32)), ValueError,
     r"scratch must be a writeable contiguous 1-D float64"),
    (lambda: loops.dense([[1.0]], np.ones(1), np.ones((1, 1))), ValueError, r"W must be a 2-D NumPy array"),
])
def test_public_loops_refuse_bad_arrays(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_tile_is_not_a_knob():
    """The tiles are unrolled by hand for 4x4: the constant says so and the import checks it."""
    import inspect
    assert K.TILE == 4
    assert "if TILE != 4" in inspect.getsource(K)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


@pytest.mark.skipif("fma" not in _cpu_flags(), reason="the check reads x86 assembly with FMA")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_tile_is_packed_fmas_without_spills(dtype):
    """The 4x3 tile's inner loop (DOT_TILE) compiles to 12 packed FMAs on vector registers and no stack
    traffic: the sums stay in registers (the 4x4 form needed more registers than AVX2 has); with
    AVX-512, so does the 6x4 tile's (WIDE_DOT_TILE) with 24."""
    import re

    import numba
    W, b, A, _ = _data(6, 16, 8, dtype, seed=0)
    # a fresh, uncached dispatcher of the same function: numba shows no assembly for code loaded from its cache
    fresh = numba.njit(fastmath=K.FASTMATH, error_model="numpy")(K._dense_units.py_func)
    fresh(W, b, A, np.empty((6, 8), dtype), 0, 8)
    asm = next(iter(fresh.inspect_asm().values()))
    blocks = re.split(r"\n(?=\.LBB)", asm)
    # a loop's body: from its label to the jump back to it (the reduction after it may use the stack)
    loops = []
    for blk in blocks:
        back = re.search(r"\tj\w+\t" + re.escape(blk.split(":", 1)[0]) + r"\n", blk) if blk.startswith(".LBB") else None
        if back:
            loops.append(blk[:back.end()])
    packed = r"vfmadd\d+p[sd]\s+[^\n]*%[yz]mm"
    tiles = [blk for blk in loops if len(re.findall(packed, blk)) >= 12]
    assert tiles, "no loop with 12 packed FMAs"
    assert any("(%rsp)" not in blk for blk in tiles), "the tile's loop spills to the stack"
    if K.WIDE:
        # the 6 x 4 tile (WIDE_DOT_TILE) of AVX-512: 24 FMAs on 512-bit registers, the sums in registers too
        # (its ten row pointers leave too few general registers: one or two integer reloads a pass are fine)
        wide = [blk for blk in loops if len(re.findall(r"vfmadd\d+p[sd]\s+[^\n]*%zmm", blk)) >= 24]
        assert wide, "no loop with 24 packed FMAs on zmm registers"
        vector_spill = re.compile(r"\(%rsp\)[^\n]*%[xyz]mm|%[xyz]mm[^\n]*\(%rsp\)")
        assert any(not vector_spill.search(blk) for blk in wide), "the 6 x 4 tile's loop spills vectors to the stack"


def _narrow_dw_forms(B, n_in, n_out, dtype, seed):
    """D, A and dC/dW (scale 0.5) by the register tiles, by the row updates and by the reference."""
    W, b, A, D = _data(B, n_in, n_out, dtype, seed=seed)
    tiled = np.full((n_out, n_in), np.nan, dtype)
    K._outer_sum_tiled(D, A, 0.5, tiled, np.full(K._tile_scratch_need(n_out, B, 1), np.nan, dtype), 1)
    rows, ref = np.empty((n_out, n_in), dtype), np.empty((n_out, n_in), dtype)
    K._outer_sum_units(D, A, 0.5, rows, 0, n_out)
    K._outer_sum_reference(D, A, 0.5, ref)
    _close(tiled, ref, dtype, np.sqrt(B))
    _close(rows, ref, dtype, np.sqrt(B))
    return D, A, tiled, rows


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_narrow_layers_keep_the_row_updates_at_large_batches(dtype):
    """Below DOT_MIN_UNITS units dC/dW never takes the dot form, also past DOT_MIN_WORK (it ran 3-6x slower
    there): loops.outer_sum gives exactly the row updates' numbers, or the tiles' in float32 on AVX-512."""
    B, n_in, n_out = 1024, 70, K.DOT_MIN_UNITS - 1
    assert B * n_out >= K.DOT_MIN_WORK and n_out < K.TILE_MIN_UNITS
    D, A, tiled, rows = _narrow_dw_forms(B, n_in, n_out, dtype, seed=5)
    np.testing.assert_array_equal(loops.outer_sum(D, A, scale=0.5),
                                  tiled if dtype == np.float32 and K.WIDE else rows)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_narrow_float32_dw_takes_the_tiles_on_avx512(dtype):
    """dC/dW of a layer of OUTER_TILE_MIN_UNITS_F32 (16 on AVX-512) to TILE_MIN_UNITS units takes the register
    tiles in float32 on AVX-512 and the row updates otherwise: loops.outer_sum gives exactly that form's
    numbers; below 16 units the row updates everywhere."""
    for n_out, tiles in ((16, dtype == np.float32 and K.WIDE), (15, False)):
        D, A, tiled, rows = _narrow_dw_forms(64, 300, n_out, dtype, seed=n_out)
        np.testing.assert_array_equal(loops.outer_sum(D, A, scale=0.5), tiled if tiles else rows)
