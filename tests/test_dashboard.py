"""The asv suite runs (``asv run --python=same --quick``), ``asv publish`` builds the
dashboard, offline_dashboard.py points it at the vendored JavaScript, and headless
Chromium, served over http on 127.0.0.1 with no other network, draws its graphs.

Without Chromium the rendering test skips, except under CI=true (where .ci/run
installs it), where it fails instead.
"""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASV_DIR = os.path.join(ROOT, "asv_bench")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A few quick benchmarks: one parameterised (a graph per parameter set) and one cold start.
BENCHES = r"bench_forward\.DenseLoop\.time_kernel_dense|ColdStart\.timeraw_import$"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--window-size=1400,900", "--virtual-time-budget=8000"]

pytest.importorskip("asv")


def _asv(args, conf, cwd, timeout=600):
    cmd = [sys.executable, "-m", "asv", *args, "--config", conf]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _git_head():
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Results of a quick asv run against this environment, published and made offline."""
    tmp = tmp_path_factory.mktemp("asv")
    with open(os.path.join(ASV_DIR, "asv.conf.json")) as f:
        text = "\n".join(line for line in f if not line.lstrip().startswith("//"))
    conf = json.loads(text)
    conf.update(repo=ROOT, benchmark_dir=os.path.join(ASV_DIR, "benchmarks"),
                env_dir=str(tmp / "env"), results_dir=str(tmp / "results"), html_dir=str(tmp / "html"))
    conf_path = str(tmp / "asv.conf.json")
    with open(conf_path, "w") as f:
        json.dump(conf, f)
    _asv(["machine", "--yes"], conf_path, str(tmp))
    out = _asv(["run", "--python=same", "--quick", "--set-commit-hash", _git_head(), "-b", BENCHES,
                "--show-stderr"], conf_path, str(tmp))
    assert "failed" not in out, out[-3000:]
    results = [p for p in (tmp / "results").rglob("*.json") if p.name != "machine.json"]
    assert results, "asv run saved no results"
    _asv(["publish"], conf_path, str(tmp))
    sys.path.insert(0, ASV_DIR)
    try:
        import offline_dashboard
    finally:
        sys.path.remove(ASV_DIR)
    left = offline_dashboard.make_offline(str(tmp / "html"))
    assert left == [], f"still loaded from the network: {left}"
    return tmp / "html"


def test_asv_quick_run_and_publish(published):
    index = (published / "index.html").read_text()
    assert "https://" not in "".join(l for l in index.splitlines() if "<script" in l or "stylesheet" in l)
    assert (published / "vendor" / "flot" / "jquery.flot.js").is_file()
    assert (published / "vendor" / "jquery" / "LICENSE.txt").is_file()
    graphs = list((published / "graphs").rglob("*.json"))
    assert any("time_kernel_dense" in str(p) for p in graphs)


@pytest.fixture()
def server(published):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(published))

    class Quiet(handler.func):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(published)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _chromium_or_skip():
    if CHROMIUM:
        return CHROMIUM
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("chromium is not installed, but CI=true: .ci/run must install it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium); the dashboard rendering is not checked")


def _chromium(args, timeout=120):
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        proc = subprocess.run([_chromium_or_skip(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return proc


def test_dashboard_draws_graphs_offline(server, tmp_path):
    _chromium_or_skip()
    # The graph page of one parameterised benchmark: flot draws into <canvas> elements.
    url = server + "#bench_forward.DenseLoop.time_kernel_dense"
    proc = _chromium(["--dump-dom", url])
    dom = proc.stdout
    assert "<html" in dom, proc.stderr[-2000:]
    assert "js_load_failure" not in dom or "Failed to load" not in dom
    assert 'class="flot-base"' in dom, f"no flot canvas in the rendered page:\n{dom[-3000:]}"
    assert "flot-overlay" in dom

    # The screenshot of the same page is not blank: the plot area has many colours.
    shot = tmp_path / "dashboard.png"
    _chromium([f"--screenshot={shot}", url])
    assert shot.is_file() and shot.stat().st_size > 10_000
    try:
        import matplotlib.image as mpimg
        import numpy as np
    except ImportError:
        return
    pixels = mpimg.imread(str(shot))
    plot = pixels[150:850, 300:1350, :3]  # the graph panel, right of the benchmark list
    colours = np.unique((plot * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 20, "the plot area of the dashboard screenshot is blank"
