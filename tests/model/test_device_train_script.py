"""scripts/device_train.sh, the GPU stages of training a session with a lent GPU runs in one call:
here on the CPU, on a tiny synthetic set, with this interpreter standing in for the GPU machine's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from fewclick_model.checkpoints import weights_meta

from .synthetic import export_tiny_weights, write_folder

REPO = Path(__file__).resolve().parents[2]


def _tiny_weights(path: Path, holdout_share: float) -> Path:
    torch.manual_seed(0)
    export_tiny_weights(path, {"holdout_share": holdout_share})
    return path


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "device_train.sh")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_gpu_training_script_trains_both_stages_into_files_the_device_tool_returns(tmp_path: Path) -> None:
    data = tmp_path / "packed"
    write_folder(data / "coco_mval", 6, seed=1)
    write_folder(data / "davis", 4, seed=2)
    out, work = tmp_path / "out", tmp_path / "work"
    done = _run(
        {
            "PYTHON": sys.executable,
            "DATA": str(data),
            "INIT": str(_tiny_weights(tmp_path / "base.pt", 0.3)),
            "OUT": str(out),
            "WORK": str(work),
            "WHEELS": str(tmp_path / "no-wheels"),
            "STAGE1_MIN": "0.0",  # no stage 1, however zero is written
            "STAGE3_MIN": "0.05",
            "STAGE4_MIN": "0.05",
            "TRAIN_ARGS": "--size 64 --decoder-channels 16 --batch 2 --workers 0 --sim-threads 1",
        }
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "== stage 1:" not in done.stdout
    for section in ("== stage 3:", "== stage 4:", "device_train.sh: done"):
        assert section in done.stdout
    assert "step/s" not in done.stdout  # the bars stay in the logs
    assert "summary:" in (out / "stage4.log").read_text()
    # Both stages hold out what the CPU stage held out, unasked (the 5 % default would have trained
    # on the rest of its held-out instances).
    assert weights_meta(out / "stage3.pt")["holdout_share"] == 0.3
    assert weights_meta(out / "weights.pt")["holdout_share"] == 0.3
    # The device tool returns at most 8 files, at most 2 folders down: the checkpoints stay in WORK.
    assert sorted(p.name for p in out.iterdir()) == ["stage3.log", "stage3.pt", "stage4.log", "weights.pt"]
    assert (work / "stage4" / "last.ckpt").exists()


def test_with_stage1_minutes_the_script_trains_from_an_imagenet_start_file_first(tmp_path: Path) -> None:
    """Another encoder from ImageNet on the GPU: stage 1 from the start file, then stages 3 and 4."""
    from fewclick_model import imagenet_start

    data = tmp_path / "packed"
    write_folder(data / "coco_mval", 6, seed=1)
    write_folder(data / "davis", 4, seed=2)
    start = tmp_path / "start.pt"
    imagenet_start.main([str(start), "--holdout-share", "0.3", "--size", "64", "--decoder-channels", "16"])
    out = tmp_path / "out"
    done = _run(
        {
            "PYTHON": sys.executable,
            "DATA": str(data),
            "INIT": str(start),
            "OUT": str(out),
            "WORK": str(tmp_path / "work"),
            "WHEELS": str(tmp_path / "no-wheels"),
            "STAGE1_MIN": "0.05",
            "STAGE3_MIN": "0.05",
            "STAGE4_MIN": "0.05",
            "TRAIN_ARGS": "--size 64 --decoder-channels 16 --batch 2 --workers 0 --sim-threads 1",
        }
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"== stage 1: 0.05 min, 40 % boundary clicks, from {start} ==" in done.stdout
    assert f"== stage 3: 0.05 min, 50 % boundary clicks, from {out / 'stage1.pt'} ==" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "stage1.log",
        "stage1.pt",
        "stage3.log",
        "stage3.pt",
        "stage4.log",
        "weights.pt",
    ]
    # The start file's hold-out, kept through every stage.
    assert [weights_meta(out / f)["holdout_share"] for f in ("stage1.pt", "stage3.pt", "weights.pt")] == [0.3] * 3


def test_the_gpu_training_script_names_what_is_missing_before_the_machine_does_anything(tmp_path: Path) -> None:
    done = _run({"PYTHON": sys.executable, "DATA": str(tmp_path / "packed"), "INIT": str(tmp_path / "base.pt")})
    assert done.returncode == 2
    assert f"{tmp_path / 'base.pt'} is missing" in done.stderr
    # A stage's minutes that are not a number stop it too (a typo would otherwise skip or misplan a stage).
    done = _run({"PYTHON": sys.executable, "STAGE1_MIN": "3,5"})
    assert done.returncode == 2 and "stage minutes must be numbers, got '3,5'" in done.stderr
