"""Which prompts each process rolls out, with whole groups on one rank (t2i_r1.md §3.3, §15.2.8).

An optimizer step consumes ``prompts_per_step`` prompts in total (official: 8 GPUs x 1 prompt x 2 accumulation
steps = 16). The order is an epoch-wise permutation of the dataset fixed by ``seed``; each process takes a
contiguous block of whole prompts, so a group of ``G`` samples never spans processes and advantages need no
cross-process gather. Prompt positions are global, so the prompts of a step, and the seeds of their samples
(:func:`sample_seed`), do not depend on the number of processes: 1 and N processes roll out the same samples.

:func:`micro_batch_weight` then scales each micro-batch's loss so that the sum over accumulation steps, averaged by
DDP over processes, is the mean over all groups of the step, whatever the process count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["GroupSchedule", "micro_batch_weight", "sample_generators", "sample_seed"]

_MASK64 = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64 finaliser: a well-spread 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def sample_seed(seed: int, step: int, position: int, sample: int) -> int:
    """A 63-bit seed for sample ``sample`` of the prompt at global ``position`` of optimizer step ``step``."""
    value = seed & _MASK64
    for part in (step, position, sample):
        if part < 0:
            raise ValueError(f"sample_seed parts must be >= 0, got {part}")
        value = _mix(value ^ _mix(part))
    return value >> 1


def sample_generators(
    seed: int, step: int, positions: list[int], group_size: int, device: str | torch.device = "cpu"
) -> list[torch.Generator]:
    """One ``torch.Generator`` per sample, rows laid out as groups: ``len(positions) * group_size`` generators."""
    return [
        torch.Generator(device=device).manual_seed(sample_seed(seed, step, position, g))
        for position in positions
        for g in range(group_size)
    ]


@dataclass(frozen=True)
class GroupSchedule:
    """Prompts per optimizer step, split over processes in whole prompts (hence whole groups).

    Args:
        num_prompts: dataset size.
        prompts_per_step: prompts consumed per optimizer step over all processes and accumulation steps.
        seed: seed of the per-epoch permutations.
        shuffle: ``False`` walks the dataset in order.
    """

    num_prompts: int
    prompts_per_step: int
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.num_prompts < 1 or self.prompts_per_step < 1:
            raise ValueError(
                f"GroupSchedule needs num_prompts >= 1 and prompts_per_step >= 1, got {self.num_prompts}, "
                f"{self.prompts_per_step}"
            )

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_prompts)
        generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, 0, 0))
        return torch.randperm(self.num_prompts, generator=generator)

    def step_prompts(self, step: int) -> list[int]:
        """Dataset indices of the ``prompts_per_step`` prompts of ``step`` (global order)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        first = step * self.prompts_per_step
        out, cache = [], {}
        for position in range(first, first + self.prompts_per_step):
            epoch, offset = divmod(position, self.num_prompts)
            if epoch not in cache:
                cache[epoch] = self._order(epoch)
            out.append(int(cache[epoch][offset]))
        return out

    def rank_positions(self, rank: int, world_size: int) -> range:
        """Positions (within a step) of the prompts of process ``rank``: a contiguous block of whole prompts."""
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if self.prompts_per_step % world_size:
            raise ValueError(
                f"prompts_per_step={self.prompts_per_step} cannot be split into whole prompts over {world_size} "
                f"processes; use a multiple of {world_size}"
            )
        share = self.prompts_per_step // world_size
        return range(rank * share, (rank + 1) * share)

    def rank_prompts(self, step: int, rank: int, world_size: int) -> list[int]:
        """Dataset indices of the prompts of process ``rank`` at ``step``."""
        prompts = self.step_prompts(step)
        return [prompts[p] for p in self.rank_positions(rank, world_size)]


def micro_batch_weight(groups_in_micro_batch: int, groups_per_rank_step: int) -> float:
    """Scale of a micro-batch loss (a mean over its groups) so accumulated micro-batches give the rank's group mean.

    With equal groups per rank, DDP's average over ranks then equals the mean over every group of the step.
    """
    if not 0 < groups_in_micro_batch <= groups_per_rank_step:
        raise ValueError(
            f"need 0 < groups_in_micro_batch ({groups_in_micro_batch}) <= groups_per_rank_step ({groups_per_rank_step})"
        )
    return groups_in_micro_batch / groups_per_rank_step
