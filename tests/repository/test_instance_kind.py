"""DENDRITE_INSTANCE_KIND overrides every model's instance_group.kind (the GPU image sets cuda)."""

import pytest

from app.config import Settings
from app.metrics import Metrics
from app.repository.manager import ModelRepository
from app.runtime.providers import CUDA
from testkit.models import affine_model, write_model


@pytest.mark.parametrize("fallback, state", [("cpu", "READY"), ("fail", "UNAVAILABLE")])
async def test_cuda_for_every_model_honours_each_fallback_policy(tmp_path, fallback, state):
    write_model(tmp_path, "m", affine_model(), {"max_batch_size": 2, "instance_group": {"fallback": fallback}})
    repo = ModelRepository(tmp_path, Settings(model_repository=tmp_path, instance_kind="cuda"), Metrics())
    await repo.load_all()
    (row,) = repo.index()
    assert row["state"] == state
    if state == "UNAVAILABLE":  # no GPU here: the model refuses to pretend
        assert CUDA in row["reason"]
    await repo.close()
