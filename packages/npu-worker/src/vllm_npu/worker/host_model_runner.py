"""The model runner of the host backend: vLLM's CPU runner, with seeded sampling kept
across chunked prefills and linear layers on prepacked oneDNN weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vllm.v1.worker.cpu_model_runner import CPUModelRunner

from vllm_npu.worker._compat import TritonReplacements
from vllm_npu.worker._seeded_sampling import CPUGeneratorRewind
from vllm_npu.worker.packed_linear import pack_linear_layers

if TYPE_CHECKING:
    from vllm.v1.core.sched.output import SchedulerOutput


class HostModelRunner(CPUGeneratorRewind, TritonReplacements, CPUModelRunner):
    """vLLM's V1 runner with its tensors on the CPU.

    ``CPUModelRunner`` needs no compiled ``vllm._C`` op; the attention backend,
    the slot-mapping kernel and the layers it runs are ours or portable PyTorch.
    Seeded requests keep their CPU generators through a chunked prefill
    (``CPUGeneratorRewind``). Linear layers compute on weights packed for oneDNN
    once loaded, as vLLM's CPU backend does (``vllm_npu.worker.packed_linear``).
    A step of decodes only (one token each, every prompt done) is in the order vLLM's
    reordering wants already, which it is not asked to find request by request.
    """

    def _may_reorder_batch(self, scheduler_output: SchedulerOutput) -> None:
        batch = self.input_batch
        num_reqs = len(batch.req_ids)
        if (
            self.reorder_batch_threshold is not None
            and max(scheduler_output.num_scheduled_tokens.values(), default=0) <= 1
            and (
                batch.num_computed_tokens_cpu[:num_reqs] >= batch.num_prompt_tokens[:num_reqs]
            ).all()
        ):
            return
        super()._may_reorder_batch(scheduler_output)

    def load_model(self, *args: Any, **kwargs: Any) -> None:
        super().load_model(*args, **kwargs)
        pack_linear_layers(self.model)
