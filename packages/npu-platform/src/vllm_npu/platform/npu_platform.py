"""``NPUPlatform``: vLLM's view of an Ascend NPU (or of the host backend)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from vllm.logger import init_logger
from vllm.platforms.interface import Platform, PlatformEnum

from vllm_npu.platform import (
    _compat,
    _config,
    _distributed,
    _env,
    _features,
    _lora,
    _ray,
    _speculative,
    discovery,
    ir_kernels,
)
from vllm_npu.platform.device import select_backend
from vllm_npu.platform.hooks import run_process_hooks

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.v1.attention.backends.registry import AttentionBackendEnum
    from vllm.v1.attention.selector import AttentionSelectorConfig

logger = init_logger("vllm.vllm_npu.platform")

_selection = select_backend()
if _selection.backend is None:
    raise ImportError(f"vllm-npu: no device backend is usable: {_selection.reason}")
BACKEND = _selection.backend

ADDITIONAL_CONFIG_ATTENTION_KEY = "attention_backend"
"""``additional_config`` key naming the attention backend entry point to use."""
ADDITIONAL_CONFIG_MLA_ATTENTION_KEY = "mla_attention_backend"
"""``additional_config`` key naming the attention backend entry point for MLA models."""


def _attention_kind(use_mla: bool) -> tuple[discovery.ComponentKind, str]:
    """The kind of attention backend a model needs and its ``additional_config`` key."""
    if use_mla:
        return discovery.MLA_ATTENTION_BACKEND, ADDITIONAL_CONFIG_MLA_ATTENTION_KEY
    return discovery.ATTENTION_BACKEND, ADDITIONAL_CONFIG_ATTENTION_KEY


def _configured_attention_backend(vllm_config: VllmConfig | None, use_mla: bool) -> str:
    """The requested attention backend's name (engine config, environment, default)."""
    if vllm_config is None:
        from vllm.config import get_current_vllm_config

        vllm_config = get_current_vllm_config()
    kind, key = _attention_kind(use_mla)
    value = (vllm_config.additional_config or {}).get(key)
    return discovery.requested_name(kind, str(value) if value else None)


class NPUPlatform(Platform):
    """One platform for both device backends; the backend supplies the device."""

    _enum = PlatformEnum.OOT
    device_name: str = BACKEND.device_type
    device_type: str = BACKEND.device_type
    dispatch_key: str = BACKEND.dispatch_key
    dist_backend: str = BACKEND.dist_backend
    device_control_env_var: str = BACKEND.device_control_env_var
    ray_device_key: str = BACKEND.ray_device_key
    ray_noset_device_env_vars: list[str] = list(BACKEND.ray_noset_device_env_vars)
    simple_compile_backend: str = "eager"
    backend = BACKEND

    @classmethod
    def pre_register_and_update(cls, parser: Any = None) -> None:
        run_process_hooks("platform")

    @classmethod
    def import_ir_kernels(cls) -> None:
        """Our vLLM IR kernels (vLLM's own, ``vllm.kernels``, are for CUDA-like devices)."""
        ir_kernels.import_registered()

    @classmethod
    def get_default_ir_op_priority(cls, vllm_config: VllmConfig) -> Any:
        cls.import_ir_kernels()
        return ir_kernels.default_priority()

    @classmethod
    def import_kernels(cls) -> None:
        """Our kernels are PyTorch or torch_npu; vLLM's compiled ops are not used."""

    @classmethod
    def device_count(cls) -> int:
        return BACKEND.device_count()

    @classmethod
    def get_device_name(cls, device_id: int = 0) -> str:
        return BACKEND.device_name(device_id)

    @classmethod
    def get_device_total_memory(cls, device_id: int = 0) -> int:
        """Answered only where the device runtime is up (workers): the query would
        initialise it, and the front end (API server, ``LLM``) must not, as torch_npu
        allows one initialisation per process. vLLM falls back to defaults there."""
        if not BACKEND.runtime_initialized():
            raise NotImplementedError(
                "vllm-npu: the device memory is not queried outside the workers (it would "
                "initialise the NPU runtime in this process)"
            )
        return BACKEND.mem_get_info(device_id)[1]

    @classmethod
    def get_current_memory_usage(cls, device: Any = None) -> float:
        """Bytes in use on ``device`` (an index, ``torch.device`` or None: the current)."""
        if isinstance(device, str):
            device = torch.device(device)
        index = device.index if isinstance(device, torch.device) else device
        free, total = BACKEND.mem_get_info(index)
        return float(total - free)

    @classmethod
    def set_device(cls, device: torch.device) -> None:
        BACKEND.set_device(device)

    @classmethod
    def manual_seed_all(cls, seed: int) -> None:
        BACKEND.manual_seed_all(seed)

    @classmethod
    def synchronize(cls) -> None:
        BACKEND.synchronize()

    @classmethod
    def empty_cache(cls) -> None:
        BACKEND.empty_cache()

    @classmethod
    def mem_get_info(cls, device_id: int = 0) -> tuple[int, int]:
        return BACKEND.mem_get_info(device_id)

    @classmethod
    def is_pin_memory_available(cls) -> bool:
        return BACKEND.device_type != "cpu"

    @classmethod
    def inference_mode(cls) -> Any:
        return torch.no_grad()

    @classmethod
    def opaque_attention_op(cls) -> bool:
        # A traced per-request attention loop would be baked into the graph.
        return True

    @classmethod
    def check_runner_kv_caches_multi_layer(cls) -> None:
        """Our runner keeps one KV cache per layer name."""

    @classmethod
    def get_device_communicator_cls(cls) -> str:
        return discovery.qualname(discovery.COMMUNICATOR)

    @classmethod
    def get_attn_backend_cls(
        cls,
        selected_backend: AttentionBackendEnum,
        attn_selector_config: AttentionSelectorConfig,
        num_heads: int | None = None,
    ) -> str:
        kind, key = _attention_kind(attn_selector_config.use_mla)
        name = _configured_attention_backend(None, attn_selector_config.use_mla)
        entry_point = discovery.find(kind, name)
        backend_cls = discovery.load(kind, entry_point)
        problems = _compat.attention_backend_problems(backend_cls, attn_selector_config)
        if problems:
            raise ValueError(
                f"vllm-npu: attention backend {name!r} cannot run this model "
                f"({'; '.join(problems)}); select another with "
                f"{kind.env_var} or additional_config {{'{key}': ...}}."
            )
        logger.info_once("vllm-npu: using attention backend %r (%s).", name, entry_point.value)
        return f"{backend_cls.__module__}.{backend_cls.__qualname__}"

    @classmethod
    def check_and_update_config(cls, vllm_config: VllmConfig) -> None:
        parallel = vllm_config.parallel_config
        if parallel.worker_cls == "auto":
            parallel.worker_cls = discovery.qualname(discovery.WORKER)
        _lora.check_lora(vllm_config, BACKEND)
        _speculative.check_speculative(vllm_config)
        use_mla = bool(getattr(vllm_config.model_config, "use_mla", False))
        kind, key = _attention_kind(use_mla)
        name = _configured_attention_backend(vllm_config, use_mla)
        attention = discovery.find(kind, name)
        _config.adapt_to_backend(vllm_config, BACKEND)
        attention_cls = discovery.load(kind, attention)
        _features.refuse_unsupported(vllm_config, attention_cls)
        refuse = getattr(attention_cls, "unsupported_model_features", None)
        # Without a model (a bare VllmConfig) there is nothing to check yet.
        has_model = vllm_config.model_config is not None
        problems = refuse(vllm_config) if refuse is not None and has_model else []
        if problems:
            raise ValueError(
                f"vllm-npu: {'MLA ' if use_mla else ''}attention backend {name!r} cannot run "
                "this model "
                f"({'; '.join(problems)}); select another with {kind.env_var} or "
                f"additional_config {{'{key}': ...}}."
            )
        _config.adapt_block_size(vllm_config, attention_cls.get_supported_kernel_block_sizes())
        _distributed.check_local_ranks(parallel, BACKEND)
        _ray.configure(parallel, BACKEND)

    def is_sleep_mode_available(self) -> bool:
        """vLLM asks only when the user enabled sleep mode: refuse it in our words."""
        raise ValueError(_features.SLEEP_MODE_REFUSAL)

    @classmethod
    def verify_quantization(cls, quant: str) -> None:
        """vLLM asks only for a model with a quantization method: refuse it."""
        raise ValueError(_features.QUANTIZATION_REFUSAL)

    @classmethod
    def get_mla_prefill_backend_cls(cls, mla_selector_config: Any) -> type:
        """The MLA prefill backend the selected MLA attention backend names (vLLM 0.32+
        builds one per MLA layer)."""
        name = _configured_attention_backend(None, use_mla=True)
        kind = discovery.MLA_ATTENTION_BACKEND
        backend_cls = discovery.load(kind, discovery.find(kind, name))
        prefill_cls = getattr(backend_cls, "get_mla_prefill_backend_cls", None)
        if prefill_cls is None:
            raise ValueError(
                f"vllm-npu: MLA attention backend {name!r} names no MLA prefill backend "
                "(get_mla_prefill_backend_cls); select another with "
                f"{kind.env_var}."
            )
        return prefill_cls()

    @classmethod
    def register_triton_kernel_overrides(cls) -> None:
        _compat.register_slot_mapping_kernel()
        _compat.register_rejection_sampler_kernels()

    @classmethod
    def get_punica_wrapper(cls) -> str:
        return _lora.punica_wrapper(BACKEND)

    @classmethod
    def validate_environ(cls, hard_fail: bool) -> None:
        """vLLM's check for unknown ``VLLM_*`` variables, minus our own ``VLLM_NPU_*``."""
        from vllm import envs

        for name in os.environ:
            if (
                name.startswith("VLLM_")
                and not name.startswith(_env.PREFIX)
                and name not in envs.environment_variables
            ):
                if hard_fail:
                    raise ValueError(f"Unknown vLLM environment variable detected: {name}")
                logger.warning("Unknown vLLM environment variable detected: %s", name)
