import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model import train_refiner
from fewclick_model.boundary_refiner import (
    DEFAULT_REFINER_WEIGHTS,
    FEATURE_WINDOW,
    WINDOW,
    BoundaryRefiner,
    load_refiner,
)
from fewclick_model.data import fold_of, is_holdout, list_instances, load_instance
from fewclick_model.predictor import load_crop_predictor

from .synthetic import export_tiny_weights, write_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    write_folder(root / "coco_mval", 5, seed=1)
    write_folder(root / "davis", 3, seed=2)
    torch.manual_seed(0)
    weights = root / "tiny.pt"
    export_tiny_weights(weights)
    return root, weights


def test_collected_windows_hold_the_served_state_around_each_boundary_click(tiny: tuple[Path, Path]) -> None:
    root, weights = tiny
    predictor = load_crop_predictor(weights, "cpu", boundary_refiner=False)
    instances = [load_instance(i, m) for i, m in list_instances(root / "davis")]
    windows = train_refiner.collect_windows(predictor, instances, clicks=2)
    n = len(windows)
    assert 1 <= n <= 2 * len(instances)
    assert windows.inputs.shape == (n, 6, WINDOW, WINDOW) and windows.inputs.dtype == np.float16
    assert windows.features.shape == (n, 8, FEATURE_WINDOW, FEATURE_WINDOW)
    middle = WINDOW // 2
    # Each window is centred on its click (a crop pixel, rounded): the click's mark peaks there.
    marks = windows.inputs[:, 4].reshape(n, -1).astype(np.float32)
    assert np.all(marks.argmax(axis=1) == middle * WINDOW + middle) and np.all(marks.max(axis=1) > 0.95)
    # The robot clicks on the true edge: the truth changes within a few pixels of the middle.
    near = windows.truth[:, middle - 3 : middle + 4, middle - 3 : middle + 4].astype(int)
    assert np.all(near.max(axis=(1, 2)) - near.min(axis=(1, 2)) > 64)
    # A 64 px crop fills only the middle of a 97 px window.
    assert windows.valid[:, middle, middle].all() and not windows.valid[:, 0, 0].any()


def test_a_few_steps_on_one_batch_reduce_the_refiner_loss(tiny: tuple[Path, Path]) -> None:
    root, weights = tiny
    predictor = load_crop_predictor(weights, "cpu", boundary_refiner=False)
    instances = [load_instance(i, m) for i, m in list_instances(root / "coco_mval")]
    windows = train_refiner.collect_windows(predictor, instances, clicks=2)
    torch.manual_seed(0)
    refiner = BoundaryRefiner(feature_channels=8).train()
    optimizer = torch.optim.AdamW(refiner.parameters(), lr=3e-3)
    batch = windows.batch(np.arange(min(len(windows), 6)))
    losses = []
    for _ in range(15):
        loss = train_refiner.refiner_loss(refiner, *batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    train_refiner.add_arguments(parser)
    return parser


def _argv(root: Path, weights: Path, out: Path, steps: int, export: bool = True) -> list[str]:
    argv = ["--data", str(root), "--weights", str(weights), "--clicks", "2", "--steps", str(steps)]
    argv += ["--batch", "4", "--out", str(out), "--checkpoint-every", "1"]
    return [*argv, "--export", str(out / "refiner.pt")] if export else argv


def _run(root: Path, weights: Path, out: Path, steps: int, *extra: str) -> int:
    return train_refiner.run(_parser().parse_args([*_argv(root, weights, out, steps), *extra]))


def test_cli_collects_once_resumes_and_exports_a_refiner_bound_to_its_network(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, weights = tiny
    threads = torch.get_num_threads()
    try:
        assert _run(root, weights, tmp_path, steps=2) == 0
        first = capsys.readouterr().out
        assert "training windows" in first and "summary: 2 steps" in first and "no held-out instances" in first
        assert _run(root, weights, tmp_path, steps=3) == 0
        second = capsys.readouterr().out
        assert "reusing" in second and "resumed at step 2" in second and "summary: 1 steps" in second
    finally:
        torch.set_num_threads(threads)
    served = load_crop_predictor(weights, "cpu", boundary_refiner=tmp_path / "refiner.pt")
    assert served.refiner is not None and "+edge-" in served.model_version
    assert (tmp_path / "refiner.pt").stat().st_size < 1_000_000  # fp16: small enough to commit


def test_labeler_passes_load_into_one_set_in_their_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def window_set(n: int) -> train_refiner.WindowSet:
        return train_refiner.WindowSet(
            rng.standard_normal((n, 6, 5, 5)).astype(np.float16),
            rng.standard_normal((n, 3, 3, 3)).astype(np.float16),
            rng.integers(0, 256, (n, 5, 5), dtype=np.uint8),
            rng.integers(0, 2, (n, 5, 5), dtype=np.uint8),
        )

    parts = [window_set(3), window_set(1), window_set(4)]
    paths = []
    for k, part in enumerate(parts):
        paths.append(tmp_path / f"pass{k}.npz")
        part.save(paths[-1])
    loaded = train_refiner.WindowSet.load_all(paths)
    assert len(loaded) == 8
    for field in train_refiner.FIELDS:
        expected = np.concatenate([getattr(p, field) for p in parts])
        got = getattr(loaded, field)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), field


def test_folds_halve_the_instances_independently_of_the_holdout() -> None:
    names = [f"instance{i:05d}" for i in range(4000)]
    folds = [fold_of(n) for n in names]
    assert set(folds) == {"A", "B"} and folds == [fold_of(n) for n in names]  # stable
    assert abs(folds.count("A") / len(names) - 0.5) < 0.03
    # A different hash byte than the hold-out's: the held-out names fall in both folds alike.
    held = [f for n, f in zip(names, folds, strict=True) if is_holdout(n, 0.05)]
    assert len(held) > 150 and abs(held.count("A") / len(held) - 0.5) < 0.1


def test_cli_trains_on_one_fold_at_the_asked_width(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, weights = tiny
    names = [m.stem for folder in ("coco_mval", "davis") for _, m in list_instances(root / folder)]
    fold_b = [n for n in names if fold_of(n) == "B" and not is_holdout(n, 0.05)]
    assert 0 < len(fold_b) < len(names)
    threads = torch.get_num_threads()
    try:
        assert _run(root, weights, tmp_path, 2, "--fold", "B", "--channels", "8", "12", "16") == 0
        first = capsys.readouterr().out
        # The same windows at another width: collected once, trained afresh (no resume across widths).
        assert _run(root, weights, tmp_path, 2, "--fold", "B", "--channels", "8", "8", "8") == 0
        second = capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
    assert f"fold B: {len(fold_b)} training instances" in first and "summary: 2 steps" in first
    assert "reusing" in second and "resumed" not in second and "summary: 2 steps" in second
    with pytest.raises(SystemExit) as refused:  # argparse: "must be at least 1, got 0"
        _run(root, weights, tmp_path, 2, "--channels", "8", "0", "8")
    assert refused.value.code == 2
    refiner, meta = load_refiner(tmp_path / "refiner.pt")
    assert refiner.channels == (8, 8, 8) and meta["channels"] == [8, 8, 8] and meta["fold"] == "B"


@pytest.mark.parametrize(("option", "value"), [("--batch", "0"), ("--steps", "0"), ("--clicks", "0")])
def test_numeric_options_out_of_range_are_refused_by_argparse(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args([option, value])
    assert f"argument {option}: must be at least 1" in capsys.readouterr().err


def test_a_run_exports_into_its_own_folder_and_a_finished_one_exports_nothing(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, weights = tiny
    args = _parser().parse_args([*_argv(root, weights, tmp_path, 2, export=False), "--random-passes", "0"])
    assert train_refiner.export_path(args) == tmp_path / "refiner.pt" != DEFAULT_REFINER_WEIGHTS  # before any run
    assert "OUT/refiner.pt" in _parser().format_help()
    served = DEFAULT_REFINER_WEIGHTS.read_bytes() if DEFAULT_REFINER_WEIGHTS.exists() else None
    threads = torch.get_num_threads()
    try:
        assert train_refiner.run(args) == 0
        assert f"refiner exported to {tmp_path / 'refiner.pt'}" in capsys.readouterr().out
        assert load_refiner(tmp_path / "refiner.pt")[1]["trained_steps"] == 2
        (tmp_path / "refiner.pt").unlink()
        for steps in (2, 1):  # at --steps, and past a lowered one (the export would record the wrong count)
            args.steps = steps
            assert train_refiner.run(args) == 0
            out = capsys.readouterr().out
            assert f"already trained to step 2 (--steps {steps}): nothing to do" in out and "reusing" not in out
            assert not (tmp_path / "refiner.pt").exists()
    finally:
        torch.set_num_threads(threads)
    assert (DEFAULT_REFINER_WEIGHTS.read_bytes() if DEFAULT_REFINER_WEIGHTS.exists() else None) == served


def test_the_cache_tells_datasets_apart_even_with_the_same_names(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, weights = tiny
    other = tmp_path / "other"
    write_folder(other / "coco_mval", 5, seed=11)  # obj00..obj04 again, other pixels
    write_folder(other / "davis", 3, seed=12)
    mine = [load_instance(i, m) for f in ("coco_mval", "davis") for i, m in list_instances(root / f)]
    theirs = [load_instance(i, m) for f in ("coco_mval", "davis") for i, m in list_instances(other / f)]
    assert [i.name for i in mine] == [i.name for i in theirs]
    assert train_refiner.instances_id(mine) == train_refiner.instances_id(mine[::-1])  # stable, any order
    assert train_refiner.instances_id(mine) != train_refiner.instances_id(theirs)
    assert train_refiner.instances_id(mine) != train_refiner.instances_id(mine[:-1])  # --limit, --fold
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        assert _run(root, weights, out, 2, "--random-passes", "0") == 0
        capsys.readouterr()
        assert _run(other, weights, out, 3, "--random-passes", "0") == 0
        second = capsys.readouterr().out
        assert _run(other, weights, out, 4, "--random-passes", "0") == 0
        third = capsys.readouterr().out
        assert _run(root, weights, out, 3, "--random-passes", "0") == 0
        fourth = capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
    # Other data: its own windows and a fresh start, not the first run's windows and checkpoint.
    assert "reusing" not in second and "resumed" not in second
    assert "summary: 3 steps" in second
    # The same data again: its windows and checkpoint are reused.
    assert "reusing" in third and "resumed at step 3" in third
    # The first run's checkpoint outlived the other run in the same folder: it resumes too.
    assert "reusing" in fourth and "resumed at step 2" in fourth
    assert len(list(out.glob("refiner-last-*.ckpt"))) == 2


def test_a_damaged_window_cache_is_collected_again_and_a_bad_export_refused_first(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, weights = tiny
    out = tmp_path / "run"
    threads = torch.get_num_threads()
    try:
        assert _run(root, weights, out, 1, "--random-passes", "0") == 0
        (cache,) = out.glob("windows-train-*.npz")
        cache.write_bytes(cache.read_bytes()[:100])  # a copy cut short
        capsys.readouterr()
        assert _run(root, weights, out, 2, "--random-passes", "0") == 0
        again = capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
    assert f"{cache} is unreadable (BadZipFile" in again and "collecting its windows again" in again
    assert "summary: 1 steps" in again and cache.stat().st_size > 100
    with pytest.raises(IsADirectoryError, match=r"--export .* is a folder; name a file"):
        _run(root, weights, out, 3, "--export", str(tmp_path))


def test_held_out_instances_without_windows_skip_the_scoring(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = tiny
    weights = tmp_path / "half.pt"  # holds out half the instances, so the tiny set has some
    export_tiny_weights(weights, {"holdout_share": 0.5})
    pairs = [pair for f in ("coco_mval", "davis") for pair in list_instances(root / f)]
    held = [load_instance(*pair).mask for pair in pairs if is_holdout(pair[1].stem, 0.5)]
    assert 0 < len(held) < len(pairs)
    robot = train_refiner.boundary_click

    def already_right_on_held_out(truth: np.ndarray, pred: np.ndarray, ignore: np.ndarray | None) -> object:
        # The network's edges match the held-out masks: the robot finds nothing to click there.
        if any(truth.shape == mask.shape and np.array_equal(truth, mask) for mask in held):
            return None
        return robot(truth, pred, ignore)

    monkeypatch.setattr(train_refiner, "boundary_click", already_right_on_held_out)
    threads = torch.get_num_threads()
    try:
        assert _run(root, weights, tmp_path, 1, "--random-passes", "0") == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert f"the {len(held)} held-out instances gave no boundary clicks: held-out scoring skipped" in out
    assert "no held-out windows (scoring skipped)" in out and (tmp_path / "refiner.pt").exists()


def test_a_fold_with_no_training_instances_is_refused_up_front(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, weights = tiny
    first = list_instances(root / "coco_mval")[0][1].stem
    assert not is_holdout(first, 0.05)
    empty_fold = "A" if fold_of(first) == "B" else "B"
    with pytest.raises(SystemExit, match=f"nothing to train on: .* none of the rest is in fold {empty_fold}"):
        _run(root, weights, tmp_path / "run", 1, "--limit", "1", "--fold", empty_fold)
    assert not (tmp_path / "run").exists()  # refused before anything was collected or written
