"""`.ci/run`: strict bash, no stdin, and the README's test command verbatim."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CI_RUN = REPO_ROOT / ".ci" / "run"
# The README writes it after the set-up step: `bash scripts/setup.sh && .venv/bin/python -m pytest -q`.
TEST_COMMAND = re.compile(
    r"^\s*(?:bash scripts/setup\.sh && )?(\.venv/bin/python -m pytest[^|&;\n]*?)\s*(\|\|.*)?$", re.MULTILINE
)


def test_ci_script_is_strict_and_executable() -> None:
    text = CI_RUN.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert "exec </dev/null" in text
    assert "CI=true" in text
    assert os.access(CI_RUN, os.X_OK)
    # A run that collects nothing must fail (pytest exit 5), also guarded in tests/conftest.py.
    assert '"$status" -eq 5' in text


def test_ci_runs_the_readme_test_command() -> None:
    ci_commands = [m.group(1).strip() for m in TEST_COMMAND.finditer(CI_RUN.read_text())]
    assert len(ci_commands) == 1, ci_commands
    readme = REPO_ROOT / "README.md"
    if readme.exists():
        readme_commands = {m.group(1).strip() for m in TEST_COMMAND.finditer(readme.read_text())}
        # The README may show narrower runs too (tests/infra, ...); the full-suite one must match CI.
        full_suite = {c for c in readme_commands if "tests/" not in c and "UPDATE_" not in c}
        assert full_suite == set(ci_commands), (full_suite, ci_commands)
