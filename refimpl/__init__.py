"""refimpl: the Numba reference implementation (see docs/architecture.md).

Number formats (ALGORITHMS.md §2.1-§2.3) and quantizers (§2.4-§2.6) are exported here.
"""

# First, before any kernel is compiled: importing refimpl._cache points Numba's cache at a
# directory keyed by the hash of the kernel sources, so no entry point runs stale machine code.
from refimpl import _cache  # noqa: F401  (side effect: refimpl._cache.install())

from refimpl.formats import (
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
    MXFormat,
    NVFP4,
    format_code,
    parse_format,
    qtorch_float,
)
from refimpl.quantize import (
    categorical_offset,
    categorical_probabilities,
    draw_categorical_noise,
    draw_quantize_noise,
    draw_vc_noise,
    quantize,
    stochastic_round,
    vc_gap,
    vc_quantize,
)
from refimpl.driver import draw_noise, noise_spec, sample  # sampler driver, docs/architecture.md

__all__ = [
    "BlockFloatingPoint", "FixedPoint", "FloatingPoint", "IEEEFloat", "MXFormat", "NVFP4",
    "format_code", "parse_format", "qtorch_float",
    "categorical_offset", "categorical_probabilities", "draw_categorical_noise", "draw_quantize_noise",
    "draw_vc_noise", "quantize", "stochastic_round", "vc_gap", "vc_quantize",
    "draw_noise", "noise_spec", "sample",
]
