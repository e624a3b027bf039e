"""Monte Carlo helpers shared by the sampler tests (independent-chain standard errors).

All estimates below use **independent chains**: each chain contributes one
per-chain statistic (a time average over its kept steps); the chains are
independent by construction (disjoint noise from one Generator), so the standard
error of the mean of those statistics is std/sqrt(n_chains) -- exact whatever
the autocorrelation inside a chain.  A check passes when |z| < Z_TOL with
Z_TOL = 5 (two-sided false-alarm probability 6e-7 per check for a Gaussian
statistic; n_chains >= 2000 everywhere, so the CLT is accurate).
"""

from __future__ import annotations

import numpy as np

Z_TOL = 5.0


def chain_second_moments(stats, coord=0):
    """Per-chain time-averaged θ² of coordinate ``coord`` from ``keep="stats"`` output."""
    return stats.chain_var[:, coord] + stats.chain_mean[:, coord] ** 2


def mean_se(values):
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.shape[0]))


def z_score(values, predicted):
    m, se = mean_se(values)
    return (m - predicted) / se, m, se


def sr_var_gaussian(mean, sd, delta):
    """E[p(1-p)Δ²] for pre ~ N(mean, sd²), p = frac(pre/Δ), in closed form (vectorised over ``mean``).

    Sum over the grid cells [a, b] = [kΔ, (k+1)Δ] within mean ± 12·sd of
    E[(pre − a)(b − pre); a < pre < b], from the Gaussian partial moments.  Used for
    the exact (P0) identity of naive SGLDLP-L (§5.8 P3).  ``sd`` is a scalar.
    """
    from scipy.special import ndtr

    m = np.asarray(mean, dtype=np.float64)[..., None]
    half = int(np.ceil(12.0 * sd / delta)) + 1
    k0 = np.floor(m / delta)
    ks = k0 + np.arange(-half, half + 1)
    a = ks * delta
    b = a + delta
    al = (a - m) / sd
    be = (b - m) / sd
    pa = np.exp(-0.5 * al * al) / np.sqrt(2 * np.pi)
    pb = np.exp(-0.5 * be * be) / np.sqrt(2 * np.pi)
    P = ndtr(be) - ndtr(al)
    E1 = m * P + sd * (pa - pb)
    E2 = (m * m + sd * sd) * P + 2 * m * sd * (pa - pb) + sd * sd * (al * pa - be * pb)
    return (-E2 + (a + b) * E1 - a * b * P).sum(axis=-1)


def sr_var(x, delta):
    """p(1-p)Δ² at the points x (the exact variance of stochastic rounding of x)."""
    p = np.asarray(x) / delta - np.floor(np.asarray(x) / delta)
    return p * (1.0 - p) * delta * delta


#: offline robustness check: QLANGEVIN_TEST_SEED_OFFSET=k shifts every seed of the
#: statistical sampler tests (the suite is run for several k before a change lands)
SEED_OFFSET = int(__import__("os").environ.get("QLANGEVIN_TEST_SEED_OFFSET", "0"))


def seed(s: int) -> int:
    return s + SEED_OFFSET


def use_spec_vc_clip(monkeypatch):
    """Mutation: the spec's original Q^vc range rule for BFP/float (branch-1 results clipped to
    μ's block/binade range, which collapses the chains), switched on through the kernel's test
    hook, code[7] bit 2, on the registry's weight format code (refimpl.registry.build_context)."""
    import refimpl.registry as drv  # builds the weight format code of every run
    from refimpl._qkernels import VC_SPEC_CLIP_BIT

    orig = drv._as_format

    def patched(name, fmt):
        f, code = orig(name, fmt)
        if name == "fmt" and int(code[0]) >= 2:
            code = np.array(code)
            code[7] = float(int(code[7]) | VC_SPEC_CLIP_BIT)
        return f, code

    monkeypatch.setattr(drv, "_as_format", patched)
