"""The SageMaker-compatible model server (`GET /ping`, `POST /invocations` on port 8080).

- `app`: HTTP handling and `start_model_server(host, port, ...) -> ModelServerHandle`,
- `engine`: wire request -> prediction; model replicas and session affinity (its
  docstring explains how a session's clicks always reach the replica holding its cache),
- `sessions`: the bounded session cache (LRU + idle TTL + lifetime + memory cap),
- `cli`: `fewclick model-server` and the container's `serve` entry,
- `stop_signals`: SIGTERM / SIGINT as an Event, set off the signal handler (also `fewclick serve`'s).

Importing this package does not import torch; loading the model does.
"""

from .app import ModelServerHandle, start_model_server
from .sessions import SessionCache

__all__ = ["ModelServerHandle", "SessionCache", "start_model_server"]
