"""Fixtures of the hardening tests: one local stack for the session (the model server takes seconds to load),
re-pointed at before every test that uses it, and a fake S3 behind the proxy's allowed bucket."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import ALLOWED_BUCKET, FakeS3, HardeningStack, encode, scene

# pycocotools 2.0.11 calls np.array(copy=False) on numpy 2: a DeprecationWarning per mask, not ours.
_PYCOCOTOOLS_NUMPY2 = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")
# The proxy silences this at import, but pytest resets warning filters per test; routes without metrics
# (every refused request) are normal.
_NO_METRICS = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(_PYCOCOTOOLS_NUMPY2)
            item.add_marker(_NO_METRICS)


@pytest.fixture(scope="module", autouse=True)
def _leave_the_proxy_as_found() -> Iterator[None]:
    """The proxy handler is a module-level singleton that other test areas configure (or leave to build
    itself from the environment): give it back as each module found it. (The environment the stack sets
    for the proxy is restored when the stack stops.)"""
    import sys

    module = sys.modules.get("fewclick_proxy.handler")
    segmenter = getattr(module, "_segmenter", None)
    yield
    module = sys.modules.get("fewclick_proxy.handler")
    if module is not None:
        module._segmenter = segmenter


@pytest.fixture(scope="package", autouse=True)
def hardening_env() -> Iterator[None]:
    """Every hardening test, alone or in any order, runs with local credentials and one torch thread.
    Package scope: undone (and the stack below stopped) when the hardening tests end, so no later test
    area runs with this environment or beside this stack."""
    with pytest.MonkeyPatch.context() as mp:
        # One intra-op thread: on a shared 2-core machine torch's default (one per core) spins OpenMP workers
        # against the other load and a first request can take a minute (see README.md, "Latency").
        mp.setenv("FEWCLICK_TORCH_THREADS", "1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "local")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "local")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="package")
def fake_s3() -> Iterator[FakeS3]:
    s3 = FakeS3()
    rgb, _ = scene()
    s3.objects[(ALLOWED_BUCKET, "images/scene.png")] = encode(rgb)
    s3.objects[(ALLOWED_BUCKET, "images/not-an-image.png")] = b"this is a text file, not a PNG\n" * 10
    yield s3
    s3.stop()


@pytest.fixture(scope="package")
def session_stack(
    hardening_env: None, fake_s3: FakeS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HardeningStack]:
    images = tmp_path_factory.mktemp("hardening-images")
    rgb, _ = scene()
    (images / "scene.png").write_bytes(encode(rgb))
    stack = HardeningStack(images, tmp_path_factory.mktemp("hardening-labels"), fake_s3)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        # The proxy singleton pointed at this stack's runtime, now stopped: the next test area builds
        # its own instead of inheriting it.
        handler = sys.modules.get("fewclick_proxy.handler")
        if handler is not None:
            handler._segmenter = None


@pytest.fixture
def hstack(session_stack: HardeningStack) -> HardeningStack:
    """The running local stack; the proxy is re-pointed at it (other test areas configure the same module)."""
    session_stack.reconfigure()
    return session_stack
