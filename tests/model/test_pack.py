import subprocess
import sys
from pathlib import Path

import numpy as np
from fewclick_model.data import is_holdout, list_instances, load_instance
from fewclick_model.pack import pack_folder, pack_instance

from .synthetic import write_folder


def test_packed_folder_keeps_names_objects_and_a_window_around_them(tmp_path: Path) -> None:
    source = write_folder(tmp_path / "src", 3, seed=4)
    assert pack_folder(source, tmp_path / "packed", min_extent=320, quality=95) == 3
    for (image, mask), (packed_image, packed_mask) in zip(
        list_instances(source), list_instances(tmp_path / "packed"), strict=True
    ):
        original, packed = load_instance(image, mask), load_instance(packed_image, packed_mask)
        assert original.name == packed.name
        # Small objects are not resized: the mask is the original one, cut to the window.
        assert packed.mask.sum() == original.mask.sum()
        ys, xs = np.nonzero(packed.mask)
        assert packed.mask.shape[0] > ys.max() - ys.min() + 1 and packed.mask.shape[1] > xs.max() - xs.min() + 1


def test_the_instances_a_fine_tune_holds_out_can_be_left_behind(tmp_path: Path) -> None:
    source = write_folder(tmp_path / "src", 12, seed=5)
    names = [m.stem for _, m in list_instances(source)]
    share = 0.5
    kept = [n for n in names if not is_holdout(n, share)]
    assert 0 < len(kept) < len(names)  # the synthetic names fall on both sides at 50 %
    assert pack_folder(source, tmp_path / "packed", min_extent=320, quality=90, without_holdout=share) == len(kept)
    assert [m.stem for _, m in list_instances(tmp_path / "packed")] == kept


def test_large_objects_are_downscaled_to_the_minimum_extent() -> None:
    image = np.full((900, 1200, 3), 40, np.uint8)
    mask = np.zeros((900, 1200), bool)
    mask[100:800, 200:1000] = True  # 800 px wide
    packed = pack_instance(image, mask, min_extent=200, quality=90)
    assert packed is not None
    _, _, scale = packed
    assert scale == 200 / 800
    assert pack_instance(image, np.zeros_like(mask), 200, 90) is None


def _pack(*argv: Path | str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fewclick_model.pack", *map(str, argv)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def _one_line_refusal(done: subprocess.CompletedProcess[str], *names: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # Its last line, under the progress bars of the datasets that packed.
    said = done.stderr.splitlines()[-1]
    assert said.startswith("python -m fewclick_model.pack: error: ") and all(n in said for n in names), said


def test_the_command_refuses_bad_paths_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    """As the model card's Reproduce runs it: a missing source, a target that is a file, a corrupt image."""
    source = tmp_path / "datasets"
    write_folder(source / "one", 2, seed=1)
    write_folder(source / "two", 2, seed=2)
    target = tmp_path / "packed"
    datasets = ("--datasets", "one", "two")

    _one_line_refusal(_pack(tmp_path / "nowhere", target, *datasets), str(tmp_path / "nowhere"))
    assert not target.exists()

    a_file = tmp_path / "packed.txt"
    a_file.write_text("mine")
    _one_line_refusal(_pack(source, a_file, *datasets), str(a_file), "is a file")
    assert a_file.read_text() == "mine"

    # The second dataset's image is corrupt: the first one's instances must not stay behind as if packed.
    corrupt = source / "two" / "images" / "obj01.jpg"
    corrupt.write_bytes(b"not a jpeg")
    _one_line_refusal(_pack(source, target, *datasets), str(corrupt))
    assert not target.exists()
    target.mkdir()
    (target / "notes.md").write_text("kept")
    _one_line_refusal(_pack(source, target, *datasets), str(corrupt))
    assert [p.name for p in target.iterdir()] == ["notes.md"]

    write_folder(source / "two", 2, seed=2)  # repaired
    done = _pack(source, target, *datasets)
    assert done.returncode == 0, done.stderr
    assert "packed 4 instances" in done.stdout
    assert sorted(p.name for p in target.iterdir()) == ["notes.md", "one", "two"]  # no staging folder left
    assert len(list_instances(target / "two")) == 2
