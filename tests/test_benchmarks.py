"""benchmarks/compare.py --quick runs end to end (CI keeps it from rotting) and writes its JSON and table.

No timing is asserted here (speed is shown by the committed comparison, never by timed unit tests): only
that every peer is validated before it is timed, that the ratios are what they say, and that the quick run
leaves the OPENBLAS_* variables alone.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "compare.py")


def _compare_module():
    spec = importlib.util.spec_from_file_location("bench_compare", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_quick_writes_json_and_table(tmp_path):
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout
    assert "re-executing" not in proc.stdout          # --quick never touches OPENBLAS_*
    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert result["peak_flops"]["float64"] > 0 and result["peak_flops"]["float32"] > 0
    assert "removed" not in result["machine"]["openblas_env"]
    assert result["machine"]["blas"] and "flags" in result["machine"]
    kinds = {row["kind"] for row in result["rows"]}
    assert kinds == {"step", "epoch", "input_gradient"}
    for row in result["rows"]:
        secs = row["seconds"]
        ours = secs[row["ours_variant"]]
        assert ours > 0 and row["gflops"] > 0
        for peer, variant in row["best_variant_by_peer"].items():
            assert row["peer_of"][variant] == peer
            assert abs(row["ratio_by_peer"][peer] - secs[variant] / ours) < 1e-9
            # the best variant of a peer is its fastest
            assert all(secs[variant] <= s for n, s in secs.items() if row["peer_of"][n] == peer)
        if row["best_variant_by_peer"]:
            assert abs(row["ratio"] - row["best_peer_seconds"] / ours) < 1e-9
            assert row["best_peer_seconds"] == min(secs[v] for v in row["best_variant_by_peer"].values())
        # every timed peer variant passed the check against backprop_numba first
        for name in secs:
            if row["peer_of"][name] != "backprop_numba":
                assert row["validation"][name]["ok"], (name, row["validation"][name])
    # every peer was either timed or skipped with a note
    for peer in ("torch", "jax", "numpy"):
        assert peer in result["peers"]
    assert result["summary"]["epoch"]["points"] == sum(r["kind"] == "epoch" for r in result["rows"])
    table = (tmp_path / "compare.md").read_text()
    assert "| [4,3,2,1] | 1 | float64 |" in table
    assert "faster than the best peer at" in table
    assert "BLAS (threadpoolctl)" in table and "CPU flags" in table


def test_openblas_variables_are_cleared_only_for_a_full_run(monkeypatch):
    mod = _compare_module()
    env = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512", "PATH": "/bin"}
    assert mod.openblas_vars_to_clear(mod._parse_args(["--quick"]), env) == {}
    assert mod.openblas_vars_to_clear(mod._parse_args(["--keep-openblas-env"]), env) == {}
    assert mod.openblas_vars_to_clear(mod._parse_args([]), env) == {"OPENBLAS_CORETYPE": "Haswell",
                                                                      "OPENBLAS_L2_SIZE": "512"}
    cleared = mod._parse_args(["--openblas-env-cleared=OPENBLAS_CORETYPE=Haswell"])
    assert mod.openblas_vars_to_clear(cleared, {"PATH": "/bin"}) == {}
    assert mod.openblas_vars_to_clear(mod._parse_args([]), {"PATH": "/bin"}) == {}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_validation_rejects_a_wrong_peer(dtype):
    """A peer whose step differs (here: twice the learning rate, i.e. a sum instead of a mean) is caught."""
    mod = _compare_module()
    sizes, B = [5, 4, 3], 4
    X, Y = mod.make_data(sizes, 2 * B, dtype)
    params0 = mod.initial_params(sizes, dtype)
    run, get = mod.make_ours_fit(params0, X, Y, B, mod.LR)
    run()
    ref = mod.Reference(params0, get(), X, Y, dtype, "epoch")
    make = mod.NumPyPeer().variants()["numpy (preallocated, matmul out=)"]
    run, get = make(params0, X, Y, B, mod.LR)
    run()
    assert ref.check(get())["ok"]
    run, get = make(params0, X, Y, B, 2 * mod.LR)
    run()
    assert not ref.check(get())["ok"]
