"""Figure helpers shared by the benchmark reports (`latency.py`, `load.py`).

Both draw per-request-type latency histograms on a log axis and save a titled PNG; keeping that
here means the two reports read the same way. Matplotlib is imported inside the functions, as
the reports did before: the benchmark modules are imported (CLI, tests) without plotting, and
the `Agg` backend has to be chosen before pyplot is first imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def subplots(ncols: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
    """A one-row figure on the file-only `Agg` backend (benchmarks run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=figsize, **kwargs)


def log_histograms(ax: Any, data_by_kind: Iterable[tuple[str, Sequence[float]]], bins: Any) -> None:
    """One translucent histogram per request type (empty ones skipped) on a log x axis, with a legend."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for kind, data in data_by_kind:
        if data:
            ax.hist(data, bins=bins, alpha=0.6, label=f"{kind} (n={len(data)})")
    ax.set_xscale("log")
    # Plain numbers on the log axis; minor-tick labels would overlap.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend()


def save(fig: Any, path: Path, *, title: str, dpi: int) -> None:
    """Title the figure, write it (creating the folder) and free it: reports may draw many in one process."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
