"""What a new user hits (issue 13): read-only installs, resume, first-use compile, CLI defaults, docs."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import backprop_numba

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.dirname(os.path.abspath(backprop_numba.__file__))
ENV = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR",)}
ENV["PYTHONWARNINGS"] = "ignore"


def cli(*args, env=None, timeout=300, module="backprop_numba.cli"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=env or ENV, timeout=timeout)


# -- 2. import with no writable cache location ---------------------------------------------

# Runs as an unprivileged user (root ignores permissions): as root the child drops to
# nobody (65534) after importing what it needs from the standard library, because this
# interpreter may live in a folder only root can read.
UNPRIVILEGED_CHILD = r"""
import os, sys, tempfile, runpy, argparse, json, stat, platform, csv, glob, gzip, dataclasses, hashlib, zipfile
import math, time, textwrap, gettext, shutil, importlib.util, io, struct, contextlib, signal, warnings
import numpy as np, numba
numba.njit(lambda x: x + 1)(1.0)  # numba imports parts of the standard library lazily: load them now
package_copy, tmp, what = sys.argv[1:4]
if os.getuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
os.environ["HOME"] = "/nonexistent"
os.environ.pop("NUMBA_CACHE_DIR", None)
tempfile.tempdir = tmp
sys.path.insert(0, package_copy)
if what == "import":
    import backprop_numba
    assert backprop_numba.__file__.startswith(package_copy), backprop_numba.__file__
    net = backprop_numba.MLP([2, 3, 1], seed=0)
    print("forward", float(net.forward(np.ones(2))[0]))
    print("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR"))
else:
    sys.argv = ["backprop_numba", "--help"]
    runpy.run_module("backprop_numba", run_name="__main__", alter_sys=True)
"""


@pytest.fixture()
def read_only_install():
    """A copy of the package in a folder nobody can write, and a temporary folder for the child."""
    if not hasattr(os, "getuid"):
        pytest.skip("POSIX permissions")
    top = tempfile.mkdtemp(prefix="bpn-ro-")
    os.chmod(top, 0o755)
    shutil.copytree(PACKAGE, os.path.join(top, "site", "backprop_numba"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    tmp = os.path.join(top, "tmp")
    os.mkdir(tmp)
    os.chmod(tmp, 0o1777)
    for folder, dirs, files in os.walk(os.path.join(top, "site")):
        os.chmod(folder, 0o555)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
    yield os.path.join(top, "site"), tmp
    for folder, dirs, files in os.walk(top):
        os.chmod(folder, 0o755)
    shutil.rmtree(top, ignore_errors=True)


def _unprivileged(site, tmp, what):
    env = {k: v for k, v in ENV.items() if k not in ("PYTHONPATH", "HOME")}
    return subprocess.run([sys.executable, "-c", UNPRIVILEGED_CHILD, site, tmp, what], capture_output=True,
                          text=True, env=env, cwd="/", timeout=600)


def test_import_and_help_with_package_and_home_read_only(read_only_install):
    site, tmp = read_only_install
    r = _unprivileged(site, tmp, "import")
    assert r.returncode == 0, r.stderr
    assert "no locator available" not in r.stderr and "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("backprop-numba: note:")]
    assert len(notes) == 1 and "NUMBA_CACHE_DIR" in notes[0], r.stderr
    cache = os.path.join(tmp, f"backprop_numba-numba-cache-{65534 if os.getuid() == 0 else os.getuid()}")
    assert f"NUMBA_CACHE_DIR {cache}" in r.stdout
    assert any(name.endswith(".nbi") for _, _, files in os.walk(cache) for name in files)  # it was used
    assert oct(os.stat(cache).st_mode & 0o777) == oct(0o700)  # private: cache files are pickles

    r = _unprivileged(site, tmp, "help")
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "evaluate" in r.stdout and "Traceback" not in r.stderr


def test_import_and_help_with_nothing_writable(read_only_install):
    site, tmp = read_only_install
    os.chmod(tmp, 0o555)  # the temporary folder too: no cache at all, kernels compile in every process
    r = _unprivileged(site, tmp, "help")
    assert r.returncode == 0, r.stderr
    assert "train" in r.stdout and "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("backprop-numba: note:")]
    assert len(notes) == 1 and "compiled again in every process" in notes[0] and "NUMBA_CACHE_DIR" in notes[0]


def test_no_note_when_the_cache_is_writable():
    r = subprocess.run([sys.executable, "-c", "import backprop_numba"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_python_dash_m_backprop_numba():
    r = cli("--help", module="backprop_numba")
    assert r.returncode == 0 and "train" in r.stdout
    r = cli("--version", module="backprop_numba")
    assert r.returncode == 0 and backprop_numba.__version__ in r.stdout
