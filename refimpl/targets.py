"""Targets: jitted potential gradients ∇U for the reference samplers.

A target is π(θ) ∝ exp(−U(θ)/T) (ALGORITHMS.md §3.1, §1 notation).  Every target
is a :class:`Target` carrying a small *kernel code* ``(kind, params, mat, labels)``
so that the jitted loops never see Python objects (docs/architecture.md,
"Sampler registry and step kernels").  :func:`grad_into` is the single jitted
gradient that dispatches on ``kind``.

=====  =================  ===================================================================
kind   target             U(θ) and ∇U(θ)
=====  =================  ===================================================================
0      standard Gaussian  U = ‖θ‖²/2;  ∇U = θ  (``"gaussian"``; spec §5.8 setting, §6.1)
1      Gaussian           U = ½(θ−m)ᵀP(θ−m), P = Σ⁻¹;  ∇U = P(θ−m)  (``mat`` = P)
2      two-mode mixture   e^{−U} = w₊e^{−2‖θ−c‖²} + w₋e^{−2‖θ+c‖²}, c = c₀·1 (§6.2; LP-SGHMC
                          §4.1 with w₊ = w₋, c₀ = 1);  ∇U = 4θ − 4c·tanh(4⟨θ,c⟩ + ½log(w₊/w₋))
3      double well        U = h·Σ_j (θ_j² − 1)²;  ∇U_j = 4hθ_j(θ_j² − 1)
4      softmax regression U = −Σ_i log softmax(W x_i)_{y_i} + ‖θ‖²/(2σ²_prior); minibatch
                          estimate (N/n)Σ_{i∈batch}(…) + θ/σ²_prior  (§1 notation ∇Ũ)
=====  =================  ===================================================================

The mixture and the Gaussian are the papers' synthetic targets (LP-SGLD ICML 2022
Fig. 1; LP-SGHMC TMLR §4.1, with the minus signs the paper's print drops, §7.3
item 2).  The double well is a standard non-log-concave test target (not from the
papers).  The softmax regression is the LP-SGHMC MNIST logistic model (§6.3,
Linear(784→10)); the minibatch indices are drawn *with replacement* from
uniforms (index = ⌊u·N⌋) so that the noise layout is fixed -- a departure from
the published code's epoch-wise shuffling, made for bit-exact replays.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numba import njit

from refimpl._checks import check_count, check_real

__all__ = [
    "Target",
    "gaussian",
    "mixture",
    "double_well",
    "logistic_regression",
    "logistic_mnist",
    "resolve_target",
    "grad_into",
    "grad",
    "TARGET_NAMES",
]

KIND_STD_GAUSSIAN, KIND_GAUSSIAN, KIND_MIXTURE, KIND_DOUBLE_WELL, KIND_SOFTMAX = 0, 1, 2, 3, 4

_EMPTY_MAT = np.zeros((0, 0), dtype=np.float64)
_EMPTY_LABELS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Target:
    """A target density π ∝ exp(−U/T) as a kernel code (see the module table).

    Attributes: ``name`` (str), ``dim`` (int), ``kind`` (int), ``params``
    (float64 vector), ``mat`` (float64 2-D: the precision matrix for kind 1, the
    design matrix for kind 4, else empty), ``labels`` (int64, kind 4 only),
    ``batch_size`` (minibatch size n for data targets, 0 otherwise).
    """

    name: str
    dim: int
    kind: int
    params: np.ndarray = field(repr=False)
    mat: np.ndarray = field(default_factory=lambda: _EMPTY_MAT, repr=False)
    labels: np.ndarray = field(default_factory=lambda: _EMPTY_LABELS, repr=False)
    batch_size: int = 0

    def __post_init__(self):
        # The kernels index params/mat/labels without bounds checks: a hand-built Target must be consistent.
        dim = check_count("dim", self.dim, 1)
        kind = check_count("kind", self.kind, 0, KIND_SOFTMAX)
        for name in ("params", "mat", "labels"):
            value = getattr(self, name)
            want = np.int64 if name == "labels" else np.float64
            if not isinstance(value, np.ndarray) or value.dtype != want:
                raise TypeError(f"Target.{name} must be a {np.dtype(want).name} ndarray, got {value!r}")
        n_params = {KIND_STD_GAUSSIAN: 0, KIND_GAUSSIAN: dim, KIND_MIXTURE: 2, KIND_DOUBLE_WELL: 1, KIND_SOFTMAX: 5}[kind]
        if self.params.shape != (n_params,):
            raise ValueError(f"Target.params must have shape ({n_params},) for kind={kind}, got shape {self.params.shape}")
        if kind == KIND_GAUSSIAN and self.mat.shape != (dim, dim):
            raise ValueError(f"Target.mat must have shape ({dim}, {dim}) for kind={kind}, got shape {self.mat.shape}")
        if kind == KIND_SOFTMAX:
            n, p = self.mat.shape if self.mat.ndim == 2 else (-1, -1)
            k = int(self.params[3])
            if n < 1 or self.labels.shape != (n,) or dim != k * p or self.params[2] != n or self.params[4] != p:
                raise ValueError(f"Target.mat (n, p), labels (n,) and params [prior_var, batch_size, n, K, p] with "
                                 f"dim = K*p disagree: mat {self.mat.shape}, labels {self.labels.shape}, "
                                 f"params {self.params!r}, dim {dim}")
        check_count("batch_size", self.batch_size, 0)

    @property
    def code(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(kind, params, mat, labels) passed to the jitted kernels."""
        return self.kind, self.params, self.mat, self.labels

    def grad(self, x: npt.ArrayLike, batch_u: npt.ArrayLike | None = None) -> np.ndarray:
        """∇U at ``x`` (shape ``(dim,)`` or ``(n, dim)``) -> float64 array of the same shape.

        For data targets ``batch_u`` (uniforms, shape ``(batch_size,)`` or
        ``(n, batch_size)``) selects the minibatch; ``None`` gives the full-data
        gradient.  No randomness is consumed.
        """
        return grad(self, x, batch_u)


def _dim(dim) -> int:
    return check_count("dim", dim, 1)


def gaussian(dim: int = 1, mean: npt.ArrayLike | None = None, cov: npt.ArrayLike | None = None) -> Target:
    """Gaussian N(mean, cov) in ``dim`` dimensions; defaults: the standard normal.

    U(θ) = ½(θ−m)ᵀΣ⁻¹(θ−m), ∇U = Σ⁻¹(θ−m).  ``cov`` may be a scalar, a vector
    (diagonal) or a symmetric positive definite matrix; ``ValueError`` otherwise.
    """
    dim = _dim(dim)
    if mean is None and cov is None:
        return Target("gaussian", dim, KIND_STD_GAUSSIAN, np.zeros(0))
    m = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
    if m.ndim == 0:
        m = np.full(dim, float(m))
    if m.shape != (dim,) or not np.all(np.isfinite(m)):
        raise ValueError(f"mean must be a finite scalar or shape ({dim},), got {mean!r}")
    if cov is None:
        c = np.eye(dim)
    else:
        c = np.asarray(cov, dtype=np.float64)
        if c.ndim == 0:
            c = float(c) * np.eye(dim)
        elif c.ndim == 1 and c.shape == (dim,):
            c = np.diag(c)
    if c.shape != (dim, dim):
        raise ValueError(f"cov must be a scalar, a ({dim},) vector or a symmetric ({dim},{dim}) matrix, "
                         f"got shape {c.shape}")
    if not np.all(np.isfinite(c)) or not np.allclose(c, c.T):
        raise ValueError(f"cov must be a scalar, a ({dim},) vector or a symmetric ({dim},{dim}) matrix, got {cov!r}")
    try:
        np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ValueError(f"cov must be positive definite, got {cov!r}") from None
    prec = np.ascontiguousarray(np.linalg.inv(c))
    prec = 0.5 * (prec + prec.T)
    return Target("gaussian", dim, KIND_GAUSSIAN, np.ascontiguousarray(m), prec)


def mixture(dim: int = 1, weights: Sequence[float] = (0.5, 0.5), center: float = 1.0) -> Target:
    """Two-mode mixture e^{−U} = w₊e^{−2‖θ−c‖²} + w₋e^{−2‖θ+c‖²}, c = center·(1,…,1).

    Defaults give the LP-SGHMC target e^{−2‖x−1‖²} + e^{−2‖x+1‖²} (TMLR §4.1;
    spec §6.2): modes ±1 of per-coordinate variance 1/4.  ∇U = 4θ − 4c·tanh(4⟨θ,c⟩ + ½log(w₊/w₋)).
    """
    dim = _dim(dim)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (2,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError(f"weights must be two positive numbers, got {weights!r}")
    center = check_real("center", center, lo=0.0, lo_open=True)
    params = np.array([center, 0.5 * math.log(w[0] / w[1])])
    return Target("mixture", dim, KIND_MIXTURE, params)


def double_well(dim: int = 1, barrier: float = 1.0) -> Target:
    """Double well U(θ) = h·Σ_j (θ_j² − 1)² (minima at ±1, barrier height h per coordinate)."""
    dim = _dim(dim)
    barrier = check_real("barrier", barrier, lo=0.0, lo_open=True)
    return Target("double_well", dim, KIND_DOUBLE_WELL, np.array([barrier]))


def logistic_regression(X: npt.ArrayLike, y: npt.ArrayLike, *, n_classes: int | None = None, batch_size: int = 100, prior_var: float = 1.0, bias: bool = True, name: str = "logistic") -> Target:
    """Bayesian softmax (multinomial logistic) regression; θ = W flattened, shape (K·p,).

    U(θ) = −Σ_i log softmax(W x_i)_{y_i} + ‖θ‖²/(2·prior_var), with x_i extended by a
    constant 1 when ``bias``; W has shape (K, p) in C order.  Minibatch gradient
    (N/n)Σ_{i∈batch} ∇(−log p(y_i|x_i,θ)) + θ/prior_var (∇Ũ of §1).  ``batch_size >= N``
    is allowed (indices are still drawn with replacement).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X must be a finite 2-D array with at least one row, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        bad = X[~np.isfinite(X)]
        raise ValueError(f"X must be finite, got {bad.size} non-finite entries (e.g. {float(bad[0])!r})")
    if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be non-negative integer labels of shape ({X.shape[0]},), got {y.shape} {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"y must be non-negative integer labels, got a label {int(y.min())!r}")
    K = int(y.max()) + 1 if n_classes is None else check_count("n_classes", n_classes, 2)
    if K < 2 or y.max() >= K:
        raise ValueError(f"n_classes must be >= 2 and exceed every label, got {n_classes!r}")
    check_count("batch_size", batch_size, 1)
    prior_var = check_real("prior_var", prior_var, lo=0.0, lo_open=True)
    if bias:
        X = np.concatenate([X, np.ones((X.shape[0], 1))], axis=1)
    X = np.ascontiguousarray(X)
    N, p = X.shape
    params = np.array([float(prior_var), float(batch_size), float(N), float(K), float(p)])
    return Target(name, K * p, KIND_SOFTMAX, params, X, np.ascontiguousarray(y.astype(np.int64)), int(batch_size))


def logistic_mnist(path: str | os.PathLike[str] | None = None, *, n_train: int = 1000, classes: Sequence[int] | None = None, batch_size: int = 100, prior_var: float = 1.0) -> Target:
    """Softmax regression on the first ``n_train`` MNIST training images of ``classes``.

    Pixels are scaled to [0, 1]; a bias column is appended; labels are re-indexed
    to 0..K−1 in the order of ``classes`` (default: all ten digits, K·p = 10·785).
    ``path``: the shared npz, a user's directory of IDX files, or ``None`` for the
    default location (see :func:`refimpl.data.load_mnist`).  LP-SGHMC §4.2 / spec §6.3.
    """
    from refimpl.data import load_mnist

    # every argument is checked before the data set is read
    if classes is None:
        cls = list(range(10))
    elif isinstance(classes, (str, bytes)) or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, (bool, np.bool_)) for c in classes):
        raise ValueError(f"classes must be >= 2 distinct digits 0-9, got {classes!r}")
    else:
        cls = [int(c) for c in classes]
    if len(cls) < 2 or len(set(cls)) != len(cls) or not all(0 <= c <= 9 for c in cls):
        raise ValueError(f"classes must be >= 2 distinct digits 0-9, got {classes!r}")
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or n_train < 1:
        raise ValueError(f"n_train must be an integer >= 1, got {n_train!r}")
    check_count("batch_size", batch_size, 1)
    check_real("prior_var", prior_var, lo=0.0, lo_open=True)
    data = load_mnist(path)
    x, y = data["x_train"], data["y_train"].astype(np.int64)
    sel = np.flatnonzero(np.isin(y, cls))[:n_train]
    remap = np.full(10, -1, dtype=np.int64)
    remap[cls] = np.arange(len(cls))
    X = x[sel].reshape(len(sel), -1).astype(np.float64) / 255.0
    return logistic_regression(X, remap[y[sel]], n_classes=len(cls), batch_size=batch_size, prior_var=prior_var, name="logistic_mnist")


TARGET_NAMES = ("gaussian", "mixture", "double_well", "logistic_mnist")


def resolve_target(target: str | Target, dim: int) -> Target:
    """A :class:`Target` from a name in :data:`TARGET_NAMES` or a Target object.

    Names build the default target in ``dim`` dimensions (``logistic_mnist`` fixes
    its own dimension; ``dim`` must then be 1 (the default) or equal to it).
    ``ValueError`` names ``target`` or ``dim`` otherwise.
    """
    if isinstance(target, Target):
        if dim != 1 and dim != target.dim:
            raise ValueError(f"dim={dim!r} does not match the target's dimension {target.dim}")
        return target
    if not isinstance(target, str):
        raise ValueError(f"target must be one of {TARGET_NAMES} or a refimpl.targets.Target, got {target!r}")
    if target == "gaussian":
        return gaussian(dim)
    if target == "mixture":
        return mixture(dim)
    if target == "double_well":
        return double_well(dim)
    if target == "logistic_mnist":
        t = logistic_mnist()
        if dim != 1 and dim != t.dim:
            raise ValueError(f"dim={dim!r} does not match logistic_mnist's dimension {t.dim}")
        return t
    raise ValueError(f"target must be one of {TARGET_NAMES} or a refimpl.targets.Target, got {target!r}")


# --------------------------------------------------------------------------------------
# jitted gradients
# --------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy", inline="always")
def grad1(kind: int, params: np.ndarray, x: float) -> float:
    """Scalar ∇U for a 1-D non-data target (kinds 0-3); the loops' fast path."""
    if kind == 0:
        return x
    if kind == 1:
        return 0.0  # never used: kind 1 goes through grad_into (needs mat)
    if kind == 2:
        c = params[0]
        return 4.0 * x - 4.0 * c * math.tanh(4.0 * x * c + params[1])
    return 4.0 * params[0] * x * (x * x - 1.0)


@njit(cache=True, error_model="numpy")
def grad_into(kind: int, params: np.ndarray, mat: np.ndarray, labels: np.ndarray, x: np.ndarray,
              batch_u: np.ndarray, out: np.ndarray) -> None:
    """out = ∇U(x) (or the minibatch estimate ∇Ũ from ``batch_u`` for kind 4).

    ``x``, ``out``: float64 (dim,); ``batch_u``: float64 (batch_size,) uniforms in
    [0, 1) (ignored for non-data targets).  No randomness is drawn here.
    """
    d = x.shape[0]
    if kind == 0:
        for j in range(d):
            out[j] = x[j]
    elif kind == 1:
        for i in range(d):
            acc = 0.0
            for j in range(d):
                acc += mat[i, j] * (x[j] - params[j])
            out[i] = acc
    elif kind == 2:
        c = params[0]
        s = 0.0
        for j in range(d):
            s += x[j]
        t = math.tanh(4.0 * c * s + params[1])
        for j in range(d):
            out[j] = 4.0 * x[j] - 4.0 * c * t
    elif kind == 3:
        h = params[0]
        for j in range(d):
            out[j] = 4.0 * h * x[j] * (x[j] * x[j] - 1.0)
    else:
        _softmax_grad(params, mat, labels, x, batch_u, out)


@njit(cache=True, error_model="numpy")
def _softmax_grad(params, X, labels, x, batch_u, out):
    prior_var = params[0]
    N = X.shape[0]
    p = X.shape[1]
    K = int(params[3])
    for j in range(x.shape[0]):
        out[j] = x[j] / prior_var
    nb = batch_u.shape[0]
    if nb == 0:  # full data
        nb = N
        scale = 1.0
    else:
        scale = N / nb
    logits = np.empty(K)
    for b in range(nb):
        if batch_u.shape[0] == 0:
            i = b
        else:
            i = int(batch_u[b] * N)
            if i >= N:
                i = N - 1
        mx = -np.inf
        for k in range(K):
            acc = 0.0
            for j in range(p):
                acc += x[k * p + j] * X[i, j]
            logits[k] = acc
            if acc > mx:
                mx = acc
        z = 0.0
        for k in range(K):
            logits[k] = math.exp(logits[k] - mx)
            z += logits[k]
        yi = labels[i]
        for k in range(K):
            r = logits[k] / z - (1.0 if k == yi else 0.0)
            if r != 0.0:
                r *= scale
                for j in range(p):
                    out[k * p + j] += r * X[i, j]


def grad(target: Target, x: npt.ArrayLike, batch_u: npt.ArrayLike | None = None) -> np.ndarray:
    """∇U of ``target`` at ``x`` (``(dim,)`` or ``(n, dim)``); see :meth:`Target.grad`."""
    if not isinstance(target, Target):
        raise TypeError(f"target must be a refimpl.targets.Target (see resolve_target), got {target!r}")
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    xs = np.atleast_2d(x)
    if xs.ndim != 2 or xs.shape[1] != target.dim:
        raise ValueError(f"x must have shape ({target.dim},) or (n, {target.dim}), got {x.shape}")
    if batch_u is None:
        bu = np.zeros((xs.shape[0], 0))
    else:
        bu = np.atleast_2d(np.asarray(batch_u, dtype=np.float64))
        if bu.shape[0] == 1 and xs.shape[0] > 1:
            bu = np.repeat(bu, xs.shape[0], axis=0)
    out = np.empty_like(xs)
    for r in range(xs.shape[0]):
        grad_into(target.kind, target.params, target.mat, target.labels, np.ascontiguousarray(xs[r]), np.ascontiguousarray(bu[r]), out[r])
    return out[0] if single else out
