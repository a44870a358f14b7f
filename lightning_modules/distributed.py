"""Data-parallel training through Lightning's DDP strategy: which rank sees which samples, and the Trainer arguments.

Processes are started by whatever launches them, never by this project: Lightning's own launcher (``--devices N``
on one machine re-runs the command once per extra local rank), ``torchrun`` (Lightning reads its environment:
``TorchElasticEnvironment``) or SLURM (``srun``: ``SLURMEnvironment``). Every rank then computes the same epoch
order from the shared seed and takes its own shard of it, so no rank needs to talk to another to know its data:

* the **global order** of an epoch is what one process would see: a seeded permutation, with repeated
  augmentation each image ``repeats`` times in a row, cut to the epoch's length (``augment.repeated_order``);
* **rank r of W** takes positions r, r + W, r + 2W, ... of the order cut to a multiple of W: the shards are
  disjoint and together are the whole order (up to its last ``len % W`` samples). With repeats, consecutive copies
  of an image therefore land on different ranks, as the released ``RASampler`` deals them (it pads the order
  instead of cutting it and rounds each epoch down to a multiple of 256 images; here the epoch keeps the length of a
  single-process one, so 1 and W processes run the same number of optimiser steps per epoch at the same global
  batch);
* evaluation splits are dealt the same way without cutting (every image is scored exactly once) and the
  classifier sums loss, correct and count on each rank and all-reduces the sums, so a logged accuracy is the
  global one.

The recipe's ``batch_size`` is the global batch: each of W ranks takes ``batch_size / W`` per step (it must
divide), and the peak lr is scaled from that global batch, as the released script scales by its total batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["per_device_batch", "rank_seed", "shard", "shard_eval", "trainer_kwargs", "world_of"]


def shard(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s share of a global training order: every ``world``-th position, after cutting the order to
    a multiple of ``world`` so that every rank runs the same number of steps."""
    if world == 1:
        return order
    return order[: len(order) // world * world][rank::world]


def shard_eval(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s images of an evaluation split of ``n``: every ``world``-th, none dropped, none twice."""
    return slice(rank, n, world)


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of rank ``rank``'s augmentation draws in one epoch (rank 0 keeps the single-process stream)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0] >> 1)


def world_of(trainer: Any) -> tuple[int, int]:
    """(global rank, world size) of an attached Trainer; (0, 1) without one."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


def per_device_batch(global_batch: int, world: int) -> int:
    """The per-process batch of a global batch; ValueError when it does not divide."""
    if global_batch % world:
        raise ValueError(f"batch_size={global_batch} (the global batch) does not divide over {world} processes "
                         f"(devices x num_nodes); use a multiple of {world}")
    return global_batch // world


def trainer_kwargs(accelerator: str, devices: int, num_nodes: int, device_index: int | None = None) -> dict:
    """``pl.Trainer`` arguments for ``devices`` per node on ``num_nodes`` nodes: DDP when there is more than one
    process (NCCL on GPUs, gloo on CPUs, Lightning's choice), our own sharding in every case."""
    world = devices * num_nodes
    if world == 1:
        devs: Any = [device_index or 0] if accelerator == "gpu" else 1
        return {"accelerator": accelerator, "devices": devs, "num_nodes": 1, "use_distributed_sampler": False}
    return {"accelerator": accelerator, "devices": devices, "num_nodes": num_nodes, "strategy": "ddp",
            "use_distributed_sampler": False}


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks (unchanged without a process group)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1:
        t = t.clone()
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t
