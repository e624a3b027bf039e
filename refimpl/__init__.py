"""refimpl: the Numba reference implementation (see docs/architecture.md).

Number formats (ALGORITHMS.md §2.1-§2.3) and quantizers (§2.4-§2.6) are exported here.
"""

from refimpl.formats import (
    BlockFloatingPoint,
    FixedPoint,
    FloatingPoint,
    IEEEFloat,
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
from refimpl.driver import draw_noise, noise_spec, sample  # noqa: E402,F401  (sampler driver, docs/architecture.md)
