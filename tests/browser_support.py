"""The one Chromium the browser tests drive (Debian's; playwright never downloads one).

One session-wide browser (the `browser` fixture in tests/conftest.py) for every test area: two
`sync_playwright()` instances cannot live in one process, so a test area that opened its own after
another's session browser failed whenever the run order put it second.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches out to the network on its own (CI has no internet).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
