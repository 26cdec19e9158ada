"""A researcher's attention backend, installed as its own distribution, runs inside vLLM."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from vllm_npu.testing import DEFAULT_PROMPTS, TinyModelSpec, hf_greedy_generate

from .conftest import greedy_token_ids, vllm_engine

RESEARCHER_MODULE = """
import os
from pathlib import Path

from vllm_npu.attention import NPUAttentionBackend, NPUAttentionImpl


class CountingImpl(NPUAttentionImpl):
    def forward(self, *args, **kwargs):
        with Path(os.environ["RESEARCHER_ATTENTION_LOG"]).open("a") as log:
            log.write("forward\\n")
        return super().forward(*args, **kwargs)


class CountingBackend(NPUAttentionBackend):
    @staticmethod
    def get_impl_cls():
        return CountingImpl
"""


@pytest.fixture
def researcher_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Installs ``researcher-attention`` (entry point ``counting``) for this process
    and the engine processes it spawns."""
    site = tmp_path / "site"
    dist_info = site / "researcher_attention-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: researcher-attention\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[vllm_npu.attention_backends]\ncounting = researcher_attention:CountingBackend\n"
    )
    (site / "researcher_attention.py").write_text(textwrap.dedent(RESEARCHER_MODULE))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    )
    log = tmp_path / "attention.log"
    monkeypatch.setenv("RESEARCHER_ATTENTION_LOG", str(log))
    yield log
    sys.modules.pop("researcher_attention", None)


def test_backend_selected_by_additional_config(tiny_model_dir, researcher_site: Path) -> None:
    model = tiny_model_dir(TinyModelSpec(arch="llama"))
    prompts = DEFAULT_PROMPTS[:4]
    with vllm_engine(str(model), additional_config={"attention_backend": "counting"}) as llm:
        generated = greedy_token_ids(llm, prompts, 8)

    assert researcher_site.exists(), "the researcher's attention never ran"
    assert researcher_site.read_text().count("forward") >= 8
    assert generated == hf_greedy_generate(model, prompts, 8)
