"""Execution-provider selection: the CUDA path is checked by logic, since CI has no GPU."""

import pytest

from app.protocol.model_config import InstanceGroup
from app.runtime.providers import CPU, CUDA, ProviderUnavailable, check_running, request_for


def test_cpu_group_asks_for_cpu_only():
    assert request_for(InstanceGroup(kind="cpu"), [CUDA, CPU]).providers == [CPU]


def test_cuda_group_asks_for_its_device_with_cpu_fallback():
    req = request_for(InstanceGroup(kind="cuda", device_id=3), [CUDA, CPU])
    assert req.providers == [CUDA, CPU]
    assert req.options[0]["device_id"] == 3
    assert req.as_ort[0] == (CUDA, req.options[0])


def test_cuda_group_with_fail_policy_asks_for_cuda_alone():
    assert request_for(InstanceGroup(kind="cuda", fallback="fail"), [CUDA, CPU]).providers == [CUDA]


def test_cuda_missing_from_build_falls_back_or_fails_by_policy():
    assert request_for(InstanceGroup(kind="cuda"), [CPU]).providers == [CPU]
    with pytest.raises(ProviderUnavailable, match="gpu"):
        request_for(InstanceGroup(kind="cuda", fallback="fail"), [CPU])


def test_silent_cpu_fallback_is_caught_from_what_the_session_runs_on():
    # onnxruntime-gpu without a usable GPU creates the session on CPU without complaint.
    assert check_running(InstanceGroup(kind="cuda"), [CPU]) == CPU
    with pytest.raises(ProviderUnavailable, match="runs on CPUExecutionProvider"):
        check_running(InstanceGroup(kind="cuda", fallback="fail"), [CPU])
    assert check_running(InstanceGroup(kind="cuda", fallback="fail"), [CUDA, CPU]) == CUDA


def test_real_session_reports_cpu(tmp_path):
    from app.runtime.session import RuntimeOptions, SessionPool
    from testkit.models import affine_model, save

    pool = SessionPool(save(affine_model(), tmp_path / "m.onnx"), InstanceGroup(kind="cuda", count=2), RuntimeOptions())
    assert pool.providers == [CPU, CPU]  # no GPU here: fell back, and we know it
    pool.close()
