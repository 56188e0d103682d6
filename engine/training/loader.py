"""The keypoint net's training DataLoader: worker processes started by a fork server, kept
across epochs, one OpenCV thread each, and items tagged with their epoch.

Forking a process after OpenCV has run its thread pool in the parent (validation warps crops
between epochs) can deadlock the child, as `engine.synth` found; a fork server forks from a
clean process that never ran OpenCV, and persistent workers are started once, not every
epoch. Persistent workers keep their own copy of the dataset, so the epoch that varies the
augmentation travels with each index (`EpochSampler` -> `EpochItems`) instead of being set on
the parent's copy. As with any fork server or spawn, a script that trains with workers keeps
its top-level work under `if __name__ == "__main__":` (the server imports the main module).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

# The start method of the workers: see the module docstring (spawn where there is no fork server).
WORKER_START = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def worker_init(worker_id: int) -> None:
    """One OpenCV and one torch thread per worker: the workers are the parallelism, and
    OpenCV's pool in a child is what deadlocks."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class EpochSampler(Sampler):
    """Yields (epoch, index) pairs of an inner sampler; `set_epoch` sets both."""

    def __init__(self, inner: Sampler | Sequence[int]):
        self.inner = inner
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch tagged on the next pass (and the inner sampler's shuffle, if it has one)."""
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class EpochItems(Dataset):
    """Items `indices` of a dataset with `set_epoch`, fetched as `[(epoch, i)]`: the worker's
    copy of the dataset is set to the item's epoch before the item is made."""

    def __init__(self, base: Any, indices: Sequence[int]):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, i = key
        if hasattr(self.base, "set_epoch") and getattr(self.base, "epoch", None) != epoch:
            self.base.set_epoch(epoch)
        return self.base[int(self.indices[i])]


class RandomOrder(Sampler):
    """A random permutation of range(n) per epoch, reproducible from (seed, epoch)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """The permutation of the next pass."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng((self.seed, self.epoch)).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


def epoch_loader(items: EpochItems, sampler: EpochSampler, batch_size: int, workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """The training DataLoader: full batches only; with `workers` > 0, fork-server workers kept
    across epochs (`sampler.set_epoch(e)` before each pass)."""
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"multiprocessing_context": WORKER_START, "persistent_workers": True, "worker_init_fn": worker_init}
    return DataLoader(items, batch_size=batch_size, sampler=sampler, drop_last=True, num_workers=workers,
                      pin_memory=pin_memory, **extra)
