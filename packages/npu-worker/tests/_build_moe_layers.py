"""Build vLLM fused MoE layers through the plugin, one per case, in a process of its own
(it initialises a one-rank gloo group); prints ``RESULT <json>``: per case, the class of
the routed experts built or the error raised. The device backend (and so the MoE
kernel set) is the one ``VLLM_NPU_DEVICE`` selects.

Usage: python _build_moe_layers.py PORT
"""

from __future__ import annotations

import json
import sys

import torch
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
from vllm.model_executor.layers.fused_moe.layer import FusedMoEFactory
from vllm.model_executor.layers.quantization.fp8 import Fp8Config

from vllm_npu.worker.moe import register_moe_layers

CASES = {
    "supported": {},
    "grouped-sigmoid": dict(
        use_grouped_topk=True, num_expert_group=2, topk_group=1, scoring_func="sigmoid"
    ),
    "quantized": dict(quant_config=Fp8Config()),
    "activation": dict(activation="gelu_tanh"),
    "scoring": dict(scoring_func="sqrtsoftplus"),
    "custom-routing": dict(custom_routing_function=lambda *args: args),
    "gelu": dict(activation="gelu"),
    "expert-bias": dict(has_bias=True),
}


def main() -> None:
    register_moe_layers()
    results = {}
    with set_current_vllm_config(VllmConfig()):
        init_distributed_environment(
            world_size=1,
            rank=0,
            local_rank=0,
            distributed_init_method=f"tcp://127.0.0.1:{sys.argv[1]}",
            backend="gloo",
        )
        initialize_model_parallel(1, 1)
        for name, settings in CASES.items():
            try:
                runner = FusedMoEFactory(
                    num_experts=8,
                    top_k=2,
                    hidden_size=16,
                    intermediate_size=32,
                    params_dtype=torch.float32,
                    prefix=f"model.layers.0.mlp.{name}",
                    **settings,
                )
                results[name] = type(runner.routed_experts).__name__
            except NotImplementedError as error:
                results[name] = f"error: {error}"
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
