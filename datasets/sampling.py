"""A shuffling sampler whose order is a function of (seed, epoch) and that can skip ahead: exact resume.

``torch.utils.data.RandomSampler`` draws each epoch's permutation from the global random stream when
its iterator is created, so a resumed run shuffles differently from the run it continues.
:class:`EpochSampler` seeds each epoch's permutation from ``(seed, epoch)`` (Lightning calls
``set_epoch``), and :meth:`EpochSampler.skip` drops the indices that the interrupted run had already
consumed, without loading them (:class:`lvmm.stages.resume.ExactResume` calls it on resume).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices of a ``length``-item dataset: a permutation per epoch (``shuffle``) or in order."""

    def __init__(self, length: int, seed: int = 0, shuffle: bool = True):
        self.length, self.seed, self.shuffle = int(length), int(seed), shuffle
        self.epoch = 0  # the trainer's epoch (set_epoch)
        self.offset = 0  # order epoch - trainer epoch: nonzero after a resume (see resume_at)
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def order_epoch(self) -> int:
        """The epoch whose permutation is drawn: counts the passes over the data, whatever the trainer counts."""
        return self.epoch + self.offset

    def resume_at(self, order_epoch: int, items: int, trainer_epoch: int) -> None:
        """Continue ``items`` indices into the permutation of ``order_epoch``, which the trainer calls
        ``trainer_epoch``.

        Lightning counts a run stopped at ``max_steps`` as a finished epoch, so a resumed run may number
        its epochs one higher than the run it continues; the offset keeps the orders the same.
        """
        self.offset, self._skip = int(order_epoch) - int(trainer_epoch), int(items)

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.length))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.order_epoch)
        return torch.randperm(self.length, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        start, self._skip = self._skip, 0
        return iter(self.order()[start:])

    def __len__(self) -> int:
        return self.length
