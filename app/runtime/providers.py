"""Execution-provider selection.

Pure logic, testable without a GPU: what we *ask* ONNX Runtime for is decided from the
instance group; what a session *really* runs on is read back from ``session.get_providers()``
(onnxruntime-gpu lists CUDA as available on machines without a GPU and then silently falls
back to CPU, so ``get_available_providers()`` proves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.protocol.model_config import InstanceGroup

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class ProviderUnavailable(RuntimeError):
    """The instance group asks for a provider that is not running, and its policy is to fail."""


@dataclass(frozen=True)
class ProviderRequest:
    providers: list[str]
    options: list[dict[str, Any]]

    @property
    def as_ort(self) -> list[tuple[str, dict[str, Any]]]:
        return list(zip(self.providers, self.options))


def request_for(group: InstanceGroup, available: list[str]) -> ProviderRequest:
    """The provider list to pass to ``InferenceSession`` for this instance group."""
    if group.kind == "cuda":
        if CUDA not in available:
            if group.fallback == "fail":
                raise ProviderUnavailable(
                    f"instance_group.kind is cuda but {CUDA} is not in this onnxruntime build "
                    f"(available: {', '.join(available)}); install the `gpu` extra or set fallback: cpu"
                )
            return ProviderRequest([CPU], [{}])
        cuda_opts = {"device_id": group.device_id, "arena_extend_strategy": "kSameAsRequested"}
        if group.fallback == "fail":
            return ProviderRequest([CUDA], [cuda_opts])
        return ProviderRequest([CUDA, CPU], [cuda_opts, {}])
    return ProviderRequest([CPU], [{}])


def check_running(group: InstanceGroup, running: list[str]) -> str:
    """Validate what a created session runs on; return its primary provider.

    Raises ProviderUnavailable when CUDA was required (fallback: fail) but the session fell
    back to CPU, which onnxruntime-gpu does silently when no device or CUDA library is found.
    """
    primary = running[0] if running else "unknown"
    if group.kind == "cuda" and group.fallback == "fail" and primary != CUDA:
        raise ProviderUnavailable(
            f"instance_group.kind is cuda (device {group.device_id}) but the session runs on {primary}: "
            "no usable GPU or CUDA/cuDNN libraries (set fallback: cpu to serve on CPU instead)"
        )
    return primary
