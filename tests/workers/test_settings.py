"""DENDRITE_WORKERS parsing and the intra-op thread cap (workers x threads within the cores)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings, usable_cores
from app.protocol.model_config import intra_op_threads


def test_workers_default_is_one_process_without_a_cap():
    s = Settings()
    assert s.worker_count() == 1 and s.intra_op_thread_cap() == 0


@pytest.mark.parametrize("value, expected", [("3", 3), ("auto", max(1, usable_cores() // 2))])
def test_workers_from_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("DENDRITE_WORKERS", value)
    assert Settings().worker_count() == expected


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_bad_workers_values_are_refused(monkeypatch, value):
    monkeypatch.setenv("DENDRITE_WORKERS", value)
    with pytest.raises(ValidationError, match="workers"):
        Settings()


def test_cap_is_cores_over_workers():
    cores = usable_cores()
    assert Settings(workers=2).intra_op_thread_cap() == max(1, cores // 2)
    assert Settings(workers=4 * cores).intra_op_thread_cap() == 1  # never below one thread


@pytest.mark.parametrize("requested, cap, expected", [(1, 0, 1), (0, 0, 0), (4, 2, 2), (0, 2, 2), (1, 2, 1)])
def test_session_threads_within_the_cap(requested, cap, expected):
    assert intra_op_threads(requested, cap) == expected  # 0 = ORT's choice (one per core) is capped too
