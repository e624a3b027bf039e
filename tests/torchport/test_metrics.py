"""torchport.metrics: error, NLL, both ECE variants, the Bayesian model average."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchport import metrics as tmet


def _random_probs(n, k, seed, sharp=3.0):
    rng = np.random.default_rng(seed)
    logits = sharp * rng.standard_normal((n, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), rng.integers(0, k, n)


def _ece_by_definition(p, y, n_bins):
    """Guo et al. (2017): Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over bins ((b−1)/B, b/B]."""
    conf, pred = p.max(1), p.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if m.any():
            total += m.sum() / len(y) * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return 100 * total


def _ece_published_by_spec(p, y, num_bins=10):
    """The published binning as ALGORITHMS §3.7 describes it: edges linspace(0, 1, num_bins),
    right-inclusive digitisation, bins 0..num_bins−1, Σ|Σ(correct − conf)|/n."""
    conf = p.max(1)
    correct = (p.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0, 1, num_bins)
    which = np.array([int(np.sum(c > edges)) for c in conf])  # index i with edges[i-1] < c <= edges[i]
    return 100 * sum(abs(np.sum(correct[which == b] - conf[which == b])) for b in range(num_bins)) / len(y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_matches_definitions(seed):
    p, y = _random_probs(3000, 10, seed)
    for nb in (1, 9, 15):
        assert tmet.expected_calibration_error(p, y, nb) == pytest.approx(_ece_by_definition(p, y, nb), abs=1e-10)
    assert tmet.ece_published(p, y) == pytest.approx(_ece_published_by_spec(p, y), abs=1e-10)
    # The published variant is exactly the standard ECE with 9 bins (same edges k/9).
    assert tmet.ece_published(p, y) == pytest.approx(tmet.expected_calibration_error(p, y, 9), abs=1e-10)


def test_ece_bin_edges_are_right_inclusive():
    # confidences exactly on edges: 1/3 belongs to bin (0, 1/3] of a 3-bin ECE, 1.0 to the last bin
    p = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    y = np.array([0, 0, 1])
    # bins: {row0: conf 1/3, correct}, {row2: 0.5, wrong}, {row1: 1.0, correct}
    expect = 100 * (abs(1 - 1 / 3) + abs(0 - 0.5) + abs(1 - 1.0)) / 3
    assert tmet.expected_calibration_error(p, y, 3) == pytest.approx(expect)
    assert tmet.expected_calibration_error(torch.tensor(p), torch.tensor(y), 3) == pytest.approx(expect)


@pytest.mark.parametrize("shift, calibrated", [(0.0, True), (0.1, False)])
def test_ece_detects_miscalibration(shift, calibrated):
    """Labels drawn so that P(correct | conf) = conf − shift.  With shift = 0, bin b's sum
    S_b = Σ(correct − conf) has mean 0 and variance ≤ n_b/4, so E|S_b| ≤ √n_b/2 and
    E[ECE] ≤ Σ_b √n_b /(2n) ≤ √(B/n)/2 = 1.37 % for n = 20000, B = 15 (Cauchy–Schwarz);
    ECE's sd is below that again, so 3 % is > 5 sd above the mean.  With shift = 0.1 the
    ECE is ≈ 10 % and the check must fail."""
    rng = np.random.default_rng(7)
    n, k = 20000, 10
    conf = rng.uniform(0.3, 1.0, n)
    correct = rng.uniform(size=n) < np.clip(conf - shift, 0, 1)
    y = rng.integers(0, k, n)
    p = np.zeros((n, k))
    pred = np.where(correct, y, (y + 1) % k)
    p[:, :] = ((1 - conf) / (k - 1))[:, None]
    p[np.arange(n), pred] = conf
    assert (tmet.expected_calibration_error(p, y, 15) < 3.0) == calibrated


def test_error_and_nll():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2]])
    y = np.array([0, 1, 1])
    assert tmet.error_rate(p, y) == pytest.approx(100 * 2 / 3)  # row 2: tie -> first max (0)
    assert tmet.nll(p, y) == pytest.approx(-(math.log(0.7) + math.log(0.1) + math.log(0.4)) / 3)
    assert tmet.nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(1e-12))
    m = tmet.evaluate_probs(p, y)
    assert set(m) == {"error", "nll", "ece15", "ece9_published"}


def test_metric_input_errors():
    p, y = _random_probs(5, 3, 0)
    with pytest.raises(ValueError, match="probs must have shape"):
        tmet.error_rate(p[0], y)
    with pytest.raises(ValueError, match="labels must have shape"):
        tmet.nll(p, y[:3])
    with pytest.raises(ValueError, match="labels must lie"):
        tmet.nll(p, y + 5)
    with pytest.raises(ValueError, match="variant"):
        tmet.expected_calibration_error(p, y, 15, variant="adaptive")
    with pytest.raises(ValueError, match="n_bins"):
        tmet.expected_calibration_error(p, y, 0)
    bad = p.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        tmet.error_rate(bad, y)


def test_bma_running_mean_and_state():
    p1, _ = _random_probs(50, 10, 1)
    p2, _ = _random_probs(50, 10, 2)
    bma = tmet.BMA()
    with pytest.raises(ValueError, match="no samples"):
        bma.mean()
    bma.add(torch.tensor(p1, dtype=torch.float32))
    bma.add(torch.tensor(p2))
    assert bma.count == 2
    assert torch.allclose(bma.mean(), (torch.tensor(p1, dtype=torch.float32).double() + torch.tensor(p2)) / 2)
    other = tmet.BMA()
    other.load_state_dict(bma.state_dict())
    assert torch.equal(other.mean(), bma.mean())
    with pytest.raises(ValueError, match="shape"):
        bma.add(torch.full((3, 10), 0.1))  # valid distributions, another number of examples
    with pytest.raises(ValueError, match="sum to 1"):
        bma.add(torch.zeros(50, 10))  # not distributions
    assert bma.count == 2


def test_predict_probs_restores_mode():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    model.train()
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    probs = tmet.predict_probs(model, x, batch_size=3)
    assert model.training and probs.shape == (7, 3) and probs.dtype == torch.float64
    assert torch.allclose(probs.sum(1), torch.ones(7, dtype=torch.float64))
    assert torch.allclose(probs, torch.softmax(model(x).double(), 1))


# ---------------------------------------------------------------------------- bad inputs


def _p():
    return np.full((4, 3), 1 / 3), np.array([0, 1, 2, 0])


@pytest.mark.parametrize("call, exc, match", [
    (lambda p, y: tmet.error_rate("abc", y), TypeError, "probs must be a numeric array"),
    (lambda p, y: tmet.error_rate(p, np.array([0.5, 1, 2, 0])), TypeError, "integer class indices"),
    (lambda p, y: tmet.error_rate(p, None), TypeError, "integer class indices"),
    (lambda p, y: tmet.error_rate(-p, y), ValueError, r"lie in \[0, 1\]"),
    (lambda p, y: tmet.nll(p * 4, y), ValueError, r"lie in \[0, 1\]"),
    (lambda p, y: tmet.nll(p, y, eps=-1), ValueError, "eps=-1"),
    (lambda p, y: tmet.expected_calibration_error(p, y, n_bins="x"), ValueError, "n_bins='x'"),
    (lambda p, y: tmet.expected_calibration_error(p, y, n_bins=float("nan")), ValueError, "n_bins=nan"),
    (lambda p, y: tmet.BMA().load_state_dict({}), ValueError, "keys 'sum' and 'count'"),
    (lambda p, y: tmet.BMA().load_state_dict({"sum": None, "count": -1}), ValueError, "count=-1"),
    (lambda p, y: tmet.BMA().load_state_dict({"sum": None, "count": 2}), ValueError, "sum must be a tensor"),
    (lambda p, y: tmet.BMA().add(np.ones(3)), ValueError, r"shape \(n, K\)"),
    (lambda p, y: tmet.predict_probs(torch.nn.Linear(3, 2), torch.ones(4, 3), batch_size=0), ValueError,
     "batch_size=0"),
    (lambda p, y: tmet.predict_probs(torch.nn.Linear(3, 2), torch.ones(0, 3)), ValueError, "at least one example"),
])
def test_bad_inputs_are_clear_errors(call, exc, match):
    p, y = _p()
    with pytest.raises(exc, match=match):
        call(p, y)


def test_bma_accepts_arrays_and_a_failed_load_changes_nothing():
    p, _ = _p()
    bma = tmet.BMA()
    bma.add(p)
    bma.add(torch.as_tensor(p))
    assert bma.count == 2 and torch.allclose(bma.mean(), torch.as_tensor(p))
    state = bma.state_dict()
    with pytest.raises(ValueError):
        bma.load_state_dict({"sum": None, "count": 5})
    assert bma.state_dict()["count"] == state["count"] and torch.equal(bma.sum, state["sum"])
    # a model without parameters predicts on the CPU
    probs = tmet.predict_probs(torch.nn.Softmax(dim=1), torch.ones(4, 3))
    assert probs.shape == (4, 3)
