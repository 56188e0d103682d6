"""Running under `torchrun`: the ranks, each rank's device, the process group (NCCL on GPUs,
gloo on the CPU), its collectives on the group's own device, and sharded prediction.

The rule for training on several processes (both stages follow it; `scaled_lr`, `scaled_steps`):

- every process keeps the single-process batch (`--batch-size`, `--detector-batch`), so the
  global batch is world x batch;
- the run sees as many images as one process would: an epoch of the keypoint net still shows
  each training image once (its steps per epoch are divided by the world size, the sampler
  shards the images), and the detector's `--detector-steps`, warm-up and evaluation interval
  are divided by the world size (rounded up), each rank drawing from its own share of images;
- the peak learning rate given (or the preset's) is the single-process one and is multiplied
  by sqrt(world): the square-root rule of Adam-type optimizers (AdamW here), whose step size
  does not grow with the averaged gradient as SGD's does, so the linear rule overshoots;
- validation runs on every rank's share of the held-out images and the sums are all-reduced
  (no rank idles in a barrier under NCCL's watchdog); rank 0 alone writes files, and a
  barrier follows every write that another rank reads.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from engine.model.device import pick_device

log = logging.getLogger(__name__)

# Under NCCL, objects (prediction batches) and barriers go through a gloo group on the CPU:
# NCCL takes CUDA tensors only, and a CPU barrier needs no guess of the rank's GPU.
_object_group: Any = None


@dataclass(frozen=True)
class Ranks:
    """This process's place in a `torchrun` launch (rank 0 of 1 when run alone) and its device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) as `torchrun` sets them; (0, 1, 0) in a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True in rank 0 of a `torchrun` launch and in a plain process: the one that prints and writes."""
    return env_ranks()[0] == 0


def rank_device(prefer: str | None, local_rank: int, world: int) -> torch.device:
    """The device of a rank: under `torchrun` with CUDA, `cuda:<LOCAL_RANK>` (a GPU index given
    with `--device` cannot serve every rank and is replaced, with a warning); else `pick_device`."""
    dev = pick_device(prefer)
    if world > 1 and dev.type == "cuda":
        if dev.index is not None and dev.index != local_rank:
            log.warning("under torchrun each rank uses the GPU of its LOCAL_RANK: cuda:%d, not %s", local_rank, dev)
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: there are {torch.cuda.device_count()} CUDA devices "
                             "(start torchrun with --nproc_per_node at most that)")
        dev = torch.device("cuda", local_rank)
    return dev


def join_process_group(prefer_device: str | None = None) -> Ranks:
    """This process's `Ranks`, starting the process group when `torchrun` launched several and
    none is running yet (NCCL bound to the rank's GPU with `device_id`, or gloo on the CPU).

    The group lives until the process exits (then it is destroyed): a group destroyed and
    started again in the same `torchrun` launch fails to connect, so stages run one after the
    other in one process (`fkp train`: keypoints, detector, validation) share it."""
    global _object_group
    rank, world, local_rank = env_ranks()
    dev = rank_device(prefer_device, local_rank, world)
    if world <= 1:
        return Ranks(0, 1, 0, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, dev)
    if dev.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=dev)
        # Object gathering and barriers wait for rank 0's work (a file write): gloo, on the CPU.
        _object_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(minutes=30))
    else:
        dist.init_process_group(backend="gloo")
        _object_group = None
    atexit.register(_destroy)
    log.info("rank %d of %d on %s (%s)", dist.get_rank(), dist.get_world_size(), dev, dist.get_backend())
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def _destroy() -> None:
    global _object_group
    if dist.is_initialized():
        dist.destroy_process_group()
    _object_group = None


def group_ranks() -> tuple[int, int]:
    """(rank, world size) of the running process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where a tensor for the default group's collectives must live: the rank's GPU under
    NCCL (which takes CUDA tensors only), the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any (so all stop at the same step); `flag` alone."""
    if group_ranks()[1] <= 1:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_sum(values: Sequence[float]) -> np.ndarray:
    """The element-wise sum of `values` over the ranks (float64); `values` alone."""
    arr = np.asarray(values, dtype=np.float64)
    if group_ranks()[1] <= 1:
        return arr
    t = torch.as_tensor(arr, device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def barrier() -> None:
    """Wait for every rank (after rank 0 wrote what the others read); nothing alone."""
    if group_ranks()[1] > 1:
        dist.barrier(group=_object_group)


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj` in rank order on rank 0 (None elsewhere); `[obj]` alone."""
    rank, world = group_ranks()
    if world <= 1:
        return [obj]
    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0, group=_object_group)
    return out


# --- what scales with the world size -------------------------------------------------------


def scaled_lr(lr: float, world: int) -> float:
    """The peak learning rate of `world` processes from the single-process one: x sqrt(world)."""
    return lr * math.sqrt(max(1, world))


def scaled_steps(steps: int, world: int) -> int:
    """Steps of `world` processes that see as many images as `steps` of one: ceil(steps / world)."""
    return max(1, -(-steps // max(1, world))) if steps > 0 else 0


def shard_bounds(n: int, world: int, block: int = 1) -> np.ndarray:
    """Boundaries (world + 1,) of contiguous shares of `n` items in whole blocks of `block`
    (rank r takes items bounds[r]:bounds[r + 1]); the shares differ by at most one block."""
    blocks = -(-n // max(1, block))
    edges = (np.arange(world + 1) * blocks) // world
    return np.minimum(edges * block, n)


# --- prediction of a split across the ranks ------------------------------------------------


def predict_sharded(pipeline: Any, root: str | os.PathLike, image_ids: Sequence[str],
                    categories: Sequence[int | None] | None = None,
                    on_progress: Callable[[int, int], None] | None = None) -> tuple[Any, np.ndarray, dict[str, str]] | None:
    """`pipeline.predict` of a split shared by the ranks: each predicts a contiguous share of
    whole batches (the batches of one process, so the same numbers), rank 0 gathers them and
    returns `merge_batches` of all, in the split's order (None on the other ranks).

    A batch out of memory is predicted again in halves (`predict_within_memory`). Alone it is
    `merge_batches(predict_within_memory(pipeline, ...))`."""
    from engine.model.pipeline import merge_batches, predict_within_memory

    rank, world = group_ranks()
    bounds = shard_bounds(len(image_ids), world, pipeline.batch_size)
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    cats = list(categories) if categories is not None else [None] * len(image_ids)
    mine = []
    for batch in predict_within_memory(pipeline, root, list(image_ids[lo:hi]), cats[lo:hi], on_progress=on_progress):
        batch.rows += lo
        mine.append(batch)
    gathered = gather_to_main(mine)
    if gathered is None:
        return None
    batches = sorted((b for share in gathered for b in share), key=lambda b: int(b.rows[0]))
    return merge_batches(batches)


def check_sync_bn(sync_bn: bool, world: int, device: torch.device) -> bool:
    """Whether to convert BatchNorm to SyncBatchNorm: asked, several ranks, on CUDA (torch's
    SyncBatchNorm runs on GPUs only: on the CPU it is refused with a ValueError)."""
    if not sync_bn or world < 2:
        if sync_bn:
            log.info("--sync-bn: a single process has nothing to synchronize; plain BatchNorm")
        return False
    if device.type != "cuda":
        raise ValueError("--sync-bn: SyncBatchNorm runs on CUDA devices only (torchrun on the CPU cannot use it)")
    return True

