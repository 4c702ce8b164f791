"""A click's network passes replayed as CUDA graphs.

On a GPU a click costs little arithmetic: the deeper encoder stages and the decoder for
both views, and the boundary refiner, are a few hundred small kernels, and launching them
one by one from Python takes longer than running them. A CUDA graph records the launches
once per input signature and replays them with one call. The session's features differ
from click to click, so each call first copies its inputs into the graph's own (static)
buffers: ~5 MB device to device for both views at 256 px, a few microseconds.
Measured on an H200 in one call (`scripts/device_latency.sh`, p90): a region click 6.5 ->
2.1 ms, a boundary click (with the refiner) 10.3 -> 4.6 ms.

Replays run the very kernels eager mode ran, so the answers are the same
(`tests/model/test_cuda_graphs.py` on a GPU; GrabCut's table on the GPU did not move).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

Outputs = tuple[torch.Tensor, ...]
# Eager runs before a capture, on a side stream (CUDA graphs' rule): they let cuDNN pick
# its algorithms and the caching allocator settle, so the capture records steady state.
WARMUP_CALLS = 3


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: list[torch.Tensor]
    outputs: Outputs


class GraphedCall:
    """``run(*inputs) -> tensor or tuple of tensors`` replayed from a CUDA graph per input
    signature (shapes, dtypes, strides). Falls back to calling ``run`` when a capture fails,
    with a warning: slower, never wrong. Not thread-safe (a predictor has one inference thread)."""

    def __init__(self, run: Callable[..., torch.Tensor | Outputs], name: str) -> None:
        self.run = run
        self.name = name
        self.enabled = True
        self._captured: dict[tuple, _Captured] = {}

    def __call__(self, *inputs: torch.Tensor) -> Outputs:
        if not self.enabled:
            return _as_tuple(self.run(*inputs))
        # A replica on another GPU than the thread's current one captures and replays on its own.
        device = inputs[0].device
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            return self._replay(inputs)

    def _replay(self, inputs: tuple[torch.Tensor, ...]) -> Outputs:
        key = tuple((tuple(t.shape), t.dtype, t.stride(), t.device) for t in inputs)
        captured = self._captured.get(key)
        if captured is None:
            try:
                captured = self._capture(inputs)
            except torch.OutOfMemoryError:
                raise  # the model server frees idle sessions' features and asks again
            except RuntimeError as exc:  # e.g. an op that cannot be captured: serve eagerly
                logger.warning("CUDA graph capture of %s failed (%s); running it eagerly", self.name, exc)
                self.enabled = False
                return _as_tuple(self.run(*inputs))
            self._captured[key] = captured
        for static, value in zip(captured.inputs, inputs, strict=True):
            static.copy_(value)
        captured.graph.replay()
        # The outputs are the graph's own buffers, overwritten by the next replay.
        return tuple(o.clone() for o in captured.outputs)

    @property
    def graphs(self) -> int:
        return len(self._captured)

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> _Captured:
        static = [t.clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.run(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # Thread-local: another replica's thread, on another GPU, may launch work meanwhile.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = _as_tuple(self.run(*static))
        return _Captured(graph, static, outputs)


def _as_tuple(out: torch.Tensor | Outputs) -> Outputs:
    return (out,) if isinstance(out, torch.Tensor) else tuple(out)
