"""MLA models the MLA backend cannot run are refused at start-up, in one line that
names the feature (sparse MLA, an fp8 latent cache), before any engine process starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vllm_npu.testing import TinyModelSpec


@pytest.fixture(scope="module")
def deepseek_v2(tiny_model_dir) -> Path:
    return tiny_model_dir(TinyModelSpec(arch="deepseek_v2"))


def _start_up_error(model: Path, **engine_args) -> str:
    from vllm.engine.arg_utils import EngineArgs

    with pytest.raises(ValueError) as raised:
        EngineArgs(model=str(model), dtype="float32", **engine_args).create_engine_config()
    # VllmConfig is a pydantic dataclass: our error arrives inside its ValidationError.
    errors = getattr(raised.value, "errors", None)
    return str(errors()[0]["ctx"]["error"]) if errors is not None else str(raised.value)


def test_mla_with_an_fp8_kv_cache_is_refused(deepseek_v2: Path) -> None:
    message = _start_up_error(deepseek_v2, kv_cache_dtype="fp8")
    assert "kv_cache_dtype=fp8" in message and "VLLM_NPU_MLA_ATTENTION_BACKEND" in message
    assert "\n" not in message


def test_sparse_mla_is_refused(deepseek_v2: Path, tmp_path: Path) -> None:
    """DeepSeek-V3.2's DSA: an indexer picks the top-k keys (``index_topk``)."""
    sparse = tmp_path / "sparse"
    shutil.copytree(deepseek_v2, sparse)
    config = json.loads((sparse / "config.json").read_text())
    config.update(index_topk=8, index_n_heads=2, index_head_dim=16)
    (sparse / "config.json").write_text(json.dumps(config))
    message = _start_up_error(sparse)
    assert "sparse MLA (DeepSeek-V3.2 DSA indexer)" in message
    assert "\n" not in message


def test_mla_on_a_kernel_set_without_mla_kernels_is_refused(
    deepseek_v2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from vllm_npu.attention import mla

    monkeypatch.setattr(mla, "kernels_for_current_device", lambda: SimpleNamespace(name="nova"))
    message = _start_up_error(deepseek_v2)
    assert "MLA on the nova kernel set (it has no MLA kernels yet)" in message
    assert "\n" not in message


def test_mla_sizes_the_ascend_ops_reject_are_refused_on_the_ascend_kernel_set(
    deepseek_v2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny sizes (latent 32, rope 8, nope 16, values 16, 4 heads) are none of the
    ones Ascend's MLA ops take; float32 is no dtype of theirs either."""
    from types import SimpleNamespace

    from vllm_npu.attention import mla

    monkeypatch.setattr(mla, "kernels_for_current_device", lambda: SimpleNamespace(name="ascend"))
    message = _start_up_error(deepseek_v2)
    for feature in (
        "dtype torch.float32 with the ascend MLA kernels",
        "kv_lora_rank 32 (npu_multi_head_latent_attention takes 512)",
        "qk_rope_head_dim 8 (npu_multi_head_latent_attention takes 64)",
        "qk_nope_head_dim 16 (the prefill op needs nope + rope = 192)",
        "v_head_dim 16 (the prefill op takes 128 or 192)",
        "4 attention heads per rank (the prefill op takes 8/16/32/64/128)",
    ):
        assert feature in message
    assert "\n" not in message


def test_real_mla_sizes_pass_the_start_up_check_on_the_ascend_kernel_set(
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from vllm.engine.arg_utils import EngineArgs

    from vllm_npu.attention import mla

    model = tiny_model_dir(
        TinyModelSpec(
            arch="deepseek_v2", mla_dims="real", num_heads=8, hidden_size=128,
            intermediate_size=256,
        )
    )  # fmt: skip
    monkeypatch.setattr(mla, "kernels_for_current_device", lambda: SimpleNamespace(name="ascend"))
    config = EngineArgs(model=str(model), dtype="float16").create_engine_config()
    assert config.model_config.use_mla


def test_a_supported_mla_model_passes_the_start_up_check(deepseek_v2: Path) -> None:
    from vllm.engine.arg_utils import EngineArgs

    config = EngineArgs(model=str(deepseek_v2), dtype="float32").create_engine_config()
    assert config.model_config.use_mla
