"""IEEE-style float on torch tensors (kind 4), mirroring refimpl/kernels/ieee.py.

float16, bfloat16, float8_e4m3fn and float8_e5m2 share the binade arithmetic of
:mod:`torchport.kernels.float`; their code entries select ties to even and IEEE
overflow (±inf, or NaN for float8_e4m3fn, unless saturating).
"""

from __future__ import annotations

from torchport.kernels.float import gap, nearest, stochastic, vc

__all__ = ["nearest", "stochastic", "vc", "gap"]
