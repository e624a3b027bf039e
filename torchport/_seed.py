"""One rule for ``seed`` arguments in the torchport driver modules: an int or a ``torch.Generator``.

* an ``int`` ≥ 0 (not a bool): a fresh CPU ``torch.Generator`` seeded with it;
* a ``torch.Generator``: used as is (its state advances; the caller keeps control);
* anything else: ``TypeError`` naming the argument and the value.

Functions whose result must be a pure function of an integer (``epoch_permutation``, the
run seed of ``TrainConfig``) accept an int only and say so.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["as_generator", "check_int_seed"]


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
