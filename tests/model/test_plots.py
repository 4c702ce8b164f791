"""`fewclick_model.plots`, the figure helpers of the three latency reports: bins shared across panels,
a log axis, legends that can sit below the bars, a title wrapped to the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fewclick_model import plots


def test_log_bins_cover_every_value_on_a_log_scale() -> None:
    bins = plots.log_bins([3.0, 40.0, 0.0, float("nan"), 250.0], n=20)
    assert len(bins) == 21 and bins[0] == pytest.approx(0.1) and bins[-1] >= 250.0
    ratios = bins[1:] / bins[:-1]
    assert np.allclose(ratios, ratios[0])  # geometric: equal widths on a log axis


def test_log_bins_of_one_value_or_none() -> None:
    bins = plots.log_bins([5.0, 5.0])
    assert bins[0] == 5.0 and bins[-1] > 5.0
    assert plots.log_bins([], n=12) == 12


def test_a_long_title_is_wrapped_to_the_figure_width() -> None:
    title = "FewClick model time: " + "cpu (2 views side by side, 1 thread(s) each), bfloat16, " * 3
    wrapped = plots.wrap_title(title, 7.0)
    assert wrapped.replace("\n", " ") == title.strip()
    assert len(wrapped.splitlines()) > 1 and max(map(len, wrapped.splitlines())) <= 7.0 * 9.5


def test_saved_figure_keeps_a_legend_placed_below(tmp_path: Path) -> None:
    fig, axes = plots.subplots(2, figsize=(6, 3), sharex=True)
    bins = plots.log_bins([1.0, 10.0, 100.0])
    plots.log_histograms(axes[0], [("a", [1.0, 2.0]), ("empty", [])], bins, legend="below")
    plots.log_histograms(axes[1], [("b", [50.0, 100.0])], bins)
    assert axes[0].get_xscale() == "log"
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["a (n=2)"]
    path = tmp_path / "sub" / "figure.png"
    plots.save(fig, path, title="a title " * 20, dpi=50)
    assert path.stat().st_size > 1000
