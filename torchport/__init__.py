"""torchport: PyTorch optimizers and quantizers mirroring :mod:`refimpl` (docs/torchport.md).

``torchport.quantize`` -- the refimpl formats and quantizers on tensors;
``torchport.optim`` -- one ``torch.optim.Optimizer`` per algorithm;
``torchport.nn`` -- activation/error quantizer modules;
``torchport.crosscheck`` -- bit-level and distributional parity with refimpl;
``torchport.data``, ``torchport.models``, ``torchport.train``, ``torchport.metrics``,
``torchport.distributed`` -- MNIST validation and multi-process training (docs/training.md).
Submodules are imported on first access, so that ``import torchport`` stays cheap.
"""

import importlib
import importlib.util

__all__ = ["quantize", "optim", "nn", "crosscheck", "data", "models", "train", "metrics", "distributed"]


def __getattr__(name):
    if not name.startswith("_") and importlib.util.find_spec(f"torchport.{name}") is not None:
        return importlib.import_module(f"torchport.{name}")
    raise AttributeError(f"module 'torchport' has no attribute {name!r}")
