"""A crop's and a click's network passes run as frozen TorchScript graphs on a CPU.

On 2 CPU cores the predictor runs the two mirror views side by side, one Python thread each
(`predictor._split_cpu_threads`). In eager mode each view's decoder pass dispatches ~300 small
ops from Python, and the two threads take turns holding the GIL to do it, so the second view
waits on the first's dispatching. A traced graph, frozen (weights as constants), runs its ops
from C++ with the GIL released. Measured on a 2-core Intel Xeon with AMX (bfloat16; the model
card's sitting G): one view's decoder pass on one thread 19.8 -> 16.0 ms p50; both views side
by side 20.8 -> 15.3 ms p50, 22.4 -> 16.4 p90.

The graph runs the same kernels on the same inputs as eager mode, so the answers are the same
bit for bit (`tests/model/test_frozen_graphs.py`; GrabCut's table did not move). A GPU replays
CUDA graphs instead (`cuda_graphs`), which `FrozenCall` mirrors: one graph per input
signature, eager when one cannot be made.

TorchScript is deprecated (torch 2.13 warns, pointing to `torch.compile` / `torch.export`), and
kept here on purpose: `torch.compile` on a CPU needs a C++ toolchain in the serving image and
compiles each input shape for many seconds at start-up, and an exported program runs op by op
from Python again. torch is pinned (`requirements.txt`); should a later torch drop TorchScript,
every call falls back to eager mode (tested), slower and with the same answers.
"""

from __future__ import annotations

import logging
import threading
import warnings

import torch
from torch import nn

logger = logging.getLogger(__name__)

Outputs = tuple[torch.Tensor, ...]
# Calls made while freezing, under the lock: TorchScript's profiling executor specialises a
# graph over its first runs, which then need not race with the other view's thread.
WARMUP_CALLS = 2


class FrozenCall:
    """``module(*inputs) -> tensor or tuple of tensors`` run from a traced, frozen TorchScript
    graph per input signature (shapes, dtypes, strides). Thread-safe: the CPU predictor's two
    view threads call it at once. Falls back to calling ``module`` when tracing fails, with a
    warning: slower, never wrong. A graph keeps the weights ``module`` had when it was frozen, so a
    module whose weights change afterwards needs a new FrozenCall (a predictor never changes its own)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.module = module.eval()
        self.name = name
        self.enabled = True
        self._frozen: dict[tuple, torch.jit.ScriptModule] = {}
        self._lock = threading.Lock()

    def __call__(self, *inputs: torch.Tensor) -> Outputs:
        if not self.enabled:
            return _as_tuple(self.module(*inputs))
        key = tuple((tuple(t.shape), t.dtype, t.stride(), t.device) for t in inputs)
        frozen = self._frozen.get(key)
        if frozen is None:
            with self._lock:
                frozen = self._frozen.get(key)
                if frozen is None:
                    try:
                        frozen = self._freeze(inputs)
                    except Exception as exc:  # an op the tracer cannot record, or a torch without TorchScript
                        logger.warning(
                            "freezing %s as a TorchScript graph failed (%s); running it eagerly", self.name, exc
                        )
                        self.enabled = False
                        return _as_tuple(self.module(*inputs))
                    self._frozen[key] = frozen
        return _as_tuple(frozen(*inputs))

    @property
    def graphs(self) -> int:
        return len(self._frozen)

    def _freeze(self, inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
        # The predictor calls from inference mode, whose tensors the tracer cannot record: it
        # traces normal copies (weights and shapes are what the graph keeps, not these values).
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # Sizes read from tensors become constants: right, since each signature has its own graph.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # Deprecated, and chosen anyway (the module's docstring says why).
            warnings.simplefilter("ignore", DeprecationWarning)
            examples = tuple(t.clone() for t in inputs)
            frozen = torch.jit.freeze(torch.jit.trace(self.module, examples, check_trace=False))
            for _ in range(WARMUP_CALLS):
                frozen(*examples)
        return frozen


def _as_tuple(out: torch.Tensor | Outputs) -> Outputs:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)
