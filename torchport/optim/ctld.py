"""CTLD as a torch optimizer -- spec (C1)-(C6) [reconstruction]; Ye, Zhu & Mantiuk, NeurIPS 2017.

Mirrors :mod:`refimpl.ctld` (same options and defaults ``refimpl.ctld.OPTIONS``,
same noise streams and operation order).  The tempering variable α, its
velocity, the ABF histogram (counts c_j, means Ū_j, or the metadynamics bias)
and the phase are optimizer state (saved in ``state_dict``).  There is no
official code; g, φ, the discretisation and the bias estimator are a
reconstruction (Gobbo & Leimkuhler 2015), every choice a parameter.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from torchport.optim._base import NoisyOptimizer, _positive

__all__ = ["CTLD", "coupling", "coupling_derivative"]

DEFAULTS = {"c_theta": 0.1, "c_alpha": 0.1, "eta_alpha": 4e-4, "alpha_max": 1.0, "delta1": 0.2, "delta2": 0.8,
            "g_min": 0.1, "phi": "wall", "k_c": 10.0, "n_bins": 50, "bias": "abf", "mirror": True,
            "meta_height": 1e-3, "meta_width": None, "omega": "mean", "omega_const": 0.01,
            "switch_after": None, "switch_wait_band": False, "momentum": 0.9, "eta2": None,
            "reset_velocity": True, "alpha0": 0.0}


def coupling(a: float, d1: float, d2: float, gmin: float) -> float:
    """g(α) of (C4): 1 on |α| ≤ δ₁, g_min beyond δ₂, smoothstep between [reconstruction]."""
    x = abs(a)
    if x <= d1:
        return 1.0
    if x >= d2:
        return gmin
    s = (x - d1) / (d2 - d1)
    return 1.0 - (1.0 - gmin) * s * s * (3.0 - 2.0 * s)


def coupling_derivative(a: float, d1: float, d2: float, gmin: float) -> float:
    """g'(α) of (C4)."""
    x = abs(a)
    if x <= d1 or x >= d2:
        return 0.0
    s = (x - d1) / (d2 - d1)
    d = -(1.0 - gmin) * 6.0 * s * (1.0 - s) / (d2 - d1)
    return d if a > 0 else -d


class CTLD(NoisyOptimizer):
    """Continuously tempered Langevin dynamics -- (C1)-(C6) [reconstruction]; Ye, Zhu & Mantiuk 2017.

    ``step(closure)`` needs the potential Ũ(θ_t): the closure must return it (the
    loss in U units, evaluated before the step; its gradient in ``.grad``).
    Phase 1 (C5), with ξ, ξ_α standard normals:

        v ← (1−c_θ)v − η g(α)∇Ũ + √(2c_θηT) ξ;   θ ← θ + v
        v_α ← (1−c_α)v_α − η_α[g'(α)(Ũ − Ū_j(α)) + φ'(α)] + √(2c_αη_αT) ξ_α;  α ← α + v_α (reflecting wall)

    and the ABF update (C3) at α_t (running mean, mirror bin).  After
    ``switch_after`` steps (optionally once |α| ≤ δ₁) phase 2 (C6): v ← μ_m v −
    η₂∇Ũ; θ ← θ + v.  Streams per step (both phases): ``"xi"`` (one normal per
    parameter element) and ``"xi_alpha"`` (one normal).  ``in_target_band``
    says whether g(α) = 1, i.e. whether θ is a sample of the target (C1).
    """

    def __init__(self, params, lr: float, temperature: float = 1.0, *, seed: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, **options):
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown CTLD options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        o = dict(DEFAULTS, **options)
        _positive("lr", lr)
        _positive("temperature", temperature, allow_zero=True)
        for name in ("c_theta", "c_alpha"):
            if not 0 < o[name] < 1:
                raise ValueError(f"{name} must lie in (0, 1), got {o[name]!r}")
        for name in ("eta_alpha", "alpha_max", "k_c", "meta_height", "omega_const"):
            _positive(name, o[name])
        if not 0 <= o["delta1"] < o["delta2"] <= o["alpha_max"]:
            raise ValueError(f"need 0 <= delta1 < delta2 <= alpha_max, got {(o['delta1'], o['delta2'], o['alpha_max'])!r}")
        if not 0 < o["g_min"] <= 1:
            raise ValueError(f"g_min must lie in (0, 1], got {o['g_min']!r}")
        if o["phi"] not in ("wall", "quadratic") or o["bias"] not in ("none", "abf", "metadynamics") \
                or o["omega"] not in ("mean", "constant"):
            raise ValueError(f"phi/bias/omega invalid: {(o['phi'], o['bias'], o['omega'])!r}")
        if not (isinstance(o["n_bins"], int) and o["n_bins"] >= 2):
            raise ValueError(f"n_bins must be an integer >= 2, got {o['n_bins']!r}")
        self.o = o
        super().__init__(params, dict(lr=float(lr), temperature=float(temperature)), seed=seed, generator=generator)
        nb = o["n_bins"]
        sw = o["switch_after"]
        self.ct = {"alpha": float(o["alpha0"]), "alpha_velocity": 0.0,
                   "phase": 2 if (sw == 0 and not o["switch_wait_band"]) else 1, "steps": 0,
                   "counts": [0.0] * nb, "ubar": [0.0] * nb}

    noise_layout = (("xi", "normal"),)

    @property
    def alpha(self) -> float:
        return self.ct["alpha"]

    @property
    def in_target_band(self) -> bool:
        return abs(self.ct["alpha"]) <= self.o["delta1"]

    def _extra_state(self):
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.ct.items()}

    def _load_extra_state(self, extra):
        self.ct = {k: (list(v) if isinstance(v, list) else v) for k, v in extra.items()}

    @torch.no_grad()
    def step(self, closure=None, *, noise=None, potential: Optional[float] = None):
        """One CTLD step; the potential Ũ(θ_t) comes from ``closure()`` or ``potential=``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        U = potential if potential is not None else loss
        if U is None and self.ct["phase"] == 1:
            raise ValueError("CTLD needs the potential: pass closure= returning Ũ(θ) or potential=, got neither")
        active = self._active()
        params = [p for _, ps, _, _ in active for p in ps]
        for _, _, gs, ns in active:
            self._check_finite(gs, ns)
        flat = self._step_noise(None if noise is None else {"xi": noise["xi"]}, params)
        if noise is None:
            xa = float(self._draw("normal", 1, torch.float64)[0])
        else:
            if "xi_alpha" not in noise:
                raise ValueError("noise is missing stream 'xi_alpha'; CTLD uses ['xi', 'xi_alpha']")
            xa = float(torch.as_tensor(noise["xi_alpha"]).reshape(-1)[0])
        o, ct = self.o, self.ct
        group = self.param_groups[0]
        eta, T = group["lr"], group["temperature"]
        xi = self._split(flat, params)["xi"]
        grads = [g for _, _, gs, _ in active for g in gs]
        if ct["phase"] == 2:
            mu = o["momentum"]
            e2 = o["eta2"] if o["eta2"] else eta
            for p, g in zip(params, grads):
                st = self.state[p]
                v = st.get("velocity", torch.zeros_like(p)) * mu - g * e2
                st["velocity"] = v
                p.copy_(p + v)
            ct["steps"] += 1
            self.num_steps += 1
            return loss
        U = float(U)
        a, va = ct["alpha"], ct["alpha_velocity"]
        d1, d2, gmin, amax, nb = o["delta1"], o["delta2"], o["g_min"], o["alpha_max"], o["n_bins"]
        ga = coupling(a, d1, d2, gmin)
        dga = coupling_derivative(a, d1, d2, gmin)
        c_th, ca, ea = o["c_theta"], o["c_alpha"], o["eta_alpha"]
        sd = math.sqrt(2.0 * c_th * eta * T)
        for p, g, z in zip(params, grads, xi):
            st = self.state[p]
            v = st.get("velocity", torch.zeros_like(p)) * (1.0 - c_th) - g * (eta * ga) + z.to(p.dtype) * sd
            st["velocity"] = v
            p.copy_(p + v)
        jb = int(math.floor((a + amax) / (2.0 * amax) * nb))
        jb = 0 if jb < 0 else (nb - 1 if jb >= nb else jb)
        counts, ubar = ct["counts"], ct["ubar"]
        if o["bias"] == "abf":
            force = dga * (U - ubar[jb]) if counts[jb] > 0.0 else dga * U
        elif o["bias"] == "metadynamics":
            w = 2.0 * amax / nb
            jl = jb - 1 if jb > 0 else jb
            jr = jb + 1 if jb < nb - 1 else jb
            dV = (ubar[jr] - ubar[jl]) / ((jr - jl) * w) if jr > jl else 0.0
            force = dga * U + dV
        else:
            force = dga * U
        if o["phi"] == "quadratic":
            ex = abs(a) - d2
            if ex > 0.0:
                force += 2.0 * o["k_c"] * ex * (1.0 if a > 0 else -1.0)
        va = (1.0 - ca) * va - ea * force + math.sqrt(2.0 * ca * ea * T) * xa
        a_new = a + va
        if o["phi"] == "wall":
            for _ in range(4):
                if a_new > amax:
                    a_new, va = 2.0 * amax - a_new, -va
                elif a_new < -amax:
                    a_new, va = -2.0 * amax - a_new, -va
                else:
                    break
        jm = nb - 1 - jb
        if o["bias"] == "metadynamics":
            hgt = o["meta_height"]
            sw = o["meta_width"] if o["meta_width"] is not None else 2.0 * amax / nb
            w = 2.0 * amax / nb
            for i in range(nb):
                ai = -amax + (i + 0.5) * w
                add = hgt * math.exp(-0.5 * ((ai - a) / sw) ** 2)
                if o["mirror"]:
                    add += hgt * math.exp(-0.5 * ((ai + a) / sw) ** 2)
                ubar[i] += add
            counts[jb] += 1.0
            if o["mirror"] and jm != jb:
                counts[jm] += 1.0
        else:
            for jj in (jb, jm):
                if jj == jm and (not o["mirror"] or jm == jb):
                    continue
                cnt = counts[jj] + 1.0
                counts[jj] = cnt
                om = 1.0 / cnt if o["omega"] == "mean" else (1.0 if cnt == 1.0 else o["omega_const"])
                ubar[jj] += om * (U - ubar[jj])
        ct["alpha"], ct["alpha_velocity"] = a_new, va
        ct["steps"] += 1
        L = o["switch_after"]
        if L is not None and ct["steps"] >= L and (not o["switch_wait_band"] or abs(a_new) <= d1):
            ct["phase"] = 2
            if o["reset_velocity"]:
                for p in params:
                    self.state[p]["velocity"] = torch.zeros_like(p)
        self.num_steps += 1
        return loss
