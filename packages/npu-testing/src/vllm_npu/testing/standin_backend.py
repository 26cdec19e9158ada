"""``VLLM_NPU_DEVICE=ascend-standin``: the Ascend code path on the CPU, for tests only.

The Ascend backend as it is (``torch.npu`` device API, the "ascend" kernel set:
torch_npu attention kernels, custom ops, KV cache layout and block size) with the
torch_npu stand-in imported in every process and tensors on the CPU. vLLM's
engine runs through it unchanged, so the Ascend wiring is exercised inside real
vLLM and compared with transformers. Registered through the
``vllm_npu.device_backends`` entry point of this unreleased distribution.
"""

from __future__ import annotations

from vllm_npu.platform.ascend import AscendBackend, nnal_problem, version_problem
from vllm_npu.platform.device import DeviceBackendError
from vllm_npu.testing import standin


class StandinAscendBackend(AscendBackend):
    """``AscendBackend`` over the stand-in: CPU tensors, gloo between ranks."""

    name = "ascend-standin"
    device_type = "cpu"
    dispatch_key = "CPU"
    dist_backend = "gloo"

    def __init__(self) -> None:
        try:
            standin.activate()
        except RuntimeError as error:
            raise DeviceBackendError(f"the torch_npu stand-in cannot be used: {error}") from error
        if self.device_count() == 0:
            raise DeviceBackendError(
                f"the torch_npu stand-in reports no NPU ({standin.DEVICES_ENV}=0)"
            )
        problem = version_problem() or nnal_problem()
        if problem:
            raise DeviceBackendError(problem)
