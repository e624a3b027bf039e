"""Models for the MNIST validation: logistic regression, the 784-100-10 MLP, a small CNN, ResNets.

* ``logreg``: Linear(784 → 10), the strongly log-concave case of LP-SGHMC §4.2
  (ALGORITHMS §6.3; comeusr/Low-precisionSGHMC logistics/train.py ``Net``).
* ``mlp``: Linear(784 → 100) → ReLU → Linear(100 → 10), the non-log-concave case (same source).
* ``cnn``: a small LeNet-style CNN (conv5×5 1→16, ReLU, max-pool 2, conv5×5 16→32, ReLU,
  max-pool 2, Linear(512 → 10)); ours, not from a paper (the issue asks for "a small CNN").
* ``resnet18`` / ``resnet50``: torchvision's definitions when torchvision is importable, else
  the local :class:`ResNet`, which has the same architecture and parameter count
  (He et al. 2016, Table 1: 7×7 stride-2 stem and 3×3 max-pool, BasicBlock [2, 2, 2, 2] or
  Bottleneck [3, 4, 6, 3], stride on the 3×3 convolution (the "v1.5" placement torchvision
  uses), projection shortcuts).  ``stem="cifar"`` swaps the stem for a 3×3 stride-1
  convolution without max-pool, as the kuangliu-style CIFAR ResNet of the LP-SGLD code
  does.  They take the ``"padded32x3"`` input layout (3 × 32 × 32).

Initialisation consumes no global random state: models are built on the ``meta`` device and
then initialised by :func:`init_parameters` from an explicit ``torch.Generator``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from torchport._seed import generator_from

MODELS = ("logreg", "mlp", "cnn", "resnet18", "resnet50")
STEMS = ("imagenet", "cifar")


def _positive_int(name: str, value) -> int:
    """``value`` as an int >= 1; ``TypeError``/``ValueError`` naming ``name`` and the value otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r}: must be an int >= 1")
    if value < 1:
        raise ValueError(f"{name}={value!r}: must be an int >= 1")
    return int(value)


def _check_stem(stem) -> None:
    if not isinstance(stem, str) or stem not in STEMS:
        raise ValueError(f"stem={stem!r}: expected 'imagenet' or 'cifar'")


def _check_use_torchvision(value) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"use_torchvision={value!r}: must be True, False or None")


def _check_module(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} {model!r:.60}")


class LogisticRegression(nn.Module):
    """Multinomial logistic regression, Linear(784 → 10) on the flattened image."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        in_features, num_classes = _positive_int("in_features", in_features), _positive_int("num_classes", num_classes)
        super().__init__()
        self.classifier = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.reshape(x.shape[0], -1))


class MLP(nn.Module):
    """784 → hidden → ReLU → 10 (hidden = 100 in LP-SGHMC §4.2)."""

    def __init__(self, in_features: int = 784, hidden: int = 100, num_classes: int = 10):
        in_features, hidden = _positive_int("in_features", in_features), _positive_int("hidden", hidden)
        num_classes = _positive_int("num_classes", num_classes)
        super().__init__()
        self.layer1 = nn.Linear(in_features, hidden)
        self.act1 = nn.ReLU()
        self.layer2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.act1(self.layer1(x.reshape(x.shape[0], -1))))


class SmallCNN(nn.Module):
    """conv5×5(1→16)-ReLU-pool2-conv5×5(16→32)-ReLU-pool2-Linear(512→10) on (n, 1, 28, 28)."""

    def __init__(self, num_classes: int = 10, channels: tuple[int, int] = (16, 32)):
        num_classes = _positive_int("num_classes", num_classes)
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) != 2:
            raise TypeError(f"channels={channels!r}: must be two ints >= 1 (conv1, conv2 output channels)")
        for c in channels:
            if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 1:
                raise ValueError(f"channels={channels!r}: must be two ints >= 1 (conv1, conv2 output channels)")
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5)
        self.act1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.act2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(c2 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.conv1(x)))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.fc(x.flatten(1))


# ---------------------------------------------------------------------------- local ResNet


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        cin, planes, stride = _positive_int("cin", cin), _positive_int("planes", planes), _positive_int("stride", stride)
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        cin, planes, stride = _positive_int("cin", cin), _positive_int("planes", planes), _positive_int("stride", stride)
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Minimal ResNet with torchvision's module names (conv1, bn1, layer1..4, fc)."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3, stem: Literal["imagenet", "cifar"] = "imagenet"):
        _check_resnet_args(block, layers, num_classes, in_channels, stem)
        super().__init__()
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        elif stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            raise ValueError(f"stem={stem!r}: expected 'imagenet' or 'cifar'")
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, planes, stride))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _check_resnet_args(block, layers, num_classes, in_channels, stem) -> None:
    """ResNet's arguments: a block class (BasicBlock, Bottleneck or a subclass), four stage depths >= 1, ..."""
    if not (isinstance(block, type) and issubclass(block, (BasicBlock, Bottleneck))):
        raise TypeError(f"block={block!r}: must be BasicBlock or Bottleneck (or a subclass)")
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence) or len(layers) != 4 or any(
            isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in layers):
        raise ValueError(f"layers={layers!r}: must be four ints >= 1 (blocks per stage)")
    _positive_int("num_classes", num_classes)
    _positive_int("in_channels", in_channels)
    _check_stem(stem)


def _torchvision_resnet(name: str, num_classes: int, stem: str):
    try:
        import torchvision.models as tvm  # noqa: PLC0415
    except ImportError:
        return None
    model = getattr(tvm, name)(weights=None, num_classes=num_classes)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif stem != "imagenet":
        raise ValueError(f"stem={stem!r}: expected 'imagenet' or 'cifar'")
    return model


def resnet18(num_classes: int = 10, stem: str = "imagenet", use_torchvision: bool | None = None) -> nn.Module:
    """ResNet-18 (torchvision's if importable and ``use_torchvision`` is not False, else local)."""
    _positive_int("num_classes", num_classes)
    _check_stem(stem)
    _check_use_torchvision(use_torchvision)
    if use_torchvision is not False:
        model = _torchvision_resnet("resnet18", num_classes, stem)
        if model is not None:
            return model
        if use_torchvision:
            raise ImportError("use_torchvision=True but torchvision is not importable")
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, stem=stem)


def resnet50(num_classes: int = 10, stem: str = "imagenet", use_torchvision: bool | None = None) -> nn.Module:
    """ResNet-50 (torchvision's if importable and ``use_torchvision`` is not False, else local)."""
    _positive_int("num_classes", num_classes)
    _check_stem(stem)
    _check_use_torchvision(use_torchvision)
    if use_torchvision is not False:
        model = _torchvision_resnet("resnet50", num_classes, stem)
        if model is not None:
            return model
        if use_torchvision:
            raise ImportError("use_torchvision=True but torchvision is not importable")
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, stem=stem)


# ---------------------------------------------------------------------------- init / factory


@torch.no_grad()
def init_parameters(model: nn.Module, seed: int | torch.Generator | None = None, *,
                    generator: torch.Generator | None = None, zero_init_residual: bool = False) -> nn.Module:
    """Initialise every parameter and buffer of ``model`` from ``seed`` (in module order).

    ``seed``: an int (a fresh CPU generator) or a ``torch.Generator``; ``generator=`` is the
    same thing as ``seed=<Generator>`` (the older keyword); exactly one of the two.

    Linear and Conv2d: PyTorch's default (``kaiming_uniform_(a=√5)`` on the weight, i.e.
    U(±1/√fan_in), and U(±1/√fan_in) on the bias), except that convolutions inside a
    ResNet use He-normal fan-out initialisation as torchvision's ResNet does; BatchNorm:
    weight 1, bias 0, running statistics reset.  Consumes uniforms/normals from
    ``generator`` only.

    ``zero_init_residual`` (default False, the behaviour above): set the weight γ of the
    last BatchNorm of every residual block to 0 (``bn3`` of a Bottleneck, ``bn2`` of a
    BasicBlock), so that each block starts as the identity -- Goyal et al. 2017, "Accurate,
    Large Minibatch SGD: Training ImageNet in 1 Hour", §5.1, and torchvision's
    ``ResNet(zero_init_residual=True)``.  It consumes no random numbers, so every other
    parameter has the same bits as without it.  Measured effect on the local ResNet-50
    (10 classes, MNIST padded to 32×32×3, batch 32, seed 0): the gradient norm at the first
    step falls from about 820 to about 40 (docs/results/resnet50_cpu.md).
    """
    _check_module(model)
    if not isinstance(zero_init_residual, bool):
        raise TypeError(f"zero_init_residual must be a bool, got {zero_init_residual!r}")
    generator = generator_from(seed, generator, where="init_parameters: ")
    resnet = isinstance(model, ResNet) or type(model).__name__ == "ResNet"
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            w = module.weight
            fan_in = w[0].numel()
            if isinstance(module, nn.Conv2d) and resnet:
                fan_out = w.shape[0] * w[0, 0].numel()
                w.normal_(0.0, math.sqrt(2.0 / fan_out), generator=generator)
            else:
                bound = 1.0 / math.sqrt(fan_in)  # = gain·√(3/fan_in) with a = √5
                w.uniform_(-bound, bound, generator=generator)
            if module.bias is not None:
                b = 1.0 / math.sqrt(fan_in)
                module.bias.uniform_(-b, b, generator=generator)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            if module.affine:
                module.weight.fill_(1.0)
                module.bias.zero_()
    if zero_init_residual:
        for module in model.modules():
            last_bn = {"Bottleneck": "bn3", "BasicBlock": "bn2"}.get(type(module).__name__)
            if last_bn is not None and getattr(module, last_bn, None) is not None:
                getattr(module, last_bn).weight.zero_()
    return model


def input_layout(name: str) -> str:
    """Input layout :func:`torchport.data.to_tensors` must produce for model ``name``."""
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model={name!r} (argument name): expected one of {MODELS}")
    return "padded32x3" if name.startswith("resnet") else "image"


def build_model(
    name: str,
    *,
    seed: int | torch.Generator | None = None,
    generator: torch.Generator | None = None,
    num_classes: int = 10,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    stem: str = "imagenet",
    use_torchvision: bool | None = None,
    zero_init_residual: bool = False,
) -> nn.Module:
    """Build model ``name`` (one of :data:`MODELS`) on ``device`` and initialise it from ``seed``.

    ``seed``: an int or a ``torch.Generator`` (``generator=`` is the older spelling and takes
    a generator only); exactly one of the two.  The model is constructed on the ``meta``
    device (so PyTorch's default initialisers, which use the global generator, never run)
    and then materialised and initialised by :func:`init_parameters`.  Same seed (or
    generator state) → same bits.  ``zero_init_residual``: see :func:`init_parameters`
    (ResNets only; default False).
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"model={name!r} (argument name): expected one of {MODELS}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r}: must be a positive integer")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype={dtype!r}: must be a floating torch.dtype such as torch.float32")
    _check_stem(stem)
    _check_use_torchvision(use_torchvision)
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device={device!r}: must be a torch.device or a device string")
    try:
        torch.empty(0).to(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device={device!r}: not a usable device ({str(exc).splitlines()[0]})") from None
    if (seed is None) == (generator is None):
        raise TypeError("build_model: pass exactly one of seed= (an int or a torch.Generator) and generator=, got "
                        f"seed={seed!r} and generator={generator!r}")
    generator = generator_from(seed, generator, where="build_model: ")
    with torch.device("meta"):
        if name == "logreg":
            model = LogisticRegression(num_classes=num_classes)
        elif name == "mlp":
            model = MLP(num_classes=num_classes)
        elif name == "cnn":
            model = SmallCNN(num_classes=num_classes)
        elif name == "resnet18":
            model = resnet18(num_classes, stem=stem, use_torchvision=use_torchvision)
        else:
            model = resnet50(num_classes, stem=stem, use_torchvision=use_torchvision)
    model = model.to_empty(device="cpu").to(dtype)
    init_parameters(model, generator, zero_init_residual=zero_init_residual)
    return model.to(device)


def num_parameters(model: nn.Module) -> int:
    """Number of scalar parameters."""
    _check_module(model)
    return sum(p.numel() for p in model.parameters())
