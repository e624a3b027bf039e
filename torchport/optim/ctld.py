"""CTLD as a torch optimizer -- spec (C1)-(C6) [reconstruction]; Ye, Zhu & Mantiuk, NeurIPS 2017.

Mirrors :mod:`refimpl.ctld` (same options and defaults ``refimpl.ctld.OPTIONS``,
same noise streams and operation order).  The tempering variable α, its
velocity, the ABF histogram (counts c_j, means Ū_j, or the metadynamics bias)
and the phase are optimizer state (saved in ``state_dict``).  There is no
official code; g, φ, the discretisation and the bias estimator are a
reconstruction (Gobbo & Leimkuhler 2015), every choice a parameter.

Parameter groups: each group's ``lr`` (η, and η₂'s default) is honoured for its
parameters; the temperature is one for the extended system (θ, α), so every
group must have the same ``temperature`` (a different one is refused by name).

Distributed data parallel: when ``torch.distributed`` is initialised with more
than one rank, ``step`` averages the potential Ũ over the ranks (one
``all_reduce``, as DDP averages the gradients) and, at the first step, copies
rank 0's generator state to every rank, so that α, the bias histogram and the
noise -- hence θ -- stay identical on all ranks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Mapping, Optional

import torch

from refimpl.formulas import ctld_coupling as _coupling
from refimpl.formulas import ctld_coupling_derivative as _coupling_derivative
from refimpl.methods import CTLD_CHOICES, CTLD_OPTIONS
from torchport.optim._base import NoisyOptimizer, _integer, _positive, _real, check_value

__all__ = ["CTLD", "coupling", "coupling_derivative"]

#: the options and defaults of the ctld row of refimpl.methods (one definition for both packages)
DEFAULTS = dict(CTLD_OPTIONS)


#: Rules (torchport.optim._base.check_value) of the numeric options; None allowed where the default is None.
OPTION_RULES = {"c_theta": "open_unit", "c_alpha": "open_unit", "eta_alpha": "positive", "alpha_max": "positive",
                "delta1": "nonnegative", "delta2": "positive", "g_min": "positive", "k_c": "positive",
                "n_bins": "int>=2", "meta_height": "positive", "meta_width": "positive", "omega_const": "positive",
                "switch_after": "int>=0", "momentum": "unit", "eta2": "positive", "alpha0": "finite"}


def _check_coupling_args(a, d1, d2, gmin):
    _real("a", a)
    if not math.isfinite(float(a)):
        raise ValueError(f"a must be finite, got {a!r}")
    _positive("d1", d1, allow_zero=True)
    _positive("d2", d2)
    if not d1 < d2:
        raise ValueError(f"need d1 < d2, got d1={d1!r}, d2={d2!r}")
    gmin = _real("gmin", gmin)
    if not 0.0 < gmin <= 1.0:
        raise ValueError(f"gmin must lie in (0, 1], got {gmin!r}")


def coupling(a: float, d1: float, d2: float, gmin: float) -> float:
    """g(α) of (C4): 1 on |α| ≤ δ₁, g_min beyond δ₂, smoothstep between [reconstruction]."""
    _check_coupling_args(a, d1, d2, gmin)
    return _coupling(a, d1, d2, gmin)


def coupling_derivative(a: float, d1: float, d2: float, gmin: float) -> float:
    """g'(α) of (C4)."""
    _check_coupling_args(a, d1, d2, gmin)
    return _coupling_derivative(a, d1, d2, gmin)


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

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, temperature: float = 1.0, *,
                 seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None, **options: Any):
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown CTLD options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        o = dict(DEFAULTS, **options)
        _positive("lr", lr)
        _positive("temperature", temperature, allow_zero=True)
        for name, rule in OPTION_RULES.items():
            if o[name] is not None or DEFAULTS[name] is not None:
                check_value(name, o[name], rule)
        if not o["delta1"] < o["delta2"] <= o["alpha_max"]:
            raise ValueError("need 0 <= delta1 < delta2 <= alpha_max, got "
                             f"delta1={o['delta1']!r}, delta2={o['delta2']!r}, alpha_max={o['alpha_max']!r}")
        if not 0 < o["g_min"] <= 1:
            raise ValueError(f"g_min must lie in (0, 1], got {o['g_min']!r}")
        if not abs(o["alpha0"]) <= o["alpha_max"]:
            raise ValueError(f"alpha0 must lie in [-alpha_max, alpha_max] = [{-o['alpha_max']!r}, {o['alpha_max']!r}], "
                             f"got {o['alpha0']!r}")
        for name, allowed in CTLD_CHOICES.items():
            if o[name] not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {o[name]!r}")
        for name in ("mirror", "switch_wait_band", "reset_velocity"):
            if not isinstance(o[name], bool):
                raise TypeError(f"{name} must be a bool, got {o[name]!r}")
        self.o = o
        super().__init__(params, dict(lr=float(lr), temperature=float(temperature)), seed=seed, generator=generator)
        nb = o["n_bins"]
        sw = o["switch_after"]
        self.ct = {"alpha": float(o["alpha0"]), "alpha_velocity": 0.0,
                   "phase": 2 if (sw == 0 and not o["switch_wait_band"]) else 1, "steps": 0,
                   "counts": [0.0] * nb, "ubar": [0.0] * nb}

    noise_layout = (("xi", "normal"),)
    group_rules = {"lr": "positive", "temperature": "nonnegative", "foreach": "bool_or_none"}
    extra_options = tuple(DEFAULTS)

    @property
    def alpha(self) -> float:
        return self.ct["alpha"]

    @property
    def in_target_band(self) -> bool:
        return abs(self.ct["alpha"]) <= self.o["delta1"]

    def _extra_state(self):
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.ct.items()}

    def _check_extra_state(self, extra):
        where = "state_dict['extra_state']"
        if not isinstance(extra, dict) or set(extra) != set(self.ct):
            got = sorted(extra) if isinstance(extra, dict) else type(extra).__name__
            raise ValueError(f"{where} must be a dict with keys {sorted(self.ct)}, got {got}")
        amax = self.o["alpha_max"]
        for key in ("alpha", "alpha_velocity"):
            v = _real(key, extra[key], f"{where}: ")
            if not math.isfinite(v) or (key == "alpha" and abs(v) > amax):
                raise ValueError(f"{where}: {key} must be finite{' and in [-alpha_max, alpha_max]' if key == 'alpha' else ''}"
                                 f", got {extra[key]!r}")
        if extra["phase"] not in (1, 2):
            raise ValueError(f"{where}: phase must be 1 or 2, got {extra['phase']!r}")
        _integer("steps", extra["steps"], 0, f"{where}: ")
        nb = self.o["n_bins"]
        for key in ("counts", "ubar"):
            v = extra[key]
            if not isinstance(v, (list, tuple)) or len(v) != nb or not all(
                    isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                raise ValueError(f"{where}: {key} must be a list of {nb} finite numbers (n_bins), got {v!r}")

    def _load_extra_state(self, extra):
        self.ct = {k: (list(v) if isinstance(v, list) else v) for k, v in extra.items()}

    def add_param_group(self, param_group: dict) -> None:
        """As NoisyOptimizer's; a group whose temperature differs from the first group's is refused by name."""
        if (self.param_groups and isinstance(param_group, Mapping) and "temperature" in param_group
                and param_group["temperature"] != self.param_groups[0]["temperature"]):
            raise ValueError(f"param group {len(self.param_groups)}: temperature={param_group['temperature']!r} "
                             "differs from the first group's "
                             f"{self.param_groups[0]['temperature']!r}; CTLD has one temperature for (θ, α)")
        super().add_param_group(param_group)

    def _check_temperatures(self):
        temps = [g["temperature"] for g in self.param_groups]
        if any(t != temps[0] for t in temps):
            raise ValueError("CTLD has one temperature for the extended system (θ, α); every param group must have "
                             f"the same temperature, got {temps!r}")
        return temps[0]

    def _potential(self, U):
        """Ũ as a float, averaged over the ranks under torch.distributed; ValueError/TypeError naming it."""
        if isinstance(U, torch.Tensor):
            if U.numel() != 1:
                raise ValueError(f"potential must be a scalar, got a tensor of shape {tuple(U.shape)}")
            U = U.detach()
        U = _real("potential", U)
        if _distributed():
            import torch.distributed as dist
            dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            buf = torch.tensor([U], dtype=torch.float64, device=dev)
            dist.all_reduce(buf)  # the sum's result is broadcast, so every rank gets the same float
            U = float(buf[0]) / dist.get_world_size()
        if not math.isfinite(U):
            raise ValueError(f"potential must be finite, got {U!r}")
        return U

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None, *,
             noise: Mapping[str, torch.Tensor] | None = None,
             potential: Optional[float] = None) -> torch.Tensor | None:
        """One CTLD step; the potential Ũ(θ_t) comes from ``closure()`` or ``potential=``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Everything that can fail is checked before the generator is advanced or anything is written.
        self._check_groups()
        T = self._check_temperatures()
        U = potential if potential is not None else loss
        if U is None:
            if self.ct["phase"] == 1:
                raise ValueError("CTLD needs the potential: pass closure= returning Ũ(θ) or potential=, "
                                 "got neither")
        else:
            U = self._potential(U)
        active = self._active()
        params = [p for _, ps, _, _ in active for p in ps]
        for _, _, gs, ns in active:
            self._check_finite(gs, ns)
        if noise is not None:
            if not isinstance(noise, Mapping):
                raise TypeError(f"noise must be a mapping name -> tensor, got {type(noise).__name__}")
            for name in ("xi", "xi_alpha"):
                if name not in noise:
                    raise ValueError(f"noise is missing stream {name!r}; CTLD uses ['xi', 'xi_alpha']")
            xa_t = torch.as_tensor(noise["xi_alpha"]).reshape(-1)
            if xa_t.numel() != 1:
                raise ValueError(f"noise['xi_alpha'] must have 1 element, got shape {tuple(xa_t.shape)}")
        if _distributed() and not getattr(self, "_generator_synced", False):
            from torchport.distributed import broadcast_generator_state
            broadcast_generator_state(self.generator)  # same noise on every rank from the first step on
            self._generator_synced = True
        flat = self._step_noise(None if noise is None else {"xi": noise["xi"]}, params) if params else {"xi": []}
        if noise is None:
            xa = float(self._draw("normal", 1, torch.float64)[0])
        else:
            xa = float(xa_t[0])
        o, ct = self.o, self.ct
        xi = self._split(flat, params)["xi"] if params else []
        # per parameter: (parameter, gradient, its group's lr)
        triples = [(p, g, group["lr"]) for group, ps, gs, _ in active for p, g in zip(ps, gs)]
        if ct["phase"] == 2:
            mu = o["momentum"]
            for p, g, eta in triples:
                e2 = o["eta2"] if o["eta2"] else eta
                st = self.state[p]
                v = st.get("velocity", torch.zeros_like(p)) * mu - g * e2
                st["velocity"] = v
                p.copy_(p + v)
            ct["steps"] += 1
            self.num_steps += 1
            return loss
        a, va = ct["alpha"], ct["alpha_velocity"]
        d1, d2, gmin, amax, nb = o["delta1"], o["delta2"], o["g_min"], o["alpha_max"], o["n_bins"]
        ga = _coupling(a, d1, d2, gmin)
        dga = _coupling_derivative(a, d1, d2, gmin)
        c_th, ca, ea = o["c_theta"], o["c_alpha"], o["eta_alpha"]
        for (p, g, eta), z in zip(triples, xi):
            sd = math.sqrt(2.0 * c_th * eta * T)
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


def _distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
