import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from fewclick_model import evaluate, train
from fewclick_model.checkpoints import DEFAULT_WEIGHTS, weights_holdout_share, weights_meta
from fewclick_model.data import is_holdout, list_instances, load_instance
from fewclick_model.predictor import load_crop_predictor

from .synthetic import evaluate_parser, steps_on_one_batch, train_parser, write_folder


def test_a_few_steps_on_one_batch_reduce_the_loss(tiny_root: Path) -> None:
    losses = [loss for loss, _, _ in steps_on_one_batch(tiny_root, 12)]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def run_train(tiny_root: Path, out: Path, steps: int, resume: bool, *extra: str) -> None:
    parser = train_parser()
    argv = [
        "--data",
        str(tiny_root),
        "--out",
        str(out),
        "--export",
        str(out / "w.pt"),
        "--size",
        "64",
        "--decoder-channels",
        "16",
        "--steps",
        str(steps),
        "--batch",
        "2",
        "--checkpoint-every",
        "1",
        "--validate-every",
        "2",
    ]
    assert train.run(parser.parse_args([*argv, *(["--resume"] if resume else []), *extra])) == 0


def test_cli_checkpoints_resumes_and_exports_loadable_weights(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_train(tiny_root, tmp_path, steps=2, resume=False)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["step"] == 2
    run_train(tiny_root, tmp_path, steps=3, resume=True)
    out = capsys.readouterr().out
    assert "resumed at step 2" in out and "summary: 1 steps" in out
    predictor = load_crop_predictor(tmp_path / "w.pt")
    assert predictor.input_size == 64 and predictor.model_version.startswith("lite0-64-")
    assert (tmp_path / "w.pt").stat().st_size < 8_000_000  # fp16: small enough to commit


def test_the_holdout_share_is_recorded_and_kept_by_resumes_evaluation_and_fine_tunes(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [m.stem for folder in ("coco_mval", "davis") for _, m in list_instances(tiny_root / folder)]
    held = [n for n in names if is_holdout(n, 0.3)]
    assert 0 < len(held) < len(names)
    run_train(tiny_root, tmp_path, 1, False, "--holdout-share", "0.3")
    assert f"training on {len(names) - len(held)} instances, {len(held)} held out (30%)" in capsys.readouterr().out
    assert weights_meta(tmp_path / "w.pt")["holdout_share"] == 0.3
    assert weights_holdout_share(tmp_path / "w.pt") == 0.3
    with pytest.raises(SystemExit, match="resume with the same share"):
        run_train(tiny_root, tmp_path, 2, True, "--holdout-share", "0.1")
    # Fine-tuning may hold out less (the split is nested) but never more than its start did; unless
    # told otherwise it holds out what its start did (the 5 % default trained on the rest of them).
    assert train.check_holdout_share(0.1, tmp_path / "w.pt") == 0.1
    assert train.check_holdout_share(None, tmp_path / "w.pt") == 0.3
    assert train.check_holdout_share(None, None) == 0.05
    fine_tune = tmp_path / "fine-tune"
    run_train(tiny_root, fine_tune, 1, False, "--init", str(tmp_path / "w.pt"))
    assert weights_meta(fine_tune / "w.pt")["holdout_share"] == 0.3
    with pytest.raises(SystemExit, match="Train from ImageNet"):
        train.check_holdout_share(0.4, tmp_path / "w.pt")
    with pytest.raises(SystemExit, match=r"between 0 and 0\.5"):
        train.check_holdout_share(0.7, None)
    # Weights from before the share was recorded held out 5 %.
    legacy = weights_meta(DEFAULT_WEIGHTS)
    assert "holdout_share" not in legacy and weights_holdout_share(DEFAULT_WEIGHTS) == 0.05
    assert all(is_holdout(n, 0.3) for n in names if is_holdout(n, 0.05))
    # `evaluate --holdout-only` measures on what these weights held out.
    parser = evaluate_parser()
    argv = ["--dataset", str(tiny_root / "coco_mval"), "--weights", str(tmp_path / "w.pt"), "--holdout-only"]
    argv += ["--max-clicks", "1", "--clicks", "region", "--out", str(tmp_path / "eval")]
    assert evaluate.run(parser.parse_args(argv)) == 0
    coco_held = [m.stem for _, m in list_instances(tiny_root / "coco_mval") if is_holdout(m.stem, 0.3)]
    assert f"{len(coco_held)} instances" in capsys.readouterr().out


def test_worker_processes_and_click_threads_train_like_the_in_process_path(tiny_root: Path, tmp_path: Path) -> None:
    parser = train_parser()
    argv = ["--data", str(tiny_root), "--out", str(tmp_path), "--export", str(tmp_path / "w.pt"), "--size", "64"]
    argv += ["--decoder-channels", "16", "--steps", "3", "--batch", "3", "--workers", "2", "--sim-threads", "3"]
    argv += ["--export-every", "2", "--validate-every", "100"]
    args = parser.parse_args(argv)
    assert train.run(args) == 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)
    assert load_crop_predictor(tmp_path / "w.pt").input_size == 64


def test_worker_batches_differ_between_workers_and_match_the_crop_contract(tiny_root: Path) -> None:
    instances = [load_instance(i, m) for i, m in list_instances(tiny_root / "davis")]
    next_batch = train.batch_source(instances, 48, 2, seed=5, workers=2)
    a, b = next_batch(), next_batch()
    assert a.crops.shape == (2, 48, 48, 3) and a.crops.dtype == np.uint8
    assert a.masks.shape == (2, 48, 48) and a.masks.dtype == bool and a.points.shape == (2, 4, 2)
    assert not np.array_equal(a.crops, b.crops)  # two workers, two seeds
    # The extreme points lie on the object's crop (within the jitter and resampling slack).
    for masks, points in ((a.masks, a.points), (b.masks, b.points)):
        for mask, pts in zip(masks, points, strict=True):
            _ys, xs = np.nonzero(mask)
            assert xs.min() - 4 <= pts[:, 0].min() and pts[:, 0].max() <= xs.max() + 4


def test_click_weights_cover_corrective_clicks_only() -> None:
    boundary = [train.CropClick(float(x), float(y), "boundary") for x, y in ((10, 0), (0, 10), (10, 20), (20, 10))]
    clicks = [[*boundary, train.CropClick(30.0, 40.0, "positive"), train.CropClick(63.0, 0.0, "negative")], boundary]
    weights = train.click_weight_map(clicks, 64).numpy()
    assert weights.shape == (2, 1, 64, 64)
    assert weights[0, 0, 40, 30] == train.CLICK_LOSS_WEIGHT and weights[0, 0, 0, 63] == train.CLICK_LOSS_WEIGHT
    assert weights[0, 0, 10, 0] == 0 and weights[1].max() == 0  # extreme points get no click weight
    radius = round(train.CLICK_LOSS_RADIUS * 64)
    assert weights[0, 0, 40, 30 + radius] > 0 and weights[0, 0, 40, 30 + radius + 1] == 0


def test_click_weights_raise_the_loss_of_a_mask_that_ignores_a_click() -> None:
    from fewclick_model.losses import segmentation_loss

    truth = torch.zeros(1, 1, 32, 32)
    truth[..., 8:24, 8:24] = 1.0
    logits = (truth * 2 - 1) * 4
    logits[..., 14:18, 14:18] = -4.0  # a hole exactly where the positive click was made
    clicks = [[train.CropClick(0, 0, "boundary")] * 4 + [train.CropClick(16, 16, "positive")]]
    click = train.click_weight_map(clicks, 32)
    assert segmentation_loss(logits, truth, click) > segmentation_loss(logits, truth) * 1.2


def test_correction_weights_mark_exactly_the_pixels_the_previous_mask_got_wrong() -> None:
    truth = np.zeros((2, 16, 16), dtype=bool)
    truth[:, 4:12, 4:12] = True
    previous = truth.astype(np.float32) * 0.9
    previous[0, 4:12, 10:12] = 0.2  # missed a strip of object
    previous[1, 0:2, 0:16] = 0.7  # took a strip of background
    weights = train.correction_weight_map(previous, truth, 3.0).numpy()
    assert weights.shape == (2, 1, 16, 16)
    assert set(np.unique(weights)) == {0.0, 3.0}
    assert np.array_equal(weights[0, 0] > 0, np.pad(np.ones((8, 2), bool), ((4, 4), (10, 4))))
    assert np.array_equal(weights[1, 0] > 0, np.pad(np.ones((2, 16), bool), ((0, 14), (0, 0))))
    # The first pass has no previous mask, and a weight of 0 turns the term off.
    assert train.correction_weight_map(None, truth, 3.0) is None
    assert train.correction_weight_map(previous, truth, 0.0) is None


def test_minutes_plan_survives_a_slow_start_and_stops_when_time_is_up() -> None:
    # 20 slow start-up steps took 60 s of a 180 s budget: the old plan ended the run at step 60.
    assert train.replan_steps(20, 0, elapsed_s=60, budget_s=180, warm_pace=None) >= 101
    # Once the start-up-free pace is known (0.2 s/step), the plan fills the time left.
    assert train.replan_steps(100, 0, elapsed_s=76, budget_s=180, warm_pace=0.2) == 100 + 520
    # Resumed runs count from where they resumed; a spent budget ends at the next step.
    assert train.replan_steps(5020, 5000, elapsed_s=60, budget_s=180, warm_pace=None) >= 5101
    assert train.replan_steps(250, 0, elapsed_s=200, budget_s=180, warm_pace=0.2) == 251


def test_pass_distribution_keeps_the_released_recipe_and_spreads_deeper_runs_evenly() -> None:
    assert train.extra_pass_distribution(3) == (train.EXTRA_PASSES, train.EXTRA_PASS_PROBS)
    counts, probs = train.extra_pass_distribution(6)
    assert counts == (0, 1, 2, 3, 4, 5, 6)
    assert probs[0] == train.EXTRA_PASS_PROBS[0]
    assert np.allclose(probs[1:], (1 - train.EXTRA_PASS_PROBS[0]) / 6)
    assert sum(probs) == pytest.approx(1.0)
    assert train.extra_pass_distribution(0) == ((0,), (1.0,))
    with pytest.raises(ValueError, match="max_passes"):
        train.extra_pass_distribution(-1)


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--steps", "0", "at least 1"),
        ("--batch", "0", "at least 1"),
        ("--checkpoint-every", "0", "at least 1"),
        ("--validate-every", "0", "at least 1"),
        ("--max-passes", "-1", "0 or more"),
        ("--boundary-share", "2", "between 0 and 1"),
    ],
)
def test_numeric_options_out_of_range_are_refused_by_argparse(
    option: str, value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        train_parser().parse_args([option, value])
    assert f"argument {option}: must be {reason}" in capsys.readouterr().err


def test_a_run_exports_into_its_own_folder_unless_told_and_never_into_the_package(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data", str(tiny_root), "--out", str(tmp_path), "--size", "64", "--decoder-channels", "16"]
    argv += ["--steps", "1", "--batch", "2", "--resume"]
    args = train_parser().parse_args(argv)
    assert train.export_path(args) == tmp_path / "weights.pt" != DEFAULT_WEIGHTS  # checked before anything runs
    assert "OUT/weights.pt" in train_parser().format_help()
    served = DEFAULT_WEIGHTS.read_bytes() if DEFAULT_WEIGHTS.exists() else None
    assert train.run(args) == 0
    out = capsys.readouterr().out
    # --resume with nothing to resume says so and starts afresh.
    assert f"--resume: no checkpoint at {tmp_path / 'last.ckpt'}, starting from step 0" in out
    assert f"weights exported to {tmp_path / 'weights.pt'}" in out
    assert weights_meta(tmp_path / "weights.pt")["trained_steps"] == 1
    assert (DEFAULT_WEIGHTS.read_bytes() if DEFAULT_WEIGHTS.exists() else None) == served


def test_a_resume_with_nothing_left_to_train_exports_nothing_and_exits_cleanly(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_train(tiny_root, tmp_path, 2, False)
    exported = (tmp_path / "w.pt").read_bytes()
    capsys.readouterr()
    for steps in (2, 1):  # at --steps, and past a lowered one (the export would record the wrong count)
        run_train(tiny_root, tmp_path, steps, True)
        assert f"already trained to step 2 (--steps {steps}): nothing to do" in capsys.readouterr().out
        assert (tmp_path / "w.pt").read_bytes() == exported
    # Weights that were never exported (an export that failed) are exported, with the steps trained.
    (tmp_path / "w.pt").unlink()
    run_train(tiny_root, tmp_path, 1, True)
    assert weights_meta(tmp_path / "w.pt")["trained_steps"] == 2
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["step"] == 2
    # With --minutes the length is re-planned from the pace, so --steps is no cap: it trains on.
    run_train(tiny_root, tmp_path, 1, True, "--minutes", "0.02")
    assert "nothing to do" not in capsys.readouterr().out
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["step"] > 2


def test_resume_and_init_name_the_network_setting_that_differs(tiny_root: Path, tmp_path: Path) -> None:
    run_train(tiny_root, tmp_path, 1, False)  # --decoder-channels 16
    ckpt = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ckpt["decoder_channels"] == 16 and ckpt["encoder"] == "efficientnet-lite0"
    with pytest.raises(ValueError, match=r"last\.ckpt was made with --decoder-channels 16, this run asks for 8"):
        run_train(tiny_root, tmp_path, 2, True, "--decoder-channels", "8")
    with pytest.raises(ValueError, match=r"w\.pt was made with --decoder-channels 16, this run asks for 8"):
        run_train(tiny_root, tmp_path / "ft", 1, False, "--init", str(tmp_path / "w.pt"), "--decoder-channels", "8")
    # A checkpoint from before the settings were recorded: the shapes tell.
    legacy = {k: v for k, v in ckpt.items() if k not in ("encoder", "decoder_channels")}
    torch.save(legacy, tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=r"does not fit this run's network .*--decoder-channels 8"):
        run_train(tiny_root, tmp_path, 2, True, "--decoder-channels", "8")


def test_init_from_a_file_that_is_not_network_weights_is_refused_with_its_path(tiny_root: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt is not FewClick network weights"):
        run_train(tiny_root, tmp_path / "run", 1, False, "--init", str(tmp_path / "notes.txt"))
    torch.save({"model": {}, "optimizer": {}, "step": 1}, tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=r"last\.ckpt is a training checkpoint"):
        run_train(tiny_root, tmp_path / "run", 1, False, "--init", str(tmp_path / "last.ckpt"))
    with pytest.raises(FileNotFoundError, match=r"missing\.pt does not exist"):
        run_train(tiny_root, tmp_path / "run", 1, False, "--init", str(tmp_path / "missing.pt"))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_data_with_nothing_to_sample_is_refused_before_the_network_is_built(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was built for a run that cannot sample a batch")

    monkeypatch.setattr(train, "FewClickNet", no_network)
    folder = tmp_path / "coco_mval"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(3):
        mask = np.zeros((40, 40), np.uint8)
        mask[10 + i : 13 + i, 10:13] = 255  # 9 px
        cv2.imwrite(str(folder / "images" / f"dot{i}.png"), np.full((40, 40, 3), 80, np.uint8))
        cv2.imwrite(str(folder / "masks" / f"dot{i}.png"), mask)
    # Every mask too small (this crashed with numpy's "high <= 0" at the first batch).
    with pytest.raises(ValueError, match="16 pixels"):
        run_train(tmp_path, tmp_path / "run", 1, False, "--datasets", "coco_mval", "--holdout-share", "0")
    # Every instance held out.
    held = tmp_path / "held" / "coco_mval"
    write_folder(held, 1, seed=1)
    name = next(f"held{i}" for i in range(100) if is_holdout(f"held{i}", 0.5))
    (held / "images" / "obj00.jpg").rename(held / "images" / f"{name}.jpg")
    (held / "masks" / "obj00.png").rename(held / "masks" / f"{name}.png")
    with pytest.raises(SystemExit, match="all 1 instances are held out"):
        run_train(held.parent, tmp_path / "run", 1, False, "--datasets", "coco_mval", "--holdout-share", "0.5")


def test_limit_counts_the_datasets_together_and_both_commands_say_so(tiny_root: Path) -> None:
    from fewclick_model import train_refiner

    names = [i.name for i in train.load_training_instances(tiny_root, ["coco_mval", "davis"], limit=7)]
    assert len(names) == 7  # 6 in coco_mval, so 1 from davis: not 7 of each
    refiner_parser = argparse.ArgumentParser()
    train_refiner.add_arguments(refiner_parser)
    for parser in (train_parser(), refiner_parser):
        (limit,) = [a for a in parser._actions if a.dest == "limit"]
        assert limit.help == train.LIMIT_HELP and "taken together" in limit.help


# --- a run never overwrites another's work, and refuses a bad path before it trains ---------------


def _train_cli(tiny_root: Path, out: Path, *extra: str) -> list[str]:
    network = ["--size", "64", "--decoder-channels", "16", "--steps", "1", "--batch", "2"]
    return ["train", "--data", str(tiny_root), "--out", str(out), *network, *extra]


def _refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from fewclick.cli import main

    capsys.readouterr()  # an earlier run's progress bars
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\nfewclick train: error: " in f"\n{err}".replace("\r", "\n"), err
    return err


def test_a_second_run_into_the_same_out_needs_resume(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_train(tiny_root, tmp_path, 2, False)
    before = (tmp_path / "last.ckpt").read_bytes()
    err = _refusal(_train_cli(tiny_root, tmp_path), capsys)
    assert f"--out {tmp_path} holds a training run (last.ckpt): pass --resume to continue it" in err
    assert (tmp_path / "last.ckpt").read_bytes() == before  # step 2 is still there


def test_bad_out_and_export_paths_are_refused_before_training(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert f"--out {a_file} is a file, not a folder" in _refusal(_train_cli(tiny_root, a_file), capsys)
    out = tmp_path / "run"
    err = _refusal(_train_cli(tiny_root, out, "--export", str(tmp_path)), capsys)
    assert f"--export {tmp_path} is a folder; name a file" in err
    err = _refusal(_train_cli(tiny_root, out, "--export", str(a_file / "w.pt")), capsys)
    assert f"--export {a_file / 'w.pt'}: its folder is not writable" in err
    err = _refusal(_train_cli(tiny_root, out, "--export", str(out / "last.ckpt"), "--resume"), capsys)
    assert "is the run's own checkpoint" in err
    assert not (out / "last.ckpt").exists() and not list(tmp_path.glob("*.tmp"))  # nothing trained


def test_a_run_refused_for_its_data_leaves_no_out_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert "needs images/ and masks/" in _refusal(_train_cli(tmp_path / "nowhere", out), capsys)
    assert not out.exists()


def test_a_size_the_network_cannot_halve_is_refused_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.cli_support import argparse_refusal

    assert "must be a multiple of 32, got 33" in argparse_refusal(["train", "--size", "33"], capsys)
    assert "must be a multiple of 32" in argparse_refusal(["evaluate", "--dataset", "x", "--input-size", "48"], capsys)
    assert "must be 0 or more" in argparse_refusal(["train", "--seed", "-1"], capsys)
    assert "must be between 0 and 1" in argparse_refusal(["train", "--holdout-share", "1.5"], capsys)


def test_a_resume_keeps_the_size_and_logs_each_step_once(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_train(tiny_root, tmp_path, 2, False)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["size"] == 64
    err = _refusal(_train_cli(tiny_root, tmp_path, "--resume", "--size", "96"), capsys)
    assert "was trained with --size 64, this run asks for 96: pass --size 64" in err
    # Its weights are served with the repeat cap they were trained with, so a resume keeps that too.
    err = _refusal(_train_cli(tiny_root, tmp_path, "--resume", "--repeat-share", "0.5"), capsys)
    assert "was trained without --repeat-share: resume it the same way" in err
    err = _refusal(_train_cli(tiny_root, tmp_path, "--resume", "--newest-click"), capsys)
    assert "was trained without --newest-click: resume it the same way" in err
    # A run stopped between checkpoints had logged steps its resume takes again.
    log = tmp_path / "log.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps({"step": 3, "loss": 9.0}) + "\n")
    run_train(tiny_root, tmp_path, 4, True)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert json.loads(log.read_text().splitlines()[2])["loss"] != 9.0


def test_a_mask_without_an_object_is_named_when_the_data_loads(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root / "coco_mval", 3, seed=1)
    (empty,) = [m for _, m in list_instances(root / "coco_mval")][1:2]
    cv2.imwrite(str(empty), np.zeros_like(cv2.imread(str(empty), cv2.IMREAD_GRAYSCALE)))
    with pytest.raises(ValueError, match=f"{empty} has no object pixels"):
        train.load_training_instances(root, ["coco_mval"])
