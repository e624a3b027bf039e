"""Multi-process sampling under DDP: two gloo ranks on the CPU (127.0.0.1 only).

After N steps every rank must hold bitwise-identical parameters, equal to a single-process
run with the same seed and the same global batch (computed shard by shard, see
torchport.distributed).  The broken scheme (each rank its own noise) must be caught.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from torchport import ddp as tddp
from torchport import distributed as tdist
from torchport import train as tt

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


@pytest.fixture(scope="module")
def tiny_npz(mnist_path, tmp_path_factory):
    with np.load(mnist_path) as z:
        arrays = {"x_train": z["x_train"][:512], "y_train": z["y_train"][:512],
                  "x_test": z["x_test"][:100], "y_test": z["y_test"][:100]}
    path = tmp_path_factory.mktemp("tinyddp") / "mnist.npz"
    np.savez(path, **arrays)
    return str(path)


def _single(config):
    holder = {}
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tt.train(config, None, _model_out=holder)
    finally:
        torch.set_num_threads(old)
    return tt.parameters_vector(holder["model"])


def test_ddp_two_ranks_identical_and_equal_to_single_process(tiny_npz, tmp_path):
    # VC SGLDLP-L at 8-bit fixed point: stochastic rounding and categorical draws make any
    # rank-to-rank difference in the noise visible at once.  12 steps, global batch 64.  The
    # default (fast) path: every rank computes the same counter keys (no broadcast); and the
    # exact path (``exact``): identical generators.
    good = tt.TrainConfig(data_dir=tiny_npz, model="mlp", method="sgld_vc", weight_format="fixed:8:6",
                          epochs=2, batch_size=64, max_steps=12, num_samples=2, progress=False, seed=11)
    sgld = dataclasses.replace(good, model="logreg", method="sgld", weight_format=None)
    exact = dataclasses.replace(good, exact=True)
    records = tddp.run_ddp([good, sgld, good, exact], 2, str(tmp_path), sync_noise=[True, True, False, True])
    (g0, g1), (s0, s1), (b0, b1), (e0, e1) = records

    # 1. replicas identical, bit for bit, after 12 steps (collective check and direct comparison)
    for r0, r1 in ((g0, g1), (s0, s1), (e0, e1)):
        assert r0["step"] == r1["step"] == 12
        assert r0["identical"] and r1["identical"]
        assert torch.equal(r0["params"], r1["params"])

    # 2. equal to one process with the same seed and global batch, the batch processed as the
    #    two ranks' shards (gradient (g0 + g1)/2 -- the same IEEE operations as DDP's
    #    g0/2 + g1/2 for two ranks): bitwise.
    assert torch.equal(_single(dataclasses.replace(good, grad_shards=2)), g0["params"])
    assert torch.equal(_single(dataclasses.replace(exact, grad_shards=2)), e0["params"])
    assert not torch.equal(e0["params"], g0["params"])  # the two paths draw different numbers
    assert torch.equal(_single(dataclasses.replace(sgld, grad_shards=2)), s0["params"])
    # ... and, for full-precision SGLD, equal to the plain single-batch run up to float32
    #    rounding of the gradient's summation order (a few ulp of |θ| ~ 0.05 per step).
    plain = _single(sgld)
    assert torch.allclose(plain, s0["params"], rtol=0, atol=1e-5)
    assert not torch.equal(plain, _single(dataclasses.replace(sgld, seed=12)))

    # 3. mutation: every rank drawing its own noise is caught by the replica check.
    assert not b0["identical"] and not b1["identical"]
    assert not torch.equal(b0["params"], b1["params"])


def test_generator_broadcast_and_replica_check_single_rank(tmp_path):
    """World size 1 (no spawn): the collectives are callable and behave as identities."""
    port = tdist.free_port()
    tdist.init_local_process_group(0, 1, port)
    try:
        g = torch.Generator().manual_seed(3)
        state = g.get_state().clone()
        tdist.broadcast_generator_state(g)
        assert torch.equal(g.get_state(), state)
        assert tdist.replicas_identical(torch.nn.Linear(3, 2))
    finally:
        torch.distributed.destroy_process_group()


def test_run_ddp_argument_errors(tmp_path):
    c = tt.TrainConfig(progress=False)
    with pytest.raises(ValueError, match="sync_noise"):
        tddp.run_ddp([c, c], 2, str(tmp_path), sync_noise=[True])


def _imports(module_file):
    import ast  # noqa: PLC0415

    tree = ast.parse(open(module_file).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_no_import_cycle_between_train_and_distributed():
    """distributed holds collectives only; train imports it; ddp (the launcher) imports both."""
    from torchport import train as ttrain  # noqa: PLC0415

    dist_imports = _imports(tdist.__file__)
    train_imports = _imports(ttrain.__file__)
    assert not any(n.startswith(("torchport.train", "torchport.ddp")) or n.endswith((".train", ".ddp"))
                   for n in dist_imports), dist_imports
    assert not any(n.startswith("torchport.ddp") or n == "torchport.ddp" for n in train_imports)
    assert "torchport.distributed" in train_imports or "torchport.distributed" in {
        n.rsplit(".", 1)[0] for n in train_imports}


def test_run_ddp_rejects_bad_configs(tmp_path):
    with pytest.raises(TypeError, match="configs"):
        tddp.run_ddp([], 2, str(tmp_path))
    with pytest.raises(ValueError, match="world_size=0"):
        tddp.run_ddp(tt.TrainConfig(progress=False), 0, str(tmp_path))
    with pytest.raises(ValueError, match="lr=-1"):
        tddp.run_ddp(tt.TrainConfig(progress=False, lr=-1.0), 2, str(tmp_path))
