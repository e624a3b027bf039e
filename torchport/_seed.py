"""One rule for ``seed`` arguments in the torchport driver modules: an int or a ``torch.Generator``.

* an ``int`` ≥ 0 (not a bool): a fresh CPU ``torch.Generator`` seeded with it;
* a ``torch.Generator``: used as is (its state advances; the caller keeps control);
* anything else: ``TypeError`` naming the argument and the value.

Where a function also has the older keyword ``generator=`` (a ``torch.Generator`` only), it
means the same as ``seed=<that generator>``; :func:`generator_from` resolves the pair (both
given is a ``ValueError``).

Functions whose result must be a pure function of an integer (``epoch_permutation``, the
run seed of ``TrainConfig``) accept an int only and say so.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["as_generator", "check_int_seed", "generator_from"]


def check_int_seed(seed, name: str = "seed") -> int:
    """``seed`` as an int ≥ 0; ``TypeError``/``ValueError`` naming ``name`` and the value otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}={seed!r}: must be an int >= 0")
    if seed < 0:
        raise ValueError(f"{name}={seed!r}: must be an int >= 0")
    return int(seed)


def as_generator(seed, name: str = "seed", device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` from an int seed or an existing generator (see the module doc)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}={seed!r}: must be an int >= 0 or a torch.Generator")
    return torch.Generator(device=device).manual_seed(check_int_seed(seed, name))


def generator_from(seed: int | torch.Generator | None = None, generator: torch.Generator | None = None, *,
                   required: bool = True, device: str | torch.device = "cpu", where: str = ""
                   ) -> torch.Generator | None:
    """The generator of a call that takes ``seed=`` and the older spelling ``generator=``.

    ``seed``: an int ≥ 0 (a fresh generator on ``device``) or a ``torch.Generator`` (used as
    is); ``generator``: a ``torch.Generator`` only -- the same thing as ``seed=<Generator>``.
    Both given: ``ValueError``; neither: ``ValueError`` when ``required``, else ``None``.
    ``where`` prefixes the messages (e.g. ``"quantize: "``).  Nothing is drawn here.
    """
    if seed is not None and generator is not None:
        raise ValueError(f"{where}pass seed= or generator= (the same thing), not both; got seed={seed!r} and "
                         f"generator={generator!r}")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{where}generator={generator!r}: must be a torch.Generator (an int goes to seed=)")
        return generator
    if seed is None:
        if required:
            raise ValueError(f"{where}needs seed= (an int or a torch.Generator) or generator=; got neither "
                             "(seed=None, generator=None; torchport never uses the global RNG)")
        return None
    return as_generator(seed, "seed", device)
