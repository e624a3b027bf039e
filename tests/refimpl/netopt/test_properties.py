"""Property tests (hypothesis): invariants of the level grid and the AskewSGD direction."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.netopt.askewsgd import askew_direction, askew_direction_numpy
from refimpl.netopt.levels import binary_levels, bracket, kbit_levels, on_grid, quantize_nearest, uniform_levels

finite = st.floats(-50, 50, allow_nan=False)
levels_st = st.sampled_from([binary_levels(), uniform_levels(17), uniform_levels(4), kbit_levels(2)])
scales = st.floats(0.01, 5.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), levels_st, scales)
def test_quantize_nearest_on_grid_idempotent_and_nearest(w, lev, s):
    w = np.array(w)
    q = quantize_nearest(w, lev, s)
    assert on_grid(q, lev, s)
    assert np.array_equal(quantize_nearest(q, lev, s), q)
    dist = np.abs(np.clip(w, s * lev.lo, s * lev.hi)[:, None] - s * lev.values[None, :]).min(1)
    assert np.all(np.abs(q - np.clip(w, s * lev.lo, s * lev.hi)) <= dist + 1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=30), levels_st, scales,
       st.floats(1e-6, 2.0), st.floats(1e-3, 10.0))
def test_direction_properties(wg, lev, s, eps, alpha):
    w = np.array([a for a, _ in wg]) * s / 10
    g = np.array([b for _, b in wg])
    d, sk = askew_direction(w, g, lev, eps, alpha, scale=s)
    d2, sk2 = askew_direction_numpy(w, g, lev, eps, alpha, scale=s)
    np.testing.assert_allclose(d, d2, rtol=1e-12, atol=0)
    assert np.array_equal(sk, sk2)
    x = np.clip(w / s, lev.lo, lev.hi)
    a, b = bracket(x, lev)
    assert np.all((a == x) | (np.abs(x - a) <= np.abs(x - b)))
    # feasible or on a level -> plain gradient
    feas = (eps - ((x - a) * (x - b)) ** 2 >= 0) | ((x - a) * (x - b) == 0)
    assert np.array_equal(d[feas], -g[feas]) and not sk[feas].any()
    # where skewed (and not at a bracket midpoint, where both levels are nearest), d = nu
    # moves toward the nearest level: the restoring direction of (A2)
    # moves toward the nearest level -- except within the guard of the midpoint: the +1e-6
    # in (2w - a - b + 1e-6) shifts the point where nu changes sign to 2w - a - b = -1e-6.
    m = sk & (np.abs(2 * x - a - b) > 2e-6)
    assert np.all(np.sign(d[m]) == np.sign(a[m] - x[m]))


def test_kbit_levels():
    assert np.array_equal(kbit_levels(4).values, np.arange(-8.0, 9.0))
    assert kbit_levels(1).values.tolist() == [-1.0, 0.0, 1.0]
