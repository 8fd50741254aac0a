"""Data-parallel training on Dask: local SGD on shards held by the workers, parameters averaged.

``fit_data_parallel(net, X, Y, ...)`` deals the rows of X, Y round-robin
into one shard per Dask worker (row i to shard i mod N, so a file sorted by
class still gives every shard every class) and sends each shard to its
worker once.  A dask array is dealt by blocks of rows instead (block b to
worker b mod N), each computed on its worker and joined there, so the data
never passes through the driver.  Training then runs in rounds.  In a round every worker

1. receives the current parameters theta and the optimizer state (one
   array: inside the round's task up to INLINE_BYTES, else scattered once
   and replicated worker to worker by Dask),
2. runs ``sync_every`` mini-batch steps of the usual compiled epoch
   (``training.Workspace``) over its own shard, from those parameters,
3. returns its new theta and optimizer state;

and the driver averages them, weighting worker k by the rows it trained on
in the round (n_k / sum n, its shard's share), into the one network it holds.
Every epoch ends with an average, so the history is that of one model;
``sync_every=None`` averages only there (one round per epoch).  An epoch is
one pass of every worker over its shard, reshuffled each epoch.

What is averaged, and why:

- theta: the weighted mean (local SGD, "model averaging").
- the optimizer state (momentum's velocity, Adam's moments m and v,
  RMSprop's s): the same weighted mean, so each worker starts the next
  round from the state of the averaged model rather than from zero (a
  restart of Adam's moments every round would redo its warm-up).
- Adam's step count t: the largest number of steps any worker took in the
  round is added to it (workers step in parallel, each from the same t;
  their counts differ by one at most, at the end of an epoch).

Reproducible: the shuffles come from ``seed`` (or the network's generator)
in the order epoch, then shard, the way ``fit`` draws one per epoch.  Hence
two exact oracles (``tests/test_data_parallel.py``): one worker gives,
bit for bit, what ``fit`` gives (the average of one is the identity); two
workers on identical shards without shuffling give one worker's result
(0.5 x + 0.5 x = x exactly).

Communication per round: S = (1 + n_state) P values of 8 bytes (float64;
P parameters; n_state = 0 for sgd, 1 for momentum/nesterov/rmsprop, 2 for
adam).  Each of the N workers receives S and returns S: 2 N S in all.  The
results come back through the scheduler to the driver (N S there), which
averages them (O(N P) work): a parameter server, not an all-reduce (a ring
all-reduce moves 2 S (N-1)/N per worker, whatever N).  README "Scaling out"
has the measured cost.

Needs Dask (``pip install 'backprop_numba[dask]'``); with neither
``client`` nor ``scheduler`` a ``LocalCluster`` of ``n_workers`` worker
processes (one thread each, no dashboard) is started and closed.  A lost
worker loses its shard: the run then fails (there is no recovery).
"""

import contextlib
import time
import uuid
from dataclasses import dataclass

import numpy as np

from . import _kernels as K
from . import _dask, losses, optimizers, schedules
from ._validation import check_inputs, check_params, check_sample_weight, check_targets, check_theta
from .training import (FIT_PARAMS, OPTIMIZER_PARAMS, DivergenceError, EpochResult, History, Workspace,
                       _accuracy, check_schedule_rate, record_epoch)

__all__ = ["fit_data_parallel", "DEFAULT_WORKERS"]

# Worker processes of the LocalCluster started when no client or scheduler is given.
DEFAULT_WORKERS = 2

# Parameters (theta and the optimizer state) up to this size ride inside each round's tasks; larger ones
# are scattered once per round and Dask replicates them worker to worker.  Measured on a 2-core
# LocalCluster (benchmarks/data_parallel_cost.py): inside the task a round is 10-25 ms faster up to a few
# MB (one message fewer), the two are equal at 10-60 MB, and Dask warns of task graphs beyond 10 MB.
INLINE_BYTES = 4 << 20

# fit_data_parallel's own options (the rest are fit's, with fit's constraints).
DP_PARAMS = {
    **{k: FIT_PARAMS[k] for k in ("epochs", "batch_size", "learning_rate", "on_nonfinite", "shuffle", "seed")},
    "sync_every": dict(kind="int", minimum=1, allow_none=True),
    "n_workers": dict(kind="int", minimum=1, allow_none=True),
    "timeout": dict(kind="real", low=0.0, low_open=True),
}


def _is_dask(X):
    """A dask array (duck-typed, so that dask is imported only by who uses it)."""
    return type(X).__module__.startswith("dask.") and hasattr(X, "to_delayed") and hasattr(X, "chunks")




# --------------------------------------------------------------------------
# On the workers
# --------------------------------------------------------------------------

@dataclass
class Shard:
    """One worker's rows: X, Y (2-D), sample weights or None, and its batch size (capped at its rows)."""

    X: np.ndarray
    Y: np.ndarray
    SW: np.ndarray
    batch_size: int


# In each worker process: (run token, shard) -> (net, Workspace), so a round
# reuses the buffers of the last one; dropped by _forget when the run ends.
_LOCAL = {}


def _local_round(token, k, spec, shard, params, job):
    """On a worker: one stretch of an epoch over the shard from the broadcast parameters.

    ``params`` stacks theta (row 0) and the optimizer state (rows 1..);
    ``job`` says which mini-batches (first..stop-1 of the epoch), with which
    shuffle, learning rate and step count.  Returns the new params and the
    EpochResult (its running sums continue the epoch's, given in ``job``).
    """
    from .mlp import MLP
    if (token, k) not in _LOCAL:
        net = MLP._from_arrays(spec["arrays"])
        _LOCAL[(token, k)] = (net, Workspace(net, shard.batch_size, spec["optimizer"]))
    net, ws = _LOCAL[(token, k)]
    net.theta[...] = params[0]
    ws.state[...] = params[1:]
    ws.step = job["t"]
    carried = EpochResult(loss_sum=job["sums"][0], correct=job["sums"][1], weight_sum=job["sums"][2],
                          batches=job["first"])
    result = ws.run_epoch(shard.X, shard.Y, job["lr"], job["shuffle_seed"], job["skip"], resume=carried,
                          sample_weight=shard.SW, dropout_seed=job["dropout_seed"], stop=job["stop"])
    out = np.empty_like(params)
    out[0], out[1:] = net.theta, ws.state
    return out, result


def _forget(token):
    """On a worker: drop the run's networks and buffers."""
    for key in [key for key in _LOCAL if key[0] == token]:
        del _LOCAL[key]


# --------------------------------------------------------------------------
# On the driver
# --------------------------------------------------------------------------

@contextlib.contextmanager
def _connected(client, scheduler, n_workers, timeout):
    """The given client; or one to the scheduler's address; or a new LocalCluster's (closed at the end)."""
    distributed = _dask.import_distributed("data-parallel training")
    if client is not None:
        yield client
        return
    if scheduler is not None:
        with _dask.connect(distributed, scheduler, timeout) as own:
            yield own
        return
    with _dask.local_client(distributed, n_workers or DEFAULT_WORKERS) as own:
        yield own


def _workers(client, n_workers, timeout):
    """The addresses of the workers to use: the first n_workers (or all), in a fixed (sorted) order."""
    try:
        client.wait_for_workers(n_workers or 1, timeout=timeout)
    except TimeoutError:
        have = len(client.scheduler_info(n_workers=-1)["workers"])
        if n_workers is None:
            raise TimeoutError(f"the cluster must have a worker; waited {timeout:g} s, got none.") from None
        raise TimeoutError(f"n_workers must be at most the cluster's workers; waited {timeout:g} s for "
                           f"{n_workers}, got {have}.") from None
    addresses = sorted(client.scheduler_info(n_workers=-1)["workers"])
    return addresses[:n_workers] if n_workers else addresses


def _nonzero_weights(SW, k, where):
    if SW is not None and not SW.any():
        raise ValueError(f"sample_weight must not be all zero on a worker's shard, got all zeros on shard {k} "
                         f"({where}).")


def _shards(X, Y, SW, n, batch_size):
    """Row i to shard i mod n (contiguous copies): each shard a spread of the whole data."""
    if X.shape[0] < n:
        raise ValueError(f"X must have at least one row per worker ({n} workers), got {X.shape[0]} rows.")
    out = []
    for k in range(n):
        rows = slice(k, None, n)
        Xk, Yk = np.ascontiguousarray(X[rows]), np.ascontiguousarray(Y[rows])
        SWk = None if SW is None else np.ascontiguousarray(SW[rows])
        _nonzero_weights(SWk, k, f"rows {k}::{n}")
        out.append(Shard(Xk, Yk, SWk, min(batch_size, Xk.shape[0])))
    return out


def _place(client, addresses, shards):
    """Each Shard sent to its worker once: [(future, rows, batch size)]."""
    # (in lists: scatter would take a dict's or a dataclass's fields apart)
    return [(client.scatter([s], workers=[a], hash=False)[0], s.X.shape[0], s.batch_size)
            for s, a in zip(shards, addresses)]


def _make_shard(meta, xs, ys, sws, batch_size, k):
    """On a worker: its blocks of a dask array joined and checked as fit checks its arrays."""
    n_in, n_out, loss, dtype = meta
    X, _ = check_inputs(np.concatenate(xs), n_in, dtype)
    Y = check_targets(np.concatenate(ys), loss, n_out, X.shape[0], dtype)
    SW = check_sample_weight(np.concatenate(sws), X.shape[0], dtype) if sws else None
    _nonzero_weights(SW, k, "its blocks of rows")
    return Shard(X, Y, SW, min(batch_size, X.shape[0]))


def _place_dask(client, addresses, net, X, Y, SW, batch_size):
    """Dask arrays: row block b to worker b mod n, computed there and joined there: [(future, rows, batch size)]."""
    distributed = _dask.import_distributed("data-parallel training")
    n = len(addresses)
    xb, yb = X.to_delayed().ravel(), Y.to_delayed().ravel()
    sb = SW.to_delayed().ravel() if SW is not None else []
    if len(xb) < n:
        raise ValueError(f"X must have at least one block of rows per worker ({n} workers), got {len(xb)} blocks; "
                         "rechunk it along the rows.")
    meta = (net.layer_sizes[0], net.layer_sizes[-1], net.loss, net.dtype)
    placed = []
    for k, a in enumerate(addresses):
        blocks = client.compute([*xb[k::n], *yb[k::n], *sb[k::n]], workers=[a], allow_other_workers=False)
        m = len(xb[k::n])
        shard = client.submit(_make_shard, meta, blocks[:m], blocks[m:2 * m], blocks[2 * m:], batch_size, k,
                              workers=[a], allow_other_workers=False, pure=False)
        rows = int(sum(X.chunks[0][k::n]))
        placed.append((shard, rows, min(batch_size, rows)))
    distributed.wait([shard for shard, _, _ in placed])
    for shard, _, _ in placed:
        if shard.status == "error":
            shard.result()  # raises the worker's error: a bad value in a block, say
    return placed


def _check_dask(net, X, Y, SW):
    """The shapes of dask-array data (the values are checked on the workers); rechunked to row blocks."""
    import dask.array as da
    if X.ndim != 2 or X.shape[1] != net.layer_sizes[0]:
        raise ValueError(f"X must have shape (n_samples, {net.layer_sizes[0]}), got {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError("X must have known chunk sizes (call X.compute_chunk_sizes()), got unknown row counts.")
    X = X.rechunk({1: -1})
    out = []
    for name, a in (("Y", Y), ("sample_weight", SW)):
        if a is None:
            out.append(None)
            continue
        a = da.asarray(a)
        if a.ndim not in (1, 2) or a.shape[0] != X.shape[0]:
            raise ValueError(f"{name} must have {X.shape[0]} rows to match X, got shape {a.shape}.")
        out.append(a.rechunk({0: X.chunks[0], **({1: -1} if a.ndim == 2 else {})}))
    return X, out[0], out[1]


class _Run:
    """One run of fit_data_parallel on a client: the shards on the workers, the global state, the rounds."""

    def __init__(self, client, addresses, net, placed, opts):
        self.client, self.addresses, self.net, self.opts = client, addresses, net, opts
        self.optimizer = optimizers.get_optimizer(opts["optimizer"], opts)
        self.token = uuid.uuid4().hex
        self.shards = [shard for shard, _, _ in placed]  # futures of the Shards, each on its worker
        self.n_batches = [-(-rows // batch_size) for _, rows, batch_size in placed]
        # theta in row 0, the optimizer state below: the one array sent each round
        self.params = np.zeros((1 + self.optimizer.n_state, net._n_params), dtype=net.dtype)
        self.params[0] = net.theta
        self.t = 0  # optimizer steps (Adam's t), as fit's Workspace.step
        self.inline = self.params.nbytes <= INLINE_BYTES
        self.history = None  # fit_data_parallel's, handed to a DivergenceError
        # sent once: the network's description (in a list: scatter would take a dict's keys as Dask keys)
        self.spec = client.scatter([{"arrays": net._to_arrays(), "optimizer": self.optimizer}], broadcast=True,
                                   workers=addresses, hash=False)[0]

    def round(self, jobs):
        """Send the parameters, run one job per worker, average what comes back; returns the results."""
        client = self.client
        params = self.params if self.inline else client.scatter(self.params, broadcast=True,
                                                                  workers=self.addresses, hash=False)
        futures = [client.submit(_local_round, self.token, k, self.spec, self.shards[k], params, job,
                                 workers=[address], allow_other_workers=False, pure=False)
                   for k, (address, job) in enumerate(zip(self.addresses, jobs))]
        outs = client.gather(futures)
        results = [result for _, result in outs]
        if any(result.status != K.OK for result in results):
            return results  # the caller raises; the parameters stay those of the last average
        rows = np.array([result.samples for result in results], dtype=np.float64)
        if not rows.any():  # no worker had a mini-batch left (only a benchmark of the round trip asks this)
            return results
        p = rows / rows.sum()  # n_k / sum n; exactly 1.0 for one worker, 0.5 for two equal shards
        avg = None
        for (out, _), pk in zip(outs, p):
            if pk > 0:  # a worker whose shard had no mini-batch left in this round is left out
                avg = pk * out if avg is None else avg + pk * out
        self.params[...] = avg
        self.t += max(result.steps for result in results)
        return results

    def close(self):
        """Drop the run's state on the workers (the shards go with their futures)."""
        try:
            self.client.run(_forget, self.token, workers=self.addresses)
        finally:
            self.shards = self.spec = None

    def epoch(self, epoch, rng, lr):
        """One epoch in rounds of sync_every steps (one round without); returns the summed EpochResult."""
        opts, net, n = self.opts, self.net, len(self.addresses)
        seeds = []
        for _ in range(n):  # drawn as fit draws them, so one worker shuffles as fit does
            shuffle_seed = int(rng.integers(0, 2**31 - 1)) if opts["shuffle"] else -1
            seeds.append((shuffle_seed, int(rng.integers(0, 2**31 - 1)) if any(net.dropout) else -1))
        span = opts["sync_every"] or max(self.n_batches)
        sums = [(0.0, 0.0, 0.0)] * n
        total = EpochResult()
        for first in range(0, max(self.n_batches), span):
            jobs = [dict(first=first, stop=first + span, lr=lr, shuffle_seed=shuffle_seed, dropout_seed=dropout_seed,
                         skip=opts["on_nonfinite"] == "skip", t=self.t, sums=sums[k])
                    for k, (shuffle_seed, dropout_seed) in enumerate(seeds)]
            results = self.round(jobs)
            for k, result in enumerate(results):
                if result.status != K.OK:
                    raise DivergenceError(
                        f"training diverged on worker {k} ({self.addresses[k]}) in epoch {epoch}: a non-finite "
                        "loss, gradient or step. The network keeps the parameters of the last average. Try a "
                        f"smaller learning_rate (got {lr:g}), or on_nonfinite='skip'.", epoch=epoch,
                        step=result.steps + result.skipped + 1, history=self.history)
            sums = [(r.loss_sum, r.correct, r.weight_sum) for r in results]
            total.steps += sum(r.steps for r in results)
            total.skipped += sum(r.skipped for r in results)
            total.samples += sum(r.samples for r in results)
            total.batches += 1  # here: rounds, i.e. averages
        total.loss_sum, total.correct, total.weight_sum = (sum(s[i] for s in sums) for i in range(3))
        if total.steps == 0:
            raise DivergenceError(f"training diverged: every mini-batch of epoch {epoch} was skipped "
                                  f"(on_nonfinite='skip'). Try a smaller learning_rate (got {lr:g}).",
                                  epoch=epoch, step=total.skipped, history=self.history)
        return total


def _check(net, X, Y, opts):
    """Validate fit_data_parallel's arguments (fit's rules); returns X, Y, sample weights, options, validation data."""
    from .mlp import MLP
    if not isinstance(net, MLP):
        raise TypeError(f"net must be a backprop_numba.MLP, got {type(net).__name__}.")
    check_theta(net.theta, net._n_params, net.dtype)
    if opts["client"] is not None and opts["scheduler"] is not None:
        raise ValueError(f"scheduler must be None when client is given, got {opts['scheduler']!r}.")
    if opts["scheduler"] is not None and not isinstance(opts["scheduler"], str):
        raise TypeError(f"scheduler must be an address string such as 'tcp://host:8786', got "
                        f"{type(opts['scheduler']).__name__}.")
    opts = check_params(DP_PARAMS, opts)
    opts.update(check_params(OPTIMIZER_PARAMS, {k: opts[k] for k in OPTIMIZER_PARAMS if k in opts}))
    optimizers.get_optimizer(opts["optimizer"], opts)  # a bad name fails here, before any cluster starts
    schedules.get_schedule(opts["lr_schedule"])
    if _is_dask(X):
        X, Y, SW = _check_dask(net, X, Y, opts["sample_weight"])
    else:
        X, _ = check_inputs(X, net.layer_sizes[0], net.dtype)
        Y = check_targets(Y, net.loss, net.layer_sizes[-1], X.shape[0], net.dtype)
        SW = opts["sample_weight"]
        SW = None if SW is None else check_sample_weight(SW, X.shape[0], net.dtype)
    val = opts["validation_data"]
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            raise TypeError(f"validation_data must be a tuple (X_val, Y_val), got {type(val).__name__}.")
        Xv, _ = check_inputs(val[0], net.layer_sizes[0], net.dtype, name="validation X")
        val = (Xv, check_targets(val[1], net.loss, net.layer_sizes[-1], Xv.shape[0], net.dtype, name="validation Y"))
    return X, Y, SW, opts, val


def fit_data_parallel(net, X, Y, *, client=None, scheduler=None, n_workers=None, sync_every=None, epochs=10,
                      batch_size=32, learning_rate=0.1, optimizer="sgd", shuffle=True, seed=None, sample_weight=None,
                      validation_data=None, lr_schedule=None, on_nonfinite="raise", momentum=0.9, beta1=0.9,
                      beta2=0.999, eps=1e-8, weight_decay=0.0, timeout=30.0):
    """Train ``net`` in place by local SGD on Dask workers with parameter averaging; return the history.

    Parameters
    ----------
    net : MLP, trained in place (one model comes out; ``net.save`` as usual)
    X : array of shape (n_samples, n[0]), or a dask array (blocks of rows
        dealt to the workers; Y and sample_weight may then be dask arrays too)
    Y : targets (see ``MLP.fit``)
    client : distributed.Client, optional; its workers are used, and it stays open
    scheduler : str, optional; a scheduler's address ("tcp://host:8786") to
        connect to (for ``timeout`` seconds at most) instead of a client
    n_workers : int >= 1, optional; how many workers (and shards): with
        neither client nor scheduler, the size of the LocalCluster started
        (default DEFAULT_WORKERS); otherwise the first n_workers of the
        cluster's (waited for up to ``timeout``), default all of them
    sync_every : int >= 1 or None (default); average every that many
        mini-batch steps of each worker, and always at the end of an epoch.
        None averages once per epoch.
    epochs, batch_size, learning_rate, optimizer, shuffle, seed,
    sample_weight, lr_schedule, on_nonfinite, momentum, beta1, beta2, eps,
    weight_decay : as in ``MLP.fit``; batch_size is per worker (capped at
        its shard's rows), and the schedule's rate changes per epoch.
    validation_data : (X_val, Y_val), optional; evaluated on the driver
        after each epoch's average
    timeout : float > 0, seconds to wait for the scheduler and its workers

    Returns
    -------
    history : ``training.History`` as ``MLP.fit``'s ("loss", "accuracy" for
        classification: means over all workers' mini-batches, weighted by
        samples; "val_loss", "val_accuracy", "lr", "seconds"), plus "syncs":
        the averages in each epoch.

    Raises
    ------
    DivergenceError when a worker meets a non-finite loss, gradient or step
    (the network keeps the last average); TimeoutError when the scheduler
    or the workers do not answer; ImportError without Dask.

    See the module docstring for what is averaged and what it costs.
    """
    opts = dict(locals())
    del opts["net"], opts["X"], opts["Y"]
    X, Y, SW, opts, val = _check(net, X, Y, opts)
    schedule = schedules.get_schedule(opts["lr_schedule"])
    rng = net._rng if opts["seed"] is None else np.random.default_rng(opts["seed"])
    history = History(net.loss in losses.CLASSIFICATION, val is not None, opts["on_nonfinite"] == "skip",
                      opts["lr_schedule"] is not None)
    history["syncs"] = []
    with _connected(client, scheduler, opts["n_workers"], opts["timeout"]) as c:
        addresses = _workers(c, opts["n_workers"], opts["timeout"])
        if _is_dask(X):
            placed = _place_dask(c, addresses, net, X, Y, SW, opts["batch_size"])
        else:
            placed = _place(c, addresses, _shards(X, Y, SW, len(addresses), opts["batch_size"]))
        run = _Run(c, addresses, net, placed, opts)
        run.history = history
        try:
            for epoch in range(1, opts["epochs"] + 1):
                started = time.perf_counter()
                lr = check_schedule_rate(schedule, opts["learning_rate"], epoch, opts["epochs"])
                try:
                    result = run.epoch(epoch, rng, lr)
                finally:  # the last average, also when a worker diverged
                    net.theta[...] = run.params[0]
                _record(history, net, result, lr, val)
                history["seconds"].append(time.perf_counter() - started)
        finally:
            run.close()
    return history


def _record(history, net, result, lr, val):
    """One epoch's entries, as fit writes them."""
    record_epoch(history, net, result, lr)
    history["syncs"].append(result.batches)
    if val is not None:
        history["val_loss"].append(net._loss_value_checked(*val))
        if "val_accuracy" in history:
            history["val_accuracy"].append(_accuracy(net._forward_checked(val[0]), val[1], net.loss))
