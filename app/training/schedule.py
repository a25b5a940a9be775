"""Learning-rate schedule shared by the text recipes."""

from __future__ import annotations

import torch


def warmup_linear_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                        floor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base rate, then linear decay to ``floor`` x base at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(floor, 1.0 - progress * (1.0 - floor))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_then_linear_decay(step: int, progress: float, warmup_steps: int, floor: float = 0.05) -> float:
    """Rate factor: linear warm-up over the first ``warmup_steps``, then linear decay to ``floor`` as
    ``progress`` (0..1 of the training budget, in steps or time) reaches 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(floor, 1.0 - min(1.0, progress) * (1.0 - floor))
