"""1 vs 2 gloo ranks: the same body run in one process and in two, compared bit for bit.

``body(rank, world)`` runs inside an initialised gloo process group and returns a dict of
tensors; every rank of the two-rank run must return exactly the one-rank run's dict.  The body
must be a module-level function (``torch.multiprocessing.spawn`` pickles it by name).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch


def _worker(rank: int, world: int, init_file: str, out_dir: str, body: Callable) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(body(rank, world), os.path.join(out_dir, f"r{world}_{rank}.pt"))
    finally:
        dist.destroy_process_group()


def assert_one_and_two_ranks_agree(body: Callable[[int, int], dict], tmp_path: Path) -> None:
    """Run ``body`` on 1 and on 2 gloo ranks; each rank of 2 must give the 1-rank tensors bit for bit."""
    import torch.multiprocessing as mp

    for world in (1, 2):
        mp.spawn(_worker, args=(world, str(tmp_path / f"init{world}"), str(tmp_path), body), nprocs=world, join=True)
    one = torch.load(tmp_path / "r1_0.pt")
    for rank in range(2):
        two = torch.load(tmp_path / f"r2_{rank}.pt")
        assert two.keys() == one.keys()
        for key in one:
            assert torch.equal(two[key], one[key]), (rank, key)
