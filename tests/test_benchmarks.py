"""benchmarks/compare.py --quick runs end to end (CI keeps it from rotting) and writes its JSON."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_compare_quick_writes_json_and_table(tmp_path):
    out = tmp_path / "compare.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "compare.py"), "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout
    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert result["peak_flops"]["float64"] > 0 and result["peak_flops"]["float32"] > 0
    kinds = {row["kind"] for row in result["rows"]}
    assert kinds == {"step", "epoch", "input_gradient"}
    for row in result["rows"]:
        lib = row["seconds"]["backprop_numba"]
        assert lib > 0
        assert 0 < row["gflops"] and 0 < row["peak_fraction"]
        for peer, ratio in row["ratio"].items():
            assert abs(ratio - row["seconds"][peer] / lib) < 1e-9
    # every peer was either timed or skipped with a note
    for peer in ("torch", "jax", "numpy"):
        assert any(note.startswith(peer) for note in result["peers"])
    table = (tmp_path / "compare.md").read_text()
    assert "| step | [4,3,2,1] | 1 | float64 |" in table
