"""Deterministic runs: the same recipe on the same data gives the same metrics."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEFAULT_SEED = 20240611
# Thread count is part of determinism: reductions split differently across threads. Recipes with small
# operations use 1 (on a busy 2-core machine, two threads per tiny op cost more in synchronisation than they win).
TRAINING_THREADS = int(os.environ.get("DENDRITE_TRAIN_THREADS", "2"))


def seed_everything(seed: int = DEFAULT_SEED, threads: int = TRAINING_THREADS) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def torch_generator(seed: int = DEFAULT_SEED) -> torch.Generator:
    """A private generator for data order / augmentation, independent of model initialisation draws."""
    return torch.Generator().manual_seed(seed)
