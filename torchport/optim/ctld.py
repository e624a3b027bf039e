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

Two paths (docs/ctld.md, "Two paths").  By default (``exact=False``) each
parameter's θ update is one fused function (:func:`ctld_theta_step`, compiled with
``torchport.fast.maybe_compile``) computed in the parameter's dtype, with ξ from the
counter stream (seed, step, parameter index, stream "xi"); the α block and the
histogram (:func:`ctld_alpha_step`) are float64 0-d / (n_bins,) tensors on the
parameters' device, with ξ_α at parameter index ``refimpl.ctld.ALPHA_PARAM_INDEX``
(2^63 − 1), stream "xi".  ``exact=True`` is the float64 path op by op with a
``torch.Generator``, bit-identical to refimpl (noise-in, ``qlangevin crosscheck``).

Distributed data parallel: when ``torch.distributed`` is initialised with more
than one rank, ``step`` averages the potential Ũ over the ranks (one
``all_reduce``, as DDP averages the gradients), so that α and the bias
histogram -- hence θ -- stay identical on all ranks.  The exact path also copies
rank 0's generator state to every rank at the first step; the default path needs
no such copy (every rank computes the same counter keys), but the ranks must be
given the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Mapping, Optional

import torch

from refimpl.ctld import ALPHA_PARAM_INDEX, ALPHA_STREAM, _alpha_update
from refimpl.formulas import ctld_coupling as _coupling
from refimpl.formulas import ctld_coupling_derivative as _coupling_derivative
from refimpl.methods import CTLD_CHOICES, CTLD_OPTIONS
from torchport import counter_rng as cr
from torchport import fast as F
from torchport.optim._base import NoisyOptimizer, _integer, _positive, _real, check_value

__all__ = ["CTLD", "coupling", "coupling_derivative", "ctld_alpha_step", "ctld_theta_step"]

_F64 = torch.float64

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


# ----------------------------------------------------------------------------- the default (fast) path
def ctld_theta_step(p: torch.Tensor, g: torch.Tensor, v: torch.Tensor, pkey: torch.Tensor, scale: torch.Tensor, *,
                    decay: float, noise_std: float, add_noise: bool
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One parameter's θ block of CTLD, fused; returns (θ', v', finite flag), computed in p's dtype.

    Phase 1 (C5): decay = 1 − c_θ, scale = η·g(α_t) (a 0-d float64 tensor: it changes every step),
    noise_std = √(2c_θηT), ξ from the counter stream at ``pkey`` (key(seed, step, parameter)),
    stream "xi":  v' = v·(1 − c_θ) − ∇Ũ·(η g(α)) + ξ·√(2c_θηT);  θ' = θ + v'.
    Phase 2 (C6): decay = μ_m, scale = η₂, no noise: v' = v·μ_m − ∇Ũ·η₂;  θ' = θ + v'.
    The exact path's operations in its order.  Pure (no in-place writes); the flag is
    all(isfinite(∇Ũ)) as a 0-d bool tensor.
    """
    finite = torch.isfinite(g).all()
    v2 = v * decay - g * scale.to(p.dtype)
    if add_noise:
        key = F._stream_keys(pkey, ["xi"])[0]
        v2 = v2 + F._noise_like(key, p, "normal") * noise_std
    return p + v2, v2, finite


def ctld_alpha_step(a: torch.Tensor, va: torch.Tensor, counts: torch.Tensor, ubar: torch.Tensor, U: torch.Tensor,
                    akey: torch.Tensor, *, delta1: float, delta2: float, g_min: float, alpha_max: float,
                    n_bins: int, bias: str, phi: str, k_c: float, c_alpha: float, eta_alpha: float,
                    alpha_noise_std: float, mirror: bool, omega: str, omega_const: float, meta_height: float,
                    meta_width: Optional[float]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The α block of (C5), the coupling g(α_t) and the histogram update (C3), on float64 device tensors.

    ``a``, ``va``, ``U`` are 0-d, ``counts``, ``ubar`` (n_bins,); ``akey`` is key(seed, step,
    ``ALPHA_PARAM_INDEX``) and ξ_α is element 0 of its stream "xi".  Returns (g(α_t), α', v_α',
    counts', ubar').  Every branch of the exact path is a ``torch.where`` of both sides, the
    arithmetic the same operations in the same order (g, g' of (C4) as refimpl.formulas), so with
    the same ξ_α the result is the exact path's bit for bit (metadynamics: torch.exp may differ
    from libm's exp in the last bit).  No host synchronisation: the bin index stays a tensor.
    """
    d1, d2, gmin, amax, nb = delta1, delta2, g_min, alpha_max, n_bins
    x = a.abs()
    s = (x - d1) / (d2 - d1)
    ga = torch.where(x <= d1, 1.0, torch.where(x >= d2, gmin, 1.0 - (1.0 - gmin) * s * s * (3.0 - 2.0 * s)))
    dmid = -(1.0 - gmin) * 6.0 * s * (1.0 - s) / (d2 - d1)
    dga = torch.where((x <= d1) | (x >= d2), 0.0, torch.where(a > 0, dmid, -dmid))
    jb = torch.floor((a + amax) / (2.0 * amax) * nb)
    # a NaN α (after a NaN potential, which check_finite reports) takes bin 0 instead of an invalid index
    jb = torch.clamp(torch.where(torch.isnan(jb), 0.0, jb), 0, nb - 1).to(torch.int64)

    def at(t, j):  # t[j] for a 0-d index tensor, without reading j back to the host
        return t.index_select(0, j.reshape(1)).reshape(())

    if bias == "abf":
        force = torch.where(at(counts, jb) > 0.0, dga * (U - at(ubar, jb)), dga * U)
    elif bias == "metadynamics":
        w = 2.0 * amax / nb
        jl = torch.where(jb > 0, jb - 1, jb)
        jr = torch.where(jb < nb - 1, jb + 1, jb)
        dV = torch.where(jr > jl, (at(ubar, jr) - at(ubar, jl)) / ((jr - jl).to(_F64) * w), 0.0)
        force = dga * U + dV
    else:
        force = dga * U
    if phi == "quadratic":
        ex = x - d2
        push = 2.0 * k_c * ex
        force = torch.where(ex > 0.0, force + torch.where(a > 0, push, -push), force)
    xa = F._noise_like(F._stream_keys(akey, [ALPHA_STREAM])[0], a, "normal")
    va2 = (1.0 - c_alpha) * va - eta_alpha * force + alpha_noise_std * xa
    a2 = a + va2
    if phi == "wall":
        for _ in range(4):
            hi, lo = a2 > amax, a2 < -amax
            a2 = torch.where(hi, 2.0 * amax - a2, torch.where(lo, -2.0 * amax - a2, a2))
            va2 = torch.where(hi | lo, -va2, va2)
    bins = torch.arange(nb, device=a.device)
    jm = nb - 1 - jb
    hit = (bins == jb) | ((bins == jm) & (jm != jb)) if mirror else bins == jb
    if bias == "metadynamics":
        w = 2.0 * amax / nb
        sw = meta_width if meta_width is not None else 2.0 * amax / nb
        ai = -amax + (bins.to(_F64) + 0.5) * w
        add = meta_height * torch.exp(-0.5 * ((ai - a) / sw) ** 2)
        if mirror:
            add = add + meta_height * torch.exp(-0.5 * ((ai + a) / sw) ** 2)
        return ga, a2, va2, counts + hit.to(_F64), ubar + add
    cnt = counts + hit.to(_F64)
    om = 1.0 / cnt if omega == "mean" else torch.where(cnt == 1.0, torch.ones_like(cnt), torch.full_like(cnt, omega_const))
    return ga, a2, va2, cnt, torch.where(hit, ubar + om * (U - ubar), ubar)


class CTLD(NoisyOptimizer):
    """Continuously tempered Langevin dynamics -- (C1)-(C6) [reconstruction]; Ye, Zhu & Mantiuk 2017.

    ``step(closure)`` needs the potential Ũ(θ_t): the closure must return it (the
    loss in U units, evaluated before the step; its gradient in ``.grad``).
    Phase 1 (C5), with ξ, ξ_α standard normals:

        v ← (1−c_θ)v − η g(α)∇Ũ + √(2c_θηT) ξ;   θ ← θ + v
        v_α ← (1−c_α)v_α − η_α[g'(α)(Ũ − Ū_j(α)) + φ'(α)] + √(2c_αη_αT) ξ_α;  α ← α + v_α (reflecting wall)

    and the ABF update (C3) at α_t (running mean, mirror bin).  After
    ``switch_after`` steps (optionally once |α| ≤ δ₁) phase 2 (C6): v ← μ_m v −
    η₂∇Ũ; θ ← θ + v.  ``in_target_band`` says whether g(α) = 1, i.e. whether θ
    is a sample of the target (C1).

    Paths (docs/ctld.md, "Two paths").  Default (``exact=False``): each parameter's θ
    update is :func:`ctld_theta_step` (fused; compiled unless ``compile=False`` or
    ``$QLANGEVIN_COMPILE=0``), in the parameter's dtype (float32/float64; float16 and
    bfloat16 are refused with TypeError), ξ from the counter stream at (seed, step,
    parameter index, "xi"); phase 2 draws no noise.  The α block and the histogram are
    :func:`ctld_alpha_step` on float64 device tensors, ξ_α at (seed, step,
    ``refimpl.ctld.ALPHA_PARAM_INDEX`` = 2^63 − 1, "xi").  A potential given as a tensor
    (the closure's loss) stays on the device and is checked for NaN/inf lazily
    (:meth:`check_finite`, ``check_every``), as the gradients are; a Python number is
    checked at once.  ``step()`` reads nothing back to the host, except with
    ``switch_wait_band=True`` from step L_s until the switch (|α| ≤ δ₁ decides the
    phase: one read per step).  refimpl replays a step: :func:`refimpl.ctld.replay_ctld_step`.
    ``seed``: an int, or a ``torch.Generator`` from which one integer is drawn.
    ``exact=True``: the float64 path op by op, with a ``torch.Generator``, streams per
    step (both phases) ``"xi"`` (one normal per parameter element) and ``"xi_alpha"``
    (one normal), noise-in by ``step(noise=...)``; bit-identical to refimpl.
    """

    fast_path_available = True

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, temperature: float = 1.0, *,
                 seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None, exact: bool = False, compile: Optional[bool] = None,
                 check_every: int = 0, **options: Any):
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
        super().__init__(params, dict(lr=float(lr), temperature=float(temperature)), seed=seed, generator=generator,
                         exact=exact, compile=compile, check_every=check_every)
        nb = o["n_bins"]
        sw = o["switch_after"]
        self.ct = {"alpha": float(o["alpha0"]), "alpha_velocity": 0.0,
                   "phase": 2 if (sw == 0 and not o["switch_wait_band"]) else 1, "steps": 0,
                   "counts": [0.0] * nb, "ubar": [0.0] * nb}
        if not exact:
            self.ct = self._on_device(self.ct)
            dev = self.counter.device
            self._potential_bad = torch.zeros((), dtype=torch.bool, device=dev)
            self._alpha_index = torch.tensor(ALPHA_PARAM_INDEX, dtype=torch.int64, device=dev)
            self._theta_fn = F.maybe_compile(ctld_theta_step, self.compile)
            self._alpha_fn = F.maybe_compile(ctld_alpha_step, self.compile)

    noise_layout = (("xi", "normal"),)
    group_rules = {"lr": "positive", "temperature": "nonnegative", "foreach": "bool_or_none"}
    extra_options = tuple(DEFAULTS)

    @property
    def alpha(self) -> float:
        """α_t as a float (on the default path a read from the device)."""
        return float(self.ct["alpha"])

    @property
    def in_target_band(self) -> bool:
        """|α_t| ≤ δ₁, i.e. g(α_t) = 1 (on the default path a read from the device)."""
        return abs(self.alpha) <= self.o["delta1"]

    def _on_device(self, ct: Mapping) -> dict:
        """The default path's form of the CTLD state: α, v_α 0-d and the histogram (n_bins,) float64 tensors on
        the parameters' device; phase and steps host ints (they change only at known steps)."""
        dev = self.counter.device
        return {k: (v if k in ("phase", "steps") else torch.tensor(v, dtype=_F64, device=dev))
                for k, v in ct.items()}

    def _extra_state(self):
        if self.exact:
            return {k: (list(v) if isinstance(v, list) else v) for k, v in self.ct.items()}
        return {k: (v if k in ("phase", "steps") else (v.tolist() if v.dim() else float(v)))
                for k, v in self.ct.items()}

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
        ct = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in extra.items()}
        self.ct = ct if self.exact else self._on_device(ct)

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
        """One CTLD step; the potential Ũ(θ_t) comes from ``closure()`` or ``potential=``.

        ``noise=`` ({"xi": ..., "xi_alpha": ...}) feeds pre-drawn noise on the exact path only.
        """
        if not self.exact and noise is not None:
            raise ValueError("noise= feeds the exact path's streams; the default (fast) path draws every number "
                             "from the counter stream: construct CTLD with exact=True to pass noise")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Everything that can fail is checked before the generator is advanced or anything is written.
        self._check_groups()
        T = self._check_temperatures()
        U = potential if potential is not None else loss
        if U is None and self.ct["phase"] == 1:
            raise ValueError("CTLD needs the potential: pass closure= returning Ũ(θ) or potential=, got neither")
        if not self.exact:
            return self._fast_ctld_step(loss, U, T)
        if U is not None:
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
        d1 = o["delta1"]
        ga = _coupling(a, d1, o["delta2"], o["g_min"])
        c_th = o["c_theta"]
        for (p, g, eta), z in zip(triples, xi):
            sd = math.sqrt(2.0 * c_th * eta * T)
            st = self.state[p]
            v = st.get("velocity", torch.zeros_like(p)) * (1.0 - c_th) - g * (eta * ga) + z.to(p.dtype) * sd
            st["velocity"] = v
            p.copy_(p + v)
        a_new, va = _alpha_update(a, va, ct["counts"], ct["ubar"], U, xa, T, o)
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

    # ------------------------------------------------------------------ the default (fast) path
    def _fast_potential(self, U) -> torch.Tensor:
        """Ũ as a 0-d float64 tensor on the parameters' device, averaged over the ranks under torch.distributed.

        A tensor stays on the device (its NaN/inf check is the lazy flag); a Python number is checked now.
        """
        dev = self.counter.device
        if isinstance(U, torch.Tensor):
            if U.numel() != 1:
                raise ValueError(f"potential must be a scalar, got a tensor of shape {tuple(U.shape)}")
            if U.dtype == torch.bool or U.is_complex():
                raise TypeError(f"potential must be a real number, got a tensor of dtype {U.dtype}")
            u = U.detach().reshape(()).to(device=dev, dtype=_F64)
        else:
            value = _real("potential", U)
            if not math.isfinite(value):
                raise ValueError(f"potential must be finite, got {U!r}")
            u = torch.full((), value, dtype=_F64, device=dev)
        if _distributed():
            import torch.distributed as dist
            buf = u.reshape(1).clone()
            dist.all_reduce(buf)  # the sum's result is broadcast, so every rank gets the same bits
            u = buf.reshape(()) / dist.get_world_size()
        return u

    def _alpha_key(self) -> torch.Tensor:
        """key(seed, step, ALPHA_PARAM_INDEX) on the device, from the counter's device seed and step.

        torchport.optim._fastpath.CounterStream exposes keys for parameter indices 0..n-1 only, so the
        α index's key is formed here from the same two device tensors (no host round trip)."""
        c = self.counter
        return cr.counter_bits(cr.counter_bits(c._seed_t, c._step_t), self._alpha_index)

    def _alpha_options(self, T: float) -> dict:
        o = self.o
        return dict(delta1=o["delta1"], delta2=o["delta2"], g_min=o["g_min"], alpha_max=o["alpha_max"],
                    n_bins=o["n_bins"], bias=o["bias"], phi=o["phi"], k_c=o["k_c"], c_alpha=o["c_alpha"],
                    eta_alpha=o["eta_alpha"], alpha_noise_std=math.sqrt(2.0 * o["c_alpha"] * o["eta_alpha"] * T),
                    mirror=o["mirror"], omega=o["omega"], omega_const=o["omega_const"],
                    meta_height=o["meta_height"], meta_width=o["meta_width"])

    def _fast_ctld_step(self, loss, U, T):
        """One default-path step after :meth:`step`'s common checks (``U``: the potential, ``T``: the checked
        temperature): the remaining checks first (nothing is written if one raises), then the α block on the
        device (phase 1), one fused θ update per parameter with a gradient, the counter and the lazy flags."""
        o, ct = self.o, self.ct
        phase1 = ct["phase"] == 1
        u = None
        if U is not None and phase1:
            u = self._fast_potential(U)
        elif isinstance(U, torch.Tensor):  # phase 2 does not use Ũ; checked as far as that needs no host read
            if U.numel() != 1:
                raise ValueError(f"potential must be a scalar, got a tensor of shape {tuple(U.shape)}")
        elif U is not None and not math.isfinite(_real("potential", U)):
            raise ValueError(f"potential must be finite, got {U!r}")
        todo, index = [], 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.requires_grad:
                    if p.grad.is_sparse:
                        raise TypeError("torchport optimizers do not support sparse gradients")
                    todo.append((group, index, p))
                index += 1
        n = index
        keys = self.counter.keys(n)
        dev = self.counter.device
        if phase1:
            ga, a2, va2, counts2, ubar2 = self._alpha_fn(ct["alpha"], ct["alpha_velocity"], ct["counts"], ct["ubar"],
                                                         u, self._alpha_key(), **self._alpha_options(T))
            self._potential_bad |= ~torch.isfinite(u)
        flags, indices = [], []
        for group, i, p in todo:
            eta = group["lr"]
            if phase1:
                kw = dict(decay=1.0 - o["c_theta"], noise_std=math.sqrt(2.0 * o["c_theta"] * eta * T), add_noise=True)
                scale = ga * eta
            else:
                kw = dict(decay=o["momentum"], noise_std=0.0, add_noise=False)
                scale = torch.full((), o["eta2"] if o["eta2"] else eta, dtype=_F64, device=dev)
            st = self.state[p]
            v = st.get("velocity")
            if v is None:
                v = torch.zeros_like(p)
            key = keys[i] if keys.device == p.device else keys[i].to(p.device)
            q, v2, finite = self._theta_fn(p.detach(), p.grad, v, key, scale.to(p.device), **kw)
            p.copy_(q)
            st["velocity"] = v2
            flags.append(finite)
            indices.append(i)
        if phase1:
            ct.update(alpha=a2, alpha_velocity=va2, counts=counts2, ubar=ubar2)
        ct["steps"] += 1
        self.counter.advance(flags, indices, n)
        self.num_steps += 1
        L = o["switch_after"]
        # the one host read of step(): whether α is in the band, only while the switch waits for it
        if phase1 and L is not None and ct["steps"] >= L and (not o["switch_wait_band"]
                                                             or bool(ct["alpha"].abs() <= o["delta1"])):
            ct["phase"] = 2
            if o["reset_velocity"]:
                for _, _, p in todo:
                    self.state[p]["velocity"] = torch.zeros_like(p)
        if self.check_every and self.num_steps % self.check_every == 0:
            self.check_finite()
        return loss

    def check_finite(self) -> None:
        """Default path: raise ``NonFiniteGradientError`` naming the first parameter whose gradient had a NaN/inf
        since the last check, or ``FloatingPointError`` if a potential given as a tensor was NaN/inf.

        The host synchronisation of the default path (``step()`` only ORs device flags); called every
        ``check_every`` steps (0: only when you call it).  A no-op on the exact path, whose ``step()`` raises.
        """
        if self.exact:
            return
        super().check_finite()
        if bool(self._potential_bad):
            self._potential_bad.zero_()
            raise FloatingPointError(f"non-finite potential (NaN or inf) given to CTLD.step at or before step "
                                     f"{self.num_steps}")


def _distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
