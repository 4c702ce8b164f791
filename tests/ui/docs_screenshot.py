"""Make docs/ui-screenshot.png: the UI refining a mask on a sample photo, with the real local stack.

    /work/venv/bin/python -m tests.ui.docs_screenshot [--weights PATH] [--out docs/ui-screenshot.png]

Starts `fewclick serve` on matplotlib's sample photos (the default image set), labels Grace Hopper's cap
with 4 extreme points plus one positive and one negative click, and screenshots the page in Debian's
chromium. Run it again after the model is retrained so the README shows the current model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .conftest import CHROMIUM, CHROMIUM_ARGS, REPO_ROOT, click_image, settle, start_serve

# Grace Hopper's cap in grace_hopper.jpg (512 x 600): left-, right-, top-, bottom-most pixels.
CAP_EXTREME_POINTS = [(151, 118), (372, 128), (262, 24), (190, 164)]
CAP_POSITIVE = (262, 95)  # the badge: part of the cap
CAP_NEGATIVE = (262, 175)  # the forehead under the brim: not the cap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=None, help="model weights (default: the committed ones)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "ui-screenshot.png")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is absent: apt-get install -y chromium", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    if args.weights:
        os.environ["FEWCLICK_WEIGHTS"] = str(args.weights.resolve())  # read by the model server
    with tempfile.TemporaryDirectory() as labels:
        serve = start_serve("--out", labels)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1180, "height": 760}, bypass_csp=True).new_page()
                page.goto(serve.url)
                page.wait_for_function("() => window.fewclick && window.fewclick.labeler.image")
                names = page.evaluate("() => window.fewclick.state.images.map(i => i.name)")
                page.evaluate("(i) => window.fewclick.go(i)", names.index("grace_hopper.jpg"))
                page.wait_for_function("() => window.fewclick.labeler.image.width === 512")
                for x, y in CAP_EXTREME_POINTS:
                    click_image(page, x, y)
                settle(page)
                click_image(page, *CAP_POSITIVE)
                settle(page)
                click_image(page, *CAP_NEGATIVE, button="right")
                settle(page)
                page.mouse.move(5, 5)  # no hover highlight in the picture
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            serve.interrupt()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
