"""SGLD family as torch optimizers: ``SGLD`` (S1) and ``LowPrecisionSGLD`` (S2)-(S6).

Scaling contract (spec §3.1, (S0)).  For a loss L whose gradient is in
``p.grad``, one step of ``SGLD(params, lr, temperature=T, num_data=N)`` is

    θ ← θ − lr·(∇L + wd·θ) + √(2·lr·T/N)·ξ,        ξ ~ N(0, I).

* L = U (the full negative log posterior) and N = 1: textbook SGLD (S1) with
  step η = lr and temperature T.
* L = mean minibatch NLL + (−log prior)/N = U/N and N = dataset size: this is
  the published deep-learning code (ruqizhang/low-precision-sgld bnn/optim.py),
  i.e. (S1) with η = lr/N -- the noise variance 2·lr·T/N = 2ηT.

Worked example (docs/torchport.md): N = 50000, lr = 0.5, T = 1e-3 gives noise
variance 2·0.5·1e-3/50000 = 2e-8 per coordinate and per step, equal to 2ηT with
η = lr/N = 1e-5.

Every arithmetic step is written as separate torch operations in the order of
refimpl's kernels (no ``alpha=`` fused multiply-adds), so that float64 CPU
trajectories equal refimpl's bit for bit when fed the same noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, Optional

import torch

from torchport import fast as F
from torchport import quantize as tq
from torchport.quantize import Format
from torchport.optim._base import LowPrecisionWeightsMixin, NoisyOptimizer, _positive, as_format
from torchport.optim._fastpath import check_fast_format

__all__ = ["SGLD", "LowPrecisionSGLD"]


def _noise_var(lr, temperature, num_data):
    """V = 2·lr·T/N, the injected per-coordinate variance (S0)."""
    return 2.0 * lr * temperature / num_data


def _noise_std(lr, temperature, num_data):
    """√(2·lr·T/N) (S0)."""
    return math.sqrt(_noise_var(lr, temperature, num_data))


class _FastSGLD:
    """The default (fast) path of the SGLD family: :func:`torchport.fast.sgld_step` per parameter.

    Needs ``weight_format``, ``grad_format``, ``accumulator``, ``variance_corrected``,
    ``add_noise`` and ``vc_options`` (SGLD: no formats, accumulator "low").
    """

    fast_path_available = True

    def _fast_setup(self) -> None:
        wf, gf = self.weight_format, self.grad_format
        self._fast_codes = (None if wf is None else F._code(wf, self.vc_options["ties"], self.vc_options["vc_published"]),
                            None if gf is None else F._code(gf))
        self._fast_mode, self._fast_views = F._layout([wf, gf])
        self._fast_fn = F.maybe_compile(F.sgld_step, self.compile)
        self._fast_group_fn = F.maybe_compile(F.sgld_step_group, self.compile)

    def _fast_group_args(self, group) -> dict:
        lr = group["lr"]
        return dict(lr=lr, var=_noise_var(lr, group["temperature"], group["num_data"]),
                    weight_decay=group["weight_decay"])

    def _fast_update(self, p, key, args) -> torch.Tensor:
        m = self._fast_mode
        acc = self.state[p]["accumulator"] if self.accumulator == "full" else None
        q, acc2, finite = self._fast_fn(
            F._view(p, m), F._view(p.grad, m), F._view(acc, m), key, lr=args["lr"], var=args["var"],
            weight_fmt=self._fast_views[0], weight_code=self._fast_codes[0], grad_fmt=self._fast_views[1],
            grad_code=self._fast_codes[1], accumulator=self.accumulator, variance_corrected=self.variance_corrected,
            weight_decay=args["weight_decay"], add_noise=self.add_noise)
        p.copy_(q.reshape(p.shape))
        if acc is not None:
            acc.copy_(acc2.reshape(acc.shape))
        return finite

    def _fast_update_group(self, todo, keys) -> list | None:
        """All parameters of the step in one call of :func:`torchport.fast.sgld_step_group` (the same bits as
        :meth:`_fast_update` per parameter); None (per-parameter calls) where ``fast._group_members`` says so."""
        members = F._group_members(todo, keys, (self.weight_format, self.grad_format))
        if members is None:
            return None
        m = self._fast_mode
        full = self.accumulator == "full"
        ps = [F._view(p, m) for _, _, p in members]
        accs = F._group_views([self.state[p]["accumulator"] if full else None for _, _, p in members], m)
        if accs is None:
            return None
        qs, acc2s, flags = self._fast_group_fn(
            ps, [F._view(p.grad, m) for _, _, p in members], accs, keys, [i for _, i, _ in members],
            lrs=[a["lr"] for a, _, _ in members], variances=[a["var"] for a, _, _ in members],
            weight_decays=[a["weight_decay"] for a, _, _ in members], weight_fmt=self._fast_views[0],
            weight_code=self._fast_codes[0], grad_fmt=self._fast_views[1], grad_code=self._fast_codes[1],
            accumulator=self.accumulator, variance_corrected=self.variance_corrected, add_noise=self.add_noise)
        torch._foreach_copy_(ps, qs)
        if full:
            torch._foreach_copy_(accs, acc2s)
        return flags


class SGLD(_FastSGLD, NoisyOptimizer):
    """Full-precision SGLD -- spec (S1); Welling & Teh 2011 eq. (4); LP-SGLD (Zhang et al. 2022) eq. (2).

    θ_{k+1} = θ_k − lr·(g_k + wd·θ_k) + √(2·lr·T/N)·ξ_k  with g_k = ``p.grad``.

    Parameters: ``lr`` > 0, ``temperature`` T ≥ 0, ``num_data`` N ≥ 1 (see the
    module docstring for the scaling contract), ``weight_decay`` wd ≥ 0 (a
    Gaussian prior term added to the gradient, unquantized), ``add_noise``
    (False gives plain SGD, the noise-free baseline), ``foreach`` (multi-tensor
    ``torch._foreach_*`` path; bitwise identical to the per-tensor path),
    ``seed``/``generator``.  Randomness: one standard normal per element per
    step (stream ``"xi"``).  Departure from the published code: none in the
    update; the noise is drawn from an explicit generator rather than CUDA's
    global RNG.

    Path: by default (``exact=False``) the update is :func:`torchport.fast.sgld_step`
    without formats, in the parameter's dtype, with ξ from the counter stream (seed:
    an int, or a ``torch.Generator`` from which one integer is drawn; ``compile``,
    ``check_every``: docs/torchport.md, "Two paths"; ``foreach=True`` is refused there).
    ``exact=True``: the float64-parity path described above (``foreach``, noise-in).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, temperature: float = 1.0,
                 num_data: float = 1, *, weight_decay: float = 0.0, add_noise: bool = True,
                 seed: Optional[int] | torch.Generator = None, generator: Optional[torch.Generator] = None,
                 foreach: Optional[bool] = None, exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
        _positive("lr", lr)
        _positive("temperature", temperature, allow_zero=True)
        _positive("num_data", num_data)
        _positive("weight_decay", weight_decay, allow_zero=True)
        self.add_noise = bool(add_noise)
        self.weight_format = self.grad_format = None
        self.accumulator, self.variance_corrected = "low", False
        self.vc_options = dict(ties=None, vc_published=False)
        defaults = dict(lr=float(lr), temperature=float(temperature), num_data=float(num_data),
                        weight_decay=float(weight_decay))
        super().__init__(params, defaults, seed=seed, generator=generator, foreach=foreach, exact=exact,
                         compile=compile, check_every=check_every)
        if not exact:
            self._fast_setup()

    @property
    def noise_layout(self) -> tuple[tuple[str, str], ...]:
        return (("xi", "normal"),) if self.add_noise else ()

    def _update_group(self, group, params, grads, noise):
        lr, wd = group["lr"], group["weight_decay"]
        std = _noise_std(lr, group["temperature"], group["num_data"])
        if self._use_foreach(group, params):
            d = list(grads) if wd == 0 else torch._foreach_add(grads, torch._foreach_mul(params, wd))
            torch._foreach_sub_(params, torch._foreach_mul(d, lr))
            if self.add_noise:
                xs = [z if z.dtype == q.dtype else z.to(q.dtype) for z, q in zip(noise["xi"], params)]
                torch._foreach_add_(params, torch._foreach_mul(xs, std))
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g if wd == 0 else g + p * wd
            p.sub_(d * lr)
            if self.add_noise:
                p.add_(noise["xi"][i].to(p.dtype) * std)


class LowPrecisionSGLD(_FastSGLD, LowPrecisionWeightsMixin, NoisyOptimizer):
    """Low-precision SGLD and SGD -- spec (S2)-(S6); LP-SGLD (Zhang, Wilson & De Sa 2022) eqs. 1, 14, 17.

    With g_q = Q_G(g) (stochastic rounding, Q2'), d = g_q + wd·θ (weight decay
    unquantized and added after Q_G, §3.11), σ = √(2·lr·T/N):

    * ``accumulator="full"`` (SGLDLP-F, (S4); ``add_noise=False``: SGDLP-F (S2)):
      acc ← acc − lr·d + σ·ξ;  θ ← Q_W(acc)  (θ is what the model sees; acc in
      ``state[p]["accumulator"]``, the parameter's dtype).
    * ``accumulator="low"``, ``variance_corrected=False`` (naive SGLDLP-L (S5);
      no noise: SGDLP-L (S3)):  θ ← Q_W(θ − lr·d + σ·ξ).
    * ``accumulator="low"``, ``variance_corrected=True`` (VC SGLDLP-L, (S6)):
      θ ← Q^vc(θ − lr·d, V = σ², Q_W's grid)  ((Q5)/(Q6)).

    Q_W is stochastic rounding to ``weight_format`` (refimpl format or string,
    e.g. ``"fixed:8:6"``), Q_G to ``grad_format``: ``"same"`` (the default, as
    refimpl's ``grad_fmt``: the weight format, as both papers quantize gradients),
    ``None`` (full-precision gradient) or a format.  With ``quantize_initial=True``
    (default) the constructor sets
    θ ← Q_W(acc) by stochastic rounding for "full" (stream ``"u_weight"``; acc
    keeps the unquantized value), so the first gradient is taken at
    low-precision weights as (S4) requires, and θ ← Q^d(θ) (nearest, no noise)
    for "low" (the stored weights live on the grid, as refimpl's LP-L init);
    the published code's first forward pass uses the unquantized initial
    weights (§7.2.5) -- ``quantize_initial=False``.

    ``ties`` (tie rule of Q^d inside (Q5)) and ``vc_bfp_published`` (reproduce
    the published BFP/float ``fp_Q_vc`` fallback to plain Q^s, §7.2.1) are
    passed to Q^vc, as refimpl's ``sgld_vc`` options.

    Randomness per step, in order: ``"u_grad"`` (uniform, if ``grad_format``),
    then ``"xi"`` (normal, if noise) and ``"u_weight"`` (uniform) -- or, for VC,
    ``"xi"``, ``"u_round"``, ``"u_cat"`` (refimpl's ``vc_into`` layout).
    For "full", ``"u_weight"`` at step k rounds acc_{k+1}, i.e. it is the weight
    rounding that refimpl's step k+1 performs before its gradient.

    Path: by default (``exact=False``) each parameter's update is one call of
    :func:`torchport.fast.sgld_step` (same equations, computed in the parameter's dtype,
    k-bit stochastic rounding, every random number from the counter stream at (seed,
    step, parameter index) with the stream names above; initial rounding at step
    ``torchport.fast.INIT_STEP``), bit for bit ``torchport.fast.FastLowPrecisionSGLD``.
    ``seed``: an int, or a ``torch.Generator`` from which one integer is drawn;
    ``compile`` (default None: compiled unless ``$QLANGEVIN_COMPILE=0``,
    :func:`torchport.optim._fastpath.default_compile`; eager, the fast path is about as slow
    as the exact one) compiles the update (``torchport.fast.maybe_compile``); non-finite gradients are flagged lazily (:meth:`check_finite`, ``check_every``).
    Formats are those ``torchport.fast`` takes (others: ValueError naming the argument);
    float16/bfloat16 parameters are refused (TypeError).  ``exact=True``: the float64
    path op by op with a ``torch.Generator`` (bit-identical to refimpl; the numbers of
    runs before the fast path became the default).  docs/torchport.md, "Two paths".
    """

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float, temperature: float = 1.0,
                 num_data: float = 1, *, weight_format: Format | str | None = None,
                 grad_format: Format | str | None = "same", accumulator: Literal["full", "low"] = "full",
                 variance_corrected: bool = False, ties: Literal["away", "even", "up"] | None = None,
                 vc_bfp_published: bool = False,
                 weight_decay: float = 0.0, add_noise: bool = True,
                 quantize_initial: bool = True, seed: Optional[int] | torch.Generator = None,
                 generator: Optional[torch.Generator] = None, foreach: Optional[bool] = None,
                 exact: bool = False, compile: Optional[bool] = None, check_every: int = 0):
        _positive("lr", lr)
        _positive("temperature", temperature, allow_zero=True)
        _positive("num_data", num_data)
        _positive("weight_decay", weight_decay, allow_zero=True)
        if accumulator not in ("full", "low"):
            raise ValueError(f"accumulator must be 'full' or 'low', got {accumulator!r}")
        self.weight_format = as_format(weight_format, "weight_format")
        self.grad_format = self.weight_format if grad_format == "same" else as_format(grad_format, "grad_format")
        if variance_corrected and accumulator != "low":
            raise ValueError(f"variance_corrected=True needs accumulator='low', got accumulator={accumulator!r}")
        if variance_corrected and (self.weight_format is None or not add_noise):
            raise ValueError("variance_corrected=True needs a weight_format and add_noise=True, got "
                             f"weight_format={weight_format!r}, add_noise={add_noise!r}")
        self.accumulator = accumulator
        self.variance_corrected = bool(variance_corrected)
        if ties not in (None, "away", "even", "up"):
            raise ValueError(f"ties must be None, 'away', 'even' or 'up', got {ties!r}")
        self.vc_options = dict(ties=ties, vc_published=bool(vc_bfp_published))
        self.add_noise = bool(add_noise)
        if exact is False:
            check_fast_format(self.weight_format, "weight_format")
            check_fast_format(self.grad_format, "grad_format")
        defaults = dict(lr=float(lr), temperature=float(temperature), num_data=float(num_data),
                        weight_decay=float(weight_decay))
        super().__init__(params, defaults, seed=seed, generator=generator, foreach=foreach, exact=exact,
                         compile=compile, check_every=check_every)
        if not exact:
            self._fast_setup()
        if accumulator == "full":
            for group in self.param_groups:
                for p in group["params"]:
                    self.state[p]["accumulator"] = p.detach().clone()
        self.quantize_initial = bool(quantize_initial)  # also for groups added later (_init_group)
        if quantize_initial:
            self.quantize_weights_()

    @property
    def noise_layout(self) -> tuple[tuple[str, str], ...]:
        lay = []
        if self.grad_format is not None:
            lay.append(("u_grad", "uniform"))
        if self.variance_corrected:
            lay += [("xi", "normal"), ("u_round", "uniform"), ("u_cat", "uniform")]
        else:
            if self.add_noise:
                lay.append(("xi", "normal"))
            if self.weight_format is not None:
                lay.append(("u_weight", "uniform"))
        return tuple(lay)

    def _update_group(self, group, params, grads, noise):
        lr, wd = group["lr"], group["weight_decay"]
        std = _noise_std(lr, group["temperature"], group["num_data"])
        for i, (p, g) in enumerate(zip(params, grads)):
            if self.grad_format is not None:
                g = tq._sr_fast(g, self.grad_format, noise["u_grad"][i])
            full = self.accumulator == "full"
            x = self.state[p]["accumulator"] if full else p
            d = g if wd == 0 else g + x * wd
            mu = x - d * lr
            if self.variance_corrected:
                var = _noise_var(lr, group["temperature"], group["num_data"])
                p.copy_(tq._vc_fast(mu, var, self.weight_format, noise["xi"][i], noise["u_round"][i],
                                    noise["u_cat"][i], **self.vc_options))
                continue
            if self.add_noise:
                mu = mu + noise["xi"][i].to(mu.dtype) * std
            if full:
                x.copy_(mu)
                if self.weight_format is not None:
                    p.copy_(tq._sr_fast(x, self.weight_format, noise["u_weight"][i]))
                else:
                    p.copy_(x)
            elif self.weight_format is not None:
                p.copy_(tq._sr_fast(mu, self.weight_format, noise["u_weight"][i]))
            else:
                p.copy_(mu)
