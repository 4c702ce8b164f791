import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from fewclick_model import train
from fewclick_model.data import SampleGenerator, list_instances, load_instance
from fewclick_model.network import FewClickNet
from fewclick_model.predictor import load_crop_predictor

from .synthetic import write_folder


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_folder(root / "coco_mval", 6, seed=1)
    write_folder(root / "davis", 4, seed=2)
    return root


def test_a_few_steps_on_one_batch_reduce_the_loss(tiny_root: Path) -> None:
    torch.manual_seed(0)
    instances = [load_instance(i, m) for i, m in list_instances(tiny_root / "coco_mval")]
    samples = [s for s in (SampleGenerator(instances, 64, seed=3).sample() for _ in range(4))]
    model = FewClickNet(pretrained=True, decoder_channels=16).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    losses = [train.train_step(model, optimizer, samples, rng, torch.device("cpu"))[0] for _ in range(12)]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def run_train(tiny_root: Path, out: Path, steps: int, resume: bool) -> None:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
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
    assert train.run(parser.parse_args([*argv, *(["--resume"] if resume else [])])) == 0


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
