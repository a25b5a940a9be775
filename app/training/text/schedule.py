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
