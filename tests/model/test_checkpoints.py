"""Loading a file that is not what a command asked for: a message naming the path and the
expectation, not an unpickling traceback or a KeyError."""

from pathlib import Path

import pytest
import torch
from fewclick_model.boundary_refiner import BoundaryRefiner, export_refiner, load_refiner
from fewclick_model.checkpoints import (
    export_weights,
    load_weights,
    require_same_network,
    state_dict_mismatch,
    weights_meta,
)
from fewclick_model.network import FewClickNet
from fewclick_model.predictor import load_crop_predictor


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("files")
    paths = {name: root / name for name in ("text", "empty", "plain_dict", "checkpoint", "network", "refiner")}
    paths["text"].write_text("not a torch file\n")
    paths["empty"].write_bytes(b"")
    torch.save({"weight": torch.zeros(2)}, paths["plain_dict"])
    torch.save({"model": {}, "optimizer": {}, "step": 3}, paths["checkpoint"])
    export_weights(FewClickNet(pretrained=False, decoder_channels=16), paths["network"], 64, 16, {})
    export_refiner(BoundaryRefiner(feature_channels=8, channels=(4, 4, 4)), paths["refiner"], {})
    return paths


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("text", "torch cannot read it"),
        ("empty", "torch cannot read it"),
        ("plain_dict", "a dict without a 'format' entry"),
        ("checkpoint", "a training checkpoint"),
        ("refiner", "'fewclick-boundary-refiner/1' file"),
    ],
)
def test_network_loaders_name_the_path_what_was_found_and_what_was_expected(
    files: dict[str, Path], name: str, found: str
) -> None:
    path = files[name]
    for load in (load_weights, weights_meta, load_crop_predictor):  # --init, train-refiner and evaluate --weights
        with pytest.raises(ValueError, match="FewClick network weights") as error:
            load(path)
        assert str(path) in str(error.value) and found in str(error.value)


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("text", "torch cannot read it"),
        ("plain_dict", "a dict without a 'format' entry"),
        ("network", "'fewclick-weights/1' file"),
    ],
)
def test_the_refiner_loader_names_the_path_what_was_found_and_what_was_expected(
    files: dict[str, Path], name: str, found: str
) -> None:
    with pytest.raises(ValueError, match="a boundary refiner") as error:
        load_refiner(files[name])
    assert str(files[name]) in str(error.value) and found in str(error.value)


def test_missing_files_and_folders_are_named(files: dict[str, Path]) -> None:
    missing = files["text"].parent / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt does not exist \(expected FewClick network weights"):
        load_weights(missing)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt does not exist \(expected a boundary refiner"):
        load_refiner(missing)
    with pytest.raises(ValueError, match="is a folder"):
        load_weights(files["text"].parent)


def test_a_damaged_file_of_the_right_format_says_so(files: dict[str, Path], tmp_path: Path) -> None:
    blob = torch.load(files["network"], weights_only=False)
    del blob["decoder_channels"]
    torch.save(blob, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="damaged 'fewclick-weights/1' file"):
        load_weights(tmp_path / "damaged.pt")


def test_the_right_files_still_load(files: dict[str, Path]) -> None:
    assert load_weights(files["network"])[1]["decoder_channels"] == 16
    assert load_refiner(files["refiner"])[0].channels == (4, 4, 4)


def test_a_network_setting_that_differs_is_named() -> None:
    recorded = {"encoder": "efficientnet-lite0", "decoder_channels": 16}
    require_same_network(recorded, Path("w.pt"), "efficientnet-lite0", 16)
    require_same_network({}, Path("old.ckpt"), "efficientnet-lite0", 64)  # nothing recorded: the shapes decide
    with pytest.raises(ValueError, match=r"w\.pt was made with --decoder-channels 16, this run asks for 64"):
        require_same_network(recorded, Path("w.pt"), "efficientnet-lite0", 64)
    with pytest.raises(ValueError, match="--encoder efficientnet-lite0, this run asks for efficientnet-lite1"):
        require_same_network(recorded, Path("w.pt"), "efficientnet-lite1", 16)


def test_a_state_dict_that_does_not_fit_is_described() -> None:
    small, wide = FewClickNet(pretrained=False, decoder_channels=8), FewClickNet(pretrained=False, decoder_channels=16)
    assert state_dict_mismatch(small, small.state_dict()) is None
    assert "in this run's network" in str(state_dict_mismatch(small, wide.state_dict()))
    assert "1 entries missing" in str(state_dict_mismatch(small, dict(list(small.state_dict().items())[1:])))
