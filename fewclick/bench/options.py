"""Argparse ``type=`` converters of the benchmark CLIs beyond plain counts (those are
`fewclick_model.cli_types`): a synthetic scene's side or ``WxH`` size, and an API base URL.

Refused at parse time, a bad value costs the user one line naming the option, instead of an OpenCV
error from inside the scene generator or a run that "answers" nothing for a minute.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from fewclick.bench.synthetic import MIN_SIDE
from fewclick_contract.api import MAX_IMAGE_PIXELS

# The scenes travel as JPEG, whose sides stop at 65500 px (libjpeg's JPEG_MAX_DIMENSION).
MAX_SIDE = 65_500


def scene_side(text: str) -> int:
    """A synthetic image's width or height in pixels: a whole number from `MIN_SIDE` to `MAX_SIDE`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels, got {text!r}") from None
    if value < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_SIDE} px (the scene's object needs room), got {value}")
    if value > MAX_SIDE:
        # 100000 px sides used to reach OpenCV, which failed to allocate the scene (a cv2.error traceback).
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SIDE} px (JPEG's largest side), got {value}")
    return value


def scene_pixels_problem(width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` scene is more than the API accepts, or None when it is not."""
    if width * height <= MAX_IMAGE_PIXELS:
        return None
    return (
        f"{width}x{height} is {width * height} pixels; the API decodes at most {MAX_IMAGE_PIXELS} "
        "(fewclick_contract.api.MAX_IMAGE_PIXELS)"
    )


def image_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. ``640x480``) -> (width, height), each a `scene_side`, together no more pixels than the
    API accepts."""
    width, sep, height = text.strip().lower().partition("x")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 640x480, got {text!r}")
    size = scene_side(width), scene_side(height)
    problem = scene_pixels_problem(*size)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return size


def api_url(text: str) -> str:
    """An ``http://`` or ``https://`` URL with a host (the API's base, with its stage path if any).

    ``localhost:8000`` parses as scheme "localhost" and ``ftp://x`` as another protocol: both used
    to be accepted and sent nothing anywhere useful.
    """
    split = urlsplit(text.strip())
    if split.scheme not in ("http", "https") or not split.hostname:
        raise argparse.ArgumentTypeError(f"expected http://HOST[:PORT][/STAGE] or https://..., got {text!r}")
    try:
        split.port  # noqa: B018 -- urlsplit checks the port only when it is read
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {text!r}") from None
    if split.query or split.fragment:
        raise argparse.ArgumentTypeError(f"the API base URL takes no ?query or #fragment, got {text!r}")
    return text.strip().rstrip("/")
