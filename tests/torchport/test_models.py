"""torchport.models: architectures, parameter counts, generator-driven initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from torchport import models as tm


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "name, n_params",
    [("logreg", 784 * 10 + 10), ("mlp", 784 * 100 + 100 + 100 * 10 + 10), ("cnn", 16 * 25 + 16 + 32 * 16 * 25 + 32 + 512 * 10 + 10)],
)
def test_small_models_shapes_and_counts(name, n_params):
    model = tm.build_model(name, generator=_gen())
    assert tm.num_parameters(model) == n_params
    assert tm.input_layout(name) == "image"
    x = torch.randn(3, 1, 28, 28, generator=_gen(1))
    assert model(x).shape == (3, 10)
    # logreg/mlp accept flattened input too
    if name != "cnn":
        assert torch.equal(model(x), model(x.reshape(3, -1)))


def test_local_resnets_match_torchvision_parameter_counts():
    # torchvision's published counts for 1000 classes (He et al. 2016 architecture):
    # resnet18 11,689,512 and resnet50 25,557,032.
    assert tm.num_parameters(tm.resnet18(1000, use_torchvision=False)) == 11_689_512
    assert tm.num_parameters(tm.resnet50(1000, use_torchvision=False)) == 25_557_032
    # CIFAR stem: 3x3 conv replaces the 7x7 one (64*3*(49-9) fewer weights)
    assert tm.num_parameters(tm.resnet18(1000, stem="cifar", use_torchvision=False)) == 11_689_512 - 64 * 3 * 40


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_forward_on_padded_mnist(name):
    assert tm.input_layout(name) == "padded32x3"
    model = tm.build_model(name, generator=_gen(), use_torchvision=False).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32, generator=_gen(1)))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_torchvision_resnet_when_available():
    tv = pytest.importorskip("torchvision")  # present on the GPU machine only
    del tv
    for name in ("resnet18", "resnet50"):
        a = getattr(tm, name)(10, use_torchvision=True)
        b = getattr(tm, name)(10, use_torchvision=False)
        assert [tuple(p.shape) for p in a.parameters()] == [tuple(p.shape) for p in b.parameters()]


def test_initialisation_is_explicit_and_reproducible():
    state = torch.random.get_rng_state()
    a = tm.build_model("mlp", generator=_gen(5))
    b = tm.build_model("mlp", generator=_gen(5))
    c = tm.build_model("mlp", generator=_gen(6))
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    d = tm.build_model("mlp", generator=_gen(5), dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in d.parameters())


@pytest.mark.parametrize("scale, should_pass", [(1.0, True), (1.1, False)])
def test_linear_init_is_pytorch_default_uniform(scale, should_pass):
    """Weights ~ U(±b), b = 1/√fan_in (PyTorch's default).  E[w²] = b²/3 and
    Var[w²] = b⁴/5 − b⁴/9 = 4b⁴/45, so the sample mean of w² over n = 78400 weights has
    standard error √(4/45)·b²/√n; we allow 5 standard errors.  The mutation (bound × 1.1)
    shifts E[w²] by 21 %, i.e. ~ 250 standard errors, and must be rejected."""
    model = tm.build_model("mlp", generator=_gen(11))
    w = model.layer1.weight.detach().double() * scale
    b = 1 / math.sqrt(784)
    n = w.numel()
    se = math.sqrt(4 / 45) * b * b / math.sqrt(n)
    ok = abs(float((w * w).mean()) - b * b / 3) < 5 * se and float(w.abs().max()) <= b
    assert ok == should_pass


def test_build_model_errors():
    with pytest.raises(ValueError, match="model='vgg'"):
        tm.build_model("vgg", generator=_gen())
    with pytest.raises(TypeError, match="generator"):
        tm.build_model("mlp", generator=0)
    with pytest.raises(ValueError, match="stem"):
        tm.resnet18(10, stem="tiny", use_torchvision=False)
    with pytest.raises(ValueError, match="model"):
        tm.input_layout("nope")


def test_seed_is_an_int_or_a_generator():
    a = tm.build_model("mlp", seed=5)
    b = tm.build_model("mlp", seed=torch.Generator().manual_seed(5))
    c = tm.build_model("mlp", generator=torch.Generator().manual_seed(5))
    for x, y, z in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(x, y) and torch.equal(x, z)
    d = tm.build_model("mlp", seed=6)
    assert not torch.equal(next(a.parameters()), next(d.parameters()))
    m = tm.build_model("logreg", seed=1)
    tm.init_parameters(m, 5)
    n = tm.build_model("logreg", seed=5)
    assert torch.equal(m.linear.weight if hasattr(m, "linear") else next(m.parameters()),
                       n.linear.weight if hasattr(n, "linear") else next(n.parameters()))
    with pytest.raises(TypeError, match="seed='5'"):
        tm.build_model("mlp", seed="5")
    with pytest.raises(ValueError, match="seed=-1"):
        tm.build_model("mlp", seed=-1)
    with pytest.raises(TypeError, match="exactly one"):
        tm.build_model("mlp")
    with pytest.raises(TypeError, match="exactly one"):
        tm.build_model("mlp", seed=1, generator=torch.Generator())


def test_build_model_bad_arguments():
    with pytest.raises(ValueError, match="num_classes=0"):
        tm.build_model("mlp", seed=0, num_classes=0)
    with pytest.raises(TypeError, match="dtype='float32'"):
        tm.build_model("mlp", seed=0, dtype="float32")


@pytest.mark.parametrize("name, block, last_bn", [("resnet18", tm.BasicBlock, "bn2"), ("resnet50", tm.Bottleneck, "bn3")])
def test_zero_init_residual(name, block, last_bn):
    """``zero_init_residual`` (Goyal et al. 2017 §5.1) zeroes γ of each block's last BatchNorm, consumes no
    random numbers (every other parameter keeps its bits), and makes every block without a projection
    shortcut the identity on non-negative input (the output of the previous block's ReLU)."""
    plain = tm.build_model(name, seed=3, use_torchvision=False)
    zeroed = tm.build_model(name, seed=3, use_torchvision=False, zero_init_residual=True)
    blocks = [m for m in zeroed.modules() if isinstance(m, block)]
    assert len(blocks) == (8 if name == "resnet18" else 16)
    last = {id(getattr(m, last_bn).weight) for m in blocks}
    for (pn, a), b in zip(plain.named_parameters(), zeroed.parameters()):
        if id(b) in last:
            assert torch.equal(b, torch.zeros_like(b)) and torch.equal(a, torch.ones_like(a)), pn
        else:
            assert torch.equal(a, b), pn
    identity_block = [m for m in blocks if m.downsample is None][-1].eval()
    x = torch.rand(2, identity_block.conv1.in_channels, 4, 4, generator=_gen(1))
    with torch.no_grad():
        assert torch.equal(identity_block(x), x)
        getattr(identity_block, last_bn).weight.fill_(1.0)  # mutation: the default γ = 1 is not the identity
        assert not torch.allclose(identity_block(x), x)


def test_zero_init_residual_rejects_non_bool():
    with pytest.raises(TypeError, match="zero_init_residual"):
        tm.init_parameters(tm.resnet18(10, use_torchvision=False), 0, zero_init_residual=1)
