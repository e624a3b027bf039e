"""Table-driven bad-input battery over the public non-optimizer functions of torchport (issue 13).

Covered modules (``MODULES``): :mod:`torchport.quantize`, :mod:`torchport.nn`,
:mod:`torchport.metrics`, :mod:`torchport.data`, :mod:`torchport.models`,
:mod:`torchport.checkpoint`, the format kernels :mod:`torchport.kernels.*`,
:mod:`torchport.counter_rng` and the entry points of :mod:`torchport.fast` (its fused steps
``sgld_step``/``sghmc_step`` are traced by ``torch.compile`` and carry no checks: ``EXEMPT``).  (The optimizers, refimpl/theory and the CLI have their own
batteries.)  Their public names are enumerated -- ``__all__`` plus every public function
or class the module defines -- and :func:`test_every_public_name_has_rows` fails when a
name has neither rows nor an entry in ``EXEMPT`` (so a new function cannot escape).

Each case is one call with one bad argument.  Its outcome is

* ``clear``: the expected exception (``ValueError``/``TypeError`` unless the row states
  another, e.g. ``FileNotFoundError``), whose message names the argument and the value
  (``repr`` of a scalar; for a tensor/array the argument and the offending property:
  dtype, shape, ``nan``), and nothing passed in changed: tensors and arrays (bits, dtype,
  shape), ``torch.Generator`` states (``get_state()`` before/after), modules (state dict
  and structure), directories (listing and file sizes);
* ``unclear``: another exception type, a message that names neither, or a raising call
  that changed something passed in;
* ``silent``: no exception at all.

Cases that are not ``clear`` are listed in ``GAPS`` with the reason and marked
``xfail(strict=True)``: a fix turns them into XPASS, which fails, so the id must then be
removed.  ``python tests/torchport/test_torch_public_bad_inputs.py [-v]`` prints the counts
(and, with ``-v``, every case that is not clear).
"""

from __future__ import annotations

import inspect
import math
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from refimpl.formats import BlockFloatingPoint, FixedPoint, FloatingPoint, IEEEFloat, MXFormat, format_code
from torchport import checkpoint as CK
from torchport import counter_rng as CR
from torchport import data as D
from torchport import fast as FA
from torchport import metrics as M
from torchport import models as MD
from torchport import nn as TN
from torchport import quantize as Q
from torchport.kernels import bfp as KB
from torchport.kernels import common as KC
from torchport.kernels import fixed as KF
from torchport.kernels import float as KFL
from torchport.kernels import ieee as KI
from torchport.kernels import mx as KM

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _bad_inputs import classify, parametrize_cases  # noqa: E402

NAN, INF = float("nan"), float("inf")
VE = (ValueError, TypeError)
F64 = torch.float64

MODULES = {"quantize": Q, "nn": TN, "metrics": M, "data": D, "models": MD, "checkpoint": CK,
           "kernels.common": KC, "kernels.fixed": KF, "kernels.bfp": KB, "kernels.float": KFL,
           "kernels.ieee": KI, "kernels.mx": KM, "counter_rng": CR, "fast": FA}

#: public names that take no argument worth a bad-input row, with the reason
EXEMPT = {
    "quantize.ROUNDINGS": "a constant tuple",
    "checkpoint.MAGIC": "a constant bytes",
    "checkpoint.CheckpointError": "an exception class (any message is valid)",
    "counter_rng.STREAMS": "a constant mapping",
    "fast.NonFiniteGradientError": "an exception class (any message is valid)",
    "fast.sgld_step": "the fused update that torch.compile traces: no Python-side checks by design (issue 13); "
                      "its arguments come from FastLowPrecisionSGLD / LowPrecisionSGLD, which check them",
    "fast.sghmc_step": "as fast.sgld_step (FastLowPrecisionSGHMC / LowPrecisionSGHMC check its arguments)",
    "fast.sgld_step_group": "fast.sgld_step for several parameters in one traced call (no checks, as sgld_step); "
                            "LowPrecisionSGLD checks its arguments",
    "fast.sghmc_step_group": "as fast.sgld_step_group (LowPrecisionSGHMC checks its arguments)",
}


# ------------------------------------------------------------------ harness
@dataclass
class Case:
    id: str
    make: Callable          # () -> dict; every tensor / array / Generator / module / Dir in it must not change
    act: Callable           # (things) -> anything; must raise
    needles: tuple          # substrings the message must contain (argument name, value)
    exc: tuple = VE


class Dir:
    """A temporary directory whose listing (names, sizes) must not change."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="tp_bad_"))

    def listing(self):
        return sorted((str(p.relative_to(self.path)), p.stat().st_size if p.is_file() else -1)
                      for p in self.path.rglob("*"))


def _freeze(obj):
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return ("t", str(t.dtype), tuple(t.shape), t.cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
                if t.is_contiguous() and t.dtype != torch.bool else repr(t.tolist()))
    if isinstance(obj, np.ndarray):
        return ("nd", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, torch.Generator):
        return ("gen", obj.get_state().numpy().tobytes())
    if isinstance(obj, np.random.Generator):
        return ("rng", repr(obj.bit_generator.state))
    if isinstance(obj, nn.Module):
        return ("mod", repr(obj), {k: _freeze(v) for k, v in obj.state_dict().items()},
                [_freeze(q.generator) for q in obj.modules() if isinstance(q, TN.Quantizer) and q.generator is not None])
    if isinstance(obj, M.BMA):
        return ("bma", obj.count, _freeze(obj.sum))
    if isinstance(obj, Dir):
        return ("dir", obj.listing())
    if isinstance(obj, dict):
        return {k: _freeze(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_freeze(v) for v in obj]
    return None


def _classify(case: Case, things) -> tuple[str, str]:
    return classify(lambda: case.act(things), case.needles, case.exc, lambda: _freeze(things),
                    lambda before, after: "inputs changed" if after != before else None)


def outcome(case: Case) -> tuple[str, str]:
    """(kind, detail) of one case; its temporary directories are removed afterwards."""
    things = case.make()
    try:
        return _classify(case, things)
    finally:
        for v in things.values():
            if isinstance(v, Dir):
                shutil.rmtree(v.path, ignore_errors=True)


def _nd(v):
    """The needle for a bad scalar value: its repr (strings: the text itself)."""
    if isinstance(v, str):
        return v
    if isinstance(v, type):
        return v.__name__
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (bool, int, float, complex, type(None), bytes, list, tuple)):
        return repr(v)
    return type(v).__name__


def _label(v):
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return f"{type(v).__name__}{tuple(v.shape)}"
    if v is None or isinstance(v, (str, bytes, bool, int, float, complex, list, tuple)):
        text = repr(v)
        return text if len(text) <= 30 else text[:27] + "..."
    return type(v).__name__


CASES: list[Case] = []
_SEEN: dict[str, int] = {}


def add(cid, act, needles, exc=VE, make=None):
    n = _SEEN[cid] = _SEEN.get(cid, 0) + 1
    if n > 1:
        cid = f"{cid}#{n}"
    CASES.append(Case(cid, make or _base, act, tuple(needles), exc))


def scalar_cases(prefix, call, arg, bads, make=None):
    """One case per bad value of ``arg``; ``call(things, value)`` makes the call."""
    for v in bads:
        add(f"{prefix}-{arg}={_label(v)}", lambda t, v=v: call(t, v), (arg, _nd(v)), make=make)


def _base():
    g = torch.Generator().manual_seed(7)
    return {"g": g, "x": torch.linspace(-1.0, 1.0, 6, dtype=F64), "x2": torch.linspace(-1.0, 1.0, 12, dtype=F64
                                                                                       ).reshape(3, 4)}


# Bad-value classes.
POS_INT = (0, -1, 1.5, NAN, "3", None, True, [3])
NONNEG_INT = (-1, 1.5, NAN, "3", None, True, [3])
POS_FLOAT = (NAN, INF, -1.0, 0.0, "1", None, True, [1.0])
NONNEG_FLOAT = (NAN, INF, -INF, -1.0, "0", None, True, [0.0], complex(1, 1))
BAD_GEN = (3, "seed", 1.5, NAN, True, np.random.default_rng(0))
BAD_SEED = (-1, 1.5, NAN, "3", True, [3], np.random.default_rng(0))
BAD_BOOL = ("yes", 1, None, NAN)
BAD_STEP = (-1, 1.5, NAN, "3", None, True, [3], 2**64)  # the counter key's step/index: ints in [0, 2**64)
BAD_SHAPE = (-1, 1.5, NAN, "3", None, True, (2, -1), (2, 1.5), [[2]])
BAD_DEVICE = ("bogus", 3.5, object())
F83 = FixedPoint(8, 3)
BFP = BlockFloatingPoint(8, 0)
E5M2 = FloatingPoint(5, 2)
MX = MXFormat("mxfp8_e4m3")


# ------------------------------------------------------------------ torchport.quantize: re-exported formats
scalar_cases("FixedPoint", lambda t, v: Q.FixedPoint(v, 3), "wl", (0, NAN, "8", None, True))
scalar_cases("BlockFloatingPoint", lambda t, v: Q.BlockFloatingPoint(v), "wl", (0, NAN, "8", None))
scalar_cases("FloatingPoint", lambda t, v: Q.FloatingPoint(v, 3), "exp", (0, NAN, "5", None))
scalar_cases("IEEEFloat", lambda t, v: Q.IEEEFloat(v), "name", ("bogus", None, 3))
scalar_cases("MXFormat", lambda t, v: Q.MXFormat(v), "name", ("bogus", None, 3))
scalar_cases("NVFP4", lambda t, v: Q.NVFP4(tensor_scale=v), "tensor_scale", (NAN, -1.0, "1"))
scalar_cases("format_code", lambda t, v: Q.format_code(v), "fmt", (3, "fixed:8:3", NAN))
scalar_cases("parse_format", lambda t, v: Q.parse_format(v), "text", ("", "bogus:1:2", "fixed:a:b", 3))

# ------------------------------------------------------------------ torchport.quantize: quantizers
BAD_X = (("str", "abc", ("x", "str")), ("list", [1.0, 2.0], ("x", "list")),
         ("int64", torch.arange(6), ("x", "int64")), ("complex", torch.ones(3, dtype=torch.complex128), ("x", "complex")),
         ("bool", torch.ones(3, dtype=torch.bool), ("x", "bool")), ("ndarray", np.ones(3), ("x", "ndarray")))
for _lab, _v, _nds in BAD_X:
    add(f"quantize-x={_lab}", lambda t, v=_v: Q.quantize(v, F83, "stochastic", t["g"]), _nds)
    add(f"stochastic_round-x={_lab}", lambda t, v=_v: Q.stochastic_round(v, F83, t["g"]), _nds)
    add(f"vc_quantize-mu={_lab}", lambda t, v=_v: Q.vc_quantize(v, 0.01, F83, t["g"]), ("mu",) + _nds[1:])
    add(f"vc_gap-mu={_lab}", lambda t, v=_v: Q.vc_gap(v, F83), ("mu",) + _nds[1:])
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], v, "stochastic", t["g"]), "fmt",
             (3, NAN, True, object(), [8, 3], "bogus:1:2"))
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, v, t["g"]), "rounding",
             ("", "Stochastic", "floor", None, 1, True, NAN))
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", v), "generator", BAD_GEN)
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", seed=v), "seed", BAD_SEED)
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "nearest", ties=v), "ties", ("", "bogus", 1, True, NAN))
add("quantize-ties=with_stochastic", lambda t: Q.quantize(t["x"], F83, "stochastic", t["g"], ties="even"),
    ("ties", "'even'"))
add("quantize-seed=and_generator", lambda t: Q.quantize(t["x"], F83, "stochastic", t["g"], seed=3),
    ("seed", "generator"))
add("quantize-generator=none_and_no_noise", lambda t: Q.quantize(t["x"], F83, "stochastic"), ("generator", "noise"))
add("quantize-noise=short", lambda t: Q.quantize(t["x"], F83, "stochastic", noise=torch.full((3,), .5), exact=True),
    ("noise", "shape"))
add("quantize-noise=nan", lambda t: Q.quantize(t["x"], F83, "stochastic", noise=torch.full((6,), NAN), exact=True),
    ("noise", "nan"))
add("quantize-noise=2.0", lambda t: Q.quantize(t["x"], F83, "stochastic", noise=torch.full((6,), 2.0), exact=True),
    ("noise", "2.0"))
add("quantize-noise=neg", lambda t: Q.quantize(t["x"], F83, "stochastic", noise=torch.full((6,), -0.5), exact=True),
    ("noise", "-0.5"))
add("quantize-noise=str", lambda t: Q.quantize(t["x"], F83, "stochastic", noise="abc", exact=True), ("noise", "str"))
add("quantize-noise=and_generator", lambda t: Q.quantize(t["x"], F83, "stochastic", t["g"],
                                                          noise=torch.full((6,), .5), exact=True),
    ("noise", "generator"))
add("quantize-noise=with_nearest", lambda t: Q.quantize(t["x"], F83, "nearest", noise=torch.full((6,), .5),
                                                         exact=True), ("noise", "nearest"))
# the default path: noise= belongs to exact=True; exact, step and index (the counter key)
add("quantize-noise=without_exact", lambda t: Q.quantize(t["x"], F83, "stochastic", noise=torch.full((6,), .5)),
    ("noise", "exact=True"))
add("quantize-noise=without_exact_and_generator", lambda t: Q.quantize(t["x"], F83, "stochastic", t["g"],
                                                                        noise=torch.full((6,), .5)),
    ("noise", "exact=True"))
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", t["g"], exact=v), "exact", BAD_BOOL)
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", t["g"], step=v), "step", BAD_STEP)
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", t["g"], index=v), "index", BAD_STEP)
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "nearest", step=v), "step", BAD_STEP)
add("quantize-step=with_exact", lambda t: Q.quantize(t["x"], F83, "stochastic", t["g"], step=2, exact=True),
    ("step=2", "exact=True"))
add("quantize-index=with_exact", lambda t: Q.quantize(t["x"], F83, "stochastic", t["g"], index=1, exact=True),
    ("index=1", "exact=True"))
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", seed=v), "seed", (2**64, -2**70))
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", v, exact=True), "generator", BAD_GEN)
scalar_cases("quantize", lambda t, v: Q.quantize(t["x"], F83, "stochastic", seed=v, exact=True), "seed", BAD_SEED)
add("quantize-fmt=bfp_dim_out_of_range_exact", lambda t: Q.quantize(t["x"], BlockFloatingPoint(8, 3), "stochastic",
                                                                     t["g"], exact=True), ("dim", "3"))
add("quantize-fmt=bfp_dim_out_of_range", lambda t: Q.quantize(t["x"], BlockFloatingPoint(8, 3), "stochastic", t["g"]),
    ("dim", "3"))
add("quantize-fmt=mx_axis_out_of_range", lambda t: Q.quantize(t["x2"], MXFormat("mxfp8_e4m3", axis=5), "nearest"),
    ("axis", "5"))
scalar_cases("stochastic_round", lambda t, v: Q.stochastic_round(t["x"], F83, v), "generator", BAD_GEN)
scalar_cases("stochastic_round", lambda t, v: Q.stochastic_round(t["x"], F83, seed=v), "seed", BAD_SEED)
scalar_cases("stochastic_round", lambda t, v: Q.stochastic_round(t["x"], v, t["g"]), "fmt", (3, NAN, object()))
add("stochastic_round-noise=short", lambda t: Q.stochastic_round(t["x"], F83, noise=torch.full((2,), .5),
                                                                 exact=True), ("noise", "shape"))
add("stochastic_round-noise=without_exact", lambda t: Q.stochastic_round(t["x"], F83, noise=torch.full((6,), .5)),
    ("noise", "exact=True"))
scalar_cases("stochastic_round", lambda t, v: Q.stochastic_round(t["x"], F83, t["g"], exact=v), "exact", BAD_BOOL)
scalar_cases("stochastic_round", lambda t, v: Q.stochastic_round(t["x"], F83, t["g"], step=v), "step", BAD_STEP)
scalar_cases("stochastic_round", lambda t, v: Q.stochastic_round(t["x"], F83, t["g"], index=v), "index", BAD_STEP)
add("stochastic_round-step=with_exact", lambda t: Q.stochastic_round(t["x"], F83, t["g"], step=3, exact=True),
    ("step=3", "exact=True"))
add("stochastic_round-seed=and_generator", lambda t: Q.stochastic_round(t["x"], F83, t["g"], seed=1),
    ("seed", "generator"))

scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], v, F83, t["g"]), "var", NONNEG_FLOAT)
add("vc_quantize-var=tensor1d", lambda t: Q.vc_quantize(t["x"], torch.ones(2), F83, t["g"]), ("var", "shape"))
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, v, t["g"]), "fmt", (3, NAN, True, object()))
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, v), "generator", BAD_GEN)
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, seed=v), "seed", BAD_SEED)
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, t["g"], ties=v), "ties", ("bogus", 1))
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, t["g"], vc_bfp_published=v),
             "vc_bfp_published", BAD_BOOL)
add("vc_quantize-seed=and_generator", lambda t: Q.vc_quantize(t["x"], 0.01, F83, t["g"], seed=1),
    ("seed", "generator"))
add("vc_quantize-generator=none_and_no_noise", lambda t: Q.vc_quantize(t["x"], 0.01, F83), ("generator", "noise"))
_U6 = torch.full((6,), 0.5, dtype=F64)
add("vc_quantize-noise=wrong_len", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(_U6,), exact=True),
    ("noise", "tuple"))
add("vc_quantize-noise=short", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(_U6[:2],) * 3, exact=True),
    ("noise", "shape"))
add("vc_quantize-noise=xi_nan", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(torch.full((6,), NAN), _U6, _U6),
                                                         exact=True), ("xi", "nan"))
add("vc_quantize-noise=xi_inf", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(torch.full((6,), INF), _U6, _U6),
                                                         exact=True), ("xi", "inf"))
add("vc_quantize-noise=u_round_2", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(_U6, _U6 * 4, _U6), exact=True),
    ("u_round", "2.0"))
add("vc_quantize-noise=u_cat_nan", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(_U6, _U6, _U6 * NAN), exact=True),
    ("u_cat", "nan"))
add("vc_quantize-noise=str", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise="abc", exact=True), ("noise", "str"))
add("vc_quantize-noise=without_exact", lambda t: Q.vc_quantize(t["x"], 0.01, F83, noise=(_U6, _U6, _U6)),
    ("noise", "exact=True"))
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, t["g"], exact=v), "exact", BAD_BOOL)
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, t["g"], step=v), "step", BAD_STEP)
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, t["g"], index=v), "index", BAD_STEP)
add("vc_quantize-index=with_exact", lambda t: Q.vc_quantize(t["x"], 0.01, F83, t["g"], index=2, exact=True),
    ("index=2", "exact=True"))
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], v, F83, t["g"], exact=True), "var", NONNEG_FLOAT)
scalar_cases("vc_quantize", lambda t, v: Q.vc_quantize(t["x"], 0.01, F83, seed=v, exact=True), "seed", BAD_SEED)
add("vc_quantize-fmt=bfp_dim_out_of_range", lambda t: Q.vc_quantize(t["x"], 0.01, BlockFloatingPoint(8, 2), t["g"]),
    ("dim", "2"))
scalar_cases("vc_gap", lambda t, v: Q.vc_gap(t["x"], v), "fmt", (3, NAN, True, "fixed:8:3", [8]))

# (mu, var, delta) = (0.05, 0.012, 0.25) is admissible: mu(delta - mu) = 0.01 <= var <= delta^2/4 = 0.015625
CAT_DELTA = (NAN, INF, -1.0, 0.0, "1", None, True, 1.0)
scalar_cases("categorical_offset", lambda t, v: Q.categorical_offset(0.05, v, 0.25, t["g"]), "var",
             (NAN, INF, -1.0, "0", None, 1.0, True))
scalar_cases("categorical_offset", lambda t, v: Q.categorical_offset(0.05, 0.012, v, t["g"]), "delta", CAT_DELTA)
scalar_cases("categorical_offset", lambda t, v: Q.categorical_offset(v, 0.012, 0.25, t["g"]), "mu",
             (NAN, INF, -0.1, "0", None, complex(0.05, 0)))
scalar_cases("categorical_offset", lambda t, v: Q.categorical_offset(0.05, 0.012, 0.25, v), "generator", BAD_GEN)
scalar_cases("categorical_offset", lambda t, v: Q.categorical_offset(0.05, 0.012, 0.25, seed=v), "seed", BAD_SEED)
add("categorical_offset-seed=and_generator", lambda t: Q.categorical_offset(0.05, 0.012, 0.25, t["g"], seed=1),
    ("seed", "generator"))
add("categorical_offset-noise=2.0", lambda t: Q.categorical_offset(0.05, 0.012, 0.25, noise=torch.tensor(2.0)),
    ("noise", "2.0"))
add("categorical_offset-noise=and_generator", lambda t: Q.categorical_offset(0.05, 0.012, 0.25, t["g"],
                                                                              noise=torch.tensor(.5)),
    ("noise", "generator"))
add("categorical_offset-shapes=not_broadcastable", lambda t: Q.categorical_offset(
    torch.full((3,), .05), torch.full((2,), .012), 0.25, t["g"]), ("mu", "var", "shape"))
scalar_cases("categorical_probabilities", lambda t, v: Q.categorical_probabilities(0.05, v, 0.25), "var",
             (NAN, INF, -1.0, "0", None, 1.0, True))
scalar_cases("categorical_probabilities", lambda t, v: Q.categorical_probabilities(0.05, 0.012, v), "delta",
             CAT_DELTA)
scalar_cases("categorical_probabilities", lambda t, v: Q.categorical_probabilities(v, 0.012, 0.25), "mu",
             (NAN, INF, -0.1, "0", None))

for _name in ("draw_quantize_noise", "draw_vc_noise", "draw_categorical_noise"):
    _fn = getattr(Q, _name)
    scalar_cases(_name, lambda t, v, f=_fn: f(t["g"], v), "shape", BAD_SHAPE)
    scalar_cases(_name, lambda t, v, f=_fn: f(v, 3), "generator", (3, "seed", None, 1.5, True,
                                                                   np.random.default_rng(0)))
    scalar_cases(_name, lambda t, v, f=_fn: f(t["g"], 3, device=v), "device", BAD_DEVICE)
    scalar_cases(_name, lambda t, v, f=_fn: f(seed=v, shape=3), "seed", BAD_SEED)
    add(f"{_name}-seed=and_generator", lambda t, f=_fn: f(t["g"], 3, seed=1), ("seed", "generator"))

add("exact_sqrt-x=list", lambda t: Q.exact_sqrt([1.0, 4.0]), ("x", "list"))
add("exact_sqrt-x=int64", lambda t: Q.exact_sqrt(torch.arange(4)), ("x", "int64"))
add("exact_sqrt-x=complex", lambda t: Q.exact_sqrt(torch.ones(2, dtype=torch.complex128)), ("x", "complex"))


# ------------------------------------------------------------------ torchport.kernels.*
def _kbase():
    t = _base()
    t["u"] = torch.full((6,), 0.5, dtype=F64)
    return t


KERNELS = (("kernels.fixed", KF, F83), ("kernels.bfp", KB, BlockFloatingPoint(8)), ("kernels.float", KFL, E5M2),
           ("kernels.ieee", KI, IEEEFloat("float16")), ("kernels.mx", KM, MX))
for _mname, _mod, _fmt in KERNELS:
    _code = tuple(float(c) for c in format_code(_fmt))
    _other = tuple(float(c) for c in format_code(F83 if _mod is not KF else E5M2))
    for _fname in ("nearest", "stochastic", "vc", "gap"):
        _f = getattr(_mod, _fname)

        def _call(t, x=None, code=None, fmt=None, u=None, var=0.01, _f=_f, _fname=_fname, _code=_code, _fmt=_fmt):
            x = t["x"] if x is None else x
            code = _code if code is None else code
            fmt = _fmt if fmt is None else fmt
            u = t["u"] if u is None else u
            if _fname == "nearest":
                return _f(x, code, fmt)
            if _fname == "stochastic":
                return _f(x, u, code, fmt)
            if _fname == "gap":
                return _f(x, code, fmt)
            return _f(x, var, code, fmt, u, u, u)

        _arg = "mu" if _fname in ("vc", "gap") else "x"
        _p = f"{_mname}.{_fname}"
        add(f"{_p}-{_arg}=list", lambda t, c=_call: c(t, x=[0.5] * 6), (_arg, "list"), make=_kbase)
        add(f"{_p}-{_arg}=float32", lambda t, c=_call: c(t, x=t["x"].float()), (_arg, "float32"), make=_kbase)
        add(f"{_p}-code=short", lambda t, c=_call, k=_code: c(t, code=k[:3]), ("code", "14"), make=_kbase)
        add(f"{_p}-code=other_kind", lambda t, c=_call, k=_other: c(t, code=k), ("code", "kind"), make=_kbase)
        add(f"{_p}-code=str", lambda t, c=_call: c(t, code="fixed:8:3"), ("code", "fixed:8:3"), make=_kbase)
        add(f"{_p}-fmt=3", lambda t, c=_call: c(t, fmt=3), ("fmt", "3"), make=_kbase)
        if _fname in ("stochastic", "vc"):
            _n = "u" if _fname == "stochastic" else "xi"
            add(f"{_p}-{_n}=short", lambda t, c=_call: c(t, u=t["u"][:2]), (_n, "shape"), make=_kbase)
            add(f"{_p}-{_n}=float32", lambda t, c=_call: c(t, u=t["u"].float()), (_n, "float32"), make=_kbase)
            add(f"{_p}-{_n}=list", lambda t, c=_call: c(t, u=[0.5] * 6), (_n, "list"), make=_kbase)
        if _fname == "vc":
            for _v in (NAN, -1.0, INF, "0.1", None):
                add(f"{_p}-var={_label(_v)}", lambda t, c=_call, v=_v: c(t, var=v), ("var", _nd(_v)), make=_kbase)

_MXCODE = tuple(float(c) for c in format_code(MX))
scalar_cases("kernels.mx.block_view", lambda t, v: KM.block_view(t["x"], MX, v), "block", (0, -1, 1.5, NAN, "32"))
scalar_cases("kernels.mx.block_view", lambda t, v: KM.block_view(t["x"], v, 32), "fmt", (F83, 3, None))
add("kernels.mx.block_view-x=list", lambda t: KM.block_view([1.0], MX, 32), ("x", "list"))
add("kernels.mx.block_scale-blocks=list", lambda t: KM.block_scale([[1.0]], _MXCODE), ("blocks", "list"))
add("kernels.mx.block_scale-blocks=float32", lambda t: KM.block_scale(t["x2"].float(), _MXCODE), ("blocks", "float32"))
add("kernels.mx.block_scale-code=fixed", lambda t: KM.block_scale(t["x2"], tuple(format_code(F83))), ("code", "kind"))
add("kernels.mx.block_scale-code=short", lambda t: KM.block_scale(t["x2"], (1.0, 2.0)), ("code", "14"))
add("kernels.mx.holding_scale-m=list", lambda t: KM.holding_scale([1.0], _MXCODE), ("m", "list"))
add("kernels.mx.holding_scale-m=int64", lambda t: KM.holding_scale(torch.ones(2, dtype=torch.int64), _MXCODE),
    ("m", "int64"))
add("kernels.mx.holding_scale-code=fixed", lambda t: KM.holding_scale(t["x"].abs(), tuple(format_code(F83))),
    ("code", "kind"))
add("kernels.common.exact_sqrt-x=list", lambda t: KC.exact_sqrt([4.0]), ("x", "list"))
add("kernels.common.exact_sqrt-x=int64", lambda t: KC.exact_sqrt(torch.arange(3)), ("x", "int64"))


# ------------------------------------------------------------------ torchport.nn
def _nbase():
    t = _base()
    t["model"] = nn.Sequential(nn.Linear(4, 3, dtype=F64), nn.ReLU(), nn.Linear(3, 2, dtype=F64))
    return t


def _qbase():
    t = _base()
    t["q"] = TN.Quantizer(F83, F83, generator=t["g"])
    return t


def _qbase_exact():
    t = _base()
    t["q"] = TN.Quantizer(F83, F83, generator=t["g"], exact=True)
    return t


BAD_FMT = (("bogus:1:2", ("forward_format", "bogus:1:2")), (3, ("forward_format", "3")),
           (NAN, ("forward_format", "nan")), (object(), ("forward_format", "object")))
for _v, _nds in BAD_FMT:
    add(f"Quantizer-forward_format={_label(_v)}", lambda t, v=_v: TN.Quantizer(v, None, seed=0), _nds)
    add(f"Quantizer-backward_format={_label(_v)}", lambda t, v=_v: TN.Quantizer(None, v, seed=0),
        ("backward_format",) + _nds[1:])
    add(f"insert_quantizers-forward_format={_label(_v)}", lambda t, v=_v: TN.insert_quantizers(t["model"], v, seed=0),
        _nds, make=_nbase)
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, forward_rounding=v, seed=0), "forward_rounding",
             ("floor", None, 1, ""))
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, backward_rounding=v, seed=0), "backward_rounding",
             ("floor", None, 1))
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, generator=v), "generator", BAD_GEN)
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, seed=v), "seed", BAD_SEED)
add("Quantizer-seed=and_generator", lambda t: TN.Quantizer(F83, generator=t["g"], seed=3), ("seed", "generator"))
add("Quantizer-seed=none_for_stochastic", lambda t: TN.Quantizer(F83), ("generator", "seed"))
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, seed=0, exact=v), "exact", BAD_BOOL)
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, seed=0, index=v), "index", BAD_STEP)
add("Quantizer-index=with_exact", lambda t: TN.Quantizer(F83, seed=0, index=2, exact=True), ("index=2", "exact=True"))
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, generator=v, exact=True), "generator", BAD_GEN)
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, seed=v, exact=True), "seed", BAD_SEED)
scalar_cases("Quantizer", lambda t, v: TN.Quantizer(F83, seed=v), "seed", (2**64,))
add("Quantizer-seed=and_generator_exact", lambda t: TN.Quantizer(F83, generator=t["g"], seed=3, exact=True),
    ("seed", "generator"))
add("Quantizer-seed=none_for_stochastic_exact", lambda t: TN.Quantizer(F83, exact=True), ("generator", "seed"))
add("Quantizer.forward-x=list", lambda t: t["q"]([1.0, 2.0]), ("x", "list"), make=_qbase)
add("Quantizer.forward-x=int64", lambda t: t["q"](torch.arange(4)), ("x", "int64"), make=_qbase)
add("Quantizer.forward-x=str", lambda t: t["q"]("abc"), ("x", "str"), make=_qbase)
add("Quantizer.set_extra_state-state=str", lambda t: t["q"].set_extra_state("abc"), ("state", "abc"), make=_qbase)
add("Quantizer.set_extra_state-generator_state=bad", lambda t: t["q"].set_extra_state(
    {"generator_state": torch.zeros(3, dtype=torch.uint8)}), ("generator_state", "shape"), make=_qbase_exact)
add("Quantizer.set_extra_state-state=str_exact", lambda t: t["q"].set_extra_state("abc"), ("state", "abc"),
    make=_qbase_exact)
add("Quantizer.set_extra_state-generator_state=on_default_path", lambda t: t["q"].set_extra_state(
    {"generator_state": torch.zeros(3, dtype=torch.uint8)}), ("generator_state", "exact=True"), make=_qbase)
add("Quantizer.set_extra_state-counter_seed=on_exact_path", lambda t: t["q"].set_extra_state(
    {"counter_seed": 3, "index": 0}), ("counter_seed", "exact=False"), make=_qbase_exact)
scalar_cases("Quantizer.set_extra_state", lambda t, v: t["q"].set_extra_state({"counter_seed": v, "index": 0}),
             "counter_seed", (-1, 1.5, "3", 2**64, True), make=_qbase)
scalar_cases("Quantizer.set_extra_state", lambda t, v: t["q"].set_extra_state({"counter_seed": 3, "index": v}),
             "index", (-1, 1.5, None, "0"), make=_qbase)
add("Quantizer.set_extra_state-state=no_index", lambda t: t["q"].set_extra_state({"counter_seed": 3}),
    ("state", "index"), make=_qbase)
scalar_cases("QuantizeFunction.apply", lambda t, v: TN.QuantizeFunction.apply(t["x"], F83, None, v, "nearest", t["g"]),
             "forward_rounding", ("floor", None))
scalar_cases("QuantizeFunction.apply", lambda t, v: TN.QuantizeFunction.apply(t["x"], F83, None, "stochastic",
                                                                              "nearest", v), "generator", (3, None))
scalar_cases("QuantizeFunction.apply", lambda t, v: TN.QuantizeFunction.apply(t["x"], v, None, "nearest", "nearest",
                                                                              t["g"]), "forward_format", (3, "bogus"))
add("QuantizeFunction.apply-x=int64", lambda t: TN.QuantizeFunction.apply(torch.arange(3), F83, None, "stochastic",
                                                                          "nearest", t["g"]), ("x", "int64"))
for _mv in (3, "model", None, [nn.Linear(2, 2)]):
    add(f"insert_quantizers-model={_label(_mv)}", lambda t, v=_mv: TN.insert_quantizers(v, F83, seed=0),
        ("model", _nd(_mv) if not isinstance(_mv, list) else "list"))
    add(f"quantizers_of-model={_label(_mv)}", lambda t, v=_mv: TN.quantizers_of(v),
        ("model", _nd(_mv) if not isinstance(_mv, list) else "list"))
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, generator=v), "generator",
             BAD_GEN, make=_nbase)
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, seed=v), "seed", BAD_SEED,
             make=_nbase)
add("insert_quantizers-seed=and_generator", lambda t: TN.insert_quantizers(t["model"], F83, generator=t["g"], seed=3),
    ("seed", "generator"), make=_nbase)
add("insert_quantizers-seed=none_for_stochastic", lambda t: TN.insert_quantizers(t["model"], F83),
    ("generator", "seed"), make=_nbase)
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, seed=0, exact=v), "exact",
             BAD_BOOL, make=_nbase)
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, generator=v, exact=True),
             "generator", BAD_GEN, make=_nbase)
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, seed=v, exact=True), "seed",
             BAD_SEED, make=_nbase)
add("insert_quantizers-exclude=unknown_with_generator", lambda t: TN.insert_quantizers(
    t["model"], F83, generator=t["g"], exclude=("bogus.name",)), ("exclude", "bogus.name"), make=_nbase)
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, seed=0, forward_rounding=v),
             "forward_rounding", ("floor", None), make=_nbase)
add("insert_quantizers-forward_rounding=no_targets", lambda t: TN.insert_quantizers(
    nn.Sequential(nn.Tanh()), F83, seed=0, forward_rounding="floor"), ("forward_rounding", "floor"))
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, seed=0, after=v), "after",
             (3, ("Linear",), None, (int,)), make=_nbase)
scalar_cases("insert_quantizers", lambda t, v: TN.insert_quantizers(t["model"], F83, seed=0, exclude=v), "exclude",
             (3, "last", None, ("bogus.name",)), make=_nbase)


# ------------------------------------------------------------------ torchport.metrics
def _mbase():
    t = _base()
    t["p"] = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], dtype=F64)
    t["y"] = torch.tensor([0, 1, 1])
    t["bma"] = M.BMA()
    t["bma"].add(t["p"])
    t["model"] = nn.Linear(3, 2, dtype=F64)
    return t


_P = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
BAD_PROBS = (
    ("str", "abc", ("probs", "'abc'")), ("None", None, ("probs", "None")),
    ("1d", torch.tensor([0.5, 0.5]), ("probs", "shape")),
    ("nan", torch.tensor([[NAN, 0.5, 0.5]] + _P[1:]), ("probs", "nan")),
    ("inf", torch.tensor([[INF, 0.0, 0.0]] + _P[1:]), ("probs", "inf")),
    ("negative", torch.tensor([[1.1, -0.1, 0.0]] + _P[1:]), ("probs", "-0.1")),
    ("above_one", torch.tensor([[1.5, 0.0, 0.0]] + _P[1:]), ("probs", "1.5")),
    ("rows_not_summing_to_1", torch.tensor([[0.5, 0.1, 0.1]] + _P[1:]), ("probs", "sum")),
    ("empty", torch.zeros(0, 3), ("probs", "n=0")),
    ("complex", torch.ones(3, 3, dtype=torch.complex128) / 3, ("probs", "complex")),
)
BAD_LABELS = (
    ("float", torch.tensor([0.0, 1.5, 1.0]), ("labels", "float")),
    ("out_of_range", torch.tensor([0, 1, 3]), ("labels", "3")),
    ("negative", torch.tensor([0, -1, 1]), ("labels", "-1")),
    ("short", torch.tensor([0, 1]), ("labels", "shape")),
    ("str", "abc", ("labels", "str")),
    ("None", None, ("labels", "None")),
)
_METRIC_FNS = {"error_rate": M.error_rate, "nll": M.nll, "expected_calibration_error": M.expected_calibration_error,
               "ece_published": M.ece_published, "evaluate_probs": M.evaluate_probs}
for _name, _fn in _METRIC_FNS.items():
    for _lab, _v, _nds in BAD_PROBS:
        add(f"{_name}-probs={_lab}", lambda t, f=_fn, v=_v: f(v, t["y"]), _nds, make=_mbase)
    for _lab, _v, _nds in BAD_LABELS:
        add(f"{_name}-labels={_lab}", lambda t, f=_fn, v=_v: f(t["p"], v), _nds, make=_mbase)
scalar_cases("nll", lambda t, v: M.nll(t["p"], t["y"], eps=v), "eps", (0.0, 1.0, -1e-3, NAN, "1e-12", None, True),
             make=_mbase)
scalar_cases("expected_calibration_error", lambda t, v: M.expected_calibration_error(t["p"], t["y"], n_bins=v),
             "n_bins", POS_INT + (2**80,), make=_mbase)
scalar_cases("expected_calibration_error", lambda t, v: M.expected_calibration_error(t["p"], t["y"], variant=v),
             "variant", ("bogus", None, 1), make=_mbase)
for _lab, _v, _nds in BAD_PROBS:
    if _lab != "empty":
        add(f"BMA.add-probs={_lab}", lambda t, v=_v: t["bma"].add(v), _nds, make=_mbase)
add("BMA.add-probs=other_shape", lambda t: t["bma"].add(torch.full((2, 3), 1 / 3)), ("probs", "shape"), make=_mbase)
add("BMA.mean-count=0", lambda t: M.BMA().mean(), ("count", "0"))
add("BMA.load_state_dict-state=str", lambda t: t["bma"].load_state_dict("abc"), ("state", "abc"), make=_mbase)
add("BMA.load_state_dict-count=-1", lambda t: t["bma"].load_state_dict({"sum": t["p"], "count": -1}),
    ("count", "-1"), make=_mbase)
add("BMA.load_state_dict-count=1.5", lambda t: t["bma"].load_state_dict({"sum": t["p"], "count": 1.5}),
    ("count", "1.5"), make=_mbase)
add("BMA.load_state_dict-sum=nan", lambda t: t["bma"].load_state_dict({"sum": t["p"] * NAN, "count": 1}),
    ("sum", "nan"), make=_mbase)
add("BMA.load_state_dict-sum=1d", lambda t: t["bma"].load_state_dict({"sum": torch.ones(3), "count": 1}),
    ("sum", "shape"), make=_mbase)
add("BMA.load_state_dict-sum=none_count_2", lambda t: t["bma"].load_state_dict({"sum": None, "count": 2}),
    ("sum", "count"), make=_mbase)
scalar_cases("predict_probs", lambda t, v: M.predict_probs(t["model"], t["p"], batch_size=v), "batch_size",
             POS_INT, make=_mbase)
for _lab, _v, _nds in (("list", [[1.0, 2.0, 3.0]], ("x", "list")), ("empty", torch.zeros(0, 3), ("x", "0")),
                       ("nan", torch.full((2, 3), NAN, dtype=F64), ("x", "nan")), ("str", "abc", ("x", "str"))):
    add(f"predict_probs-x={_lab}", lambda t, v=_v: M.predict_probs(t["model"], v), _nds, make=_mbase)
for _mv in (3, None, "model"):
    add(f"predict_probs-model={_label(_mv)}", lambda t, v=_mv: M.predict_probs(v, t["p"]), ("model", _nd(_mv)),
        make=_mbase)


# ------------------------------------------------------------------ torchport.data
def _tiny_arrays(n=10):
    x = np.zeros((n, 28, 28), np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    return D.MNISTArrays(x, y, x[:5].copy(), y[:5].copy())


def _dbase():
    t = _base()
    t["dir"] = Dir()
    t["arrays"] = list(_tiny_arrays())
    t["img"] = np.zeros((4, 28, 28), np.uint8)
    t["lab"] = np.array([0, 1, 2, 3])
    return t


def _arr(t):
    return D.MNISTArrays(*t["arrays"])


add("read_idx-path=missing", lambda t: D.read_idx(t["dir"].path / "nope"), ("nope",), exc=(FileNotFoundError,),
    make=_dbase)
add("read_idx-path=3", lambda t: D.read_idx(3), ("path", "3"))
add("write_idx-array=float", lambda t: D.write_idx(t["dir"].path / "f.idx", np.zeros(3, np.float64)),
    ("array", "float64"), make=_dbase)
add("write_idx-array=list", lambda t: D.write_idx(t["dir"].path / "f.idx", [1, 2]), ("array", "int64"), make=_dbase)
add("load_mnist-path=missing", lambda t: D.load_mnist(t["dir"].path / "nope"), ("nope",), exc=(FileNotFoundError,),
    make=_dbase)
add("load_mnist-path=3", lambda t: D.load_mnist(3), ("path", "3"))
scalar_cases("write_mnist_idx", lambda t, v: D.write_mnist_idx(v, t["dir"].path / "out"), "arrays",
             (3, None, "abc"), make=_dbase)
add("write_mnist_idx-arrays=dict", lambda t: D.write_mnist_idx({"x_train": 1}, t["dir"].path / "out"),
    ("arrays", "lacks keys"), make=_dbase)
scalar_cases("write_mnist_idx", lambda t, v: D.write_mnist_idx(_arr(t), t["dir"].path / "out", compresslevel=v),
             "compresslevel", (99, -2, 1.5, "6", None, True), make=_dbase)
scalar_cases("write_mnist_idx", lambda t, v: D.write_mnist_idx(_arr(t), t["dir"].path / "out", compress=v),
             "compress", ("yes", 2, None), make=_dbase)
add("write_mnist_idx-directory=3", lambda t: D.write_mnist_idx(_arr(t), 3), ("directory", "3"), make=_dbase)
add("write_mnist_idx-arrays=float_images", lambda t: D.write_mnist_idx(
    D.MNISTArrays(np.zeros((2, 28, 28)), np.zeros(2, np.uint8), np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8)),
    t["dir"].path / "out"), ("x_train", "float64"), make=_dbase)
scalar_cases("check_mnist", lambda t, v: D.check_mnist(v), "arrays", (3, None, "abc"), make=_dbase)
add("check_mnist-arrays=dict", lambda t: D.check_mnist({"x_train": 1}), ("arrays", "lacks keys"))
scalar_cases("check_mnist", lambda t, v: D.check_mnist(_arr(t), atol=v), "atol", (NAN, -1.0, 0.0, INF, "1", None, True),
             make=_dbase)
add("check_mnist-arrays=labels_out_of_range", lambda t: D.check_mnist(
    D.MNISTArrays(np.zeros((2, 28, 28), np.uint8), np.array([0, 12], np.uint8), np.zeros((1, 28, 28), np.uint8),
                  np.zeros(1, np.uint8))), ("y_train", "12"), make=_dbase)
scalar_cases("MNISTArrays", lambda t, v: D.MNISTArrays(v, v, v, v), "x_train", (3, None, "abc"))


def _dl(t, **kw):
    kw.setdefault("mirrors", ["file:///nonexistent/"])
    return D.download_mnist(t["dir"].path / "root", **kw)


scalar_cases("download_mnist", lambda t, v: _dl(t, timeout=v), "timeout", POS_FLOAT, make=_dbase)
scalar_cases("download_mnist", lambda t, v: _dl(t, mirrors=v), "mirrors",
             ("http://example.invalid/", (), [3], [None], 3), make=_dbase)
scalar_cases("download_mnist", lambda t, v: _dl(t, md5=v), "md5", (3, "abc"), make=_dbase)
add("download_mnist-md5=unknown_name", lambda t: _dl(t, md5={"a": 3}), ("md5", "{'a': 3}"), make=_dbase)
scalar_cases("download_mnist", lambda t, v: _dl(t, check=v), "check", BAD_BOOL, make=_dbase)
scalar_cases("download_mnist", lambda t, v: _dl(t, overwrite=v), "overwrite", BAD_BOOL, make=_dbase)
add("download_mnist-root=3", lambda t: D.download_mnist(3, mirrors=["file:///x/"]), ("root", "3"))
add("download_mnist-root=None", lambda t: D.download_mnist(None, mirrors=["file:///x/"]), ("root", "None"))

scalar_cases("to_tensors", lambda t, v: D.to_tensors(t["img"], t["lab"], layout=v), "layout",
             ("bogus", None, 3), make=_dbase)
scalar_cases("to_tensors", lambda t, v: D.to_tensors(t["img"], t["lab"], dtype=v), "dtype",
             (torch.int64, "float32", None, np.float32), make=_dbase)
scalar_cases("to_tensors", lambda t, v: D.to_tensors(t["img"], t["lab"], normalize=v), "normalize", BAD_BOOL,
             make=_dbase)
add("to_tensors-images=float", lambda t: D.to_tensors(t["img"].astype(np.float64), t["lab"]), ("images", "float64"),
    make=_dbase)
add("to_tensors-images=shape", lambda t: D.to_tensors(t["img"][:, :27], t["lab"]), ("images", "shape"), make=_dbase)
add("to_tensors-images=str", lambda t: D.to_tensors("abc", t["lab"]), ("images", "<U3"), make=_dbase)
add("to_tensors-labels=short", lambda t: D.to_tensors(t["img"], t["lab"][:2]), ("labels", "(2,)"), make=_dbase)
add("to_tensors-labels=float", lambda t: D.to_tensors(t["img"], t["lab"] + 0.5), ("labels", "float64"), make=_dbase)
add("to_tensors-labels=negative", lambda t: D.to_tensors(t["img"], t["lab"] - 1), ("labels", "-1"), make=_dbase)
add("to_tensors-labels=above_9", lambda t: D.to_tensors(t["img"], t["lab"] + 9), ("labels", "12"), make=_dbase)
scalar_cases("subset_indices", lambda t, v: D.subset_indices(v, 5), "n_total", POS_INT)
scalar_cases("subset_indices", lambda t, v: D.subset_indices(10, v), "n", (0, -1, 11, 1.5, NAN, "3", True))
scalar_cases("subset_indices", lambda t, v: D.subset_indices(10, 5, v), "seed", BAD_SEED)
scalar_cases("epoch_permutation", lambda t, v: D.epoch_permutation(v, 0, 0), "n", NONNEG_INT)
scalar_cases("epoch_permutation", lambda t, v: D.epoch_permutation(10, v, 0), "seed",
             BAD_SEED + (torch.Generator(),))
scalar_cases("epoch_permutation", lambda t, v: D.epoch_permutation(10, 0, v), "epoch", NONNEG_INT)


# ------------------------------------------------------------------ torchport.models
scalar_cases("LogisticRegression", lambda t, v: MD.LogisticRegression(in_features=v), "in_features", POS_INT)
scalar_cases("LogisticRegression", lambda t, v: MD.LogisticRegression(num_classes=v), "num_classes", POS_INT)
scalar_cases("MLP", lambda t, v: MD.MLP(in_features=v), "in_features", POS_INT)
scalar_cases("MLP", lambda t, v: MD.MLP(hidden=v), "hidden", POS_INT)
scalar_cases("MLP", lambda t, v: MD.MLP(num_classes=v), "num_classes", POS_INT)
scalar_cases("SmallCNN", lambda t, v: MD.SmallCNN(num_classes=v), "num_classes", POS_INT)
scalar_cases("SmallCNN", lambda t, v: MD.SmallCNN(channels=v), "channels", ((16,), (0, 32), (16, 1.5), 16, "ab", None))
for _blk in ("BasicBlock", "Bottleneck"):
    _cls = getattr(MD, _blk)
    scalar_cases(_blk, lambda t, v, c=_cls: c(v, 8), "cin", POS_INT)
    scalar_cases(_blk, lambda t, v, c=_cls: c(8, v), "planes", POS_INT)
    scalar_cases(_blk, lambda t, v, c=_cls: c(8, 8, v), "stride", POS_INT)
scalar_cases("ResNet", lambda t, v: MD.ResNet(v, (1, 1, 1, 1)), "block", (3, None, nn.Linear, "BasicBlock"))
scalar_cases("ResNet", lambda t, v: MD.ResNet(MD.BasicBlock, v), "layers",
             ((2, 2), (2, 2, 2, 2, 2), (0, 1, 1, 1), (1, 1.5, 1, 1), 2, None))
scalar_cases("ResNet", lambda t, v: MD.ResNet(MD.BasicBlock, (1, 1, 1, 1), num_classes=v), "num_classes", POS_INT)
scalar_cases("ResNet", lambda t, v: MD.ResNet(MD.BasicBlock, (1, 1, 1, 1), in_channels=v), "in_channels", POS_INT)
scalar_cases("ResNet", lambda t, v: MD.ResNet(MD.BasicBlock, (1, 1, 1, 1), stem=v), "stem", ("bogus", None, 3))
for _rn in ("resnet18", "resnet50"):
    _f = getattr(MD, _rn)
    scalar_cases(_rn, lambda t, v, f=_f: f(num_classes=v, use_torchvision=False), "num_classes", POS_INT)
    scalar_cases(_rn, lambda t, v, f=_f: f(stem=v, use_torchvision=False), "stem", ("bogus", None))
    scalar_cases(_rn, lambda t, v, f=_f: f(use_torchvision=v), "use_torchvision", ("yes", 1, NAN))


def _mdbase():
    t = _base()
    t["model"] = nn.Linear(3, 2)
    return t


scalar_cases("init_parameters", lambda t, v: MD.init_parameters(t["model"], v), "seed", BAD_SEED + (None,),
             make=_mdbase)
scalar_cases("init_parameters", lambda t, v: MD.init_parameters(t["model"], generator=v), "generator", BAD_GEN,
             make=_mdbase)
add("init_parameters-seed=and_generator", lambda t: MD.init_parameters(t["model"], 3, generator=t["g"]),
    ("seed", "generator"), make=_mdbase)
for _mv in (3, None, "model"):
    add(f"init_parameters-model={_label(_mv)}", lambda t, v=_mv: MD.init_parameters(v, t["g"]), ("model", _nd(_mv)))
    add(f"num_parameters-model={_label(_mv)}", lambda t, v=_mv: MD.num_parameters(v), ("model", _nd(_mv)))
scalar_cases("input_layout", lambda t, v: MD.input_layout(v), "name", ("vgg", None, 3))
scalar_cases("build_model", lambda t, v: MD.build_model(v, seed=0), "name", ("vgg", None, 3))
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", seed=v), "seed", BAD_SEED + (None,))
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", generator=v), "generator", BAD_GEN)
add("build_model-seed=and_generator", lambda t: MD.build_model("logreg", seed=3, generator=t["g"]),
    ("seed", "generator"))
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", generator=t["g"], num_classes=v), "num_classes",
             POS_INT)
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", generator=t["g"], dtype=v), "dtype",
             (torch.int64, "float32", None))
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", generator=t["g"], device=v), "device",
             BAD_DEVICE)
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", generator=t["g"], stem=v), "stem", ("bogus", None))
scalar_cases("build_model", lambda t, v: MD.build_model("logreg", generator=t["g"], use_torchvision=v),
             "use_torchvision", ("yes", 1))


# ------------------------------------------------------------------ torchport.checkpoint
def _cbase():
    t = _base()
    t["dir"] = Dir()
    (t["dir"].path / "garbage.pt").write_bytes(b"hello")
    (t["dir"].path / "good.pt").write_bytes(CK.encode({"a": torch.ones(2)}))
    return t


class _Opaque:
    pass


for _lab, _v, _nds in (("lambda", {"f": lambda: 0}, ("obj", "function")), ("object", [_Opaque()], ("obj", "_Opaque")),
                       ("module", {"m": nn.Linear(2, 2)}, ("obj", "Linear")), ("ndarray", {"a": np.ones(2)},
                                                                                  ("obj", "ndarray"))):
    add(f"save_checkpoint-obj={_lab}", lambda t, v=_v: CK.save_checkpoint(v, t["dir"].path / "c.pt"), _nds,
        make=_cbase)
    add(f"encode-obj={_lab}", lambda t, v=_v: CK.encode(v), _nds)
    add(f"check_plain_data-obj={_lab}", lambda t, v=_v: CK.check_plain_data(v), _nds)
add("check_plain_data-obj=set_of_object", lambda t: CK.check_plain_data({"s": {_Opaque()}}), ("obj['s']", "_Opaque"))
add("check_plain_data-obj=key_object", lambda t: CK.check_plain_data({_Opaque(): 1}), ("obj", "key", "_Opaque"))
add("save_checkpoint-path=3", lambda t: CK.save_checkpoint({}, 3), ("path", "3"))
add("save_checkpoint-path=missing_dir", lambda t: CK.save_checkpoint({}, t["dir"].path / "no" / "c.pt"), ("no",),
    exc=(FileNotFoundError,), make=_cbase)
add("load_checkpoint-path=3", lambda t: CK.load_checkpoint(3), ("path", "3"))
add("load_checkpoint-path=missing", lambda t: CK.load_checkpoint(t["dir"].path / "nope.pt"), ("nope.pt",),
    exc=(FileNotFoundError,), make=_cbase)
add("load_checkpoint-path=garbage", lambda t: CK.load_checkpoint(t["dir"].path / "garbage.pt"),
    ("garbage.pt", "not a qlangevin checkpoint"), make=_cbase)
add("load_checkpoint-map_location=bogus", lambda t: CK.load_checkpoint(t["dir"].path / "good.pt",
                                                                       map_location="bogus"),
    ("map_location", "bogus"), make=_cbase)
add("load_checkpoint-map_location=3.5", lambda t: CK.load_checkpoint(t["dir"].path / "good.pt", map_location=3.5),
    ("map_location", "3.5"), make=_cbase)
add("decode-data=str", lambda t: CK.decode("abc"), ("data", "str"))
add("decode-data=None", lambda t: CK.decode(None), ("data", "None"))
add("decode-data=garbage", lambda t: CK.decode(b"hello"), ("checkpoint", "not a qlangevin checkpoint"))
add("decode-map_location=bogus", lambda t: CK.decode(CK.encode({}), map_location="bogus"), ("map_location", "bogus"))
add("decode-source=3", lambda t: CK.decode(b"hello", source=3), ("source", "3"))


# ------------------------------------------------------------------ torchport.counter_rng
def _rbase():
    t = _base()
    t["key"] = CR.key_tensor(12345)
    return t


scalar_cases("key_tensor", lambda t, v: CR.key_tensor(v), "key", (1.5, NAN, "3", None, True, 2**64, -1))
scalar_cases("key_tensor", lambda t, v: CR.key_tensor(1, device=v), "device", BAD_DEVICE)
scalar_cases("counter_bits", lambda t, v: CR.counter_bits(v, torch.arange(3)), "key", (3, torch.ones(2), 1.5),
             make=_rbase)
scalar_cases("counter_bits", lambda t, v: CR.counter_bits(t["key"], v), "index", (torch.ones(3), [1, 2], 3),
             make=_rbase)
for _name in ("uniforms", "normals"):
    _fn = getattr(CR, _name)
    scalar_cases(_name, lambda t, v, f=_fn: f(t["key"], v), "n", (-1, 1.5, NAN, "3", None, True), make=_rbase)
    scalar_cases(_name, lambda t, v, f=_fn: f(t["key"], 3, start=v), "start", (-1, 1.5, "0", None), make=_rbase)
    scalar_cases(_name, lambda t, v, f=_fn: f(t["key"], 3, dtype=v), "dtype", (torch.int64, "float64", None),
                 make=_rbase)
    scalar_cases(_name, lambda t, v, f=_fn: f(v, 3), "key", (3, torch.ones(2), None), make=_rbase)
scalar_cases("uniform_bits_for", lambda t, v: CR.uniform_bits_for(v), "dtype", ("float64", torch.int64, None, 3))
scalar_cases("stream_key", lambda t, v: CR.stream_key(v, 0, 0, 0), "seed", (-1, 1.5, NAN, "3", None))
scalar_cases("stream_key", lambda t, v: CR.stream_key(0, v, 0, 0), "step", (-1, 1.5, NAN, "3", None))


# ------------------------------------------------------------------ torchport.fast (validation in the entry points)
F86 = FixedPoint(8, 6)
BAD_FAST_X = (("list", [1.0], ("x", "[1.0]")), ("None", None, ("x", "None")),
              ("int64", torch.arange(3), ("x", "int64")), ("bool", torch.ones(3, dtype=torch.bool), ("x", "bool")))
for _lab, _v, _nds in BAD_FAST_X:
    add(f"quantize_fast-x={_lab}", lambda t, v=_v: FA.quantize_fast(v, F86), _nds)
    add(f"stochastic_round_fast-x={_lab}", lambda t, v=_v: FA.stochastic_round_fast(v, F86, seed=0), _nds)
    add(f"vc_quantize_fast-mu={_lab}", lambda t, v=_v: FA.vc_quantize_fast(v, 0.1, F86, seed=0),
        ("mu",) + _nds[1:])
scalar_cases("quantize_fast", lambda t, v: FA.quantize_fast(t["x"], v), "fmt", ("fixed:8:6", None, 3))
scalar_cases("quantize_fast", lambda t, v: FA.quantize_fast(t["x"], F86, ties=v), "ties", ("bogus", 3))
scalar_cases("stochastic_round_fast", lambda t, v: FA.stochastic_round_fast(t["x"], v, seed=0), "fmt",
             ("fixed:8:6", None))
scalar_cases("stochastic_round_fast", lambda t, v: FA.stochastic_round_fast(t["x"], F86, seed=v), "seed",
             (-1, 1.5, NAN, "3", None, True))
scalar_cases("stochastic_round_fast", lambda t, v: FA.stochastic_round_fast(t["x"], F86, seed=0, step=v), "step",
             (-1, 1.5, "3", None))
scalar_cases("stochastic_round_fast", lambda t, v: FA.stochastic_round_fast(t["x"], F86, seed=0, param_index=v),
             "param_index", (-1, 1.5, None))
scalar_cases("stochastic_round_fast", lambda t, v: FA.stochastic_round_fast(t["x"], F86, seed=0, stream=v), "stream",
             ("bogus", -1, 1.5, None))
scalar_cases("stochastic_round_fast", lambda t, v: FA.stochastic_round_fast(t["x"], F86, seed=0, start=v), "start",
             (-1, 1.5, "0", None))
scalar_cases("vc_quantize_fast", lambda t, v: FA.vc_quantize_fast(t["x"], v, F86, seed=0), "var",
             (NAN, INF, -1.0, "0.1", None, True, [0.1]))
scalar_cases("vc_quantize_fast", lambda t, v: FA.vc_quantize_fast(t["x"], 0.1, v, seed=0), "fmt", ("fixed:8:6", None))
scalar_cases("vc_quantize_fast", lambda t, v: FA.vc_quantize_fast(t["x"], 0.1, F86, seed=v), "seed",
             (-1, 1.5, "3", None))
scalar_cases("vc_quantize_fast", lambda t, v: FA.vc_quantize_fast(t["x"], 0.1, F86, seed=0, streams=v), "streams",
             (("xi", "u_round"), "xi", ("xi", "u_round", "bogus"), ("xi", "u_round", -1), None, 3))
scalar_cases("vc_quantize_fast", lambda t, v: FA.vc_quantize_fast(t["x"], 0.1, F86, seed=0, ties=v), "ties",
             ("bogus", 3))
scalar_cases("maybe_compile", lambda t, v: FA.maybe_compile(v), "fn", (3, None, "sgld_step"))
scalar_cases("maybe_compile", lambda t, v: FA.maybe_compile(FA.sgld_step, enabled=v), "enabled", BAD_BOOL)


def _fbase():
    t = _base()
    t["w"] = nn.Parameter(torch.linspace(-0.5, 0.5, 6, dtype=F64))
    return t


for _cls in ("FastLowPrecisionSGLD", "FastLowPrecisionSGHMC"):
    _c = getattr(FA, _cls)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=0.1, weight_format=F86, compile=v), "compile", BAD_BOOL,
                 make=_fbase)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=0.1, weight_format=F86, seed=v), "seed",
                 (-1, 1.5, "3", None, True), make=_fbase)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=0.1, weight_format=F86, check_every=v), "check_every",
                 (-1, 1.5, None, True), make=_fbase)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=v, weight_format=F86), "lr", (0.0, -1.0, NAN, INF, "0.1"),
                 make=_fbase)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=0.1, temperature=v, weight_format=F86), "temperature",
                 (-1.0, NAN, INF, "1"), make=_fbase)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=0.1, weight_format=F86, accumulator=v), "accumulator",
                 ("bogus", None), make=_fbase)
    scalar_cases(_cls, lambda t, v, c=_c: c([t["w"]], lr=0.1, weight_format=v), "weight_format",
                 ("bogus:1:2", 3), make=_fbase)


# ------------------------------------------------------------------ the table of known gaps
#: Ids that are not ``clear`` on the current code, with the reason (``python <this file> -v`` lists them).
#: Every one is ``xfail(strict=True)``: a fix turns it into XPASS, which fails, so the id must then be removed.
_ENCODE = ("encode is the raw framer (tests/torchport/test_checkpoint.py frames a forbidden object with it to check "
           "that decode refuses it); save_checkpoint checks the object first (check_plain_data)")
GAPS: dict[str, str] = {
    "MNISTArrays-x_train=3": "a NamedTuple holds what it is given (its __new__ cannot be overridden); every consumer "
                             "(check_mnist, write_mnist_idx) validates it",
    "MNISTArrays-x_train=None": "as MNISTArrays-x_train=3",
    "MNISTArrays-x_train='abc'": "as MNISTArrays-x_train=3",
    "encode-obj=lambda": _ENCODE,
    "encode-obj=object": _ENCODE,
    "encode-obj=module": _ENCODE,
    "encode-obj=ndarray": _ENCODE,
}


def public_names() -> dict[str, str]:
    """``module.name`` -> kind for every public name of ``MODULES`` (``__all__`` plus public defs)."""
    out = {}
    for mname, mod in MODULES.items():
        names = set(getattr(mod, "__all__", ()))
        for name, obj in vars(mod).items():
            if name.startswith("_"):
                continue
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(obj, "__module__", "") == mod.__name__:
                names.add(name)
        for name in names:
            out[f"{mname}.{name}"] = "callable" if callable(getattr(mod, name)) else "constant"
    return out


def _row_prefixes() -> set:
    return {c.id.split("-")[0] for c in CASES}


def uncovered() -> list[str]:
    prefixes = _row_prefixes()
    missing = []
    for q in public_names():
        if q in EXEMPT:
            continue
        mname, name = q.rsplit(".", 1)
        # kernel rows are prefixed with the module (several modules share the names nearest/vc/...)
        wanted = q if mname.startswith("kernels.") else name
        if not any(p == wanted or p.startswith(wanted + ".") for p in prefixes):
            missing.append(q)
    return sorted(missing)


@pytest.mark.parametrize("case", parametrize_cases(CASES, GAPS))
def test_bad_input_is_clear(case):
    kind, detail = outcome(case)
    assert kind == "clear", f"{kind}: {detail}"


def test_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def test_every_public_name_has_rows():
    """A new public function/class in a covered module needs rows here (or an EXEMPT entry with the reason)."""
    assert uncovered() == []
    assert set(EXEMPT) <= set(public_names()), "EXEMPT lists a name that is no longer public"


def test_gaps_are_known_ids():
    ids = {c.id for c in CASES}
    assert sorted(set(GAPS) - ids) == []


def test_the_classifier_catches_a_silent_and_a_mutating_call():
    """Mutations of the classifier's inputs: no error -> silent; an input changed before raising -> unclear."""
    silent = Case("m1", _base, lambda t: Q.quantize(t["x"], F83, "nearest"), ("x",))
    assert outcome(silent)[0] == "silent"

    def draws_then_raises(t):
        torch.rand(3, generator=t["g"])
        raise ValueError("x=1 bad")

    assert outcome(Case("m2", _base, draws_then_raises, ("x", "1")))[0] == "unclear"

    def mutates_then_raises(t):
        t["x"][0] = 5.0
        raise ValueError("x=1 bad")

    assert outcome(Case("m3", _base, mutates_then_raises, ("x", "1")))[0] == "unclear"
    assert outcome(Case("m4", _base, lambda t: Q.quantize(t["x"], F83, "bogus"), ("rounding", "'bogus'")))[0] == "clear"


def main() -> int:
    counts = {"clear": 0, "unclear": 0, "silent": 0}
    rows = []
    for c in CASES:
        kind, detail = outcome(c)
        counts[kind] += 1
        rows.append((c.id, kind, detail))
    print("total cases", len(CASES), counts)
    if "-v" in sys.argv:
        for cid, kind, detail in rows:
            if kind != "clear":
                reason = " ".join(f"{kind}: {detail}".split())[:110]
                print(f"    {cid!r}: {reason!r},")
    if uncovered():
        print("public names without rows:", uncovered())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
