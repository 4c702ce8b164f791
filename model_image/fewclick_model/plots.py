"""Figure helpers shared by the latency reports (`fewclick benchmark model`, `latency`, `load`).

All three draw per-request-type latency histograms on a log axis with bins shared across the
figure, and save a PNG under a title wrapped to the figure's width; keeping that here means
the reports read the same way. It lives in the model library because the model image (and the
GPU latency script) ship `fewclick_model` without the `fewclick` package. Matplotlib is imported
inside the functions: the benchmark modules are imported (CLI, tests) without plotting, the
model image has no matplotlib, and the `Agg` backend has to be chosen before pyplot is first
imported.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Characters of the default 'large' suptitle font per inch of figure width (measured: ~11),
# less a margin so a wrapped line never touches the edge.
_TITLE_CHARS_PER_INCH = 9.5


def subplots(ncols: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
    """A one-row figure on the file-only `Agg` backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=figsize, **kwargs)


def log_bins(values: Iterable[float], n: int = 30, floor: float = 0.1) -> Any:
    """``n`` log-spaced bins covering every value (of every panel, so the bars line up across them).

    Values at or under ``floor`` ms land in the first bin: a log axis cannot start at 0.
    """
    data = [v for v in values if np.isfinite(v)]
    if not data:
        return n
    low = max(floor, min(data))
    high = max(max(data) * 1.05, low * 1.1)  # one value only: still a range to bin over
    return np.geomspace(low, high, n + 1)


def log_histograms(
    ax: Any, data_by_kind: Iterable[tuple[str, Sequence[float]]], bins: Any, legend: str = "best"
) -> None:
    """One translucent histogram per request type (empty ones skipped) on a log x axis, with a legend.

    ``legend``: a matplotlib location, or ``"below"`` (under the axis: never over the bars, for
    panels with many overlapping series).
    """
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for kind, data in data_by_kind:
        if data:
            ax.hist(data, bins=bins, alpha=0.6, label=f"{kind} (n={len(data)})")
    ax.set_xscale("log")
    # Plain numbers on the log axis; minor-tick labels would overlap.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if legend == "below":
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), fontsize="small", frameon=False)
    else:
        ax.legend(loc=legend)


def wrap_title(title: str, width_in: float) -> str:
    """``title`` in lines that fit a figure ``width_in`` inches wide (a long one was clipped)."""
    return textwrap.fill(title, width=max(20, int(width_in * _TITLE_CHARS_PER_INCH)))


def save(fig: Any, path: Path, *, title: str, dpi: int) -> None:
    """Title the figure, write it (creating the folder) and free it: reports may draw many in one process."""
    import matplotlib.pyplot as plt

    fig.suptitle(wrap_title(title, fig.get_figwidth()))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # "tight": a legend placed below an axis is kept in the picture.
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
