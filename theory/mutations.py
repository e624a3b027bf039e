"""Named, plausible bugs for mutation testing ``qlangevin verify`` (``--mutate NAME``).

Each mutation wraps a sampler with ``refimpl.sample``'s signature (or patches a
Wasserstein estimator) so that it behaves like an implementation with that bug;
a claim that *catches* a mutation fails on the mutated sampler.  They change only
the arguments passed on (the reference sources are untouched), so the same
mutation applies to ``refimpl.sample`` and to the NumPy test double:

================================  ==========================================================================
name                              the bug it imitates
================================  ==========================================================================
``noise-std-x1.05``               injected noise std 5% too large (stationary variance +10%)
``vc-targets-0.9V``               Q^vc aims at 0.9·V instead of V (VC methods only)
``vc-is-naive``                   the VC method silently runs naive LP-L rounding
``lpf-grad-at-theta``             LP-F evaluates the gradient at θ instead of Q_W(θ)
``sghmc-friction-x1.1``           SGHMC uses a friction 10% off (changes the dynamics, barely the variance)
``sghmc-flipped-sign``            SGHMC position update with the opposite sign s_x
``w2-biased-low``                 the 1-D exact W2 estimator returns 0.9× its value (a biased-low W2)
``lpl-is-lpf``                    naive LP-L silently runs LP-F (no rounding of the state: no over-dispersion)
``qsgld-resolution-x1.05``        QSGLD's grid 5% finer than asked (error variance −10%)
``ctld-bias-off``                 CTLD's adaptive α bias silently off
``askew-nu-x2``                   AskewSGD's ν without the factor 2 of (A2) (restoring rate doubled)
================================  ==========================================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Callable

__all__ = ["MUTATIONS", "MutatedSampler", "active_mutation", "mutate_sampler", "mutated_method", "mutation_context"]

#: name -> one-line description
MUTATIONS: dict[str, str] = {
    "noise-std-x1.05": "injected noise std ×1.05 (stationary variance +10%)",
    "vc-targets-0.9V": "Q^vc targets 0.9·V (VC methods)",
    "vc-is-naive": "VC methods run naive LP-L rounding",
    "lpf-grad-at-theta": "LP-F gradient taken at θ instead of Q_W(θ)",
    "sghmc-friction-x1.1": "SGHMC friction γ ×1.1",
    "sghmc-flipped-sign": "SGHMC position sign flipped",
    "w2-biased-low": "1-D exact W2 estimator ×0.9",
    "lpl-is-lpf": "naive LP-L methods run LP-F",
    "qsgld-resolution-x1.05": "QSGLD resolution ×1.05",
    "ctld-bias-off": "CTLD runs without its α bias",
    "askew-nu-x2": "AskewSGD skewed direction ×2",
}

#: the mutation of the enclosing :func:`mutation_context` (None outside one); read by claims that
#: do not draw through a sampler (``mnist-lp`` trains with torchport) via :func:`active_mutation`
_ACTIVE: str | None = None


def active_mutation() -> str | None:
    """The name of the mutation whose :func:`mutation_context` is open, or None."""
    return _ACTIVE


def mutated_method(method: str, name: str | None) -> str:
    """The method an implementation with the bug ``name`` would really run for ``method``.

    ``vc-is-naive``: ``*_vc`` → ``*_lp_l``; ``lpl-is-lpf``: ``*_lp_l`` → ``*_lp_f``; any other
    mutation (or None) leaves the method unchanged.  Shared by :class:`MutatedSampler` and
    the claims that train through torchport.
    """
    m = str(method)
    if name == "vc-is-naive" and m.endswith("_vc"):
        return m[: -len("_vc")] + "_lp_l"
    if name == "lpl-is-lpf" and m.endswith("_lp_l"):
        return m[: -len("_lp_l")] + "_lp_f"
    return m


_FINE = None  # a fixed-point format fine enough to be the identity at the scales used (Δ = 2^-30)


def _fine_format():
    global _FINE
    if _FINE is None:
        from refimpl.formats import FixedPoint

        _FINE = FixedPoint(36, 30)
    return _FINE


class MutatedSampler:
    """A sampler with the bug ``name``; picklable when ``base`` is (None: ``refimpl.sample``), so it runs on a pool."""

    #: theory.tasks may ship it to worker processes
    picklable = True

    def __init__(self, base: Callable | None, name: str):
        if name not in MUTATIONS:
            raise ValueError(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")
        self.base = base
        self.name = name
        self.__name__ = f"{getattr(base, '__name__', 'refimpl.sample')}[{name}]"

    def __call__(self, method, target, **kw):
        name = self.name
        m = str(method)
        if name == "noise-std-x1.05":
            kw["temperature"] = float(kw.get("temperature", 1.0) or 1.0) * 1.05**2
        elif name == "vc-targets-0.9V" and m.endswith("_vc"):
            kw["temperature"] = float(kw.get("temperature", 1.0) or 1.0) * 0.9
        elif name == "vc-is-naive" and m.endswith("_vc"):
            m = mutated_method(m, name)
        elif name == "lpf-grad-at-theta" and m.endswith("_lp_f") and kw.get("fmt") is not None:
            kw.setdefault("grad_fmt", kw["fmt"])
            kw["fmt"] = _fine_format()
        elif name == "sghmc-friction-x1.1" and m.startswith("sghmc"):
            kw["friction"] = float(kw.get("friction") or 1.0) * 1.1
        elif name == "sghmc-flipped-sign" and m.startswith("sghmc"):
            key = "sghmc_position_sign" if "sghmc_position_sign" in kw else "position_sign"
            kw[key] = "correct" if kw.get(key, "correct") == "paper" else "paper"
        elif name == "lpl-is-lpf" and m.endswith("_lp_l"):
            m = mutated_method(m, name)
        elif name == "qsgld-resolution-x1.05" and m == "qsgld":
            if kw.get("q0") is not None:
                kw["q0"] = float(kw["q0"]) * 1.05
            if kw.get("resolutions") is not None:
                kw["resolutions"] = [1.05 * float(q) for q in kw["resolutions"]]
        elif name == "ctld-bias-off" and m == "ctld":
            kw["bias"] = "none"
        base = self.base
        if base is None:
            from refimpl import sample as base
        return base(m, target, **kw)


def mutate_sampler(sampler: Callable | None, name: str) -> Callable:
    """``sampler`` (None: ``refimpl.sample``) with the bug ``name`` (see :data:`MUTATIONS`).

    Estimator mutations (``w2-biased-low``) leave the sampler unchanged: use :func:`mutation_context`.
    """
    return MutatedSampler(sampler, name)


@contextlib.contextmanager
def mutation_context(name: str) -> Iterator[None]:
    """Inside the block: :func:`active_mutation` names ``name``, and the code is patched for the mutations that are not
    sampler arguments (``w2-biased-low``, ``askew-nu-x2``)."""
    global _ACTIVE
    if name not in MUTATIONS:
        raise ValueError(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")
    outer, _ACTIVE = _ACTIVE, name
    try:
        with _patched(name):
            yield
    finally:
        _ACTIVE = outer


@contextlib.contextmanager
def _patched(name: str) -> Iterator[None]:
    """The code patches of :func:`mutation_context` (none for the sampler-argument mutations)."""
    if name == "askew-nu-x2":
        import numpy as np

        from refimpl.netopt import askewsgd as A

        orig_dir = A.askew_direction

        def broken(*args, **kwargs):
            d, sk = orig_dir(*args, **kwargs)
            return np.where(sk, 2.0 * d, d), sk

        A.askew_direction = broken
        try:
            yield
        finally:
            A.askew_direction = orig_dir
        return
    if name != "w2-biased-low":
        yield
        return
    from theory import wasserstein as W

    orig = W.w2_1d_to_dist

    def biased(x, dist):
        return 0.9 * orig(x, dist)

    W.w2_1d_to_dist = biased
    try:
        yield
    finally:
        W.w2_1d_to_dist = orig
