"""`fewclick serve` as a child process: start it, follow its output, wait for its ready line.

Used by the load benchmark, the browser tests and the fault tests, which need the real command (its own
process, its own model server child) rather than the in-process pieces.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The line `fewclick serve` prints once everything answers (see serve.READY_LINE).
READY = re.compile(r"FewClick is ready in [0-9.]+ s: (?P<url>http://\S+)")


def child_pids(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (for `fewclick serve`: its model server), read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        # A process may exit between listing and reading; the command name may hold ")".
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@dataclass
class SpawnedServe:
    process: subprocess.Popen[str]
    url: str | None  # the printed URL (token in its fragment), None if it never became ready
    lines: list[str] = field(default_factory=list)  # everything it printed so far, kept growing


def spawn_serve(
    args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> SpawnedServe:
    """Start `fewclick serve --port 0 ARGS` and wait up to ``timeout`` s for it to be ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fewclick.cli", "serve", "--port", "0", *args],
        cwd=cwd,
        env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    spawned = SpawnedServe(process, None)
    ready = threading.Event()

    def pump() -> None:
        # Keeps reading after "ready": a full pipe must never block the server.
        assert process.stdout is not None
        for line in process.stdout:
            spawned.lines.append(line.rstrip("\n"))
            match = READY.search(line)
            if match and not ready.is_set():
                spawned.url = match.group("url")
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    ready.wait(timeout)
    return spawned
