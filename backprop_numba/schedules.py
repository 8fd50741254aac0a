"""Learning-rate schedules: the learning rate of each epoch, computed in Python.

A schedule maps the epoch index ``e = 0, 1, ...`` (epochs completed so far)
to the learning rate used for every step of that epoch; ``MLP.fit`` computes
it once per epoch and hands it to the compiled epoch, so there is no Python
work per step.  The formulas are the closed forms of PyTorch's per-epoch
schedulers (``torch.optim.lr_scheduler``), ``eta_0`` being ``learning_rate``:

=============  ==============================================  ===================
name           eta(e)                                          PyTorch
=============  ==============================================  ===================
constant       eta_0                                           (none)
step           eta_0 * gamma ** (e // step_size)               StepLR
exponential    eta_0 * gamma ** e                              ExponentialLR
cosine         eta_min + (eta_0 - eta_min) (1 + cos(pi e / T)) / 2   CosineAnnealingLR
=============  ==============================================  ===================

For ``cosine``, ``T`` (``t_max``) defaults to the number of epochs of the
``fit`` call, so the rate falls from ``eta_0`` to ``eta_min`` over the run.
"""

import math

from ._validation import check_choice, check_float, check_int

__all__ = ["Constant", "Step", "Exponential", "Cosine", "get_schedule", "NAMES"]


class Schedule:
    """Base class: ``lr(eta_0, epoch, epochs)`` -> the learning rate of epoch ``epoch`` (0-based)."""

    name = "schedule"

    def lr(self, eta_0, epoch, epochs):
        raise NotImplementedError

    def rates(self, eta_0, epochs):
        """The learning rates of epochs 0..epochs-1, as a list."""
        return [self.lr(eta_0, e, epochs) for e in range(epochs)]

    def params(self):
        """The options that define the schedule (stored in checkpoints and metrics)."""
        return {k: v for k, v in vars(self).items()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.params() == other.params()

    __hash__ = None


class Constant(Schedule):
    """eta(e) = eta_0."""

    name = "constant"

    def lr(self, eta_0, epoch, epochs):
        return float(eta_0)


class Step(Schedule):
    """eta(e) = eta_0 * gamma ** (e // step_size)  (PyTorch StepLR)."""

    name = "step"

    def __init__(self, step_size=10, gamma=0.1):
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = check_float("gamma", gamma, low=0.0, low_open=True)

    def lr(self, eta_0, epoch, epochs):
        return float(eta_0) * self.gamma ** (epoch // self.step_size)


class Exponential(Schedule):
    """eta(e) = eta_0 * gamma ** e  (PyTorch ExponentialLR)."""

    name = "exponential"

    def __init__(self, gamma=0.95):
        self.gamma = check_float("gamma", gamma, low=0.0, low_open=True)

    def lr(self, eta_0, epoch, epochs):
        return float(eta_0) * self.gamma ** epoch


class Cosine(Schedule):
    """eta(e) = eta_min + (eta_0 - eta_min) (1 + cos(pi e / t_max)) / 2  (PyTorch CosineAnnealingLR).

    ``t_max`` defaults to the number of epochs of the run.  Past ``t_max`` the
    formula is used as it stands (it rises again, as PyTorch's closed form).
    """

    name = "cosine"

    def __init__(self, t_max=None, eta_min=0.0):
        self.t_max = None if t_max is None else check_int("t_max", t_max, minimum=1)
        self.eta_min = check_float("eta_min", eta_min, low=0.0)

    def lr(self, eta_0, epoch, epochs):
        T = self.t_max if self.t_max is not None else epochs
        return self.eta_min + (float(eta_0) - self.eta_min) * (1.0 + math.cos(math.pi * epoch / T)) / 2.0


NAMES = {cls.name: cls for cls in (Constant, Step, Exponential, Cosine)}


def get_schedule(spec=None, **options):
    """A Schedule from a name (with its options), a Schedule, or None (constant).

    >>> get_schedule("step", step_size=5, gamma=0.5).lr(0.1, 10, 20)
    0.025
    """
    if spec is None:
        spec = "constant"
    if isinstance(spec, Schedule):
        if options:
            raise TypeError("lr_schedule options must be given to the Schedule itself when passing an instance.")
        return spec
    name = check_choice("lr_schedule", spec, NAMES)
    try:
        return NAMES[name](**options)
    except TypeError:
        import inspect
        allowed = sorted(inspect.signature(NAMES[name]).parameters)
        raise TypeError(f"lr_schedule={name!r} options must be among {allowed}, got {sorted(options)}.") from None
