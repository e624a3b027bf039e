"""Problems for the quantized-network optimizers and the training loop (ALGORITHMS §6.6).

* :func:`make_logistic_toy` + :class:`LogisticModel`: binary-weight logistic
  regression, d = 10, n_train 6000, n_test 1000, X ~ U[-1,1]^d, w* = ±1 (or ±0.8)
  with random signs, y ~ Bernoulli(sigmoid(X w*)) [code: aistats2023/537 logistic notebook].
* :func:`make_two_moons` + :class:`MoonsMLP`: 2 -> 3 -> 1 MLP, no bias, ReLU,
  BatchNorm(affine=False, momentum 0.15, eps 1e-4) after *both* linear layers
  (the notebook's ``MLP(..., use_bn=True, learn_bn=False, only_last_bn=False)``),
  BCE-with-logits loss, prediction sign(logit) [code: 2-moons notebook].
* :class:`MnistMLP`: 784 -> H -> 10 ReLU MLP with quantized weights on real MNIST
  (not in the AskewSGD paper; a project addition for a real-data check).

Two-moons data are generated here with NumPy (scikit-learn is not a
dependency).  The construction follows ``sklearn.datasets.make_moons``: n_out =
n//2 points on the upper half circle (cos t, sin t), n_in = n - n_out on
(1 - cos t, 1 - sin t - 1/2), t = linspace(0, pi, .), Gaussian noise of sd
``noise`` added to both coordinates, label 0 for the outer and 1 for the inner
moon.  Departure: the noise comes from the Generator passed in, so the points
are not bit-identical to sklearn's ``random_state=0`` draw (the geometry and the
noise law are the same); the test set is an independent draw.
:func:`make_two_moons_notebook` restates sklearn's algorithm with a legacy
``RandomState`` so that the notebook's exact dataset (``make_moons(2000, noise=0.1,
random_state=0)`` and ``make_moons(200, noise=0.1, random_state=0)``, standardised
with the training mean and *unbiased* sd, as ``torch.Tensor.std`` does) can be used.
The notebook's test set reuses random_state 0, but with 200 points the shuffle
consumes different draws, so it is not a copy of training points (its nearest-
neighbour distances to the training set match an independent draw's).

Gradients are written by hand (the models are tiny).  All randomness comes from
explicit Generators.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import numpy as np
import numpy.typing as npt

from .base import check_params, check_real

if TYPE_CHECKING:
    from .askewsgd import AskewSGD
    from .binaryconnect import BinaryConnect
    from .proxquant import ProxQuant

__all__ = [
    "NaNGradientError",
    "Dataset",
    "make_logistic_toy",
    "make_two_moons",
    "make_two_moons_notebook",
    "load_mnist_subset",
    "LogisticModel",
    "MoonsMLP",
    "MnistMLP",
    "TrainResult",
    "train",
    "step_lr",
]


class NaNGradientError(FloatingPointError):
    """A non-finite loss or gradient was met.

    Attributes: ``step`` (0-based index of the step whose gradient was not finite)
    and ``partial`` (whatever had been collected: a TrainResult, or the samples
    kept so far for the samplers).
    """

    def __init__(self, step: int, partial: TrainResult | np.ndarray | None, what: str = "gradient"):
        super().__init__(f"non-finite {what} at step {step}; the results collected so far are in .partial")
        self.step = step
        self.partial = partial


class Dataset(NamedTuple):
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _check_pos_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")


def make_logistic_toy(rng: np.random.Generator, *, d: int = 10, n_train: int = 6000, n_test: int = 1000,
                      w_scale: float = 1.0) -> tuple[Dataset, np.ndarray]:
    """Binary-weight logistic toy (§6.6).  Returns (Dataset, w_star).

    X ~ U[-1,1]^d, w* = w_scale * (random signs), y ~ Bernoulli(sigmoid(X w*)), y in {0., 1.}.
    Randomness (in order): d signs, n_train*d + n_test*d uniforms, n_train + n_test uniforms.
    """
    _check_rng(rng)
    for name, v in (("d", d), ("n_train", n_train), ("n_test", n_test)):
        _check_pos_int(name, v)
    check_real("w_scale", w_scale, lo=0.0, lo_open=True)
    w_star = w_scale * np.where(rng.random(d) < 0.5, -1.0, 1.0)
    X = rng.uniform(-1.0, 1.0, size=(n_train + n_test, d))
    p = 1.0 / (1.0 + np.exp(-X @ w_star))
    y = (rng.random(n_train + n_test) < p).astype(np.float64)
    return Dataset(X[:n_train], y[:n_train], X[n_train:], y[n_train:]), w_star


def _moons(n, noise, rng):
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.vstack([np.column_stack([np.cos(t_out), np.sin(t_out)]),
                   np.column_stack([1.0 - np.cos(t_in), 1.0 - np.sin(t_in) - 0.5])])
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    X = X + noise * rng.standard_normal(X.shape)
    perm = rng.permutation(n)
    return X[perm], y[perm]


def make_two_moons(rng: np.random.Generator, *, n_train: int = 2000, n_test: int = 200, noise: float = 0.1,
                   standardise: bool = True) -> Dataset:
    """Two interleaving half circles (sklearn's make_moons geometry), §6.6.

    Standardised with the *training* mean and sd (the notebook standardises).
    Returns float64 X of shape (n, 2) and y in {0., 1.} of shape (n,).
    """
    _check_rng(rng)
    _check_pos_int("n_train", n_train)
    _check_pos_int("n_test", n_test)
    check_real("noise", noise, lo=0.0)
    Xtr, ytr = _moons(n_train, noise, rng)
    Xte, yte = _moons(n_test, noise, rng)
    if standardise:
        mu, sd = Xtr.mean(0), Xtr.std(0)
        Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    return Dataset(Xtr, ytr, Xte, yte)


def _sklearn_moons(n, noise, random_state):
    """sklearn.datasets.make_moons(n, shuffle=True, noise, random_state) restated.

    sklearn's order of operations: outer moon n//2 points, inner moon n - n//2
    points on linspace(0, pi, .); ``RandomState(random_state).shuffle(arange(n))``
    (sklearn.utils.shuffle); then ``normal(scale=noise, size=(n, 2))`` from the
    same RandomState.  Bit-identity with an installed scikit-learn was not
    checked here (scikit-learn is not a dependency).
    """
    rs = np.random.RandomState(random_state)   # local, seeded: no global state is touched
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    X = np.column_stack([np.append(np.cos(t_out), 1.0 - np.cos(t_in)),
                         np.append(np.sin(t_out), 1.0 - np.sin(t_in) - 0.5)])
    y = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    idx = np.arange(n)
    rs.shuffle(idx)
    X, y = X[idx], y[idx]
    return X + rs.normal(scale=noise, size=X.shape), y


def make_two_moons_notebook(*, n_train: int = 2000, n_test: int = 200, noise: float = 0.1,
                            random_state: int = 0) -> Dataset:
    """The two-moons dataset exactly as the AskewSGD notebook builds it (§6.6) [code].

    Training: make_moons(n_train, noise, random_state); test: make_moons(n_test,
    noise, random_state) (the notebook passes the same random_state to both); both
    standardised with the training mean and the *unbiased* training sd (the
    notebook's ``X.std(dim=0)``).  Deterministic: the only randomness is the legacy
    ``numpy.random.RandomState(random_state)`` that sklearn's algorithm uses,
    created locally per call (no Generator can reproduce its stream).
    Returns float64 X of shape (n, 2) and y in {0., 1.} of shape (n,).
    """
    _check_pos_int("n_train", n_train)
    _check_pos_int("n_test", n_test)
    check_real("noise", noise, lo=0.0)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ValueError(f"random_state must be a non-negative integer, got {random_state!r}")
    Xtr, ytr = _sklearn_moons(n_train, noise, int(random_state))
    Xte, yte = _sklearn_moons(n_test, noise, int(random_state))
    mu, sd = Xtr.mean(0), Xtr.std(0, ddof=1)
    return Dataset((Xtr - mu) / sd, ytr, (Xte - mu) / sd, yte)


def load_mnist_subset(path: str | os.PathLike[str], *, n_train: int = 5000, n_test: int = 1000, rng: np.random.Generator | None = None) -> Dataset:
    """MNIST from the npz layout (x_train, y_train, x_test, y_test), scaled to [0, 1], flattened.

    Takes the first n_train / n_test examples, or a random subset if rng is given.
    Labels are int64.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"path does not exist: {str(path)!r}")
    with np.load(path) as f:
        xtr, ytr, xte, yte = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    if not (1 <= n_train <= len(xtr)):
        raise ValueError(f"n_train must be in [1, {len(xtr)}], got {n_train!r}")
    if not (1 <= n_test <= len(xte)):
        raise ValueError(f"n_test must be in [1, {len(xte)}], got {n_test!r}")
    itr = np.arange(n_train) if rng is None else rng.choice(len(xtr), n_train, replace=False)
    ite = np.arange(n_test) if rng is None else rng.choice(len(xte), n_test, replace=False)
    f = lambda x: x.reshape(len(x), -1).astype(np.float64) / 255.0  # noqa: E731
    return Dataset(f(xtr[itr]), ytr[itr].astype(np.int64), f(xte[ite]), yte[ite].astype(np.int64))


# ---------------------------------------------------------------------------
# Models.  Each has init_params(rng), loss_and_grads(params, X, y) (training
# mode; may update internal BN statistics held in a mutable buffer) and
# accuracy(params, X, y) (evaluation mode).


def _bce_logits(z, y):
    loss = np.mean(np.logaddexp(0.0, z) - y * z)
    dz = (1.0 / (1.0 + np.exp(-z)) - y) / z.size
    return loss, dz


class LogisticModel:
    """Logistic regression without bias: p(y=1|x) = sigmoid(x.w).  Params: [w (d,)]."""

    def __init__(self, d: int = 10):
        _check_pos_int("d", d)
        self.d = d

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """torch nn.Linear default: U(-1/sqrt(d), 1/sqrt(d)); consumes d uniforms."""
        b = 1.0 / np.sqrt(self.d)
        return [rng.uniform(-b, b, size=self.d)]

    def loss_and_grads(self, params: Sequence[np.ndarray], X: np.ndarray,
                       y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        z = X @ params[0]
        loss, dz = _bce_logits(z, y)
        return loss, [X.T @ dz]

    def accuracy(self, params: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((X @ params[0] > 0) == (y > 0.5)))


class _BN:
    """BatchNorm1d(affine=False): batch statistics in training, running ones in eval (torch rules)."""

    def __init__(self, n, momentum=0.15, eps=1e-4):
        self.mean = np.zeros(n)
        self.var = np.ones(n)
        self.momentum, self.eps = momentum, eps

    def train_forward(self, h):
        n = h.shape[0]
        mu = h.mean(0)
        var = h.var(0)
        inv = 1.0 / np.sqrt(var + self.eps)
        xhat = (h - mu) * inv
        m = self.momentum
        self.mean = (1 - m) * self.mean + m * mu
        self.var = (1 - m) * self.var + m * var * n / max(n - 1, 1)  # torch keeps the unbiased variance
        return xhat, (xhat, inv)

    @staticmethod
    def backward(dx, cache):
        xhat, inv = cache
        n = dx.shape[0]
        return inv / n * (n * dx - dx.sum(0) - xhat * (dx * xhat).sum(0))

    def eval_forward(self, h):
        return (h - self.mean) / np.sqrt(self.var + self.eps)


class MoonsMLP:
    """2 -> 3 -> 1 MLP, no bias, Linear-BN-ReLU-Linear-BN, BCE with logits (§6.6).

    Params: [W1 (3, 2), W2 (1, 3)].  BN running statistics live in the instance
    (call ``reset()`` between runs; ``train`` does this).
    """

    def __init__(self, hidden: int = 3, bn_momentum: float = 0.15, bn_eps: float = 1e-4):
        _check_pos_int("hidden", hidden)
        check_real("bn_momentum", bn_momentum, lo=0.0, hi=1.0)
        check_real("bn_eps", bn_eps, lo=0.0, lo_open=True)
        self.hidden = hidden
        self.bn_momentum, self.bn_eps = bn_momentum, bn_eps
        self.reset()

    def reset(self) -> None:
        self.bn1 = _BN(self.hidden, self.bn_momentum, self.bn_eps)
        self.bn2 = _BN(1, self.bn_momentum, self.bn_eps)

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """torch nn.Linear default U(-1/sqrt(fan_in), 1/sqrt(fan_in)); W1 then W2."""
        W1 = rng.uniform(-1 / np.sqrt(2), 1 / np.sqrt(2), size=(self.hidden, 2))
        W2 = rng.uniform(-1 / np.sqrt(self.hidden), 1 / np.sqrt(self.hidden), size=(1, self.hidden))
        return [W1, W2]

    def loss_and_grads(self, params: Sequence[np.ndarray], X: np.ndarray,
                       y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        W1, W2 = params
        h = X @ W1.T
        a, c1 = self.bn1.train_forward(h)
        r = np.maximum(a, 0.0)
        z = r @ W2.T
        zn, c2 = self.bn2.train_forward(z)
        loss, dz = _bce_logits(zn[:, 0], y)
        dzn = dz[:, None]
        dz_ = _BN.backward(dzn, c2)
        dW2 = dz_.T @ r
        dr = dz_ @ W2
        da = dr * (a > 0)
        dh = _BN.backward(da, c1)
        dW1 = dh.T @ X
        return loss, [dW1, dW2]

    def recalibrate(self, params: Sequence[np.ndarray], X: np.ndarray) -> None:
        """Set the BN statistics to those of ``X`` at ``params`` (full batch, unbiased var as torch).

        Post-quantization BN recalibration: the running statistics gathered while
        training at latent weights do not match the quantized weights.  Not in the
        published notebook (which evaluates with the training running statistics).
        """
        W1, W2 = params
        n = X.shape[0]
        h = X @ W1.T
        self.bn1.mean, self.bn1.var = h.mean(0), h.var(0) * n / (n - 1)
        r = np.maximum(self.bn1.eval_forward(h), 0.0)
        z = r @ W2.T
        self.bn2.mean, self.bn2.var = z.mean(0), z.var(0) * n / (n - 1)

    def logits(self, params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        W1, W2 = params
        r = np.maximum(self.bn1.eval_forward(X @ W1.T), 0.0)
        return self.bn2.eval_forward(r @ W2.T)[:, 0]

    def accuracy(self, params: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((self.logits(params, X) > 0) == (y > 0.5)))


class MnistMLP:
    """784 -> H -> 10 ReLU MLP without bias, softmax cross-entropy.

    The layer outputs are multiplied by fixed gains 1/sqrt(fan_in) (not trained),
    so the weights themselves are O(1) and can live on a k-bit grid s*{-8..8}
    with one scale for all tensors.  Params: [W1 (H, 784), W2 (10, H)].
    """

    def __init__(self, hidden: int = 64, n_in: int = 784, n_out: int = 10):
        for name, v in (("hidden", hidden), ("n_in", n_in), ("n_out", n_out)):
            _check_pos_int(name, v)
        self.hidden, self.n_in, self.n_out = hidden, n_in, n_out
        self.g1, self.g2 = 1.0 / np.sqrt(n_in), 1.0 / np.sqrt(hidden)

    def init_params(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Uniform U(-sqrt(3), sqrt(3)) (unit variance, gains do the fan-in scaling)."""
        b = np.sqrt(3.0)
        return [rng.uniform(-b, b, size=(self.hidden, self.n_in)), rng.uniform(-b, b, size=(self.n_out, self.hidden))]

    def _forward(self, params, X):
        W1, W2 = params
        h = self.g1 * (X @ W1.T)
        r = np.maximum(h, 0.0)
        return h, r, self.g2 * (r @ W2.T)

    def loss_and_grads(self, params: Sequence[np.ndarray], X: np.ndarray,
                       y: np.ndarray) -> tuple[float, list[np.ndarray]]:
        W1, W2 = params
        h, r, z = self._forward(params, X)
        z = z - z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        n = X.shape[0]
        loss = float(np.mean(lse - z[np.arange(n), y]))
        p = np.exp(z - lse[:, None])
        p[np.arange(n), y] -= 1.0
        dz = p / n
        dW2 = self.g2 * (dz.T @ r)
        dr = self.g2 * (dz @ W2)
        dh = dr * (h > 0)
        dW1 = self.g1 * (dh.T @ X)
        return loss, [dW1, dW2]

    def accuracy(self, params: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(self._forward(params, X)[2], 1) == y))


# ---------------------------------------------------------------------------
# Training loop


class TrainResult(NamedTuple):
    """Outcome of :func:`train`.

    final_params : hard-quantized weights (exactly on the grid) -- None in a
        partial result.
    latent_params : the optimizer's weights at the end.
    losses : training loss per step (float64, shape (n_steps_done,)).
    test_accuracy : quantized-weight test accuracy after each epoch.
    final_accuracy : test accuracy at final_params (NaN in a partial result).
    n_steps : steps completed.
    """

    final_params: list | None
    latent_params: list
    losses: np.ndarray
    test_accuracy: np.ndarray
    final_accuracy: float
    n_steps: int


def step_lr(lr0: float, milestones: Sequence[int] = (), factor: float = 1.0) -> Callable[[int], float]:
    """lr(epoch) = lr0 * factor^(#milestones <= epoch)  (torch MultiStepLR semantics)."""
    check_real("lr0", lr0, lo=0.0, lo_open=True)
    check_real("factor", factor, lo=0.0, lo_open=True)
    if isinstance(milestones, (str, bytes)) or not all(
            isinstance(m, (int, np.integer)) and not isinstance(m, bool) for m in milestones):
        raise TypeError(f"milestones must be a sequence of ints (epochs), got {milestones!r}")
    ms = tuple(milestones)
    return lambda e: lr0 * factor ** sum(1 for m in ms if e >= m)


def train(problem: LogisticModel | MoonsMLP | MnistMLP, optimizer: AskewSGD | BinaryConnect | ProxQuant,
          data: Dataset, *, n_epochs: int, batch_size: int, lr: float | Callable[[int], float],
          rng: np.random.Generator, eps_schedule: Callable[[int], float] | None = None,
          params0: Sequence[npt.ArrayLike] | None = None, bn_recalibrate: bool = False) -> TrainResult:
    """Minibatch training of ``problem`` with a netopt optimizer.

    Per epoch e: eps = eps_schedule(e) (AskewSGD only), lr = lr(e) if callable;
    a permutation of the training set (one ``rng.permutation``) is cut into
    batches (the last partial batch is kept, as torch's DataLoader does); per
    batch: forward weights from ``optimizer.forward_params(state, rng)``, loss and
    gradient at those weights, ``optimizer.step``.  After each epoch the test
    accuracy at the optimizer's hard-quantized weights is recorded.

    bn_recalibrate: before the final evaluation, reset the model's BatchNorm
    statistics to the full training set's at the quantized weights (models with a
    ``recalibrate`` method only; a departure from the notebook, off by default).

    A non-finite loss or gradient raises :class:`NaNGradientError` with the step
    number and a partial :class:`TrainResult` holding everything collected.
    """
    # Every argument is checked before anything (the model's BN statistics, rng) is touched; the lr
    # and eps schedules are pure functions of the epoch, so all their values are checked up front.
    _check_rng(rng)
    _check_pos_int("n_epochs", n_epochs)
    _check_pos_int("batch_size", batch_size)
    if callable(lr):
        lrs = [check_real(f"lr({e}) (the lr schedule's value)", lr(e), lo=0.0, lo_open=True) for e in range(n_epochs)]
    else:
        lrs = [check_real("lr", lr, lo=0.0, lo_open=True)] * n_epochs
    if eps_schedule is not None and not callable(eps_schedule):
        raise TypeError(f"eps_schedule must be a callable epoch -> eps or None, got {eps_schedule!r}")
    eps_fn = eps_schedule if eps_schedule is not None else (lambda e: 1.0)
    epss = [check_real(f"eps_schedule({e})", eps_fn(e), lo=0.0, lo_open=True) for e in range(n_epochs)]
    if params0 is not None:
        params0 = check_params(params0, "params0")
        expected = [np.shape(p) for p in problem.init_params(np.random.default_rng(0))]  # shapes only
        if [p.shape for p in params0] != expected:
            raise ValueError(f"params0 must have the model's shapes {expected}, got {[p.shape for p in params0]}")
    if hasattr(problem, "reset"):
        problem.reset()
    params = problem.init_params(rng) if params0 is None else [np.array(p, dtype=np.float64) for p in params0]
    state = optimizer.init(params)
    X, y = data.X_train, data.y_train
    n = X.shape[0]
    losses, accs = [], []
    step = 0
    for epoch in range(n_epochs):
        eps = epss[epoch]
        lr_e = lrs[epoch]
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            fp = optimizer.forward_params(state, rng)
            loss, grads = problem.loss_and_grads(fp, X[idx], y[idx])
            if not (np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in grads)):
                partial = TrainResult(None, list(state.params), np.asarray(losses), np.asarray(accs), float("nan"), step)
                raise NaNGradientError(step, partial)
            losses.append(float(loss))
            state = optimizer.step(state, grads, lr_e, eps, epoch)
            step += 1
        accs.append(problem.accuracy(optimizer.final_params(state), data.X_test, data.y_test))
    final = optimizer.final_params(state)
    if bn_recalibrate and hasattr(problem, "recalibrate"):
        problem.recalibrate(final, X)
    return TrainResult(final, list(state.params), np.asarray(losses), np.asarray(accs),
                       problem.accuracy(final, data.X_test, data.y_test), step)
