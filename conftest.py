"""Settings every test process needs before vLLM resolves its platform.

The whole suite runs on the host backend, offline, with one OpenMP thread
per process (2-core machines).
"""

import os

pytest_plugins = [
    "vllm_npu.testing.session_calls",  # stand-in calls for the conformance test
    "vllm_npu.testing.support_marks",  # the support mark's vocabulary (support matrix)
]

os.environ.setdefault("VLLM_NPU_DEVICE", "host")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_NPU_HOST_KV_CACHE_GB", "0.25")
