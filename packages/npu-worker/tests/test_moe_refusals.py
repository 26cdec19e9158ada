"""A MoE layer our kernels cannot run is refused when the model is built, in one line
that names the feature; a supported one is built on our routed experts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_build_moe_layers.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _build(device: str) -> dict[str, str]:
    env = {**os.environ, "VLLM_NPU_DEVICE": device}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(_free_port())],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    return _build("host")


@pytest.fixture(scope="module")
def built_on_ascend() -> dict[str, str]:
    """The same layers on the Ascend backend's kernel set (torch_npu stand-in)."""
    return _build("ascend-standin")


@pytest.mark.parametrize("case", ["supported", "grouped-sigmoid", "gelu"])
def test_supported_layers_are_ours(built: dict[str, str], case: str) -> None:
    assert built[case] == "NPURoutedExperts"


@pytest.mark.parametrize(
    ("case", "feature"),
    [
        # Fp8MoEMethod, or Fp8PerTensorOnlineMoEMethod where vLLM quantizes online.
        ("quantized", "MoEMethod: quantized MoE is not supported"),
        ("activation", "needs activation 'gelu_tanh'"),
        ("scoring", "needs scoring function 'sqrtsoftplus'"),
        ("custom-routing", "needs custom routing function (<lambda>)"),
        ("expert-bias", "needs expert MLP biases, which the reference MoE kernels"),
    ],
)
def test_unsupported_layers_are_refused_in_one_line(
    built: dict[str, str], case: str, feature: str
) -> None:
    message = built[case]
    assert message.startswith(f"error: vllm-npu: MoE layer model.layers.0.mlp.{case} ")
    assert feature in message
    assert case != "quantized" or " uses Fp8" in message
    assert "\n" not in message


@pytest.mark.parametrize("case", ["supported", "grouped-sigmoid"])
def test_supported_layers_are_ours_on_ascend(built_on_ascend: dict[str, str], case: str) -> None:
    assert built_on_ascend[case] == "NPURoutedExperts"


@pytest.mark.parametrize(
    ("case", "feature"),
    [
        ("gelu", "needs activation 'gelu', which the ascend MoE kernels do not support."),
        ("expert-bias", "needs expert MLP biases, which the ascend MoE kernels do not"),
    ],
)
def test_what_the_ascend_ops_lack_is_refused_in_one_line(
    built_on_ascend: dict[str, str], case: str, feature: str
) -> None:
    """npu_swiglu is the only activation of the ascend set and its grouped matmuls run
    without biases: a GELU or biased expert MLP is refused when the model is built."""
    message = built_on_ascend[case]
    assert message.startswith(f"error: vllm-npu: MoE layer model.layers.0.mlp.{case} ")
    assert feature in message
    assert "\n" not in message
