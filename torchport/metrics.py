"""Evaluation: Bayesian model averaging over samples, test error, NLL and ECE.

Bayesian model average (ALGORITHMS §3.7; ruqizhang/low-precision-sgld bnn/ens.py): the
predictive distribution is the mean of the softmax outputs of the S collected samples,

    p̂(y | x) = (1/S) Σ_{s=1..S} softmax(f(x; θ_s))_y .

Metrics of a predictive distribution p̂ (n, K) with labels y (n,):

* test error (%)   = 100 · mean[argmax_k p̂_ik ≠ y_i];
* NLL              = −mean log p̂_{i, y_i}   (nats per example; p̂ clamped at 1e-12 — not in
  the published code, which reports no NLL);
* ECE (%), standard (Guo et al. 2017): equal-width bins B_b = ((b−1)/B, b/B], b = 1..B
  (B = 15 by default), conf_i = max_k p̂_ik, correct_i = [argmax = y_i],

      ECE = Σ_b |Σ_{i∈B_b} (correct_i − conf_i)| / n = Σ_b (|B_b|/n)·|acc(B_b) − conf(B_b)|;

* ECE (%), published variant (``variant="published"``, bnn/ens.py
  ``expected_calibration_error``): edges ``linspace(0, 1, num_bins)`` with
  ``numpy.digitize(conf, edges, right=True)`` and bins 0..num_bins−1 summed, the same
  formula.  With the code's ``num_bins=10`` the edges are multiples of 1/9, bin 0 holds only
  conf = 0 (impossible for a softmax), so this is **9 equal bins of width 1/9**
  (right-inclusive).  :func:`ece_published` reproduces it exactly.

No randomness anywhere in this module.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

ECE_VARIANTS = ("standard", "published")
#: how far a row of a predictive distribution may sum away from 1 (float32 softmax outputs and
#: their averages are within ~1e-6 of 1; unnormalised scores are not)
ROW_SUM_TOL = 1e-3
#: most ECE bins accepted (the edges are allocated; more bins than examples are already meaningless)
MAX_BINS = 1_000_000


def _as_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy() if a.is_floating_point() else a.detach().cpu().numpy()
    return np.asarray(a)


def _check_probs(probs, name: str = "probs") -> np.ndarray:
    """``probs`` as a float64 (n, K) array of predictive distributions, n >= 1: entries finite in [0, 1],
    rows summing to 1 (within :data:`ROW_SUM_TOL`); ValueError/TypeError naming ``name`` and the value."""
    if probs is None or isinstance(probs, (str, bytes)):
        raise TypeError(f"{name} must be a numeric array of shape (n, K), got {probs!r:.40}")
    raw = _as_numpy(probs)
    if np.iscomplexobj(raw) or raw.dtype == np.bool_ or raw.dtype == object:
        raise TypeError(f"{name} must be a real array of shape (n, K), got dtype {raw.dtype}")
    try:
        p = raw.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array of shape (n, K), got {type(probs).__name__}") from None
    if p.ndim != 2:
        raise ValueError(f"{name} must have shape (n, K), got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError(f"{name}: need at least one example, got n=0")
    finite = np.isfinite(p)
    if not finite.all():
        i, k = np.argwhere(~finite)[0]
        raise ValueError(f"{name} contains non-finite values ({p[i, k]!r} at [{i}, {k}])")
    if p.min() < 0 or p.max() > 1 + 1e-6:
        raise ValueError(f"{name} must lie in [0, 1], got range [{p.min()!r}, {p.max()!r}]")
    sums = p.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOL
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(f"{name} rows must sum to 1 (predictive distributions), got row {i} with sum "
                         f"{float(sums[i])!r}")
    return p


def _check(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    p = _check_probs(probs)
    y_raw = _as_numpy(labels)
    if not (np.issubdtype(y_raw.dtype, np.integer) or np.issubdtype(y_raw.dtype, np.bool_)):
        if not (np.issubdtype(y_raw.dtype, np.floating) and np.all(np.isfinite(y_raw))
                and np.all(y_raw == np.round(y_raw))):
            raise TypeError(f"labels must be integer class indices, got {type(labels).__name__} of dtype "
                            f"{y_raw.dtype}")
    y = y_raw.astype(np.int64, copy=False)
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},), got shape {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in 0..{p.shape[1] - 1}, got range [{y.min()}, {y.max()}]")
    return p, y


def error_rate(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Test error in percent: 100·mean[argmax p̂ ≠ y] (ties resolved to the first maximum)."""
    p, y = _check(probs, labels)
    return float(100.0 * np.mean(np.argmax(p, axis=1) != y))


def nll(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log predictive probability of the true label, in nats: −mean log max(p̂_iy, eps)."""
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < 1):
        raise ValueError(f"eps={eps!r}: must be a number in (0, 1)")
    p, y = _check(probs, labels)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], eps))))


def expected_calibration_error(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, n_bins: int = 15,
                               variant: Literal["standard", "published"] = "standard") -> float:
    """ECE in percent (see the module docstring for both variants).

    ``variant="standard"``: ``n_bins`` equal-width, right-inclusive bins on (0, 1].
    ``variant="published"``: the LP-SGLD code's binning with ``num_bins = n_bins`` edges
    (``n_bins=10`` gives its 9 effective bins).
    """
    if variant not in ECE_VARIANTS:
        raise ValueError(f"variant={variant!r}: expected one of {ECE_VARIANTS}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) \
            or not (2 if variant == "published" else 1) <= n_bins <= MAX_BINS:
        raise ValueError(f"n_bins={n_bins!r}: must be an integer in 1..{MAX_BINS} (>= 2 for 'published')")
    p, y = _check(probs, labels)
    conf = p.max(axis=1)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    if variant == "standard":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
        # bin b holds edges[b] < conf <= edges[b+1]; conf = 0 goes to the first bin.
        idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, int(n_bins) - 1)
        nb = int(n_bins)
    else:
        edges = np.linspace(0.0, 1.0, int(n_bins))
        idx = np.digitize(conf, edges, right=True)
        nb = int(n_bins) + 1  # digitize can return n_bins for conf > 1 (not summed by the code)
    sums = np.bincount(idx, weights=correct - conf, minlength=nb)
    if variant == "published":
        sums = sums[: int(n_bins)]
    return float(100.0 * np.sum(np.abs(sums)) / len(y))


def ece_published(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """The published code's ECE (bnn/ens.py, ``num_bins=10``: 9 effective bins of width 1/9), in percent."""
    return expected_calibration_error(probs, labels, n_bins=10, variant="published")


def evaluate_probs(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> dict:
    """All metrics of a predictive distribution: error %, NLL, ECE % (15 bins) and the published 9-bin ECE %."""
    return {
        "error": error_rate(probs, labels),
        "nll": nll(probs, labels),
        "ece15": expected_calibration_error(probs, labels, 15),
        "ece9_published": ece_published(probs, labels),
    }


class BMA:
    """Running Bayesian model average of softmax outputs: ``add(probs)`` per sample, ``mean()``.

    The sum is kept in float64 so that the average of many float32 predictions does not
    lose digits.  ``state_dict``/``load_state_dict`` make it checkpointable.
    """

    def __init__(self):
        self.sum: torch.Tensor | None = None
        self.count = 0

    def add(self, probs: torch.Tensor) -> None:
        """Add one sample's predictive probabilities (n, K) (a tensor or an array; checked as by the metrics:
        finite, in [0, 1], rows summing to 1)."""
        probs = torch.from_numpy(np.array(_check_probs(probs), dtype=np.float64))
        if self.sum is not None and probs.shape != self.sum.shape:
            raise ValueError(f"probs shape {tuple(probs.shape)} != previous {tuple(self.sum.shape)}")
        self.sum = probs.clone() if self.sum is None else self.sum + probs
        self.count += 1

    def mean(self) -> torch.Tensor:
        if self.count == 0:
            raise ValueError("BMA.mean(): no samples collected (count=0)")
        return self.sum / self.count

    def state_dict(self) -> dict:
        return {"sum": self.sum, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``{"sum": tensor or None, "count": int}``; ValueError (nothing changed) if inconsistent."""
        if not isinstance(state, dict) or set(state) != {"sum", "count"}:
            raise ValueError(f"BMA state must be a dict with keys 'sum' and 'count', got {state!r:.80}")
        total, count = state["sum"], state["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"BMA state count={count!r}: must be an int >= 0")
        if (total is None) != (count == 0) or (total is not None and not isinstance(total, torch.Tensor)):
            raise ValueError(f"BMA state: sum must be a tensor when count > 0 and None when count = 0, "
                             f"got {type(total).__name__} with count={count}")
        if total is not None:
            if total.ndim != 2 or not total.is_floating_point():
                raise ValueError(f"BMA state sum must be a float (n, K) tensor, got dtype {total.dtype} and shape "
                                 f"{tuple(total.shape)}")
            if not bool(torch.isfinite(total).all()):
                raise ValueError(f"BMA state sum contains non-finite values ({float(total[~torch.isfinite(total)][0])!r})")
        self.sum = None if total is None else total.clone()
        self.count = count


@torch.no_grad()
def predict_probs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Softmax outputs of ``model`` (in eval mode) on ``x``, batched; returns float64 (n, K) on the CPU.

    The model's train/eval mode is restored afterwards.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be a positive integer")
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a tensor with at least one example, got {getattr(x, 'shape', type(x))}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"x contains non-finite values ({float(x[~torch.isfinite(x)][0])!r})")
    was_training = model.training
    model.eval()
    try:
        device = next(iter(model.parameters()), torch.empty(0)).device
        out = [
            torch.softmax(model(x[i : i + batch_size].to(device)).double(), dim=1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out, 0)
