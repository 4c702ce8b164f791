from pathlib import Path

import pytest
import torch
from fewclick_model import inference_options
from fewclick_model.inference_options import cpu_has_native_bf16, resolve_dtype, resolve_mirror

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _cpuinfo(tmp_path: Path, name: str, flags: str) -> Path:
    path = tmp_path / name
    core = f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n"
    path.write_text(core + "\n" + core.replace(": 0", ": 1"))
    return path


def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path: Path) -> None:
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "zen4", "fpu sse avx2 avx512f avx512_bf16 avx512_vnni"))
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "spr", "fpu avx512f amx_bf16 amx_tile"))
    # AVX-512 without the BF16 extension would only emulate it.
    assert not cpu_has_native_bf16(_cpuinfo(tmp_path, "skylake", "fpu sse avx2 avx512f avx512bw"))
    assert not cpu_has_native_bf16(tmp_path / "missing")  # not Linux: no claim


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bfloat16_only_on_a_cpu_that_computes_it(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference_options, "cpu_has_native_bf16", lambda: native)
    assert resolve_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert resolve_dtype("auto", CUDA) == torch.float32
    assert resolve_dtype("fp32", CPU) == torch.float32
    assert resolve_dtype("bf16", CPU) == torch.bfloat16


def test_auto_mirror_is_every_answer_except_float32_on_a_cpu() -> None:
    assert resolve_mirror("auto", CPU, torch.bfloat16) == "every"
    assert resolve_mirror("auto", CUDA, torch.float32) == "every"
    assert resolve_mirror("auto", CPU, torch.float32) == "first"
    assert resolve_mirror("none", CPU, torch.bfloat16) == "none"


def test_unknown_choices_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_dtype("fp16", CPU)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mirror must be one of"):
        resolve_mirror("always", CPU, torch.float32)  # type: ignore[arg-type]
