"""A small NumPy sampler with ``refimpl.sample``'s signature, for the claim-machinery tests.

It exists so that the claim tests run in a fraction of a second without Numba
compilation, and so that deliberately *broken* variants (naive rounding where VC
is expected, a wrong noise scale, a flipped SGHMC sign) can be injected.  It
implements (S1)–(S6) and (H1)–(H4) for fixed-point formats without clipping, on
the "gaussian" (U = ‖θ‖²/2) and "mixture" (spec §6.2) targets.  It is a test
double, not a reference: the real reference is refimpl.sample, which the slow
integration tests drive through the same claims.
"""

from __future__ import annotations

import numpy as np

from theory.predictions import sghmc_coefficients


def _sr(x, delta, rng):
    return delta * np.floor(x / delta + rng.random(x.shape))


def _nearest(x, delta):
    q = x / delta
    return delta * np.sign(q) * np.floor(np.abs(q) + 0.5)


def _cat(mu, var, delta, rng):
    pp = (var + mu**2 + mu * delta) / (2 * delta**2)
    pm = (var + mu**2 - mu * delta) / (2 * delta**2)
    u = rng.random(mu.shape)
    return np.where(u < pp, delta, np.where(u < pp + pm, -delta, 0.0))


def _vc(mu, var, delta, rng):
    v0 = delta**2 / 4
    if var > v0:
        x = mu + np.sqrt(var - v0) * rng.standard_normal(mu.shape)
        qd = _nearest(x, delta)
        r = x - qd
        return qd + np.sign(r) * _cat(np.abs(r), v0, delta, rng)
    q = _sr(mu, delta, rng)
    p = np.mod(mu / delta, 1.0)
    vs = p * (1 - p) * delta**2
    extra = np.maximum(var - vs, 0.0)
    return q + _cat(np.zeros_like(mu), extra, delta, rng)


def _grad(target, x, s, rng):
    if target == "gaussian":
        g = x.copy()
    elif target == "mixture":
        c = np.ones(x.shape[-1])
        g = 4 * x - 4 * c * np.tanh(4 * (x @ c))[..., None]
    else:
        raise ValueError(f"toy sampler: unknown target {target!r}")
    if s:
        g = g + s * rng.standard_normal(x.shape)
    return g


class ToySampler:
    """The test double as a picklable object (so theory.tasks can ship it to worker processes)."""

    picklable = True

    def __init__(self, **flags):
        self.flags = flags
        self._fn = _make(**flags)
        self.__name__ = "toy_sampler"

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __getstate__(self):
        return {"flags": self.flags}

    def __setstate__(self, state):
        self.__init__(**state["flags"])


def make_toy_sampler(*, noise_scale=1.0, vc_is_naive=False, flip_sign=False, lp_f_as_lp_l=False):
    """A sampler with refimpl.sample's signature; the flags break it on purpose.

    * ``noise_scale``: multiply the injected noise std (1 = correct);
    * ``vc_is_naive``: ``sgld_vc``/``sghmc_vc`` silently run the naive LP-L update;
    * ``flip_sign``: SGHMC uses the opposite position sign to the one requested;
    * ``lp_f_as_lp_l``: LP-F methods silently run naive LP-L.
    """
    return ToySampler(noise_scale=noise_scale, vc_is_naive=vc_is_naive, flip_sign=flip_sign, lp_f_as_lp_l=lp_f_as_lp_l)


def _make(*, noise_scale=1.0, vc_is_naive=False, flip_sign=False, lp_f_as_lp_l=False):
    def sample(
        method,
        target,
        *,
        dim=1,
        n_chains,
        n_steps,
        step_size,
        seed,
        fmt=None,
        grad_fmt=None,
        temperature=1.0,
        grad_noise=0.0,
        friction=None,
        inverse_mass=None,
        x0=None,
        burn_in=0,
        thin=1,
        keep="all",
        position_sign=None,
        sghmc_position_sign="correct",
        **unused,
    ):
        rng = np.random.default_rng(seed)
        eta = float(step_size)
        dw = None if fmt is None else fmt.delta
        dg = None if grad_fmt is None else grad_fmt.delta
        qg = (lambda g: _sr(g, dg, rng)) if dg else (lambda g: g)
        m = method
        if vc_is_naive and m.endswith("_vc"):
            m = m.replace("_vc", "_lp_l")
        if lp_f_as_lp_l and m.endswith("_lp_f"):
            m = m.replace("_lp_f", "_lp_l")
        x = np.zeros((n_chains, dim)) if x0 is None else np.broadcast_to(np.asarray(x0, float), (n_chains, dim)).copy()
        v = np.zeros((n_chains, dim))
        T = float(temperature)
        sd = noise_scale * np.sqrt(2 * eta * T)
        if m.startswith("sghmc"):
            u = 1.0 if inverse_mass is None else float(inverse_mass)
            gam = 1.0 if friction is None else float(friction)
            co = sghmc_coefficients(eta, u, gam)
            sign = position_sign if position_sign is not None else sghmc_position_sign
            sx = -1.0 if sign == "correct" else 1.0
            if flip_sign:
                sx = -sx
            Sx, Sv, Sxv = (T * noise_scale**2 * c for c in (co.sigma_x, co.sigma_v, co.sigma_xv))
        kept = []
        for k in range(int(n_steps)):
            if k > 0 and keep == "all" and k - 1 >= burn_in and (k - 1 - burn_in) % thin == 0:
                kept.append(x.copy())
            if m.startswith("sghmc"):
                xe = _sr(x, dw, rng) if (m == "sghmc_lp_f" and dw) else x
                g = qg(_grad(target, xe, grad_noise, rng))
                mv = co.a * v - co.c_v * g
                mx = x + co.c_xv * v + sx * co.c_xg * g
                if m == "sghmc_vc":
                    v, x = _vc(mv, Sv, dw, rng), _vc(mx, Sx, dw, rng)
                    continue
                z1, z2 = rng.standard_normal(x.shape), rng.standard_normal(x.shape)
                nv = np.sqrt(Sv) * z1
                nx = Sxv / Sv * nv + np.sqrt(Sx - Sxv**2 / Sv) * z2
                v, x = mv + nv, mx + nx
                if m == "sghmc_lp_l":
                    v, x = _sr(v, dw, rng), _sr(x, dw, rng)
                continue
            if m == "qsgld":  # docs/qsgld.md (QS1)-(QS3) with the SGD direction; q0 given or from T_eff = T
                q = unused.get("resolutions")
                q = float(q[k]) if q is not None else float(unused.get("q0") or 1.0 / np.sqrt(24.0 * eta * T))
                pre = x - eta * _grad(target, x, grad_noise, rng)
                rounding = unused.get("rounding", "nearest")
                if rounding == "uniform":
                    x = pre + (rng.random(x.shape) - 0.5) / q
                elif rounding == "stochastic":
                    x = np.floor(q * pre + rng.random(x.shape)) / q
                else:
                    x = np.floor(q * pre + 0.5) / q
                continue
            if m in ("sgld_lp_f", "sgd_lp_f") and dw:
                g = qg(_grad(target, _sr(x, dw, rng), grad_noise, rng))
            else:
                g = qg(_grad(target, x, grad_noise, rng))
            mu = x - eta * g
            if m == "sgld_vc":
                x = _vc(mu, noise_scale**2 * 2 * eta * T, dw, rng)
            elif m.startswith("sgd"):
                x = _sr(mu, dw, rng) if m == "sgd_lp_l" else mu
            else:
                x = mu + sd * rng.standard_normal(x.shape)
                if m == "sgld_lp_l":
                    x = _sr(x, dw, rng)
        if keep == "all" and n_steps - 1 >= burn_in and (n_steps - 1 - burn_in) % thin == 0:
            kept.append(x.copy())
        return np.stack(kept) if keep == "all" else x[None].copy()

    return sample


toy_sample = make_toy_sampler()
