"""Run :func:`torchport.train.train` under DDP on W local CPU processes (gloo, 127.0.0.1).

The launcher of the DDP tests and of multi-process runs on one machine.  It imports both
:mod:`torchport.train` and :mod:`torchport.distributed`; neither imports it (no cycle).
Each rank's result (final parameter vector, the collective replica check, the step) is
written by the rank as a checksummed file (:mod:`torchport.checkpoint`) and read back with
``weights_only=True``.  Why every rank must draw the same noise, and how each optimizer path
(default counter stream: same keys everywhere; exact: identical generators) ensures it:
:mod:`torchport.distributed`.
"""

from __future__ import annotations

import os
from typing import Optional

import torch

from torchport import distributed as tdist
from torchport import train as ttrain
from torchport.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["run_ddp"]


def _ddp_worker(rank: int, world_size: int, port: int, jobs: list, out_dir: str, threads: int = 1) -> None:
    """Spawned entry point: run each job ``(config_json, sync_noise)`` of :func:`torchport.train.train`
    as one DDP rank and save ``out_dir/rank{r}_job{j}.pt`` (final parameters, replica check, step)."""
    torch.set_num_threads(threads)
    tdist.init_local_process_group(rank, world_size, port)
    try:
        for j, (config_json, sync_noise) in enumerate(jobs):
            config = ttrain.TrainConfig.from_json(config_json)
            holder: dict = {}
            result = ttrain.train(config, None, rank=rank, world_size=world_size, sync_noise=sync_noise,
                                  _model_out=holder)
            model = holder["model"]
            ok = tdist.replicas_identical(model)
            save_checkpoint({"params": ttrain.parameters_vector(model), "identical": ok, "step": result["step"]},
                            os.path.join(out_dir, f"rank{rank}_job{j}.pt"))
    finally:
        tdist.dist.destroy_process_group()


def run_ddp(configs: ttrain.TrainConfig | list[ttrain.TrainConfig] | tuple[ttrain.TrainConfig, ...],
            world_size: int, out_dir: str, *, sync_noise: bool | list[bool] | tuple[bool, ...] = True,
            threads: int = 1,
            port: Optional[int] = None) -> list[list[dict]]:
    """Run each config under DDP with ``world_size`` local CPU processes (gloo, 127.0.0.1).

    ``configs``: one :class:`~torchport.train.TrainConfig` or a list (run one after the other
    in the same process group); ``sync_noise``: a bool or one per config (False is the broken
    per-rank-noise scheme).  Returns, per config, one record per rank with ``params`` (the
    final parameter vector), ``identical`` (the collective replica check after the last
    step) and ``step``.
    """
    import torch.multiprocessing as mp  # noqa: PLC0415

    if not isinstance(configs, (list, tuple)):
        configs = [configs]
    if not configs or not all(isinstance(c, ttrain.TrainConfig) for c in configs):
        raise TypeError(f"configs must be a TrainConfig or a non-empty list of them, got {configs!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r}: must be an integer >= 1")
    syncs = list(sync_noise) if isinstance(sync_noise, (list, tuple)) else [sync_noise] * len(configs)
    if len(syncs) != len(configs):
        raise ValueError(f"sync_noise has {len(syncs)} entries for {len(configs)} configs")
    for c in configs:
        c.validate()
    jobs = [(c.to_json(), bool(s)) for c, s in zip(configs, syncs)]
    port = tdist.free_port() if port is None else port
    mp.spawn(_ddp_worker, args=(world_size, port, jobs, str(out_dir), threads), nprocs=world_size, join=True)
    return [[load_checkpoint(os.path.join(out_dir, f"rank{r}_job{j}.pt")) for r in range(world_size)]
            for j in range(len(jobs))]
