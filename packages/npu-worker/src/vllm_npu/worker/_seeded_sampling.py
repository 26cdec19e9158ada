"""Seeded sampling across a chunked prefill, for per-request generators on the CPU.

vLLM's runner samples a token for every scheduled request, also for one whose
prefill is only partly done, and then drops that token. To leave the request's
generator as if nothing had been drawn it moves the generator's Philox offset back
(``GPUModelRunner._bookkeeping_sync``: ``gen.set_offset(gen.get_offset() - 4)``,
the same in vLLM 0.28 to 0.33). A CPU generator is a Mersenne Twister with no
offset: that line raises "CPU Generator does not use offset" and the engine dies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _discarded_cpu_generators(runner: Any) -> dict[int, torch.Generator]:
    """The CPU generators of the runner's requests whose sampled token this step drops.

    A function, not a runner method: every method of our runners overrides one of
    vLLM's (the extension-point contract tests hold them to that)."""
    generators: dict[int, torch.Generator] = runner.input_batch.generators
    discarded = np.nonzero(runner.discard_request_mask.np[: runner.input_batch.num_reqs])[0]
    return {
        int(index): generators[int(index)]
        for index in discarded
        if int(index) in generators and generators[int(index)].device.type == "cpu"
    }


class CPUGeneratorRewind:
    """Runner mixin: a discarded sample leaves a CPU generator exactly where it was.

    The generator's whole state is saved before sampling and put back after it, so a
    seeded request draws the same numbers, and samples the same tokens, whether its
    prompt was prefilled in one step or in several; vLLM's offset rewind is kept
    away from those generators. Generators with an offset (CUDA's, torch_npu's) are
    left to vLLM.
    """

    input_batch: Any
    discard_request_mask: Any

    def _sample(self, *args: Any, **kwargs: Any) -> Any:
        generators = _discarded_cpu_generators(self)
        states = {index: generator.get_state() for index, generator in generators.items()}
        try:
            return super()._sample(*args, **kwargs)  # type: ignore[misc]
        finally:
            for index, state in states.items():
                generators[index].set_state(state)

    def _bookkeeping_sync(self, *args: Any, **kwargs: Any) -> Any:
        generators = self.input_batch.generators
        rewound = _discarded_cpu_generators(self)
        self.input_batch.generators = {
            index: generator for index, generator in generators.items() if index not in rewound
        }
        try:
            return super()._bookkeeping_sync(*args, **kwargs)  # type: ignore[misc]
        finally:
            self.input_batch.generators = generators
