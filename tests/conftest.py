"""Shared fixtures: every default model trained once by the recipes' smoke profile."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke_repository(tmp_path_factory):
    """A model repository with every recipe's model, trained by the seconds-long smoke profile
    (real data subsets, real export and parity checks)."""
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from app.training.recipes import RECIPES
    from app.training.runner import run_recipe

    repo = tmp_path_factory.mktemp("smoke-models")
    for name in RECIPES:
        run_recipe(name, profile="smoke", repository=repo)
    return repo
