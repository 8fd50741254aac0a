"""The peers of benchmarks/compare.py, each written the way an expert of it would write it.

The network of every point: sigmoid hidden layers, identity output, mean
squared error (mean over outputs and samples), plain SGD, W[l] of shape
(n[l], n[l-1]) and z[l] = W[l] a[l-1] + b[l] (rows of a batch: z = a W^T + b).

Every peer offers *variants*.  A variant is built by

    make(params, X, Y, B, lr) -> (run, get_params)

where ``params`` is a list of (W, b) NumPy arrays (the initial parameters,
shared with backprop_numba's network), X (N, n0) and Y (N, nL) are
C-contiguous arrays of the point's dtype with N a multiple of B, ``run()``
trains one epoch over X, Y in order (no shuffling; mini-batch i is rows
[i B, (i+1) B)), and ``get_params()`` returns the current parameters as NumPy
(W, b) pairs.  A "step" is an epoch over exactly B rows.  compare.py checks
every variant's parameters after its first call against backprop_numba's
before it times it.

Each peer also offers ``input_gradient(params, x) -> run`` whose ``run()``
returns grad_x a[L](x) for a network with one output, one sample x.
"""

import numpy as np


def _blas_threads():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 1
    return max([d.get("num_threads", 1) for d in threadpool_info() if d.get("user_api") == "blas"] or [1])


class NotApplicable(Exception):
    """A variant that is not worth running at this point (e.g. unrolling the scan of a large network)."""


UNROLL = 8
UNROLL_MAX_STEP_FLOPS = 2e6   # unroll the scan only where a step is small (its per-step overhead dominates)


def _copy_params(params, dtype):
    return [(np.array(W, dtype=dtype, order="C"), np.array(b, dtype=dtype)) for W, b in params]


# --------------------------------------------------------------------------
# NumPy: preallocated buffers, matmul(out=), in-place everything
# --------------------------------------------------------------------------

class NumPyPeer:
    """NumPy by hand.  Per step: no allocation; every product is ``np.matmul(..., out=)`` on
    preallocated buffers (transposes are views, so BLAS sees a transpose flag, not a copy), the
    sigmoid and the updates are in-place ufuncs.  Its BLAS is whatever NumPy loaded (see the
    report header for the kernel threadpoolctl names), with its default threads and, as a second
    variant, limited to one thread (``threadpool_limits(1, user_api="blas")``) for the epoch."""

    name = "numpy"

    def available(self):
        return True, f"numpy {np.__version__}"

    def variants(self, quick=False):
        v = {"numpy (preallocated, matmul out=)": self._make}
        if _blas_threads() > 1:
            v["numpy (preallocated, 1 BLAS thread)"] = self._make_one_thread
        return v

    def _make_one_thread(self, params, X, Y, B, lr):
        from threadpoolctl import threadpool_limits
        run, get = self._make(params, X, Y, B, lr)

        def run1():
            with threadpool_limits(1, user_api="blas"):
                run()
        return run1, get

    @staticmethod
    def _make(params, X, Y, B, lr):
        dtype = X.dtype.type
        P = _copy_params(params, dtype)
        L = len(P)
        sizes = [P[0][0].shape[1]] + [W.shape[0] for W, _ in P]
        A = [None] + [np.empty((B, n), dtype=dtype) for n in sizes[1:]]   # a[l], l >= 1
        D = [None] + [np.empty((B, n), dtype=dtype) for n in sizes[1:]]   # delta[l]
        T = [None] + [np.empty((B, n), dtype=dtype) for n in sizes[1:]]   # a (1 - a) scratch
        dW = [None] + [np.empty_like(W) for W, _ in P]
        db = [None] + [np.empty_like(b) for _, b in P]
        Ws = [None] + [W for W, _ in P]
        bs = [None] + [b for _, b in P]
        scale = dtype(2.0 / (B * sizes[-1]))
        lr_ = dtype(lr)
        N = X.shape[0]
        one = dtype(1.0)

        def step(x, y):
            a = x
            for l in range(1, L + 1):
                z = A[l]
                np.matmul(a, Ws[l].T, out=z)
                z += bs[l]
                if l < L:                      # sigmoid in place: 1 / (1 + exp(-z))
                    np.negative(z, out=z)
                    np.exp(z, out=z)
                    z += one
                    np.reciprocal(z, out=z)
                a = z
            d = D[L]
            np.subtract(A[L], y, out=d)
            d *= scale
            for l in range(L, 0, -1):
                a_prev = x if l == 1 else A[l - 1]
                np.matmul(D[l].T, a_prev, out=dW[l])
                np.sum(D[l], axis=0, out=db[l])
                if l > 1:                      # delta[l-1] from the old W[l], then update W[l]
                    np.matmul(D[l], Ws[l], out=D[l - 1])
                    t = T[l - 1]
                    np.subtract(one, a_prev, out=t)
                    t *= a_prev
                    D[l - 1] *= t
                dW[l] *= lr_
                Ws[l] -= dW[l]
                db[l] *= lr_
                bs[l] -= db[l]

        def run():
            for s in range(0, N, B):
                step(X[s:s + B], Y[s:s + B])

        return run, lambda: [(W.copy(), b.copy()) for W, b in P]

    def input_gradient(self, params, x):
        P = _copy_params(params, x.dtype.type)
        L = len(P)
        acts = [np.empty(W.shape[0], dtype=x.dtype) for W, _ in P]

        def run():
            a = x
            for l, (W, b) in enumerate(P):
                z = acts[l]
                np.matmul(W, a, out=z)
                z += b
                if l < L - 1:
                    np.negative(z, out=z)
                    np.exp(z, out=z)
                    z += 1
                    np.reciprocal(z, out=z)
                a = z
            delta = np.ones(1, dtype=x.dtype)
            for l in range(L - 1, 0, -1):
                a = acts[l - 1]
                delta = (P[l][0].T @ delta) * (a * (1 - a))
            return P[0][0].T @ delta
        return run


# --------------------------------------------------------------------------
# JAX: the whole epoch in one jit (lax.scan, donated parameters); one jit per step
# --------------------------------------------------------------------------

class JaxPeer:
    """JAX on CPU.  ``jit(scan epoch)``: the whole epoch is ONE ``jax.jit`` call, a ``lax.scan``
    over the mini-batches (X reshaped to (steps, B, n0) once, outside the timing), parameters
    donated (``donate_argnums``) so XLA updates them in place; also with ``unroll=8`` where a step
    is small (under 2e6 flops), which halves JAX's per-step cost on [4,3,2,1].  ``jit per step``: one jitted,
    donating train step called from a Python loop over pre-split device batches."""

    name = "jax"

    def available(self):
        try:
            import jax
            jax.config.update("jax_enable_x64", True)
            jax.config.update("jax_platforms", "cpu")
            import jax.numpy as jnp
            import jaxlib
        except ImportError as exc:
            return False, f"not installed ({exc}; pip install jax jaxlib)"
        self.jax, self.jnp = jax, jnp
        self._cache = {}
        return True, f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, {jax.devices()[0].platform}"

    def variants(self, quick=False):
        return {"jax jit(scan epoch)": self._make_scan,
                f"jax jit(scan epoch, unroll={UNROLL})": self._make_scan_unrolled,
                "jax jit per step": self._make_steps}

    def _fns(self):
        if self._cache:
            return self._cache
        jax, jnp = self.jax, self.jnp

        def forward(params, x):
            a = x
            for l, (W, b) in enumerate(params):
                a = a @ W.T + b
                if l < len(params) - 1:
                    a = jax.nn.sigmoid(a)
            return a

        def loss(params, x, y):
            return jnp.mean((forward(params, x) - y) ** 2)

        def step(params, x, y, lr):
            g = jax.grad(loss)(params, x, y)
            return jax.tree_util.tree_map(lambda p, gp: p - lr * gp, params, g)

        def epoch(params, Xs, Ys, lr):
            def body(p, xy):
                return step(p, xy[0], xy[1], lr), None
            params, _ = jax.lax.scan(body, params, (Xs, Ys))
            return params

        def epoch_unrolled(params, Xs, Ys, lr):
            def body(p, xy):
                return step(p, xy[0], xy[1], lr), None
            params, _ = jax.lax.scan(body, params, (Xs, Ys), unroll=UNROLL)
            return params

        self._cache.update(forward=forward,
                           step=jax.jit(step, donate_argnums=0),
                           epoch=jax.jit(epoch, donate_argnums=0),
                           epoch_unrolled=jax.jit(epoch_unrolled, donate_argnums=0))
        return self._cache

    def _device_params(self, params, dtype):
        jnp = self.jnp
        return [(jnp.asarray(W), jnp.asarray(b)) for W, b in _copy_params(params, dtype)]

    def _getter(self, box):
        return lambda: [(np.asarray(W).copy(), np.asarray(b).copy()) for W, b in box[0]]

    def _make_scan_unrolled(self, params, X, Y, B, lr):
        step_flops = 6.0 * B * sum(W.size for W, _ in params)
        if step_flops > UNROLL_MAX_STEP_FLOPS or X.shape[0] // B < UNROLL:
            raise NotApplicable(f"unroll only for steps under {UNROLL_MAX_STEP_FLOPS:g} flops and epochs of "
                                f"at least {UNROLL} steps")
        return self._make_scan(params, X, Y, B, lr, key="epoch_unrolled")

    def _make_scan(self, params, X, Y, B, lr, key="epoch"):
        jnp = self.jnp
        dtype = X.dtype.type
        S = X.shape[0] // B
        Xs = jnp.asarray(X.reshape(S, B, X.shape[1]))
        Ys = jnp.asarray(Y.reshape(S, B, Y.shape[1]))
        lr_ = jnp.asarray(lr, dtype=dtype)
        epoch = self._fns()[key]
        box = [self._device_params(params, dtype)]

        def run():
            box[0] = self.jax.block_until_ready(epoch(box[0], Xs, Ys, lr_))
        return run, self._getter(box)

    def _make_steps(self, params, X, Y, B, lr):
        jnp = self.jnp
        dtype = X.dtype.type
        S = X.shape[0] // B
        Xs = [jnp.asarray(X[i * B:(i + 1) * B]) for i in range(S)]
        Ys = [jnp.asarray(Y[i * B:(i + 1) * B]) for i in range(S)]
        lr_ = jnp.asarray(lr, dtype=dtype)
        step = self._fns()["step"]
        box = [self._device_params(params, dtype)]

        def run():
            p = box[0]
            for x, y in zip(Xs, Ys):
                p = step(p, x, y, lr_)
            box[0] = self.jax.block_until_ready(p)
        return run, self._getter(box)

    def input_gradient(self, params, x):
        jax = self.jax
        P = self._device_params(params, x.dtype.type)
        forward = self._fns()["forward"]
        g = jax.jit(jax.grad(lambda p, v: forward(p, v)[0], argnums=1))
        xd = self.jnp.asarray(x)
        return lambda: np.asarray(g(P, xd).block_until_ready())


# --------------------------------------------------------------------------
# PyTorch: eager (optim.SGD or a hand-written in-place update), torch.compile of the step
# --------------------------------------------------------------------------

class TorchPeer:
    """PyTorch on CPU, parameters as leaf tensors, forward ``torch.addmm`` + ``torch.sigmoid``,
    ``mse_loss``.  ``eager + optim.SGD``: ``backward()`` then ``torch.optim.SGD(foreach=True).step()``
    and ``zero_grad(set_to_none=True)``.  ``eager + no_grad update``: ``torch.autograd.grad`` then
    ``torch._foreach_add_(params, grads, alpha=-lr)`` under ``torch.no_grad()``; the same with
    ``torch.set_num_threads(1)`` for the epoch (small ops do not gain from torch's thread pool, and
    with any other load on the machine its OpenMP threads cost far more than they give).  ``torch.compile``:
    the whole step (``torch.func.grad`` and the in-place foreach update) compiled with
    ``torch.compile(dynamic=False)``; it is skipped, with a note, when it fails or under
    ``--quick`` / ``--no-torch-compile``."""

    name = "torch"

    def __init__(self, threads=None, compile_=True):
        self.threads = threads
        self.compile = compile_
        self._compiled = {}

    def available(self):
        try:
            import torch
        except ImportError as exc:
            return False, f"not installed ({exc}; pip install torch)"
        self.torch = torch
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return True, f"torch {torch.__version__}, {torch.get_num_threads()} threads"

    def variants(self, quick=False):
        v = {"torch eager + optim.SGD": self._make_optim, "torch eager + no_grad update": self._make_manual}
        if self.torch.get_num_threads() > 1:
            v["torch eager + no_grad update, 1 thread"] = self._make_manual_one_thread
        if self.compile and not quick:
            v["torch.compile(step)"] = self._make_compiled
        return v

    def _tensors(self, params, dtype, requires_grad):
        torch = self.torch
        P = _copy_params(params, dtype)
        Ws = [torch.from_numpy(W) for W, _ in P]
        bs = [torch.from_numpy(b) for _, b in P]
        if requires_grad:
            for t in Ws + bs:
                t.requires_grad_(True)
        return Ws, bs

    def _loss(self, Ws, bs, x, y):
        torch = self.torch
        a = x
        L = len(Ws)
        for l in range(L):
            a = torch.addmm(bs[l], a, Ws[l].t())
            if l < L - 1:
                a = torch.sigmoid(a)
        return torch.nn.functional.mse_loss(a, y)

    def _getter(self, Ws, bs):
        return lambda: [(W.detach().numpy().copy(), b.detach().numpy().copy()) for W, b in zip(Ws, bs)]

    def _batches(self, X, Y, B):
        torch = self.torch
        Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
        S = X.shape[0] // B
        return [(Xt[i * B:(i + 1) * B], Yt[i * B:(i + 1) * B]) for i in range(S)]

    def _make_optim(self, params, X, Y, B, lr):
        torch = self.torch
        Ws, bs = self._tensors(params, X.dtype.type, True)
        opt = torch.optim.SGD(Ws + bs, lr=lr, foreach=True)
        batches = self._batches(X, Y, B)

        def run():
            for x, y in batches:
                loss = self._loss(Ws, bs, x, y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        return run, self._getter(Ws, bs)

    def _make_manual(self, params, X, Y, B, lr):
        torch = self.torch
        Ws, bs = self._tensors(params, X.dtype.type, True)
        ps = Ws + bs
        batches = self._batches(X, Y, B)

        def run():
            for x, y in batches:
                grads = torch.autograd.grad(self._loss(Ws, bs, x, y), ps)
                with torch.no_grad():
                    torch._foreach_add_(ps, grads, alpha=-lr)
        return run, self._getter(Ws, bs)

    def _make_manual_one_thread(self, params, X, Y, B, lr):
        torch = self.torch
        run, get = self._make_manual(params, X, Y, B, lr)

        def run1():
            n = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                run()
            finally:
                torch.set_num_threads(n)
        return run1, get

    def _make_compiled(self, params, X, Y, B, lr):
        torch = self.torch
        Ws, bs = self._tensors(params, X.dtype.type, False)
        ps = Ws + bs
        L = len(Ws)
        batches = self._batches(X, Y, B)

        key = (tuple(tuple(p.shape) for p in ps), str(X.dtype), B, lr)
        cstep = self._compiled.get(key)
        if cstep is None:                      # one compilation per point (its step and epoch rows share it)
            def loss_fn(ps, x, y):
                return self._loss(ps[:L], ps[L:], x, y)
            grad_fn = torch.func.grad(loss_fn)

            def step(ps, x, y):
                g = grad_fn(ps, x, y)
                with torch.no_grad():
                    torch._foreach_add_(ps, g, alpha=-lr)
            torch._dynamo.reset()   # a fresh cache per point: no silent fallback to eager at the recompile limit
            self._compiled.clear()
            cstep = self._compiled[key] = torch.compile(step, dynamic=False)

        def run():
            for x, y in batches:
                cstep(ps, x, y)
        return run, self._getter(Ws, bs)

    def input_gradient(self, params, x):
        torch = self.torch
        Ws, bs = self._tensors(params, x.dtype.type, False)
        xt = torch.from_numpy(x)

        def run():
            xg = xt.detach().requires_grad_(True)
            a = xg.unsqueeze(0)
            for l in range(len(Ws)):
                a = torch.addmm(bs[l], a, Ws[l].t())
                if l < len(Ws) - 1:
                    a = torch.sigmoid(a)
            return torch.autograd.grad(a.sum(), xg)[0].numpy()
        return run
