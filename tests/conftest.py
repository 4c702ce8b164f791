"""Pytest setup shared by every test area (infra, model, contract, serving, ui, ...).

- Puts the repository root and `lambda/proxy` (the Lambda asset root, so `fewclick_proxy`
  imports as it does in Lambda) on `sys.path`.
- `dataset`: tests that need `../shared/datasets` are skipped cleanly where it is absent:

      @pytest.mark.dataset("davis")          # or: from conftest import dataset; @dataset("davis")
      def test_on_davis() -> None: ...

- A run that collects no tests FAILS (exit 1) instead of pytest's exit 5, so a CI filter
  that matches nothing can never pass silently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

for _path in (REPO_ROOT / "lambda" / "proxy", REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# The CDK's jsii runtime prints a banner for Node versions it has not tested; it is noise here.
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def missing_datasets(*names: str) -> list[str]:
    """Names (folders under ../shared/datasets) that are not there; no names = the folder itself."""
    if not SHARED_DATASETS.is_dir():
        return list(names) or ["."]
    return [name for name in names if not (SHARED_DATASETS / name).exists()]


def dataset(*names: str) -> pytest.MarkDecorator:
    """Mark a test as needing `../shared/datasets/<name>`; it is skipped when that is absent."""
    return pytest.mark.dataset(*names)


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers(name="dataset"):
        missing = missing_datasets(*marker.args)
        if missing:
            pytest.skip(f"needs {', '.join(str(SHARED_DATASETS / name) for name in missing)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """The session's one Chromium (tests/browser_support.py): every browser test opens its own context."""
    from playwright.sync_api import sync_playwright

    from tests.browser_support import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()
