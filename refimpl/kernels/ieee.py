"""IEEE-style float ``IEEEFloat(name)`` kernels (kind 4; ALGORITHMS.md §2.3).

float16, bfloat16, float8_e4m3fn and float8_e5m2 use the binade arithmetic of
:mod:`refimpl.kernels.float` with their own code entries: ties to even
(code[TIES] = 2), e_min = 2 - 2^(E-1) with subnormals, and IEEE overflow (±inf, or
NaN for float8_e4m3fn, unless code[SATURATE] = 1).  The kernels are those of the
float module, so both kinds share one body (bit-for-bit equal to ml_dtypes casts,
tests/refimpl/test_quantize_oracles.py).
"""

from __future__ import annotations

from refimpl.kernels.float import gap_into, nearest_into, stochastic_into, vc_into

__all__ = ["nearest_into", "stochastic_into", "vc_into", "gap_into"]
