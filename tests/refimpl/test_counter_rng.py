"""refimpl.counter_rng: the counter stream, its sharding invariance, the k-bit stochastic rounding.

Statistical checks use tolerances of 4 Monte Carlo standard errors with fixed seeds,
and each has a mutation (a biased variant) that must fail the same check.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from refimpl import _qkernels as K
from refimpl import counter_rng as C
from refimpl.formats import parse_format


def test_uniforms_are_keyed_uniform_of_the_stream_key():
    key = C.stream_key(20240601, 7, 3, "xi")
    u = C.uniforms(key, 50)
    assert np.array_equal(u, [K.keyed_uniform(np.uint64(key), i) for i in range(50)])


def test_stream_key_is_the_documented_chain_and_pinned():
    k = C._bits_py(C._bits_py(C._bits_py(1, 2), 3), C.STREAMS["xi"])
    assert C.stream_key(1, 2, 3, "xi") == k == C.stream_key(1, 2, 3, 1)
    assert k == 3506808064286907929  # regression pin: the stream must never change silently
    assert C.uniforms(k, 2).tolist() == [0.888712357494213, 0.4538297213361502]


@pytest.mark.parametrize("bits", [24, 53])
def test_any_sharding_of_the_element_index_gives_the_same_bits(bits):
    key = C.stream_key(5, 0, 0, "u_weight")
    whole = C.uniforms(key, 1001, bits=bits)
    for cuts in ([400], [1, 999], [333, 667]):
        edges = [0, *cuts, 1001]
        parts = [C.uniforms(key, b - a, start=a, bits=bits) for a, b in zip(edges[:-1], edges[1:])]
        assert np.array_equal(np.concatenate(parts), whole)
    zs = C.normals(key, 301, bits=bits)
    assert np.array_equal(np.concatenate([C.normals(key, 100, bits=bits), C.normals(key, 201, start=100, bits=bits)]), zs)


def test_24_bit_uniforms_are_the_top_bits_of_the_53_bit_ones():
    key = C.stream_key(9, 1, 2, "u_round")
    u53 = C.uniforms(key, 10000)
    u24 = C.uniforms(key, 10000, bits=24)
    assert np.array_equal(u24, np.floor(u53 * 2.0**24) / 2.0**24)


@pytest.mark.parametrize("name,value", [("seed", -1), ("step", 1.5), ("param_index", True), ("stream", "nope")])
def test_stream_key_bad_input_names_the_argument(name, value):
    args = dict(seed=0, step=0, param_index=0, stream="xi")
    args[name] = value
    with pytest.raises(ValueError, match=name):
        C.stream_key(**args)


def test_bits_argument_checked():
    with pytest.raises(ValueError, match="bits"):
        C.uniforms(1, 3, bits=32)


def _moments_ok(z):
    n = z.size
    # mean 0 (SE 1/sqrt n), variance 1 (SE sqrt(2/n) for a normal), kurtosis 3 (SE sqrt(96/n))
    return (abs(z.mean()) < 4 / np.sqrt(n) and abs(z.var() - 1) < 4 * np.sqrt(2 / n)
            and abs(np.mean(z**4) - 3) < 4 * np.sqrt(96 / n))


def test_box_muller_normals_have_standard_normal_moments_and_a_mutation_fails():
    key = C.stream_key(11, 0, 0, "xi")
    n = 200_000
    assert _moments_ok(C.normals(key, n))
    assert _moments_ok(C.normals(key, n, bits=24))
    # mutation: Box-Muller without the factor 2 under the root (variance 1/2)
    u1 = 1.0 - C.uniforms(key, 2 * n)[0::2]
    u2 = C.uniforms(key, 2 * n)[1::2]
    assert not _moments_ok(np.sqrt(-np.log(u1)) * np.cos(2 * np.pi * u2))


def test_sr_resolution_is_exactly_the_k_bit_rule():
    """P(up) = ⌈f·2^k⌉/2^k: enumerate every k-bit uniform (k = 8) for several fractions."""
    fmt = parse_format("fixed:8:6")
    delta = 2.0**-6
    k = 8
    u = np.arange(2**k) / 2.0**k
    for f in (0.0, 1 / 3, 0.5, 0.7, 2.0**-9, 1 - 2.0**-9):
        x = np.full(u.size, (5 + f) * delta)
        ups = np.sum(C.sr_round(x, fmt, u) > 5 * delta)
        assert ups == np.ceil(f * 2**k), f
        bias = (ups / 2**k - f) * delta
        assert 0.0 <= bias < 2.0**-k * delta


def _sr_mean_check(fmt_text, x0, bits, mutate=None):
    """|E[SR(x0)] - x0| within 4 MCSE + the documented resolution bias 2^-k Δ, from n counters."""
    fmt = parse_format(fmt_text)
    n = 40_000
    key = C.stream_key(3, 0, 0, "u_weight")
    u = C.uniforms(key, n, bits=bits)
    if mutate is not None:
        u = mutate(u)
    q = C.sr_round(np.full(n, x0), fmt, u)
    delta = np.max(q) - np.min(q)  # the grid step at x0 (both neighbours occur)
    se = np.std(q, ddof=1) / np.sqrt(n)
    return abs(q.mean() - x0) <= 4 * se + 2.0**-bits * delta, (q.mean(), x0, delta)


@pytest.mark.parametrize("fmt_text,x0", [("fixed:8:6", 0.3 + 1e-3), ("bfp:8", 0.713), ("float:5:2", 0.37),
                                         ("ieee:bfloat16", 1.0 / 3.0)])
@pytest.mark.parametrize("bits", [24, 53])
def test_sr_is_unbiased_to_its_resolution_and_a_coarse_mutation_fails(fmt_text, x0, bits):
    ok, info = _sr_mean_check(fmt_text, x0, bits)
    assert ok, info
    # mutation: a 3-bit random integer (resolution 1/8 of a step) is biased beyond the MCSE
    ok_mut, info = _sr_mean_check(fmt_text, x0, bits, mutate=lambda u: np.floor(u * 8) / 8)
    assert not ok_mut, info


def _mx_sr_mean_check(fmt_text, x0, bits, mutate_u=None, clip=None):
    """MX: |E[SR(x0)] - x0| within 4 MCSE + 2^-k·Δ over n elements (blocks of equal values)."""
    fmt = parse_format(fmt_text)
    n = 32 * 1250
    u = C.uniforms(C.stream_key(4, 0, 0, "u_weight"), n, bits=bits)
    if mutate_u is not None:
        u = mutate_u(u)
    q = C.sr_round(np.full(n, x0), fmt, u)
    if clip is not None:
        q = np.minimum(q, clip)
    delta = max(np.max(q) - np.min(q), 1e-300)
    se = np.std(q, ddof=1) / np.sqrt(n)
    return abs(q.mean() - x0) <= 4 * se + 2.0**-bits * delta, (q.mean(), x0, delta)


# x0 above the spec scale's range (MXFP4: 7.3 > 6·2^0; MXFP8 E4M3: 470 > 448; NVFP4: 7.0 -> s_B = 1.25 holds 7.5):
# the holding scale keeps the maximum unbiased; MXINT8 and an interior MXFP6 value as ordinary cases
MX_CASES = [("mxfp4", 7.3, 6.0), ("mxfp8_e4m3", 470.0, 448.0), ("nvfp4", 7.0, 6.0 * 1.125),
            ("mxint8", 0.3 + 1e-3, None), ("mxfp6_e2m3", 1.0 / 3.0, None)]


@pytest.mark.parametrize("fmt_text,x0,spec_max", MX_CASES)
@pytest.mark.parametrize("bits", [24, 53])
def test_mx_sr_is_unbiased_and_coarse_or_spec_scale_mutations_fail(fmt_text, x0, spec_max, bits):
    ok, info = _mx_sr_mean_check(fmt_text, x0, bits)
    assert ok, info
    ok_mut, info = _mx_sr_mean_check(fmt_text, x0, bits, mutate_u=lambda u: np.floor(u * 8) / 8)
    assert not ok_mut, info
    if spec_max is not None:  # mutation: the spec's scale saturates the block maximum at max_elem·2^X
        ok_mut, info = _mx_sr_mean_check(fmt_text, x0, bits, clip=spec_max)
        assert not ok_mut, info


def _mx_vc_moments_ok(xi):
    """Q^vc on MXINT8 (μ = 0.3, V = 1e-4, branch 1, no block crossing) from counter noise: mean μ and
    variance V within 4 MCSE (the variance's from the fourth central moment)."""
    fmt = parse_format("mxint8")
    n = 32 * 1250
    mu, var = 0.3, 1e-4
    ur, uc = (C.uniforms(C.stream_key(6, 0, 0, s), n) for s in ("u_round", "u_cat"))
    q = C._vc(np.full(n, mu), var, fmt, xi, ur, uc)
    d = q - q.mean()
    se_var = np.sqrt((np.mean(d**4) - np.mean(d**2) ** 2) / n)
    return (abs(q.mean() - mu) <= 4 * np.std(q) / np.sqrt(n) and abs(np.var(q) - var) <= 4 * se_var,
            (q.mean(), np.var(q)))


def test_mx_vc_on_the_counter_noise_has_mean_mu_and_variance_v_and_a_mutation_fails():
    key = C.stream_key(6, 0, 0, "xi")
    n = 32 * 1250
    ok, info = _mx_vc_moments_ok(C.normals(key, n))
    assert ok, info
    # mutation: Box-Muller without the factor 2 (normals of variance 1/2)
    u = C.uniforms(key, 2 * n)
    ok_mut, info = _mx_vc_moments_ok(np.sqrt(-np.log(1.0 - u[0::2])) * np.cos(2 * np.pi * u[1::2]))
    assert not ok_mut, info


def test_sr_matches_the_exact_path_in_distribution():
    """Fast-path SR (k-bit rule, counter uniforms) vs refimpl's exact Q^s (Generator): two-sample z-test."""
    import importlib

    rq = importlib.import_module("refimpl.quantize")
    fmt = parse_format("fixed:8:6")
    n = 40_000
    x = np.full(n, 0.123456)
    u = C.uniforms(C.stream_key(1, 0, 0, "u_weight"), n)
    fast = C.sr_round(x, fmt, u)
    exact = rq.stochastic_round(x, fmt, np.random.default_rng(1))
    se = np.sqrt(fast.var(ddof=1) / n + exact.var(ddof=1) / n)
    assert abs(fast.mean() - exact.mean()) < 4 * se
    # mutation: the comparison reversed (round up when u > f, probability 1 - f)
    z = x * 64.0
    mutant = (np.floor(z) + (u > z - np.floor(z))) / 64.0
    assert abs(mutant.mean() - exact.mean()) > 4 * se


def test_sr_round_saturates_and_passes_nan():
    fmt = parse_format("fixed:8:6")
    u = np.zeros(4)
    out = C.sr_round(np.array([100.0, -100.0, np.nan, np.inf]), fmt, u)
    assert out[0] == 127 / 64 and out[1] == -2.0 and np.isnan(out[2]) and out[3] == 127 / 64


def test_same_bits_without_jit():
    code = (
        "import numpy as np\n"
        "from refimpl import counter_rng as C\n"
        "from refimpl.formats import parse_format\n"
        "k = C.stream_key(4, 2, 1, 'xi')\n"
        "x = np.linspace(-1.3, 1.3, 37).reshape(37, 1)\n"
        "u = C.uniforms(k, 37)\n"
        "print(C.uniforms(k, 5).tobytes().hex(), C.normals(k, 5).tobytes().hex(), C.uniforms(k, 3, bits=24).tobytes().hex(),\n"
        "      C.sr_round(x, parse_format('bfp:6:0'), u).tobytes().hex(), C.sr_round(x, parse_format('float:4:3'), u).tobytes().hex(),\n"
        "      C.sr_round(x.reshape(1, 37), parse_format('mxfp4'), u).tobytes().hex())\n"
    )
    env = dict(os.environ)
    outs = []
    for flag in ("0", "1"):
        env["NUMBA_DISABLE_JIT"] = flag
        outs.append(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                                   timeout=300).stdout)
    assert outs[0] == outs[1]
