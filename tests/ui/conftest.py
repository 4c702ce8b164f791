"""Fixtures of the UI tests: a test image with a known object, `fewclick serve` runs, Debian's chromium.

Browser tests drive /usr/bin/chromium through playwright (never a downloaded browser); where it is
absent they are skipped with the reason. Screenshots go to test-artifacts/ui/ (gitignored).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fewclick.local.serve_process import child_pids, spawn_serve

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
# The browser itself is the session-wide `browser` fixture (tests/conftest.py).
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS  # noqa: E402,F401 (re-exported for tests/ui)

# pycocotools 2.0.11 calls np.array(copy=False) on numpy 2: a DeprecationWarning per decoded mask, not ours.
PYCOCOTOOLS_NUMPY2 = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept:DeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)")
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            continue  # this hook sees the whole session's items; touch only the UI tests
        item.add_marker(PYCOCOTOOLS_NUMPY2)
        if "browser" in item.keywords and not CHROMIUM.exists():
            item.add_marker(skip)


# --- a test image whose object is known exactly ---


@dataclass(frozen=True)
class KnownObject:
    path: Path
    mask: np.ndarray  # bool (H, W): the object
    extreme_points: list[tuple[int, int]]  # left, right, top, bottom (x, y)
    inside: tuple[int, int]  # a pixel deep inside
    outside: tuple[int, int]  # a background pixel close to the object
    boundary: tuple[int, int]  # a pixel on the object's edge


def extreme_points(mask: np.ndarray) -> list[tuple[int, int]]:
    ys, xs = np.nonzero(mask)

    def pick(sel: np.ndarray, along: np.ndarray) -> int:
        return int(np.sort(along[sel])[len(along[sel]) // 2])

    left = (int(xs.min()), pick(xs == xs.min(), ys))
    right = (int(xs.max()), pick(xs == xs.max(), ys))
    top = (pick(ys == ys.min(), xs), int(ys.min()))
    bottom = (pick(ys == ys.max(), xs), int(ys.max()))
    return [left, right, top, bottom]


def make_known_object(path: Path, width: int = 320, height: int = 240, seed: int = 7) -> KnownObject:
    """A saturated red ellipse on a blotchy, striped green-grey background (a PNG, so no JPEG blur)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 150, (height // 12 + 1, width // 12 + 1, 3)).astype(np.uint8)
    background = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    background[..., 1] += 25  # greenish, far from the object's red
    yy, xx = np.mgrid[0:height, 0:width]
    background += (((xx + yy) // 9) % 2 * 18).astype(np.int16)[..., None]  # diagonal stripes
    background += rng.integers(-12, 13, background.shape).astype(np.int16)
    mask_u8 = np.zeros((height, width), np.uint8)
    center, axes, angle = (170, 122), (82, 52), 18
    cv2.ellipse(mask_u8, center, axes, angle, 0, 360, 1, -1)
    mask = mask_u8.astype(bool)
    obj = np.empty_like(background)
    obj[...] = (40, 45, 215)  # BGR: red
    obj += ((yy - center[1]) * 0.35).astype(np.int16)[..., None]  # shading, so it is not one flat colour
    obj += rng.integers(-8, 9, obj.shape).astype(np.int16)
    image = np.where(mask[..., None], obj, background).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)

    dist = cv2.distanceTransform(mask_u8, cv2.DIST_L2, 5)
    iy, ix = np.unravel_index(int(np.argmax(dist)), dist.shape)
    outside_dist = cv2.distanceTransform((1 - mask_u8).astype(np.uint8), cv2.DIST_L2, 5)
    # Background 12-14 px right of the object, at its centre row: a plausible "not this" click.
    row = center[1]
    cols = np.nonzero((outside_dist[row] > 12) & (outside_dist[row] < 14) & (xx[row] > center[0]))[0]
    outside = (int(cols[0]), row)
    # The edge pixel straight above the centre.
    col = center[0]
    top_row = int(np.nonzero(mask[:, col])[0].min())
    return KnownObject(
        path=path,
        mask=mask,
        extreme_points=extreme_points(mask),
        inside=(int(ix), int(iy)),
        outside=outside,
        boundary=(col, top_row),
    )


@pytest.fixture
def known_object(tmp_path: Path) -> KnownObject:
    return make_known_object(tmp_path / "images" / "red_ellipse.png")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


# --- `fewclick serve` as a subprocess, exactly as a labeler starts it ---


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.url.split("#", 1)[0].rstrip("/")

    @property
    def token(self) -> str | None:
        return self.url.split("#token=", 1)[1] if "#token=" in self.url else None

    def children(self) -> list[int]:
        """Pids whose parent is the serve process (the model server)."""
        return child_pids(self.process.pid)

    def interrupt(self, timeout: float = 20.0) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)


def start_serve(*args: str, timeout: float = 60.0) -> ServeProcess:
    started = time.monotonic()
    spawned = spawn_serve(args, timeout=timeout, cwd=REPO_ROOT)
    if spawned.url is None:
        spawned.process.kill()
        spawned.process.wait(5)
        raise AssertionError(
            f"fewclick serve was not ready after {time.monotonic() - started:.1f} s:\n" + "\n".join(spawned.lines)
        )
    return ServeProcess(spawned.process, spawned.url, spawned.lines)


@pytest.fixture
def serve_factory() -> Iterator[Any]:
    started: list[ServeProcess] = []

    def factory(*args: str) -> ServeProcess:
        proc = start_serve(*args)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGINT)
            try:
                proc.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait(5)


# --- the browser ---


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # bypass_csp: playwright's wait_for_function evaluates strings, which the UI's CSP rightly forbids.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def click_image(page: Any, x: int, y: int, button: str = "left", modifier: str | None = None) -> None:
    """Click image pixel (x, y) with real mouse events, wherever zoom and pan put it."""
    point = page.evaluate("([x, y]) => window.fewclick.labeler.imageToClient(x, y)", [x, y])
    if modifier:
        page.keyboard.down(modifier)
    page.mouse.click(point["x"], point["y"], button=button)
    if modifier:
        page.keyboard.up(modifier)


def settle(page: Any) -> None:
    """Wait until no mask request is queued or in flight, and the result is painted (next frames)."""
    page.evaluate(
        """async () => {
             await window.fewclick.labeler.settled();
             await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
           }"""
    )


def held_route(page: Any, held: list[Any], timeout_s: float = 10.0) -> Any:
    """The first route a `page.route` handler appended to `held`.

    The page has sent the request once its own state says so, but Playwright hands the route to
    Python only while Python waits on the browser: reading `held` straight after another call
    raced with that hand-over (CI failed on it once), so this waits on the browser until it came.
    """
    deadline = time.monotonic() + timeout_s
    while not held:
        if time.monotonic() > deadline:
            raise AssertionError(f"no request reached the held route within {timeout_s} s")
        page.wait_for_timeout(10)
    return held[0]


def open_labeler(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("() => window.fewclick && window.fewclick.labeler.image")


def wait_until_shown(page: Any, index: int, condition: str = "true") -> None:
    """Wait until the labeler shows image `index` with its saved objects, and `condition` holds.

    Not `state.index`: it moves at once on navigation, while the labeler keeps the previous image
    until the next one has loaded, then empties itself while it opens it; a wait on it read the
    objects panel in between (CI failed on it once)."""
    page.wait_for_function(
        f"() => window.fewclick.state.shown === {index} && !window.fewclick.state.loading"
        f" && window.fewclick.labeler.image && ({condition})"
    )
