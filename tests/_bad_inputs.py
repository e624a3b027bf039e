"""The bad-input classifier shared by the table-driven batteries (issue 13).

A case is one call that must fail.  Its outcome is

* ``clear``: an exception of the expected type whose message contains every needle
  (the argument's name and the value it got), and nothing the call could touch changed;
* ``unclear``: another exception type, a message without a needle, or a raising call
  that changed its inputs (arrays, generator state, optimizer state);
* ``silent``: no exception.

Used by tests/refimpl/test_public_bad_inputs.py, tests/refimpl/netopt/test_netopt_bad_inputs.py
and tests/torchport/test_bad_inputs.py (each supplies how to snapshot what the call may
change: numpy arrays and Generators here, optimizer state there); import with
``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np

CLEAR, UNCLEAR, SILENT = "clear", "unclear", "silent"


def classify(call: Callable[[], Any], needles: tuple, exc: tuple, snapshot: Callable[[], Any],
             changed: Callable[[Any, Any], str | None]) -> tuple[str, str]:
    """(outcome, detail) of ``call()``; ``changed(before, after)`` describes a change or returns None."""
    before = snapshot()
    try:
        call()
    except Exception as err:  # noqa: BLE001 - classifying every exception is the point
        msg = f"{type(err).__name__}: {err}"
        if not isinstance(err, exc):
            return UNCLEAR, f"wrong type {msg}"
        missing = [n for n in needles if n not in str(err)]
        if missing:
            return UNCLEAR, f"message lacks {missing}: {msg}"
        what = changed(before, snapshot())
        if what:
            return UNCLEAR, f"{what}: {msg}"
        return CLEAR, msg
    return SILENT, "no exception"


def numpy_state(obj: Any) -> list:
    """Copies of every ndarray and numpy Generator state inside ``obj`` (dicts, lists, tuples), in order."""
    out: list = []

    def walk(x):
        if isinstance(x, np.ndarray):
            out.append(x.copy())
        elif isinstance(x, np.random.Generator):
            out.append(copy.deepcopy(x.bit_generator.state))
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(obj)
    return out


def numpy_changed(before: list, after: list) -> str | None:
    """``"inputs changed"`` unless the two :func:`numpy_state` lists are equal (NaN equal to NaN; dtype and shape count)."""
    if len(before) != len(after):
        return "inputs changed"
    for x, y in zip(before, after):
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape
                    and np.array_equal(x, y, equal_nan=x.dtype.kind in "fc")):
                return "inputs changed"
        elif x != y:
            return "inputs changed"
    return None


def parametrize_cases(cases: list, gaps: dict[str, str]) -> list:
    """``pytest.param`` per case (id: ``case.id``); a case listed in ``gaps`` is ``xfail(strict=True)`` with its reason."""
    import pytest

    return [pytest.param(c, id=c.id, marks=(pytest.mark.xfail(strict=True, reason=gaps[c.id]),) if c.id in gaps else ())
            for c in cases]
