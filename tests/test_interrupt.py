"""Ctrl-C (SIGINT) and SIGTERM during training: acted on within a second, between two optimizer steps.

The compiled epoch returns to Python every ~0.1 s of work (``training.CHUNK_SECONDS``);
a signal sets a flag that is checked there.  The network keeps the parameters of
the last finished step, a checkpoint is written when checkpoints are on (in the
middle of the epoch, with where it stopped), and resuming from it gives, bit for
bit, the parameters and losses of an uninterrupted run.  Each case runs in a
child process that signals itself.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import numpy as np
    from backprop_numba import MLP
    from backprop_numba.training import TrainingInterrupted

    sig = getattr(signal, sys.argv[1])
    folder = sys.argv[2]
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12000, 32)), rng.normal(size=(12000, 4))  # epochs of seconds: the signal lands mid-epoch
    opts = dict(epochs=3, batch_size=2, learning_rate=0.001, optimizer="adam", seed=2, progress=False)

    def net():
        return MLP([32, 256, 256, 4], activation="tanh", seed=1)

    net().fit(X[:8], Y[:8], **dict(opts, epochs=1))  # compile outside the timing
    full = net()
    started = time.perf_counter()
    h_full = full.fit(X, Y, **opts)
    epoch_time = (time.perf_counter() - started) / 3
    delay = 1.5 * epoch_time                      # in the middle of epoch 2
    part = net()
    path = os.path.join(folder, "ckpt.npz")
    timer = threading.Timer(delay, lambda: os.kill(os.getpid(), sig))
    t0 = time.perf_counter()
    timer.start()
    out = {"epoch_time": epoch_time}
    try:
        part.fit(X, Y, checkpoint_every=1, checkpoint_path=path, **opts)
        out["interrupted"] = False
    except TrainingInterrupted as exc:
        out.update(interrupted=True, latency=time.perf_counter() - t0 - delay, epoch=exc.epoch, batch=exc.batch,
                   checkpoint=exc.checkpoint, message=str(exc), finite=bool(np.isfinite(part.theta).all()))
    rest = net()
    h_rest = rest.fit(X, Y, resume_from=path, **opts)
    out["same_theta"] = rest.theta.tobytes() == full.theta.tobytes()
    out["same_loss"] = h_rest["loss"] == h_full["loss"]
    print(json.dumps(out))
""")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_mid_epoch_stops_fast_checkpoints_and_resumes_exactly(sig, tmp_path):
    proc = subprocess.run([sys.executable, "-c", CHILD, sig, str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["interrupted"], out
    assert out["latency"] < 1.0, out              # acted on within a second
    assert out["epoch"] in (2, 3) and out["batch"] > 0, out   # in the middle of an epoch
    assert out["finite"] and out["checkpoint"].endswith("ckpt.npz")
    name = "Ctrl-C" if sig == "SIGINT" else "SIGTERM"
    assert f"training interrupted ({name}) in epoch {out['epoch']} after {out['batch']} of 6000 mini-batches" \
        in out["message"]
    assert out["same_theta"] and out["same_loss"], out


def test_no_checkpoint_means_none_written_and_the_message_says_so(tmp_path):
    # as the test process found it: SIG_IGN when it runs as a background job (nohup, `cmd &` in a script)
    before = signal.getsignal(signal.SIGINT)
    code = textwrap.dedent("""
        import os, signal, threading
        import numpy as np
        from backprop_numba import MLP
        from backprop_numba.training import TrainingInterrupted
        X = np.random.default_rng(0).normal(size=(20000, 16))
        net = MLP([16, 64, 1], seed=0)
        net.fit(X[:10], X[:10, :1], epochs=1, progress=False)
        threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            net.fit(X, X[:, :1], epochs=50, batch_size=1, learning_rate=0.001, progress=False)
        except TrainingInterrupted as exc:
            print(exc.checkpoint, "|", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("None |") and "no checkpoint: checkpoint_every is off" in proc.stdout
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGINT) is before  # this process untouched


def test_cli_ctrl_c_mid_epoch_then_resume_gives_the_uninterrupted_model(tmp_path):
    """The issue's case, through the command line: SIGINT to a training subprocess in the middle of an
    epoch exits within a second with the resume command; resuming ends with the uninterrupted model."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 32))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + 2 * (X[:, 2] > 0)
    np.savez(tmp_path / "data.npz", X=X, target=y)
    common = ["--data", str(tmp_path / "data.npz"), "--target", "target", "--hidden", "512,512", "--epochs", "3",
              "--batch-size", "1", "--lr", "0.001", "--schedule", "constant", "--quiet", "--seed", "1"]
    cmd = [sys.executable, "-m", "backprop_numba", "train"]
    full = subprocess.run(cmd + common + ["--out", str(tmp_path / "full")], capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr
    out = tmp_path / "part"
    proc = subprocess.Popen(cmd + common + ["--out", str(out), "--checkpoint-every", "1"],
                            stderr=subprocess.PIPE, text=True)
    checkpoint = out / "checkpoint.npz"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.time() - sent < 1.5, err          # stopped within a second (plus the interpreter's exit)
    assert proc.returncode == 130, err
    assert "training interrupted (Ctrl-C) in epoch 2 after" in err  # mid-epoch: epochs take seconds here
    assert f"resume with: backprop-numba train --resume {checkpoint}" in err
    resumed = subprocess.run(cmd + ["--resume", str(checkpoint), "--quiet"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = np.load(tmp_path / "full" / "model.npz")["theta"]
    b = np.load(out / "model.npz")["theta"]
    assert a.tobytes() == b.tobytes()
