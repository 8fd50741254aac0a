"""What a first use compiles: the README's digits run, in a process with an empty numba cache.

Each kernel is compiled once for the run's dtype: a second specialisation of
one (a constant argument typed Literal[int], a non-contiguous or read-only
array, another integer type) compiles that kernel and everything under it
again (NOTES-compile.md; the cold-compile time itself is measured there, not
here).
"""

import json
import os
import subprocess
import sys

import numba
import pytest


def _digits_run(out):
    """The README's first command (2 epochs), then every kernel's compiled signatures as JSON."""
    from backprop_numba import _kernels, activations, cli, losses, optimizers

    status = cli.main(["train", "--dataset", "digits", "--hidden", "32", "--optimizer", "adam", "--epochs", "2",
                       "--out", out, "--seed", "1", "--quiet"])
    compiled = {}
    for module in (_kernels, activations, losses, optimizers):
        for name in dir(module):
            kernel = getattr(module, name)
            if isinstance(kernel, numba.core.registry.CPUDispatcher) and kernel.signatures:
                compiled[f"{module.__name__}.{name}"] = [str(sig) for sig in kernel.signatures]
    print(json.dumps({"status": status, "compiled": compiled}))


def test_digits_run_compiles_each_kernel_once(tmp_path):
    pytest.importorskip("sklearn")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    for name in ("NUMBA_DISABLE_JIT", "NUMBA_BOUNDSCHECK"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-W", "ignore", __file__, str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0
    compiled = report["compiled"]
    assert len(compiled) > 20  # the run reached the kernels (each inner kernel compiled in this process)
    twice = {name: sigs for name, sigs in compiled.items() if len(sigs) > 1}
    assert not twice, twice
    assert all("float32" not in sig for sigs in compiled.values() for sig in sigs)  # only the run's dtype


if __name__ == "__main__":
    _digits_run(sys.argv[1])
