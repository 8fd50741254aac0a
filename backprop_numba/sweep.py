"""Hyper-parameter sweeps on Dask: every point of a grid is one ``train`` run, one Dask task.

    backprop-numba sweep --config sweep.toml --out runs/sweep              # a LocalCluster
    backprop-numba sweep --config sweep.toml --out runs/sweep --scheduler tcp://HOST:8786

``sweep.toml`` holds the fixed options under ``[train]`` and, under ``[grid]``, a
list of values for each option to vary (the keys are ``train``'s options, as in
``train --config``).  From Python, with a ``distributed.Client``::

    rows = sweep({"layers": ["64,32,10", "64,64,10"], "lr": [0.01, 0.003]},
                 {"dataset": "digits", "epochs": 20, "seed": 1}, out="runs/sweep", client=client)

A trial is ``train`` itself: its options go through the command line's parser
and config checks (cli.py), then its steps (``cli._train_run``), on a worker,
into a temporary folder whose files come back to the caller as bytes (so a
cluster needs no shared file system; the data must be readable on the
workers).  ``--out DIR`` then holds ``trials/NNN/`` (what ``train --out``
writes), ``results.csv`` (a row per trial), ``best/`` (the best trial's files)
and ``sweep.png``.  A trial that raises is a row with status ``failed`` and its
error, and the sweep goes on.
"""

import contextlib
import csv
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

from . import _dask, cli

# The files of a trial: those `train --out` writes.
TRIAL_FILES = ("model.npz", "metrics.json", "loss.png")
# The best trial is the one with the best metric on the validation split (never the test split, which
# stays an unbiased estimate): classification the highest accuracy (ties: the lower loss), regression the
# lowest mean squared error in the target's units (comparable across losses, unlike the loss itself).
RANK_BY = {"classification": "val_accuracy", "regression": "val_mse"}
# Options a sweep sets itself, or cannot honour, with the reason given to whoever sets them.
NOT_IN_A_SWEEP = {"out": "the sweep gives each trial its folder, --out DIR/trials/NNN",
                  "resume": "every trial starts afresh",
                  "checkpoint_every": "a trial's checkpoints are not kept"}
GRID_EXAMPLE = 'lr = [0.01, 0.003] or layers = ["64,32,10", "64,64,10"]'


class Trials:
    """The checked options of a sweep: ``fixed`` ({dest: value}), ``axes`` ({key: (dest, values)}, key as given)."""

    def __init__(self, grid, train=None, where="sweep"):
        parser = cli.build_parser().train_parser  # the options, checks and conversions of `train`
        if not isinstance(grid, dict) or not grid:
            raise cli.UsageError(f"{where}: the grid is empty; give [grid] at least one option with a list of "
                                 f"values to try, e.g. {GRID_EXAMPLE}")
        self.fixed = cli._config_values(parser, dict(train or {}), f"{where} [train]")
        self.axes = {}
        for key, values in grid.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise cli.UsageError(f"{where} [grid]: option {key!r} must be a non-empty list of values to try, "
                                     f"e.g. {GRID_EXAMPLE}, got {values!r}")
            checked = [cli._config_values(parser, {key: value}, f"{where} [grid]") for value in values]
            dest = next(iter(checked[0]))
            self.axes[key] = (dest, [c[dest] for c in checked])
        self._check_together(where)

    def _check_together(self, where):
        """What no single value shows: an option given twice, one a sweep cannot take, missing data or sizes."""
        given = {dest: f"[train] {cli._option(dest)[2:]!r}" for dest in self.fixed}
        for key, (dest, _) in self.axes.items():
            if dest in given:
                raise cli.UsageError(f"{where}: [grid] {key!r} is the same option as {given[dest]}; give it once")
            given[dest] = f"[grid] {key!r}"
        for dest, why in NOT_IN_A_SWEEP.items():
            if dest in given:
                raise cli.UsageError(f"{where}: leave out {given[dest]}: {why}")
        if ("dataset" in given) == ("data" in given):
            raise cli.UsageError(f'{where}: give the data with one of dataset (e.g. "digits") or data (a file)')
        if ("layers" in given) == ("hidden" in given):
            raise cli.UsageError(f'{where}: give the network with one of layers (e.g. "64,32,10") or hidden')
        fractions = [v for dest, values in self.axes.values() if dest == "validation_fraction" for v in values]
        if 0.0 in [self.fixed.get("validation_fraction"), *fractions]:
            raise cli.UsageError(f"{where}: validation-fraction 0 leaves no validation split, and a sweep "
                                 "picks its best trial on the validation split")

    def points(self):
        """Each trial's settings as {key: value}: the cartesian product, the first key varying slowest."""
        keys = list(self.axes)
        return [dict(zip(keys, values)) for values in itertools.product(*(self.axes[k][1] for k in keys))]

    def options(self, point):
        """The `train` options ({dest: value}) of one trial."""
        return {**self.fixed, **{self.axes[key][0]: value for key, value in point.items()}}


# -- on a worker ------------------------------------------------------------------------------

def run_trial(options):
    """One `train` run with options ({dest: value}) in a temporary folder; returns its metrics and files.

    Never raises: an error is returned as {"status": "failed", "error": ..., "traceback": ...}, so
    that the sweep records it and goes on."""
    started = time.perf_counter()
    result = {"worker": _worker()}
    try:
        with tempfile.TemporaryDirectory(prefix="backprop-numba-trial-") as tmp:
            parser = cli.build_parser()
            parser.train_parser.set_defaults(**options, out=tmp, quiet=True)
            r = cli._train_run(parser.parse_args(["train"]), explicit=set(options))
            result.update(status="ok", **_validation_metrics(r))
            result["files"] = {}
            for name in TRIAL_FILES:
                if os.path.isfile(os.path.join(tmp, name)):  # loss.png needs matplotlib
                    with open(os.path.join(tmp, name), "rb") as f:
                        result["files"][name] = f.read()
    except Exception as exc:  # the trial's failure is a result; the sweep goes on
        result.update(status="failed", error=cli._one_line(exc), traceback=traceback.format_exc())
    result["seconds"] = time.perf_counter() - started
    return result


def _validation_metrics(r):
    """Metrics of the trained network on the validation split (unweighted), and on the test split."""
    Xv, yv = r.validation[0], r.validation[1]
    y = r.data.y[r.val_idx] if r.classify else yv  # class indices, or the scaled targets
    val = cli._metrics(r.net, Xv, y, r.data.task, r.data.classes, y_scale=None if r.classify else r.y_scale)
    with open(os.path.join(r.out, "metrics.json")) as f:
        metrics = json.load(f)
    test = metrics["test"] or {}
    kept = ("loss", "accuracy") if r.classify else ("loss", "mse", "mae")
    return {**{f"val_{k}": val[k] for k in kept}, **{f"test_{k}": test[k] for k in kept if k in test},
            "epochs": metrics["epochs_run"]}


def _worker():
    """The address of the Dask worker running this task ("" outside one)."""
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return ""


# -- on the caller ------------------------------------------------------------------------------

def sweep(grid, train=None, *, out, client=None, workers=None, scheduler=None, connect_timeout=10.0,
          progress=True, where="sweep"):
    """Train every point of ``grid`` over the fixed ``train`` options, one Dask task per trial.

    Parameters
    ----------
    grid : dict of {option: list}
        The values to try for each option (named like ``train``'s long options or its TOML keys:
        ``lr``, ``learning-rate``, ``batch_size``...); the trials are their cartesian product.
    train : dict of {option: value}, optional
        The options every trial shares (``dataset`` or ``data``, ``epochs``, ``seed``...).
    out : str
        The folder for ``trials/NNN/``, ``results.csv``, ``best/`` and ``sweep.png``; it must not
        hold a sweep already.
    client : distributed.Client, optional
        Where to run (left open).  Without it: a client of ``scheduler`` (an address), or of a
        ``LocalCluster`` of ``workers`` processes (default: one per trial, at most one per core), one
        thread each; both are closed at the end.
    connect_timeout : float
        Seconds to wait for ``scheduler``.
    progress : bool
        A line per finished trial on stderr, and a progress bar when stderr is a terminal.
    where : str
        What the messages name as the options' source (the command gives its config file).

    Returns
    -------
    rows : list of dict
        A row per trial, in trial order, as in ``results.csv``: ``trial``, ``status`` ("ok" or "failed"),
        the grid's settings, ``val_*`` and ``test_*`` metrics, ``epochs``, ``seconds`` (the trial on its
        worker), ``worker``, ``error``, ``best`` (True for the trial copied to ``best/``).

    Raises
    ------
    ValueError
        A bad grid or option (``cli.UsageError``), before anything runs.
    TimeoutError (an OSError)
        A scheduler that cannot be reached, or has no worker, within ``connect_timeout``.
    """
    trials = Trials(grid, train, where)
    points = trials.points()
    _check_out(out)
    with _connect(client, workers, scheduler, connect_timeout, len(points)) as c:
        os.makedirs(out, exist_ok=True)  # only now: a sweep that cannot start leaves nothing behind
        futures = {c.submit(run_trial, trials.options(p), pure=False, key=f"backprop-numba-trial-{i:03d}"): i
                   for i, p in enumerate(points)}
        rows = [None] * len(points)
        try:
            for done, (i, result) in enumerate(_as_completed(futures, progress), 1):
                rows[i] = _record(out, i, points[i], result)
                if progress:
                    _say(_trial_line(rows[i], done, len(points), list(trials.axes)))
        finally:  # also after Ctrl-C: no trial left running on a client that stays open, and the
            c.cancel(list(futures))  # trials that finished are in results.csv and best/
            _finish(out, [row for row in rows if row is not None], list(trials.axes))
    return rows


@contextlib.contextmanager
def _connect(client, workers, scheduler, timeout, n_trials):
    """The client to run on: the caller's (left open), or one of our making (always closed)."""
    if sum(x is not None for x in (client, workers, scheduler)) > 1:
        raise cli.UsageError("give one of client, workers and scheduler")
    if client is not None:
        yield client
        return
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise cli.UsageError(f"workers must be an integer >= 1, got {workers!r}")
    distributed = _dask.import_distributed("a sweep")
    if scheduler is not None:
        with _dask.connect(distributed, scheduler, timeout) as c:
            try:  # a scheduler without workers would leave the trials waiting for ever
                c.wait_for_workers(1, timeout=timeout)
            except Exception as exc:
                raise TimeoutError(f"the Dask scheduler at {scheduler} has no worker after {timeout:g} s "
                                   f"({cli._one_line(exc)}); start one with `dask worker {scheduler}`") from None
            yield c
        return
    n = workers if workers is not None else max(1, min(n_trials, os.cpu_count() or 1))
    with _dask.local_client(distributed, n) as c:
        yield c


def _as_completed(futures, progress):
    """(trial index, result) as the trials finish, with a progress bar on a terminal."""
    from distributed import as_completed
    bar = None
    if progress and sys.stderr.isatty():
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(futures), desc="sweep", unit="trial", file=sys.stderr)
        except ImportError:
            pass
    try:
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as exc:  # the task itself was lost (a worker died: KilledWorker), not the trial
                result = {"status": "failed", "error": f"{type(exc).__name__}: {cli._one_line(exc)}",
                          "worker": "", "seconds": None}
            future.release()
            if bar is not None:
                bar.update()
            yield futures[future], result
    finally:
        if bar is not None:
            bar.close()


def _say(line):
    try:
        from tqdm import tqdm
        tqdm.write(line, file=sys.stderr)  # above a bar, if one is shown
    except ImportError:
        print(line, file=sys.stderr)


# -- outputs ------------------------------------------------------------------------------------

METRIC_COLUMNS = ("val_loss", "val_accuracy", "val_mse", "val_mae", "test_loss", "test_accuracy", "test_mse",
                  "test_mae", "epochs")


def _check_out(out):
    """Refuse a folder that is a file or holds a sweep (its trials would mix with ours)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise cli.UsageError(f"--out must be a folder, got {out!r}, which is an existing file")
    if os.path.exists(os.path.join(out, "results.csv")) or os.path.exists(os.path.join(out, "trials")):
        raise cli.UsageError(f"--out {out} already holds a sweep (results.csv, trials/); give a new folder or "
                             "remove that one")


def _trial_dir(out, i):
    return os.path.join(out, "trials", f"{i:03d}")


def _record(out, i, point, result):
    """Write one trial's files under out/trials/NNN (error.txt for a failed one); return its row."""
    folder = _trial_dir(out, i)
    os.makedirs(folder, exist_ok=True)
    for name, data in result.get("files", {}).items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(_relocated(data, folder) if name == "metrics.json" else data)
    if result["status"] != "ok":
        with open(os.path.join(folder, "error.txt"), "w") as f:
            f.write(result.get("traceback") or result["error"] + "\n")
    row = {"trial": i, "status": result["status"], **point}
    row.update({k: result[k] for k in METRIC_COLUMNS if k in result})
    row.update(seconds=result["seconds"], worker=result["worker"], error=result.get("error", ""), best=False)
    return row


def _relocated(data, folder):
    """metrics.json as written on the worker, naming the folder its files are in now (not the worker's
    temporary one)."""
    metrics = json.loads(data)
    metrics["config"]["out"] = folder
    metrics["files"] = {k: v and os.path.join(folder, os.path.basename(v)) for k, v in metrics["files"].items()}
    return json.dumps(metrics, indent=2).encode()


def _metric(row):
    """The name of the metric that ranks a finished trial (RANK_BY of its task)."""
    return RANK_BY["classification" if "val_accuracy" in row else "regression"]


def _rank_key(row):
    """Smaller is better."""
    if _metric(row) == "val_accuracy":
        return (-row["val_accuracy"], row["val_loss"])
    return (row[_metric(row)],)


def _best(rows):
    done = [row for row in rows if row["status"] == "ok"]
    return min(done, key=lambda row: (_rank_key(row), row["trial"])) if done else None


def _finish(out, rows, keys):
    """results.csv, best/ (a copy of the best trial's files) and sweep.png."""
    best = _best(rows)
    if best is not None:
        best["best"] = True
        os.makedirs(os.path.join(out, "best"), exist_ok=True)
        for name in TRIAL_FILES:
            source = os.path.join(_trial_dir(out, best["trial"]), name)
            if os.path.isfile(source):
                shutil.copyfile(source, os.path.join(out, "best", name))
    columns = ["trial", "status", *keys, *[c for c in METRIC_COLUMNS if any(c in row for row in rows)],
               "seconds", "worker", "best", "error"]
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
    try:
        _plot(rows, keys, os.path.join(out, "sweep.png"))
    except ImportError:
        print("backprop-numba: note: matplotlib is not installed, no sweep.png "
              "(pip install 'backprop_numba[train]')", file=sys.stderr)


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return value


def _settings(row, keys):
    return ", ".join(f"{key} {_cell(row[key])}" for key in keys)


def _trial_line(row, done, n, keys):
    where = f" on {row['worker']}" if row["worker"] else ""
    head = f"[{done}/{n}] trial {row['trial']:03d} ({_settings(row, keys)})"
    if row["status"] != "ok":
        return f"{head} failed{where}: {row['error']}"
    metric = _metric(row)
    return f"{head} done in {row['seconds']:.1f} s{where}: {metric} {row[metric]:.4f}"


def _plot(rows, keys, path):
    """The validation metric of each trial (a dot per trial, labelled by its settings; failed trials marked)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [row for row in rows if row["status"] == "ok"]
    metric = _metric(done[0]) if done else RANK_BY["classification"]
    fig, ax = plt.subplots(figsize=(7.2, 1.3 + 0.32 * len(rows)), dpi=100)
    y = list(range(len(rows)))[::-1]  # trial 0 at the top
    labels = [f"{row['trial']:03d}: {_settings(row, keys)}" for row in rows]
    for yi, row in zip(y, rows):
        if row["status"] == "ok":
            ax.plot(row[metric], yi, "o", color="C2" if row["best"] else "C0", markersize=8 if row["best"] else 6)
    if done:
        low = min(row[metric] for row in done)
        for yi, row in zip(y, rows):
            if row["status"] != "ok":
                ax.plot(low, yi, "x", color="C3")
                ax.annotate("failed", (low, yi), xytext=(6, -3), textcoords="offset points", color="C3", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"{metric} ({'higher' if metric == 'val_accuracy' else 'lower'} is better)")
    ax.grid(axis="x", alpha=0.3)
    best = next((row for row in rows if row["best"]), None)
    title = f"{len(rows)} trials" + (f", the best {best['trial']:03d}: {metric} {best[metric]:.4f}"
                                     if best else ", every one failed")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the command --------------------------------------------------------------------------------

def cmd_sweep(args):
    """backprop-numba sweep: read --config ([train], [grid]), run the sweep, print a summary; exit status 1
    when every trial failed."""
    config = cli._read_toml(args.config)
    grid = config.get("grid")
    if grid is not None and not isinstance(grid, dict):
        raise cli.UsageError(f"{args.config}: grid must be a table ([grid]) of lists, got {grid!r}")
    train = config["train"] if isinstance(config.get("train"), dict) else {}
    train = {**{k: v for k, v in config.items() if k not in ("train", "grid")}, **train}  # as train --config
    started = time.perf_counter()
    rows = sweep(grid or {}, train, out=args.out, workers=args.workers, scheduler=args.scheduler,
                 connect_timeout=args.connect_timeout, progress=not args.quiet, where=args.config)
    wall = time.perf_counter() - started
    failed = [row for row in rows if row["status"] != "ok"]
    best = next((row for row in rows if row["best"]), None)
    if best is None:
        print(f"backprop-numba: error: every one of the {len(rows)} trials failed (the first: {failed[0]['error']}); "
              f"see {os.path.join(args.out, 'results.csv')}", file=sys.stderr)
        return 1
    if not args.quiet:
        keys = list(grid)
        workers = len({row["worker"] for row in rows if row["worker"]})
        metric = _metric(best)
        test = {k[5:]: best[k] for k in ("test_accuracy", "test_mse") if k in best}
        print(f"sweep of {len(rows)} trials on {workers} worker{'' if workers == 1 else 's'} in {wall:.1f} s: "
              f"{len(rows) - len(failed)} done, {len(failed)} failed")
        print(f"best: trial {best['trial']:03d} ({_settings(best, keys)}): {metric} {best[metric]:.4f}"
              + "".join(f", test {k} {v:.4f}" for k, v in test.items()))
        print(f"wrote {os.path.join(args.out, 'results.csv')}, {os.path.join(args.out, 'best')}/, "
              f"{os.path.join(args.out, 'sweep.png')}, {os.path.join(args.out, 'trials')}/")
    return 0
