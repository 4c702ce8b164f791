"""`fewclick` answers bad input with one line saying what is wrong and exit status 2, not a traceback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fewclick.cli import TRACEBACK_ENV, main


def _tiny_set(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((48, 64), np.uint8)
    mask[12:36, 16:48] = 255
    cv2.imwrite(str(root / "images" / "a.png"), np.full((48, 64, 3), 100, np.uint8))
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    return root


def _error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith(f"fewclick {argv[0]}: error: ")
    return err


def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRACEBACK_ENV, raising=False)
    out = ["--out", str(tmp_path / "out")]
    assert "needs images/ and masks/" in _error_of(["evaluate", "--dataset", str(tmp_path / "nowhere"), *out], capsys)

    dataset = _tiny_set(tmp_path / "set")
    not_weights = tmp_path / "weights.pt"
    not_weights.write_bytes(b"this is not a torch file")
    err = _error_of(["evaluate", "--dataset", str(dataset), "--weights", str(not_weights), *out], capsys)
    assert "weights.pt" in err
    missing = str(tmp_path / "missing.pt")
    assert "missing.pt" in _error_of(["evaluate", "--dataset", str(dataset), "--weights", missing, *out], capsys)

    cv2.imwrite(str(dataset / "masks" / "a.png"), np.zeros((48, 64), np.uint8))
    assert "has no object pixels" in _error_of(["evaluate", "--dataset", str(dataset), *out], capsys)
    assert not (tmp_path / "out").exists()  # refused before anything was written

    # Asked for, the traceback is there for whoever debugs it.
    monkeypatch.setenv(TRACEBACK_ENV, "1")
    with pytest.raises(ValueError, match="has no object pixels"):
        main(["evaluate", "--dataset", str(dataset), *out])


def test_a_filter_that_leaves_nothing_stops_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A subcommand's `raise SystemExit("why")` is a refusal like any other: one error line, exit 2."""
    dataset = _tiny_set(tmp_path / "set")
    argv = ["evaluate", "--dataset", str(dataset), "--fold", "A" if _fold_is_b() else "B", "--out", str(tmp_path)]
    assert "are left to evaluate" in _error_of(argv, capsys)
    assert not (tmp_path / "per_instance.csv").exists()


def _fold_is_b() -> bool:
    from fewclick_model.data import fold_of

    return fold_of("a") == "B"


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--dataset", "x", "--max-clicks", "-2"],
        ["evaluate", "--dataset", "x", "--limit", "-1"],
        ["evaluate", "--dataset", "x", "--input-size", "0"],
        ["evaluate", "--dataset", "x", "--baseline-clicks", "-1"],
        ["benchmark", "model", "--repeats", "0"],
    ],
)
def test_counts_out_of_range_are_refused_by_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_an_interrupted_evaluation_leaves_the_previous_results_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fewclick_model import evaluate

    dataset = _tiny_set(tmp_path / "set")
    cv2.imwrite(str(dataset / "images" / "b.png"), np.full((48, 64, 3), 90, np.uint8))
    cv2.imwrite(str(dataset / "masks" / "b.png"), cv2.imread(str(dataset / "masks" / "a.png"), cv2.IMREAD_GRAYSCALE))
    out = tmp_path / "out"
    argv = ["evaluate", "--dataset", str(dataset), "--max-clicks", "1", "--clicks", "region", "--out", str(out)]
    assert main(argv) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    assert set(before) == {"per_instance.csv", "summary.json", "miou_per_click.png"}

    real = evaluate.evaluate_instance
    calls = []

    def interrupted_on_the_second(*args: object, **kwargs: object) -> evaluate.InstanceResult:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_instance", interrupted_on_the_second)
    assert main([*argv[:-4], "--max-clicks", "2", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before  # no half CSV, no stray file


def test_an_out_that_is_a_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _tiny_set(tmp_path / "set")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    err = _error_of(["evaluate", "--dataset", str(dataset), "--max-clicks", "1", "--out", str(a_file)], capsys)
    assert f"--out {a_file} is a file, not a folder" in err
