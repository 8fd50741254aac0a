"""Side-by-side speed of backprop_numba, PyTorch, JAX and NumPy, in ONE run.

For each network x batch size of the grid (issue 5, SPEC section 4) this times

- ``step``:  one SGD training step on one mini-batch,
- ``epoch``: one epoch of mini-batch SGD over 8,192 samples (shuffled),
- ``input_gradient``: grad_x a[L](x) of the [784,128,64,1] network, one sample,

for this library and for the same network (sigmoid hidden layers, identity
output, mean squared error, plain SGD) written in

- PyTorch, CPU eager mode, ``torch.optim.SGD`` (``torch.autograd.grad`` for the
  input gradient),
- JAX, ``jax.jit`` of a full train step (``jax.jit(jax.grad(f))`` for the input
  gradient),
- vectorised NumPy (``@`` on batches, backpropagation by hand).

Peers that are not installed are skipped with a note.  The same run measures
the machine's NumPy matrix-multiply peak (1024 x 1024, float64 and float32) and
reports the FLOP/s of each point and its fraction of that peak.

    python benchmarks/compare.py                 # full grid (~5-8 minutes on 2 cores)
    python benchmarks/compare.py --quick         # small sizes, few repeats (CI, < 60 s)
    python benchmarks/compare.py --threads 1     # every framework on one thread

Writes JSON and a Markdown table (paths printed at the end; default
``benchmarks/results/compare.json`` and ``compare.md``).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repeats (for CI)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every framework (default: all cores)")
    p.add_argument("--out", default=None, help="JSON output path (a .md table is written beside it)")
    p.add_argument("--peers", default="torch,jax,numpy",
                   help="comma-separated peers to try (default: torch,jax,numpy)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per (library, point) at most (default 1.0, quick 0.2)")
    return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.threads is not None:
    # Must happen before numpy, torch, jax or numba start their thread pools.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen={'true' if ARGS.threads > 1 else 'false'}"
                               f" intra_op_parallelism_threads={ARGS.threads}").strip()

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a checkout without installing

from backprop_numba import MLP  # noqa: E402
from backprop_numba import _kernels as K  # noqa: E402
from backprop_numba import optimizers  # noqa: E402

FULL = dict(
    networks=[[4, 3, 2, 1], [784, 16, 10], [784, 128, 64, 10], [784, 512, 512, 10]],
    batches=[1, 32, 256],
    epoch_samples=8192,
    f32_networks=[[784, 128, 64, 10], [784, 512, 512, 10]],
    f32_batches=[32, 256],
    grad_network=[784, 128, 64, 1],
    budget=1.0,
    max_repeats=200,
    epoch_repeats=(3, 7),
)
QUICK = dict(
    networks=[[4, 3, 2, 1], [784, 16, 10], [784, 128, 64, 10]],
    batches=[1, 32],
    epoch_samples=512,
    f32_networks=[[784, 128, 64, 10]],
    f32_batches=[32],
    grad_network=[784, 128, 64, 1],
    budget=0.15,
    max_repeats=50,
    epoch_repeats=(2, 3),
)
LR = 0.01
SEED = 1234


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

def median_seconds(fn, budget, max_repeats, min_repeats=3):
    """Median wall time of fn() after one warm-up call; repeats until `budget` seconds or max_repeats."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_repeats and time.perf_counter() - start > budget:
            break
    return statistics.median(times), len(times)


def matmul_peak(dtype, n=1024, repeats=7):
    """NumPy matrix-multiply FLOP/s on n x n (best of a few, as a peak)."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)
    C = np.empty((n, n), dtype=dtype)
    np.matmul(A, B, out=C)
    best = min(_time_once(lambda: np.matmul(A, B, out=C)) for _ in range(repeats))
    return 2.0 * n ** 3 / best


def _time_once(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def n_weights(sizes):
    return sum(sizes[l] * sizes[l - 1] for l in range(1, len(sizes)))


def step_flops(sizes, B):
    """Multiply-adds x 2 of one training step: forward, delta recursion (not into the input), dW."""
    W = n_weights(sizes)
    return 2.0 * B * (W + W + (W - sizes[0] * sizes[1]))


def grad_flops(sizes):
    """Input gradient of one sample: forward plus the recursion down to the input."""
    return 2.0 * 2.0 * n_weights(sizes)


# --------------------------------------------------------------------------
# the network: sigmoid hidden layers, identity output, mean squared error, SGD
# --------------------------------------------------------------------------

def make_data(sizes, n, dtype):
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    Y = rng.standard_normal((n, sizes[-1])).astype(dtype)
    return X, Y


def make_net(sizes, dtype):
    return MLP(sizes, activation="sigmoid", output_activation="identity", loss="mse", seed=SEED, dtype=dtype)


class Library:
    name = "backprop_numba"

    @staticmethod
    def available():
        return True, ""

    def step(self, sizes, B, dtype):
        """One compiled step: _train_epoch over one batch, buffers allocated once (as fit does)."""
        net = make_net(sizes, dtype)
        X, Y = make_data(sizes, B, dtype)
        a_buf, z_buf, d_buf = net._unit_buffers(B, 3)
        y_buf = np.empty(B * sizes[-1], dtype=dtype)
        grad = np.empty(net._n_params, dtype=dtype)
        perm = np.arange(B, dtype=np.int64)
        state = optimizers.new_state(net._n_params, dtype)
        hyper = optimizers.hyper_array(dict(optimizers.DEFAULTS))
        theta, arch, loss = net.theta, net._arch, net._loss_code

        def run():
            K._train_epoch(theta, arch, loss, X, Y, perm, -1, B, optimizers.SGD, LR, hyper, state, 0,
                           False, a_buf, z_buf, d_buf, y_buf, grad)
        return run

    def step_api(self, sizes, B, dtype):
        """The same step through the public API: MLP.fit(epochs=1) on one batch."""
        net = make_net(sizes, dtype)
        X, Y = make_data(sizes, B, dtype)
        return lambda: net.fit(X, Y, epochs=1, batch_size=B, learning_rate=LR, shuffle=False, progress=False)

    def epoch(self, sizes, B, dtype, N):
        net = make_net(sizes, dtype)
        X, Y = make_data(sizes, N, dtype)
        return lambda: net.fit(X, Y, epochs=1, batch_size=B, learning_rate=LR, shuffle=True, progress=False)

    def input_gradient(self, sizes, dtype):
        net = MLP(sizes, activation="sigmoid", output_activation="identity", loss="mse", seed=SEED, dtype=dtype)
        x = make_data(sizes, 1, dtype)[0][0]
        return lambda: net.input_gradient(x)

    def input_gradient_kernel(self, sizes, dtype):
        net = MLP(sizes, activation="sigmoid", output_activation="identity", loss="mse", seed=SEED, dtype=dtype)
        X = make_data(sizes, 1, dtype)[0]
        V = np.ones((1, 1), dtype=dtype)
        a_buf, z_buf, d_buf = net._unit_buffers(1, 3)
        gx = np.empty((1, sizes[0]), dtype=dtype)
        theta, arch = net.theta, net._arch
        return lambda: K._vjp(theta, arch, X, V, a_buf, z_buf, d_buf, gx)


class NumPyPeer:
    """Vectorised NumPy: z = a W^T + b per batch, backpropagation by hand."""
    name = "numpy"

    @staticmethod
    def available():
        return True, ""

    @staticmethod
    def _params(sizes, dtype):
        net = make_net(sizes, dtype)
        return [W.copy() for W in net.weights], [b.copy() for b in net.biases]

    @staticmethod
    def _train_step(Ws, bs, x, y):
        L = len(Ws)
        a = [x]
        for l in range(L):
            z = a[-1] @ Ws[l].T + bs[l]
            if l < L - 1:
                z = 1.0 / (1.0 + np.exp(-z))
            a.append(z)
        B, m = y.shape
        delta = (a[-1] - y) * (2.0 / (B * m))
        for l in range(L - 1, -1, -1):
            dW = delta.T @ a[l]
            db = delta.sum(axis=0)
            if l > 0:
                delta = (delta @ Ws[l]) * (a[l] * (1.0 - a[l]))
            Ws[l] -= LR * dW
            bs[l] -= LR * db

    def step(self, sizes, B, dtype):
        Ws, bs = self._params(sizes, dtype)
        X, Y = make_data(sizes, B, dtype)
        return lambda: self._train_step(Ws, bs, X, Y)

    def epoch(self, sizes, B, dtype, N):
        Ws, bs = self._params(sizes, dtype)
        X, Y = make_data(sizes, N, dtype)
        rng = np.random.default_rng(0)

        def run():
            perm = rng.permutation(N)
            for start in range(0, N, B):
                idx = perm[start:start + B]
                self._train_step(Ws, bs, X[idx], Y[idx])
        return run

    def input_gradient(self, sizes, dtype):
        Ws, bs = self._params(sizes, dtype)
        x = make_data(sizes, 1, dtype)[0][0]

        def run():
            acts = []
            a = x
            for l in range(len(Ws)):
                z = Ws[l] @ a + bs[l]
                if l < len(Ws) - 1:
                    z = 1.0 / (1.0 + np.exp(-z))
                acts.append(z)
                a = z
            delta = np.ones(1, dtype=dtype)
            for l in range(len(Ws) - 1, 0, -1):
                delta = (Ws[l].T @ delta) * (acts[l - 1] * (1.0 - acts[l - 1]))
            return Ws[0].T @ delta
        return run


class TorchPeer:
    name = "torch"

    def available(self):
        try:
            import torch
        except ImportError:
            return False, "torch is not installed (pip install torch==2.13.0)"
        self.torch = torch
        if ARGS is not None and ARGS.threads is not None:
            torch.set_num_threads(ARGS.threads)
        return True, f"torch {torch.__version__}, {torch.get_num_threads()} threads"

    def _model(self, sizes, dtype):
        torch = self.torch
        tdtype = torch.float64 if dtype == np.float64 else torch.float32
        net = make_net(sizes, dtype)
        layers = []
        for l in range(1, len(sizes)):
            lin = torch.nn.Linear(sizes[l - 1], sizes[l]).to(tdtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(net.W(l).copy()))
                lin.bias.copy_(torch.from_numpy(net.b(l).copy()))
            layers.append(lin)
            if l < len(sizes) - 1:
                layers.append(torch.nn.Sigmoid())
        return torch.nn.Sequential(*layers)

    def _stepper(self, sizes, dtype):
        torch = self.torch
        model = self._model(sizes, dtype)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        mse = torch.nn.functional.mse_loss

        def step(x, y):
            opt.zero_grad()
            loss = mse(model(x), y)
            loss.backward()
            opt.step()
        return step

    def step(self, sizes, B, dtype):
        X, Y = (self.torch.from_numpy(a) for a in make_data(sizes, B, dtype))
        step = self._stepper(sizes, dtype)
        return lambda: step(X, Y)

    def epoch(self, sizes, B, dtype, N):
        torch = self.torch
        X, Y = (torch.from_numpy(a) for a in make_data(sizes, N, dtype))
        step = self._stepper(sizes, dtype)
        gen = torch.Generator().manual_seed(0)

        def run():
            perm = torch.randperm(N, generator=gen)
            for start in range(0, N, B):
                idx = perm[start:start + B]
                step(X[idx], Y[idx])
        return run

    def input_gradient(self, sizes, dtype):
        torch = self.torch
        model = self._model(sizes, dtype)
        x = torch.from_numpy(make_data(sizes, 1, dtype)[0][0])

        def run():
            xg = x.detach().requires_grad_(True)
            out = model(xg)
            return torch.autograd.grad(out.sum(), xg)[0]
        return run


class JaxPeer:
    name = "jax"

    def available(self):
        try:
            import jax
            jax.config.update("jax_enable_x64", True)
            jax.config.update("jax_platforms", "cpu")
            import jax.numpy as jnp
        except ImportError:
            return False, "jax is not installed (pip install jax jaxlib)"
        self.jax, self.jnp = jax, jnp
        return True, f"jax {jax.__version__}"

    def _params(self, sizes, dtype):
        net = make_net(sizes, dtype)
        return [(self.jnp.asarray(W.copy()), self.jnp.asarray(b.copy())) for W, b in zip(net.weights, net.biases)]

    def _forward(self, params, x):
        jax = self.jax
        a = x
        for l, (W, b) in enumerate(params):
            a = a @ W.T + b
            if l < len(params) - 1:
                a = jax.nn.sigmoid(a)
        return a

    def _jit_step(self):
        jax, jnp = self.jax, self.jnp

        def loss(params, x, y):
            return jnp.mean((self._forward(params, x) - y) ** 2)

        @jax.jit
        def step(params, x, y):
            g = jax.grad(loss)(params, x, y)
            return jax.tree_util.tree_map(lambda p, gp: p - LR * gp, params, g)
        return step

    def step(self, sizes, B, dtype):
        jnp = self.jnp
        X, Y = (jnp.asarray(a) for a in make_data(sizes, B, dtype))
        step = self._jit_step()
        box = [self._params(sizes, dtype)]

        def run():
            box[0] = step(box[0], X, Y)
            self.jax.block_until_ready(box[0])
        return run

    def epoch(self, sizes, B, dtype, N):
        jnp = self.jnp
        Xn, Yn = make_data(sizes, N, dtype)
        X, Y = jnp.asarray(Xn), jnp.asarray(Yn)
        step = self._jit_step()
        box = [self._params(sizes, dtype)]
        rng = np.random.default_rng(0)
        n_full = (N // B) * B

        def run():
            perm = jnp.asarray(rng.permutation(N))
            p = box[0]
            for start in range(0, n_full, B):
                idx = perm[start:start + B]
                p = step(p, X[idx], Y[idx])
            if n_full < N:
                idx = perm[n_full:]
                p = step(p, X[idx], Y[idx])
            box[0] = self.jax.block_until_ready(p)
        return run

    def input_gradient(self, sizes, dtype):
        jax, jnp = self.jax, self.jnp
        params = self._params(sizes, dtype)
        x = jnp.asarray(make_data(sizes, 1, dtype)[0][0])
        g = jax.jit(jax.grad(lambda x: self._forward(params, x)[0]))
        return lambda: g(x).block_until_ready()


# --------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------

def label(sizes):
    return "[" + ",".join(map(str, sizes)) + "]"


def machine_info():
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    import numba
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "threading_layer_requested": str(numba.config.THREADING_LAYER), "loadavg": load,
            "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def run(args):
    cfg = dict(QUICK if args.quick else FULL)
    if args.budget is not None:
        cfg["budget"] = args.budget
    started = time.perf_counter()
    lib = Library()
    peers = []
    notes = []
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    for cls in (TorchPeer, JaxPeer, NumPyPeer):
        if cls.name not in wanted:
            continue
        peer = cls()
        ok, note = peer.available()
        if ok:
            peers.append(peer)
            notes.append(f"{cls.name}: {note}" if note else cls.name)
        else:
            notes.append(f"{cls.name}: skipped, {note}")
            print(f"note: {cls.name} skipped: {note}", flush=True)

    peak = {"float64": matmul_peak(np.float64), "float32": matmul_peak(np.float32)}
    print(f"NumPy matmul peak (1024^2): float64 {peak['float64'] / 1e9:.1f} GFLOP/s, "
          f"float32 {peak['float32'] / 1e9:.1f} GFLOP/s", flush=True)

    budget, max_rep = cfg["budget"], cfg["max_repeats"]
    rows = []

    def record(kind, sizes, B, dtype, flops, impls):
        dname = np.dtype(dtype).name
        row = {"kind": kind, "network": label(sizes), "batch": B, "dtype": dname, "flops": flops,
               "seconds": {}, "repeats": {}}
        for name, make in impls:
            try:
                fn = make()
                if kind == "epoch":
                    lo, hi = cfg["epoch_repeats"]
                    sec, n = median_seconds(fn, budget * 3, hi, min_repeats=lo)
                else:
                    sec, n = median_seconds(fn, budget, max_rep)
            except Exception as exc:  # a peer failing must not lose the rest of the table
                print(f"  {name} failed on {kind} {label(sizes)} B={B} {dname}: {exc!r}", flush=True)
                continue
            row["seconds"][name] = sec
            row["repeats"][name] = n
        lib_s = row["seconds"].get(lib.name)
        if lib_s:
            row["gflops"] = flops / lib_s / 1e9
            row["peak_fraction"] = flops / lib_s / peak[dname]
            row["ratio"] = {p: row["seconds"][p] / lib_s for p in row["seconds"] if p not in (lib.name, lib.name + " (MLP.fit)", lib.name + " (kernel)")}
        rows.append(row)
        print(format_row(row), flush=True)

    grid = [(s, B, np.float64) for s in cfg["networks"] for B in cfg["batches"]]
    grid += [(s, B, np.float32) for s in cfg["f32_networks"] for B in cfg["f32_batches"]]
    N = cfg["epoch_samples"]
    print("\n== one training step (SGD) ==", flush=True)
    for sizes, B, dtype in grid:
        impls = [(lib.name, lambda: lib.step(sizes, B, dtype)),
                 (lib.name + " (MLP.fit)", lambda: lib.step_api(sizes, B, dtype))]
        impls += [(p.name, (lambda p=p: p.step(sizes, B, dtype))) for p in peers]
        record("step", sizes, B, dtype, step_flops(sizes, B), impls)
    print(f"\n== one epoch over {N} samples (shuffled, last batch partial) ==", flush=True)
    for sizes, B, dtype in grid:
        impls = [(lib.name, lambda: lib.epoch(sizes, B, dtype, N))]
        impls += [(p.name, (lambda p=p: p.epoch(sizes, B, dtype, N))) for p in peers]
        record("epoch", sizes, B, dtype, step_flops(sizes, 1) * N, impls)
    print("\n== input gradient, one sample ==", flush=True)
    gs = cfg["grad_network"]
    for dtype in (np.float64, np.float32):
        impls = [(lib.name, lambda: lib.input_gradient(gs, dtype)),
                 (lib.name + " (kernel)", lambda: lib.input_gradient_kernel(gs, dtype))]
        impls += [(p.name, (lambda p=p: p.input_gradient(gs, dtype))) for p in peers]
        record("input_gradient", gs, 1, dtype, grad_flops(gs), impls)

    result = {"machine": machine_info(), "quick": bool(args.quick), "threads": args.threads,
              "peak_flops": peak, "peers": notes, "library": lib.name, "rows": rows,
              "elapsed_s": time.perf_counter() - started}
    return result


def _fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def format_row(row):
    parts = [f"{row['kind']:<14} {row['network']:<20} B={row['batch']:<4} {row['dtype']:<8}"]
    for name, sec in row["seconds"].items():
        parts.append(f"{name}={_fmt_time(sec)}")
    if "ratio" in row:
        parts.append("x-faster: " + ", ".join(f"{p} {r:.2f}" for p, r in row["ratio"].items()))
        parts.append(f"{row['gflops']:.2f} GFLOP/s ({100 * row['peak_fraction']:.0f}% of peak)")
    return "  ".join(parts)


def markdown(result):
    names = []
    for row in result["rows"]:
        for n in row["seconds"]:
            if n not in names:
                names.append(n)
    peers = [n for n in names if not n.startswith(result["library"])]
    m = result["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, NumPy {m['numpy']}, "
             f"Numba {m['numba']} ({m['numba_threads']} threads); {m['time_utc']} UTC; load average "
             f"{', '.join(f'{x:.2f}' for x in m['loadavg']) if m['loadavg'] else '?'}.",
             f"NumPy matmul peak (1024x1024): float64 {result['peak_flops']['float64'] / 1e9:.1f} GFLOP/s, "
             f"float32 {result['peak_flops']['float32'] / 1e9:.1f} GFLOP/s. Peers: {'; '.join(result['peers'])}.",
             "",
             "Medians. 'x peer' = peer time / backprop_numba time (> 1: backprop_numba is faster).",
             ""]
    head = ["what", "network", "B", "dtype"] + names + [f"x {p}" for p in peers] + ["GFLOP/s", "% peak"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for row in result["rows"]:
        cells = [row["kind"], row["network"], str(row["batch"]), row["dtype"]]
        cells += [_fmt_time(row["seconds"].get(n)) for n in names]
        ratio = row.get("ratio", {})
        cells += [f"{ratio[p]:.2f}" if p in ratio else "-" for p in peers]
        cells += [f"{row['gflops']:.2f}" if "gflops" in row else "-",
                  f"{100 * row['peak_fraction']:.0f}%" if "peak_fraction" in row else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    global ARGS
    args = ARGS if argv is None and ARGS is not None else _parse_args(argv)
    ARGS = args
    result = run(args)
    out = args.out or os.path.join(HERE, "results", "compare-quick.json" if args.quick else "compare.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    md_path = os.path.splitext(out)[0] + ".md"
    with open(md_path, "w") as f:
        f.write(markdown(result))
    print()
    print(markdown(result))
    print(f"wrote {out}")
    print(f"wrote {md_path}")
    print(f"elapsed {result['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
