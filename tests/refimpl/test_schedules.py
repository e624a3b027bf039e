"""Step-size schedules (S7), (S8) and the sampling-phase rule (ALGORITHMS.md §3.7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import refimpl
from refimpl import _loop
from refimpl.schedules import Constant, Cyclical, Decay, as_schedule


def test_cyclical_formula_and_phase():
    s = Cyclical(0.5, n_steps=700, n_cycles=7, explore_fraction=0.8)
    assert s.period == 100
    for k in (0, 1, 37, 99, 100, 450, 699):
        r = (k % 100) / 100
        assert s.eta(k) == pytest.approx(0.25 * (math.cos(math.pi * r) + 1))
        assert s.sampling(k) == (r >= 0.8)
        assert _loop.schedule_at(s.code, k) == (s.eta(k), s.noise_scale(k), s.sampling(k))
    assert s.eta(0) == 0.5 and s.eta(100) == 0.5


def test_decay_formula():
    s = Decay(0.5, n_epochs=10, steps_per_epoch=3, sample_from_epoch=8)
    want = {0: 1.0, 5 * 3: 1.0, 6 * 3: 1 - 0.99 * 0.1 / 0.4, 9 * 3 + 2: 0.01}
    for k, f in want.items():
        assert s.eta(k) == pytest.approx(0.5 * f)
        assert _loop.schedule_at(s.code, k) == (s.eta(k), 1.0, s.sampling(k))
    assert not s.sampling(23) and s.sampling(24)


def test_bad_schedules():
    for bad in (0.0, -1.0, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="step_size"):
            as_schedule(bad)
    with pytest.raises(ValueError, match="n_cycles"):
        Cyclical(0.1, 10, 20)
    with pytest.raises(ValueError, match="explore_fraction"):
        Cyclical(0.1, 10, 2, explore_fraction=1.0)
    assert isinstance(as_schedule(0.3), Constant)


def test_driver_keeps_only_sampling_phase_steps_and_uses_the_schedule():
    s = Cyclical(0.2, n_steps=60, n_cycles=3, explore_fraction=0.75)
    full = refimpl.sample("sgld", "gaussian", n_chains=4, n_steps=60, step_size=s, seed=1, temperature=0.0, x0=1.0)
    keep = [k for k in range(60) if s.sampling(k)]
    assert full.shape[0] == len(keep) == 15
    # T = 0, ∇U = θ: θ_k = Π(1 − η_j) exactly
    theta = 1.0
    traj = []
    for k in range(60):
        theta = theta - s.eta(k) * theta
        traj.append(theta)
    np.testing.assert_allclose(full[:, 0, 0], np.array(traj)[keep], rtol=1e-13)


def test_noise_free_exploration_stage():
    """noise_in_exploration=False: the exploration part of each cycle is plain gradient descent."""
    s = Cyclical(0.1, n_steps=40, n_cycles=2, explore_fraction=0.5, noise_in_exploration=False)
    a = refimpl.sample("sgld", "gaussian", n_chains=3, n_steps=10, step_size=s, seed=1, keep="last", x0=1.0)
    b = refimpl.sample("sgld", "gaussian", n_chains=3, n_steps=10, step_size=s, seed=2, keep="last", x0=1.0)
    assert np.array_equal(a, b)  # no noise entered yet
    c = refimpl.sample("sgld", "gaussian", n_chains=3, n_steps=12, step_size=s, seed=1, keep="last", x0=1.0)
    d = refimpl.sample("sgld", "gaussian", n_chains=3, n_steps=12, step_size=s, seed=2, keep="last", x0=1.0)
    assert not np.array_equal(c, d)  # sampling phase (k >= 10) injects noise
