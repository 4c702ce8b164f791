import argparse
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model import evaluate
from fewclick_model.data import fold_of, is_holdout, list_instances
from fewclick_model.encoding import CropClick
from fewclick_model.predictor import FewClickPredictor, PrefixCache, load_crop_predictor
from fewclick_model.simulator import Click, extreme_points

from .synthetic import TINY_CROP_EXTREMES, evaluate_parser, make_instance, mirrored_clicks, write_folder


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_warm_click_costs_one_pass_and_equals_a_cold_replay(tiny_weights: Path) -> None:
    p = load_crop_predictor(tiny_weights, device="cpu")
    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    feats = p.encode(crop)
    assert feats.nbytes > 0
    extremes = list(TINY_CROP_EXTREMES)
    clicks = [CropClick(30, 30, "positive"), CropClick(2, 2, "negative"), CropClick(45, 20, "boundary")]
    cache = PrefixCache()
    for k in range(len(clicks) + 1):
        warm = p.predict_sequence(feats, extremes, clicks[:k], cache)
    assert len(cache) == len(clicks) + 1
    calls = 0
    original = p.predict

    def counting(*a, **kw):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return original(*a, **kw)

    p.predict = counting  # type: ignore[method-assign]
    p.predict_sequence(feats, extremes, [*clicks, CropClick(10, 40, "negative")], cache)
    assert calls == 1
    cold = p.predict_sequence(p.encode(crop), extremes, clicks, PrefixCache())
    # A session rebuilt from its image (cold: every step in one call) answers exactly as it did warm
    # (a step per call, each fed the float16 mask the cache holds): no flicker after an expiry.
    assert np.array_equal(warm, cold)


def test_full_image_predictor_grows_the_crop_for_a_far_click(tiny_weights: Path) -> None:
    image, mask = make_instance(np.random.default_rng(4))
    fp = FewClickPredictor(load_crop_predictor(tiny_weights, device="cpu"))
    fp.set_image(image)
    pts = extreme_points(mask > 0)
    prob = fp.predict(pts)
    assert prob.shape == mask.shape and prob.dtype == np.float32
    box = fp._box
    fp.predict(pts, [Click(1, 1, "negative")])
    assert fp._box != box and fp._box.contains(np.array([[1, 1]]))[0]


def test_edge_refinement_cuts_large_boxes_finer_and_leaves_small_ones_alone(tiny_weights: Path) -> None:
    image, mask = make_instance(np.random.default_rng(4))
    crop_predictor = load_crop_predictor(tiny_weights, device="cpu")  # network side 64
    refined, plain = FewClickPredictor(crop_predictor), FewClickPredictor(crop_predictor, refine_edges=False)
    pts = extreme_points(mask > 0)
    for fp in (refined, plain):
        fp.set_image(image)
    prob = refined.predict(pts)
    assert prob.shape == mask.shape and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    assert refined._guide is not None and refined._guide.shape == (128, 128)
    assert plain.predict(pts).shape == mask.shape and plain._guide is None
    # A box no larger than the network side has no finer pixels to offer: same answer.
    tiny = np.array([[20.0, 10.0], [10.0, 20.0], [20.0, 30.0], [30.0, 20.0]])
    assert np.array_equal(refined.predict(tiny), plain.predict(tiny))
    assert refined._guide is None


def test_honor_modes_change_the_raw_output_only_where_clicks_are_broken(tiny_weights: Path) -> None:
    image, mask = make_instance(np.random.default_rng(5))
    crop_predictor = load_crop_predictor(tiny_weights, device="cpu")  # untrained: ignores clicks freely
    pts = extreme_points(mask > 0)
    clicks = [Click(int(pts[:, 0].mean()), int(pts[:, 1].mean()), "positive"), Click(int(pts[1, 0]) + 3, 2, "negative")]
    outputs = {}
    for honor in ("none", "clicks", "all"):
        fp = FewClickPredictor(crop_predictor, honor=honor)  # type: ignore[arg-type]
        fp.set_image(image)
        outputs[honor] = fp.predict(pts, clicks)
    for honor in ("clicks", "all"):
        for c in clicks:
            assert evaluate.click_respected(c, outputs[honor] > 0.5), (honor, c)
    for x, y in pts:
        assert evaluate.click_respected(Click(int(x), int(y), "boundary"), outputs["all"] > 0.5) or (
            # Farther than the crop's resolution explains: left to the network by design.
            not evaluate.click_respected(Click(int(x), int(y), "boundary"), outputs["none"] > 0.5)
        )
    # Away from every click and extreme point, all three are the network's own output.
    far = np.ones(mask.shape, bool)
    for x, y in [*[(c.x, c.y) for c in clicks], *pts]:
        far[max(0, int(y) - 40) : int(y) + 41, max(0, int(x) - 40) : int(x) + 41] = False
    assert np.array_equal(outputs["none"][far], outputs["all"][far])


def test_evaluate_cli_writes_table_csv_and_plot_with_the_baseline(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder(tmp_path / "bench", 3, seed=5, ignore_band=True)
    parser = evaluate_parser()
    args = parser.parse_args(
        [
            "--dataset",
            str(data),
            "--weights",
            str(tiny_weights),
            "--max-clicks",
            "3",
            "--baseline",
            "grabcut",
            "--baseline-clicks",
            "2",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert evaluate.run(args) == 0
    out = capsys.readouterr().out
    assert "| opencv grabcut | region |" in out and "| boundary |" in out
    rows = read_rows(tmp_path / "out" / "per_instance.csv")
    assert len(rows) == 3 * 2 * 2
    assert (tmp_path / "out" / "miou_per_click.png").stat().st_size > 1000
    # Deterministic: a second run gives the same per-instance figures.
    assert evaluate.run(args) == 0
    assert read_rows(tmp_path / "out" / "per_instance.csv") == rows


def test_evaluate_fold_measures_one_half_of_the_training_instances(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_folder(tmp_path / "train", 6, seed=6)
    names = [m.stem for _, m in list_instances(data)]
    expected = sorted(n for n in names if fold_of(n) == "A" and not is_holdout(n, 0.05))
    assert 0 < len(expected) < 6
    parser = evaluate_parser()
    argv = ["--dataset", str(data), "--weights", str(tiny_weights), "--max-clicks", "1", "--clicks", "boundary"]
    argv += ["--out", str(tmp_path / "out")]
    assert evaluate.run(parser.parse_args([*argv, "--fold", "A"])) == 0
    assert f"{len(expected)} instances" in capsys.readouterr().out
    assert sorted(row["instance"] for row in read_rows(tmp_path / "out" / "per_instance.csv")) == expected
    with pytest.raises(SystemExit, match="disjoint"):
        evaluate.run(parser.parse_args([*argv, "--fold", "A", "--holdout-only"]))


def test_grabcut_baseline_finds_a_high_contrast_object() -> None:
    from fewclick_model.grabcut_baseline import GrabCutPredictor

    image, mask = make_instance(np.random.default_rng(7))
    g = GrabCutPredictor()
    g.set_image(image)
    pred = g.predict(extreme_points(mask > 0)) > 0.5
    truth = mask > 0
    assert (pred & truth).sum() / (pred | truth).sum() > 0.7
    # Nothing outside the extreme points' box (GrabCut's rectangle), and the answer does not depend
    # on what ran before (OpenCV's global generator is reseeded per call).
    ys, xs = np.nonzero(truth)
    outside = np.ones_like(truth)
    outside[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = False
    assert not pred[outside].any()
    other, other_mask = make_instance(np.random.default_rng(8))
    g.set_image(other)
    g.predict(extreme_points(other_mask > 0))
    g.set_image(image)
    assert np.array_equal(g.predict(extreme_points(mask > 0)) > 0.5, pred)


def test_masked_iou_ignores_unknown_pixels_and_click_respect_rules() -> None:
    truth = np.zeros((10, 10), bool)
    truth[2:8, 2:8] = True
    pred = truth.copy()
    pred[0, :] = True
    ignore = np.zeros_like(truth)
    ignore[0, :] = True
    assert evaluate.masked_iou(pred, truth, ignore) == 1.0
    assert evaluate.click_respected(Click(4, 4, "positive"), truth)
    assert not evaluate.click_respected(Click(4, 4, "negative"), truth)
    assert evaluate.click_respected(Click(2, 5, "boundary"), truth)
    assert not evaluate.click_respected(Click(5, 5, "boundary"), np.zeros((10, 10), bool))


def test_the_guided_robot_answers_a_boundary_click_the_mask_did_not_follow_with_one_region_click() -> None:
    """``guided`` models the labeler who follows the UI's ring: after a boundary click the mask missed, a
    region click; after a boundary click it followed, or a region click, a boundary click again."""
    from fewclick_model.data import Instance

    truth = np.zeros((60, 60), bool)
    truth[10:50, 10:50] = True

    class IgnoresBoundaryClicks:
        """The first mask misses the object's right part; positive clicks fill rows around them, boundary
        clicks are ignored: every one stays off the edge, so the robot must switch kinds."""

        def __init__(self) -> None:
            self.kinds: list[str] = []

        def set_image(self, image: np.ndarray) -> None:
            pass

        def predict(self, extreme_points: np.ndarray, clicks: list[Click]) -> np.ndarray:
            self.kinds = [c.kind for c in clicks]
            mask = np.zeros((60, 60), np.float32)
            mask[10:50, 10:30] = 1.0
            for c in clicks:
                if c.kind == "positive":
                    mask[max(c.y - 6, 10) : c.y + 7, 10:50] = 1.0
            return mask

    predictor = IgnoresBoundaryClicks()
    inst = Instance("square", np.zeros((60, 60, 3), np.uint8), truth, None)
    result = evaluate.evaluate_instance(predictor, inst, evaluate.GUIDED, 4)
    assert predictor.kinds == ["boundary", "positive", "boundary", "positive"]
    assert result.respected == [False, True, False, True]
    assert result.ious[-1] > result.ious[0]
    assert evaluate.robot_click_kind("boundary", [Click(1, 1, "boundary")], [False]) == "boundary"
    assert evaluate.robot_click_kind(evaluate.GUIDED, [], []) == "boundary"
    assert evaluate.robot_click_kind(evaluate.GUIDED, [Click(1, 1, "boundary")], [True]) == "boundary"


def test_model_latency_benchmark_times_every_request_type_and_plots(
    tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from fewclick_model import latency

    parser = argparse.ArgumentParser()
    latency.add_arguments(parser)  # the CLI's own defaults for every flag not named here
    argv = ["--weights", str(tiny_weights), "--device", "cpu", "--threads", "1", "--no-boundary-refiner"]
    out = tmp_path / "new" / "folder"  # created before the run
    args = parser.parse_args([*argv, "--repeats", "3", "--out", str(out)])
    assert args.cuda_graphs  # served; nothing to replay on a CPU
    assert latency.run(args) == 0
    report = json.loads((out / "model_latency.json").read_text())
    requests = ["new image", "warm click", "warm boundary click", "new image, large box", "warm click, large box"]
    for request in [*requests, "warm boundary click, large box"]:
        assert 0 < report[request]["p50"] <= report[request]["p99"]
    # Enough to recompute every figure: the raw timings, how many, and of which model.
    assert report["repeats"] == 3 and report["warmup_rounds"] == latency.WARMUP_ROUNDS
    assert report["model_version"] and report["torch_threads"] == 1
    assert set(report["samples_ms"]) == set(latency.REQUESTS)
    for request, samples in report["samples_ms"].items():
        assert len(samples) == 3
        assert report[request]["p90"] == pytest.approx(float(np.percentile(samples, 90)), abs=1e-3)
    # The CPU's two targets, judged and printed last.
    cpu_targets = [t.label for t in latency.SPEED_TARGETS if t.device_type == "cpu"]
    assert [v["target"] for v in report["targets"]] == cpu_targets
    printed = capsys.readouterr().out
    for verdict in report["targets"]:
        assert latency.format_verdict(verdict) in printed
    assert (out / "model_latency.png").stat().st_size > 0


EXTREMES_64 = [
    CropClick(30, 5, "boundary"),
    CropClick(6, 34, "boundary"),
    CropClick(35, 58, "boundary"),
    CropClick(57, 28, "boundary"),
]


def test_every_answer_averages_the_mirror_so_a_mirrored_image_gets_the_mirrored_mask(tiny_weights: Path) -> None:
    p = load_crop_predictor(tiny_weights, device="cpu", mirror="every", precision="fp32")
    plain = load_crop_predictor(tiny_weights, device="cpu", mirror="none", precision="fp32")
    crop = np.random.default_rng(5).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    flipped = np.ascontiguousarray(crop[:, ::-1])
    feats, feats_of_mirror = p.encode(crop), p.encode(flipped)
    assert feats.views == 2 and feats.nbytes == 2 * plain.encode(crop).nbytes
    first = p.predict_first(feats, EXTREMES_64)
    clicks = [*EXTREMES_64, CropClick(20, 30, "positive"), CropClick(50, 10, "negative")]
    click = p.predict(feats, clicks, first)
    # Mirror-equivariant by construction, which one view alone is not.
    first_of_mirror = p.predict_first(feats_of_mirror, mirrored_clicks(EXTREMES_64))
    assert np.abs(first - first_of_mirror[:, ::-1]).max() < 1e-4
    click_of_mirror = p.predict(feats_of_mirror, mirrored_clicks(clicks), np.ascontiguousarray(first_of_mirror))
    assert np.abs(click - click_of_mirror[:, ::-1]).max() < 1e-4
    one_view = plain.predict(plain.encode(crop), EXTREMES_64)
    one_view_of_mirror = plain.predict(plain.encode(flipped), mirrored_clicks(EXTREMES_64))
    assert np.abs(one_view - one_view_of_mirror[:, ::-1]).max() > 1e-3
    # The mean of the two views, and what a session's first request returns.
    assert np.abs(first - (one_view + one_view_of_mirror[:, ::-1]) / 2).max() < 1e-4
    assert np.array_equal(p.predict_sequence(feats, EXTREMES_64, []), first)


def test_mirror_first_averages_only_the_first_mask(tiny_weights: Path) -> None:
    p = load_crop_predictor(tiny_weights, device="cpu", mirror="first", precision="fp32")
    every = load_crop_predictor(tiny_weights, device="cpu", mirror="every", precision="fp32")
    plain = load_crop_predictor(tiny_weights, device="cpu", mirror="none", precision="fp32")
    crop = np.random.default_rng(6).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    feats, plain_feats = p.encode(crop), plain.encode(crop)
    first = p.predict_first(feats, EXTREMES_64)
    assert np.abs(first - every.predict_first(every.encode(crop), EXTREMES_64)).max() < 1e-5
    assert np.abs(first - plain.predict_first(plain_feats, EXTREMES_64)).max() > 1e-3
    clicks = [*EXTREMES_64, CropClick(20, 30, "positive")]
    assert np.abs(p.predict(feats, clicks, first) - plain.predict(plain_feats, clicks, first)).max() < 1e-5


def test_the_two_views_run_side_by_side_on_cpu_threads_and_answer_as_one_batch(tiny_weights: Path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        side_by_side = load_crop_predictor(tiny_weights, device="cpu", mirror="every", precision="fp32")
        # Each view got one of the 2 threads; a second predictor splits the same budget again.
        assert torch.get_num_threads() == 1 and side_by_side._view_pool is not None
        batched = load_crop_predictor(tiny_weights, device="cpu", mirror="every", precision="fp32")
        assert torch.get_num_threads() == 1 and batched._view_pool is not None
        assert "2 views side by side, 1 thread(s) each" in side_by_side.describe()
        batched._view_pool = None  # one batch of 2, as on a GPU
        crop = np.random.default_rng(7).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        a, b = side_by_side.encode(crop), batched.encode(crop)
        assert torch.allclose(a.stride4, b.stride4, atol=1e-4) and torch.allclose(a.stride2, b.stride2, atol=1e-4)
        first = side_by_side.predict_first(a, EXTREMES_64)
        assert np.abs(first - batched.predict_first(b, EXTREMES_64)).max() < 1e-5
        clicks = [*EXTREMES_64, CropClick(40, 40, "boundary")]
        assert np.abs(side_by_side.predict(a, clicks, first) - batched.predict(b, clicks, first)).max() < 1e-5
    finally:
        torch.set_num_threads(before)


def test_bfloat16_answers_the_committed_network_like_float32() -> None:
    image, mask = make_instance(np.random.default_rng(8))
    pts = extreme_points(mask > 0)
    masks = []
    for precision in ("fp32", "bf16"):
        crop_predictor = load_crop_predictor(device="cpu", mirror="every", precision=precision)  # committed weights
        assert crop_predictor.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
        fp = FewClickPredictor(crop_predictor)
        fp.set_image(image)
        click = Click(int(pts[0][0]), int(pts[0][1]) + 8, "positive")
        masks.append([fp.predict(pts) > 0.5, fp.predict(pts, [click]) > 0.5])
    for fp32_mask, bf16_mask in zip(*masks, strict=True):
        assert fp32_mask.any() and np.mean(fp32_mask == bf16_mask) > 0.995
