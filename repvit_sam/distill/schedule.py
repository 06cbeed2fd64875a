"""The learning-rate schedule and the stateless, resumable order of training samples."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate before optimizer step ``step`` (0-based).

    Linear warm-up from ``1 / (warmup_steps + 1)`` to 1 over ``warmup_steps`` steps, then a
    cosine decay to ``min_lr_ratio`` at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepSampler:
    """Batch sampler whose output depends only on (seed, step): resuming replays nothing.

    The samples form one stream of epochs, each a permutation of the dataset drawn from
    ``seed + epoch``. Optimizer step ``s`` consumes ``accumulation * world_size * batch_size``
    consecutive samples; rank ``r`` takes its ``batch_size`` slice of each micro-batch. Each
    item is ``(index, flip)``, with ``flip`` drawn per sample position when ``augment``.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        start_step: int,
        total_steps: int,
        accumulation: int = 1,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        augment: bool = False,
    ) -> None:
        self.num_items = num_items
        self.batch_size = batch_size
        self.start_step = start_step
        self.total_steps = total_steps
        self.accumulation = accumulation
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.augment = augment
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)
        self._flips = torch.empty(0, dtype=torch.bool)

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.accumulation

    def _epoch_draw(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(self.num_items, generator=generator)
            self._flips = torch.rand(self.num_items, generator=generator) < 0.5
            self._epoch = epoch
        return self._order, self._flips

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        micro = self.batch_size * self.world_size
        for step in range(self.start_step, self.total_steps):
            for m in range(self.accumulation):
                first = (step * self.accumulation + m) * micro + self.rank * self.batch_size
                batch = []
                for position in range(first, first + self.batch_size):
                    order, flips = self._epoch_draw(position // self.num_items)
                    offset = position % self.num_items
                    batch.append((int(order[offset]), bool(flips[offset]) and self.augment))
                yield batch
