"""The method table: one declaration of every sampler, read by both packages.

Every sampler method of the project is one :class:`Method` row of :data:`METHODS`:
its family (the refimpl module that implements it), the spec equation, whether
it is low precision, has momentum or injects noise, its options with their
defaults, the noise streams one step consumes, and the torchport optimizer
(class and fixed constructor arguments) that runs the same update.  Readers:

* ``refimpl.registry`` / ``refimpl.sample`` -- which module to import for a
  method, the option names and defaults it validates against, the LP-L init;
* the families' noise layouts (``refimpl.noise_spec``) -- the stream names and
  their order come from :attr:`Method.streams`;
* ``torchport.optim`` / ``torchport.train`` -- :func:`torch_optimizer` gives
  the optimizer class name and keyword arguments of a method;
* ``torchport.crosscheck`` -- refimpl's noise goes to the torch optimizer
  under the same stream names (no rename table).

This module is plain Python (no Numba, no torch), so any part of either
package can import it.  The crosswalk of argument names between the packages
is docs/crosswalk-names.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from refimpl._checks import check_count, check_real

__all__ = [
    "CTLD_CHOICES",
    "CTLD_OPTIONS",
    "FAMILIES",
    "GRADIENT",
    "METHODS",
    "QSGLD_CHOICES",
    "QSGLD_OPTIONS",
    "STREAMS",
    "Method",
    "method",
    "methods_of_family",
    "stream_entries",
    "torch_optimizer",
]

#: family -> the refimpl module that implements (and registers) its methods
FAMILIES = MappingProxyType({"sgld": "refimpl.sgld", "sghmc": "refimpl.sghmc", "qsgld": "refimpl.qsgld",
                             "ctld": "refimpl.ctld"})

#: marker in :attr:`Method.streams`: the gradient's streams (``batch_u`` for data targets, then
#: ``grad_noise`` when grad_noise > 0) are consumed here
GRADIENT = "<gradient>"

#: every noise stream name, its distribution and its per-chain shape (``"dim"``: one per coordinate)
STREAMS = MappingProxyType({
    "batch_u": ("uniform", "batch_size", "minibatch indices floor(u·N) (data targets)"),
    "grad_noise": ("normal", "dim", "ζ of the noisy gradient ∇Ũ = ∇U + s·ζ"),
    "u_weight": ("uniform", "dim", "Q_W: stochastic rounding of the weights / position (Q2')"),
    "u_grad": ("uniform", "dim", "Q_G: stochastic rounding of the gradient (Q2')"),
    "xi": ("normal", "dim", "injected Langevin noise ξ (Q^vc's normal in sgld_vc)"),
    "u_round": ("uniform", "dim", "Q^vc's rounding uniform (sgld_vc); QSGLD's rounding uniform (QS1)"),
    "u_cat": ("uniform", "dim", "Q^vc's categorical uniform (Q4) (sgld_vc)"),
    "z1": ("normal", "dim", "SGHMC velocity noise: ξ^v = √Σ_v z1"),
    "z2": ("normal", "dim", "SGHMC position noise: ξ^x = (Σ_xv/Σ_v) ξ^v + √(Σ_x − Σ_xv²/Σ_v) z2"),
    "u_velocity": ("uniform", "dim", "Q_V: stochastic rounding of the velocity (sghmc_lp_l)"),
    "xi_v": ("normal", "dim", "Q^vc of the velocity: normal (sghmc_vc)"),
    "u_round_v": ("uniform", "dim", "Q^vc of the velocity: rounding uniform (sghmc_vc)"),
    "u_cat_v": ("uniform", "dim", "Q^vc of the velocity: categorical uniform (sghmc_vc)"),
    "xi_x": ("normal", "dim", "Q^vc of the position: normal (sghmc_vc)"),
    "u_round_x": ("uniform", "dim", "Q^vc of the position: rounding uniform (sghmc_vc)"),
    "u_cat_x": ("uniform", "dim", "Q^vc of the position: categorical uniform (sghmc_vc)"),
    "v_refresh": ("normal", "dim", ("SGHMC momentum resampling: fresh velocity v = √(uT) z (drawn every step "
                                    "only when resample_momentum_every > 0; used at steps k ≡ 0 mod it)")),
    "xi_q": ("normal", "dim", "QSGLD surrogate noise (QS5)"),
    "xi_alpha": ("normal", 1, "CTLD tempering-variable noise ξ_α (C5)"),
})

#: QSGLD options and defaults (QS1)-(QS5) [reconstruction]; the same names in both packages
QSGLD_OPTIONS = MappingProxyType({
    "rounding": "nearest", "quantize": "params", "q0": None, "base": 2.0, "schedule": "constant", "rate": 0.0,
    "steps_per_epoch": 100, "time_index": "fractional", "resolutions": None, "optimizer": "sgd",
    "adam_betas": (0.9, 0.999), "adam_eps": 1e-8, "langevin_noise": False, "c_q": 2.0})

#: CTLD options and defaults (C1)-(C6) [reconstruction]; the same names in both packages
CTLD_OPTIONS = MappingProxyType({
    "c_theta": 0.1, "c_alpha": 0.1, "eta_alpha": 4e-4, "alpha_max": 1.0, "delta1": 0.2, "delta2": 0.8,
    "g_min": 0.1, "phi": "wall", "k_c": 10.0, "n_bins": 50, "bias": "abf", "mirror": True, "meta_height": 1e-3,
    "meta_width": None, "omega": "mean", "omega_const": 0.01, "switch_after": None, "switch_wait_band": False,
    "momentum": 0.9, "eta2": None, "reset_velocity": True, "alpha0": 0.0})

#: the allowed values of the string options, in the order of the kernels' integer codes (both packages)
QSGLD_CHOICES = MappingProxyType({
    "rounding": ("nearest", "stochastic", "uniform", "surrogate"), "quantize": ("params", "update"),
    "schedule": ("constant", "linear", "log"), "time_index": ("fractional", "printed"), "optimizer": ("sgd", "adam")})
CTLD_CHOICES = MappingProxyType({
    "phi": ("wall", "quadratic"), "bias": ("none", "abf", "metadynamics"), "omega": ("mean", "constant")})

_VC = {"ties": None, "vc_bfp_published": False}
_SGHMC = {"position_sign": "correct", "resample_momentum_every": 0}
_RESCALE = {"velocity_rescaling": None, "velocity_rescaling_constant": 1.0}


@dataclass(frozen=True)
class Method:
    """One sampler method (a row of the table; see the module docstring for who reads what).

    ``streams``: the noise one step consumes per chain, in refimpl's order, with
    :data:`GRADIENT` where the gradient's streams go (QSGLD and CTLD: the largest
    set; which of them a run draws depends on its options).  ``options``: the
    method options and defaults, named alike in both packages; ``refimpl_only``:
    those torchport does not offer.  ``torch_kwargs``: the constructor arguments
    that make ``torch_class`` run this method.
    """

    name: str
    family: str
    method_id: int
    equation: str
    low_precision: bool
    injects_noise: bool
    momentum: bool
    lp_storage: bool
    streams: tuple
    torch_class: str
    torch_kwargs: Mapping = field(default_factory=dict)
    options: Mapping = field(default_factory=dict)
    refimpl_only: tuple = ()

    @property
    def module(self) -> str:
        """The refimpl module implementing the method."""
        return FAMILIES[self.family]


def _row(name, family, mid, eq, *, lp, noise=True, momentum=False, storage=False, streams, torch, kwargs=None,
         options=None, refimpl_only=()):
    return Method(name, family, mid, eq, lp, noise, momentum, storage, tuple(streams), torch,
                  MappingProxyType(dict(kwargs or {})), MappingProxyType(dict(options or {})), tuple(refimpl_only))


G = GRADIENT
_ROWS = (
    # SGLD family (ALGORITHMS §3.2-§3.6), refimpl.sgld / torchport.optim.sgld
    _row("sgld", "sgld", 0, "(S1)", lp=False, streams=[G, "xi"], torch="SGLD"),
    _row("sgd_lp_f", "sgld", 1, "(S2)", lp=True, noise=False, streams=["u_weight", G, "u_grad"],
         torch="LowPrecisionSGLD", kwargs={"accumulator": "full", "add_noise": False}),
    _row("sgd_lp_l", "sgld", 2, "(S3)", lp=True, noise=False, storage=True, streams=[G, "u_grad", "u_weight"],
         torch="LowPrecisionSGLD", kwargs={"accumulator": "low", "add_noise": False}),
    _row("sgld_lp_f", "sgld", 3, "(S4)", lp=True, streams=["u_weight", G, "u_grad", "xi"],
         torch="LowPrecisionSGLD", kwargs={"accumulator": "full"}),
    _row("sgld_lp_l", "sgld", 4, "(S5)", lp=True, storage=True, streams=[G, "u_grad", "xi", "u_weight"],
         torch="LowPrecisionSGLD", kwargs={"accumulator": "low", "variance_corrected": False}),
    _row("sgld_vc", "sgld", 5, "(S6)", lp=True, storage=True, streams=[G, "u_grad", "xi", "u_round", "u_cat"],
         torch="LowPrecisionSGLD", kwargs={"accumulator": "low", "variance_corrected": True}, options=_VC),
    # SGHMC family (§3.8-§3.10), refimpl.sghmc / torchport.optim.sghmc
    _row("sghmc", "sghmc", 0, "(H1)", lp=False, momentum=True, streams=[G, "z1", "z2", "v_refresh"], torch="SGHMC",
         options=_SGHMC),
    _row("sghmc_lp_f", "sghmc", 1, "(H2)", lp=True, momentum=True, streams=["u_weight", G, "u_grad", "z1", "z2", "v_refresh"],
         torch="LowPrecisionSGHMC", kwargs={"accumulator": "full"}, options=_SGHMC),
    _row("sghmc_lp_l", "sghmc", 2, "(H3)", lp=True, momentum=True, storage=True,
         streams=[G, "u_grad", "z1", "z2", "u_velocity", "u_weight", "v_refresh"], torch="LowPrecisionSGHMC",
         kwargs={"accumulator": "low", "variance_corrected": False}, options={**_SGHMC, **_RESCALE}),
    _row("sghmc_vc", "sghmc", 3, "(H4)", lp=True, momentum=True, storage=True,
         streams=[G, "u_grad", "xi_v", "u_round_v", "u_cat_v", "xi_x", "u_round_x", "u_cat_x", "v_refresh"],
         torch="LowPrecisionSGHMC", kwargs={"accumulator": "low", "variance_corrected": True},
         options={**_SGHMC, **_RESCALE, **_VC, "vc_sigma_datasize_quirk": None},
         refimpl_only=("vc_sigma_datasize_quirk",)),
    # QSGLD (§3.12) and CTLD (§3.13), reconstructions
    _row("qsgld", "qsgld", 0, "(QS1)-(QS5)", lp=False, streams=[G, "xi", "u_round", "xi_q"], torch="QSGLD",
         options=QSGLD_OPTIONS),
    _row("ctld", "ctld", 0, "(C1)-(C6)", lp=False, streams=[G, "xi", "xi_alpha"], torch="CTLD",
         options=CTLD_OPTIONS),
)
del G

#: name -> :class:`Method`, in table order
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _ROWS})


def method(name: str) -> Method:
    """The table row of ``name``; ``ValueError`` naming the known methods otherwise."""
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name]


def methods_of_family(family: str) -> tuple:
    """The rows of one family, in ``method_id`` order."""
    rows = tuple(m for m in METHODS.values() if m.family == family)
    if not rows:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    return tuple(sorted(rows, key=lambda m: m.method_id))


def torch_optimizer(name: str) -> tuple:
    """``(class name in torchport.optim, constructor keyword arguments)`` running method ``name``."""
    m = method(name)
    return m.torch_class, dict(m.torch_kwargs)


def stream_entries(name: str, dim: int, *, batch_size: int = 0, grad_noise: float = 0.0, only: Collection[str] | None = None) -> list:
    """Noise entries ``[(stream, "normal"|"uniform", shape), ...]`` of one chain-step of ``name``.

    The gradient marker expands to ``batch_u`` (``batch_size`` > 0) and ``grad_noise``
    (``grad_noise`` > 0); ``only`` (a set of stream names), if given, keeps only those
    of the method's other streams (QSGLD and CTLD draw some streams under some options).
    """
    row = method(name)
    dim = check_count("dim", dim, 1)
    batch_size = check_count("batch_size", batch_size, 0)
    grad_noise = check_real("grad_noise", grad_noise, lo=0.0)
    out = []
    for s in row.streams:
        if s == GRADIENT:
            if batch_size > 0:
                out.append(("batch_u", "uniform", (int(batch_size),)))
            if grad_noise > 0.0:
                out.append(("grad_noise", "normal", (int(dim),)))
            continue
        if only is not None and s not in only:
            continue
        kind, shape, _ = STREAMS[s]
        out.append((s, kind, (int(dim),) if shape == "dim" else (int(shape),)))
    return out
