"""Session pools on real ONNX Runtime sessions: what a refused input becomes."""

from __future__ import annotations

import numpy as np
import pytest

from app.errors import InvalidInput
from app.protocol.model_config import InstanceGroup
from app.runtime.session import RuntimeOptions, SessionPool
from testkit.models import lookup_model, save


def test_an_index_out_of_range_is_invalid_input_in_our_words_and_orts_own_log_line_is_silenced(tmp_path, capfd):
    pool = SessionPool(save(lookup_model(rows=10), tmp_path / "m.onnx"), InstanceGroup(), RuntimeOptions(), label="m/1")
    with pytest.raises(InvalidInput) as info:
        pool.run_sync(0, {"user": np.array([3, 12], np.int64)})
    assert info.value.message == "model m/1 refused input 'user': index 12 is outside 0..9"
    assert "onnxruntime" not in capfd.readouterr().err.lower()
    np.testing.assert_array_equal(pool.run_sync(0, {"user": np.array([2], np.int64)})[0], [[6, 7, 8]])
    pool.close()
