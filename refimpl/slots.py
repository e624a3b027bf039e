"""Named slots of the format code: the one place that knows entry positions (docs/quantizers.md).

Every format of :mod:`refimpl.formats` carries ``fmt.code``, a read-only ``float64``
array of length :data:`CODE_LEN` that the jitted kernels (:mod:`refimpl.kernels`) and
the torch kernels (:mod:`torchport.kernels`) dispatch on.  Code elsewhere reads and
writes entries by these names, never by a literal index, so a slot can move or a
format can be added without hunting for bare integers (issue 10, item 2).  Numba
treats the module-level integers below as compile-time constants, so ``code[TIES]``
costs exactly what ``code[5]`` did.

=========  ======================  ============================================================
slot       name(s)                 meaning
=========  ======================  ============================================================
0          ``KIND``                0 none, 1 fixed, 2 block float, 3 qtorch float, 4 IEEE float,
                                   5 microscaling (OCP MX, NVFP4)
1-4        fixed point             ``FIXED_DELTA``, ``FIXED_LO``, ``FIXED_HI``, ``FIXED_WL``
1          block float             ``BFP_WL``
1-4        floats / MX elements    ``FLOAT_EXP``, ``FLOAT_MAN``, ``FLOAT_MAX`` (largest finite
                                   value), ``FLOAT_HAS_INF`` (0/1)
5          ``TIES``                tie rule of Q^d: 1 away from zero, 2 to even, 3 toward +inf
6          ``SATURATE``            IEEE overflow: 0 IEEE (inf, or NaN for float8_e4m3fn), 1 clamp
7          ``VC_FLAGS``            bit field: ``VC_PUBLISHED_BIT`` (1) reproduces the published
                                   BFP/float ``fp_Q_vc``; ``VC_SPEC_CLIP_BIT`` (2) is a test hook
                                   restoring the spec's clip to mu's block/binade range
8          ``MX_BLOCK``            elements per shared scale (32 for MX, 16 for NVFP4)
9          ``MX_SCALE``            scale type: ``SCALE_E8M0`` (1) or ``SCALE_E4M3`` (2)
10         ``MX_EMAX``             emax of the element type (floor(log2 of its largest value))
11         ``MX_TENSOR_SCALE``     per-tensor FP32 scale (NVFP4; 1.0 otherwise)
12         ``MX_INT``              1: integer elements (MXINT8: k·2^-FLOAT_MAN), 0: float elements
13         ``MX_LO``               smallest integer element value (MXINT8: -2)
=========  ======================  ============================================================
"""

from __future__ import annotations

CODE_LEN = 14

KIND = 0
KIND_NONE, KIND_FIXED, KIND_BFP, KIND_FLOAT, KIND_IEEE, KIND_MX = 0, 1, 2, 3, 4, 5
#: every kind a kernel exists for, with its module name in refimpl.kernels / torchport.kernels
KIND_MODULES = {KIND_FIXED: "fixed", KIND_BFP: "bfp", KIND_FLOAT: "float", KIND_IEEE: "ieee", KIND_MX: "mx"}

FIXED_DELTA, FIXED_LO, FIXED_HI, FIXED_WL = 1, 2, 3, 4
BFP_WL = 1
FLOAT_EXP, FLOAT_MAN, FLOAT_MAX, FLOAT_HAS_INF = 1, 2, 3, 4
TIES = 5
SATURATE = 6
VC_FLAGS = 7
MX_BLOCK, MX_SCALE, MX_EMAX, MX_TENSOR_SCALE, MX_INT, MX_LO = 8, 9, 10, 11, 12, 13

TIES_AWAY, TIES_EVEN, TIES_UP = 1, 2, 3
SCALE_E8M0, SCALE_E4M3 = 1, 2

#: bit of ``code[VC_FLAGS]`` selecting the published BFP/float ``fp_Q_vc`` fallback
VC_PUBLISHED_BIT = 1
#: bit of ``code[VC_FLAGS]`` (test hook, not public API): the spec's original clip of Q^vc
#: results to mu's block/binade range, for mutation tests
VC_SPEC_CLIP_BIT = 2

#: kinds whose scale is shared by several elements (a sampler quantizes each chain's row on its own)
BLOCK_KINDS = (KIND_BFP, KIND_MX)
