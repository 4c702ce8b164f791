"""Docker HEALTHCHECK: exit 0 when this container's /ping answers 200 (standard library only)."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=3) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
