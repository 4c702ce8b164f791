"""`fewclick benchmark model` beyond its timings (those: test_predictor_and_evaluation.py): the speed
targets judged at the end, bad --device / --out refused before the model loads, and the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fewclick_model import latency, plots

from fewclick.cli import TRACEBACK_ENV, main


def _summary(p90: dict[str, float]) -> dict[str, dict[str, float]]:
    return {request: {"p50": 1.0, "p90": p90.get(request, 1.0), "p99": 99.0} for request in latency.REQUESTS}


def test_targets_are_judged_on_the_slowest_request_of_the_device() -> None:
    cpu = latency.check_targets(_summary({"warm boundary click, large box": 41.0, "new image": 120.0}), "cpu")
    assert [v["target"] for v in cpu] == ["warm click <= 40 ms p90 on a CPU", "new image <= 300 ms p90 on a CPU"]
    click, new = cpu
    assert not click["met"] and click["slowest_request"] == "warm boundary click, large box"
    assert click["slowest_p90_ms"] == 41.0 and click["limit_ms"] == 40.0
    assert new["met"] and new["slowest_request"] == "new image"
    assert latency.format_verdict(click) == (
        "target warm click <= 40 ms p90 on a CPU: MISSED (slowest: warm boundary click, large box, 41.0 ms p90)"
    )
    # The fusion rows are designs FewClick does not serve: no budget applies to them.
    assert all(v["met"] for v in latency.check_targets(_summary({"stem fusion click": 500.0}), "cpu"))
    (gpu,) = latency.check_targets(_summary({"warm click": 9.0}), "cuda")
    assert gpu["target"] == "click <= 10 ms p90 on a GPU" and gpu["met"]


def test_targets_are_defined_once_for_every_served_request() -> None:
    bounded = {request for target in latency.SPEED_TARGETS for request in target.requests}
    assert bounded == set(latency.NEW_IMAGES) | set(latency.WARM_CLICKS)
    assert bounded | set(latency.FUSION_CLICKS) == set(latency.REQUESTS)


def _refuse_to_load(*_: Any, **__: Any) -> None:
    raise AssertionError("the model must not load when the settings are wrong")


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    monkeypatch.setattr(latency, "load_crop_predictor", _refuse_to_load)


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_a_device_the_machine_lacks_is_refused_before_the_model_loads(
    no_model_load: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = ["--out", str(tmp_path / "out")]
    err = _one_line_error(["benchmark", "model", "--device", "cuda", *out], capsys)
    assert "error: --device cuda: no CUDA device here" in err and "use --device cpu" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusal
        main(["benchmark", "model", "--device", "bogus", *out])
    assert exit_info.value.code == 2
    assert "argument --device: expected cpu, cuda or cuda:N, got 'bogus'" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_the_model_loads(
    no_model_load: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "taken"
    a_file.write_text("")
    err = _one_line_error(["benchmark", "model", "--device", "cpu", "--out", str(a_file / "sub")], capsys)
    assert "is not a writable folder" in err


def test_the_figure_shares_one_log_axis_and_one_set_of_bins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    times = {request: list(rng.uniform(2, 60, 25)) for request in latency.REQUESTS}
    saved: dict[str, Any] = {}

    def keep(fig: Any, path: Path, *, title: str, dpi: int) -> None:
        saved.update(fig=fig, title=title)

    monkeypatch.setattr(plots, "save", keep)
    latency.plot(times, tmp_path / "model_latency.png", "a title")
    axes = saved["fig"].axes
    assert len(axes) == 3 and all(ax.get_xscale() == "log" for ax in axes)
    assert len({ax.get_xlim() for ax in axes}) == 1
    bins = plots.log_bins(v for values in times.values() for v in values)
    for ax in axes:
        lefts = {round(patch.get_x(), 6) for patch in ax.patches}
        assert lefts <= {round(b, 6) for b in bins}
        legend = ax.get_legend()
        assert len(legend.get_texts()) == 3
        # Below the axis, never over the bars.
        assert legend.get_bbox_to_anchor().y1 < ax.get_window_extent().y0
    assert axes[2].get_legend().get_texts()[0].get_text().startswith("warm click (FewClick")
