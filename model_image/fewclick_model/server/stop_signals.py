"""SIGTERM and SIGINT as a `threading.Event`, set by a relay thread, never inside a signal handler.

Why not ``stop.set()`` in the handler: Python runs a handler in the main thread, between two
bytecodes of whatever that thread was doing. When it was inside the same Event (a main loop waiting on
it), a second signal landing while the first handler's ``set`` holds the Event's lock makes the
second handler wait for a lock its own thread holds, and the process never stops. That happened to
the model server (a CI run left it serving, its main thread stacked four handlers deep), and it
would to anyone pressing Ctrl-C twice. Here the Python handler does nothing: the interpreter's
C-level handler also writes the signal number to a wakeup socket (`signal.set_wakeup_fd`), and a
relay thread reading it sets the Event.

Used by the model server (`cli.run`) and by `fewclick serve`, which imports it from here because the
model container must not import `fewclick/`.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _nothing(_signum: int, _frame: object) -> None:
    """The Python-level handler: the wakeup socket carries the signal; taking any lock here could deadlock."""


def _relay(
    source: socket.socket, stop: threading.Event, wanted: frozenset[int], on_signal: Callable[[int], None] | None
) -> None:
    while data := source.recv(64):  # b"" once the write end is closed: the context has ended
        for signum in data:
            if signum in wanted:
                stop.set()  # first: a failing ``on_signal`` must not cost the stop
                if on_signal is not None:
                    on_signal(signum)


@contextlib.contextmanager
def stop_on_signals(
    stop: threading.Event,
    on_signal: Callable[[int], None] | None = None,
    signals: Iterable[signal.Signals] = STOP_SIGNALS,
) -> Iterator[None]:
    """While inside, each of ``signals`` sets ``stop`` (and calls ``on_signal`` with its number, on
    the relay thread); on leaving, the previous handlers and wakeup fd are back. Main thread only,
    as `signal.signal` itself."""
    wanted = frozenset(int(s) for s in signals)
    source, sink = socket.socketpair()
    # The C handler must never block on a full buffer; a burst of signals past it is one stop anyway.
    sink.setblocking(False)
    relay = threading.Thread(target=_relay, args=(source, stop, wanted, on_signal), name="stop-signals", daemon=True)
    relay.start()
    previous_fd: int | None = None
    previous: dict[int, Any] = {}
    try:
        previous_fd = signal.set_wakeup_fd(sink.fileno(), warn_on_full_buffer=False)
        for sig in wanted:
            previous[sig] = signal.signal(sig, _nothing)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if previous_fd is not None:
            signal.set_wakeup_fd(previous_fd)
        sink.close()  # the relay's recv returns b""
        relay.join(timeout=5)
        source.close()
