"""The threaded HTTP server base of the model server and of the local SageMaker runtime stand-in.

Both serve each connection on a daemon thread and treat a client that hung up as routine. The base
lives here, in the model container's package, because the container must not import `fewclick/`,
while `fewclick.local.sagemaker_runtime` may import `fewclick_model`.
"""

from __future__ import annotations

import logging
import sys
from http.server import ThreadingHTTPServer
from typing import ClassVar


def content_length(value: str | None) -> int | None:
    """A Content-Length header's byte count; None when absent or not plain ASCII digits (a negative
    length would read to the end of the stream, past any body limit; ``str.isdigit`` alone also
    passes digits such as "²" that ``int`` refuses)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


class QuietThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes a burst of connections (many Lambda instances
    # opening theirs at once) wait out a SYN retransmit: a second each.
    request_queue_size = 128
    # Fast restarts in development (a port in TIME_WAIT is reusable at once); SageMaker starts each
    # container once.
    allow_reuse_address = True
    # Each server sets its own logger, so its lines keep their source.
    logger: ClassVar[logging.Logger] = logging.getLogger(__name__)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hung up (timeout, cancelled click) is routine, not a stack trace.
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            self.logger.debug("client %s went away: %s", client_address, exc)
            return
        self.logger.exception("error while serving %s", client_address)
