"""The threaded HTTP server base of the model server and of the local SageMaker runtime stand-in.

Both serve each connection on a daemon thread and treat a client that hung up as routine. The base
lives here, in the model container's package, because the container must not import `fewclick/`,
while `fewclick.local.sagemaker_runtime` may import `fewclick_model`.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from email.message import Message
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar


def content_length(value: str | None) -> int | None:
    """A Content-Length header's byte count; None when absent or not plain ASCII digits (a negative
    length would read to the end of the stream, past any body limit; ``str.isdigit`` alone also
    passes digits such as "²" that ``int`` refuses)."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def conflicting(headers: Message, name: str) -> bool:
    """Whether ``name`` comes more than once with different values (two Content-Lengths, say): which
    one counts is a guess, and a wrong guess lets a body hide a second request (RFC 9112, 6.3)."""
    return len(set(headers.get_all(name) or [])) > 1


# After answering a request whose body it will not read (over the size limit), how long a connection
# keeps reading and dropping what the client still uploads before it closes (nginx's "lingering
# close"): closing on unread bytes makes the kernel answer with a reset, and a client that sends its
# whole body before reading (browsers, http.client) gets a broken pipe instead of the 413.
LINGER_S = 5.0
# ... and how long it waits for the next piece of the upload before giving up on it.
LINGER_QUIET_S = 1.0
# Past this much the client is left to its reset: a few times the largest body worth uploading here.
LINGER_MAX_BYTES = 64 * 1024 * 1024


def linger_close(connection: socket.socket) -> None:
    """Finish the answer already written, then read and drop the rest of the upload until the client
    closes, goes quiet or the bounds above are reached; the caller's close then sends no reset."""
    try:
        connection.shutdown(socket.SHUT_WR)  # the answer goes out with a FIN: the client sees its end
    except OSError:
        return
    deadline = time.monotonic() + LINGER_S
    dropped = 0
    try:
        while dropped < LINGER_MAX_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            connection.settimeout(min(left, LINGER_QUIET_S))
            chunk = connection.recv(256 * 1024)
            if not chunk:
                break
            dropped += len(chunk)
    except OSError:  # TimeoutError included: a quiet or vanished client is simply closed on
        pass


class JsonRefusals:
    """For a `BaseHTTPRequestHandler` whose server answers errors in JSON: http.server's own
    refusals (a garbage request line 400, a URL over 64 KB 414, header lines too long or too many
    431) and methods without a ``do_<METHOD>`` (its HTML 501) go to the handler's JSON answers,
    `refuse` and `refuse_method`, and the connection closes."""

    protocol_version: str
    request_version: str
    close_connection: bool

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        # An unparsed request line leaves http.server's HTTP/0.9 default, which sends the body bare,
        # without a status line: answer in the protocol this server speaks.
        self.request_version = self.protocol_version
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.refuse(code, message or phrase)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD> and answers an HTML 501 page when it is missing.
        if name.startswith("do_"):
            return self.refuse_method
        raise AttributeError(name)

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with ``message`` in the server's JSON error shape, closing the connection."""
        raise NotImplementedError

    def refuse_method(self) -> None:
        """Answer a method the server does not take: 405 with Allow."""
        raise NotImplementedError


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
