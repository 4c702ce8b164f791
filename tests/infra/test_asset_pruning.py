"""`asset_pruning`: what leaves the Lambda asset, on fake trees (synthetic ELF files, a stand-in strip)."""

from __future__ import annotations

import inspect
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.constructs import asset_pruning
from stacks.constructs.asset_pruning import (
    AssetTooLarge,
    check_size,
    elf_needed,
    load_segments_aligned,
    prune_asset,
    strip_debug_sections,
)
from stacks.constructs.local_bundling import LocalPipBundling
from stacks.constructs.proxy_function import PRUNE_SCRIPT_ENV

SO = ".cpython-312-x86_64-linux-gnu.so"


def fake_elf(needed: list[str], *, vaddr: int = 0, padding: int = 0) -> bytes:
    """A minimal x86_64 shared object: one PT_LOAD, a .dynstr and a .dynamic with DT_NEEDED entries.

    ``vaddr`` != 0 mod 4096 makes the segment misaligned (what glibc refuses); ``padding`` stands
    for debug sections (bytes a strip removes)."""
    strtab = b"\0"
    offsets = []
    for name in needed:
        offsets.append(len(strtab))
        strtab += name.encode() + b"\0"
    strtab += b"\0" * (-len(strtab) % 8)
    dynamic = b"".join(struct.pack("<qQ", 1, off) for off in offsets) + struct.pack("<qQ", 0, 0)
    strtab_off = 64 + 56
    dynamic_off = strtab_off + len(strtab)
    shoff = dynamic_off + len(dynamic) + padding
    size = shoff + 3 * 64
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, shoff, 0, 64, 56, 1, 64, 3, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, vaddr, vaddr, size, size, 0x1000)
    sections = bytes(64)
    sections += struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0)
    sections += struct.pack("<IIQQQQIIQQ", 0, 6, 0, 0, dynamic_off, len(dynamic), 1, 0, 8, 16)
    return header + program + strtab + dynamic + bytes(padding) + sections


def _write(path: Path, data: bytes | str = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_fake_elf_parses_like_readelf_would(tmp_path: Path) -> None:
    lib = _write(tmp_path / "a.so", fake_elf(["libx.so.1", "libc.so.6"]))
    assert elf_needed(lib) == ["libx.so.1", "libc.so.6"] and load_segments_aligned(lib)
    assert not load_segments_aligned(_write(tmp_path / "b.so", fake_elf([], vaddr=0x100)))
    assert elf_needed(_write(tmp_path / "c.so", b"not an ELF file")) is None
    assert elf_needed(_write(tmp_path / "d.so", b"\x7fELF\x02\x01" + bytes(10))) is None  # truncated


def _site_packages(root: Path) -> None:
    """A pip --target folder in miniature, plus the handler's own code."""
    for path, text in {
        "fewclick_proxy/handler.py": "",
        "fewclick_contract/crop.py": "",
        "boto3/__init__.py": "",
        "botocore/data/s3.json": "{}",
        "botocore-1.44.8.dist-info/RECORD": "",
        "s3transfer/__init__.py": "",
        "bin/normalizer": "#!/bin/sh",
        "numpy/__init__.py": "",
        "numpy/__init__.pyi": "",
        "numpy/testing/__init__.py": "",  # a module, not a tests folder: kept
        "numpy/_core/tests/test_multiarray.py": "",
        "numpy/_core/include/numpy/ndarraytypes.h": "",
        "numpy/_core/lib/libnpymath.a": "",
        "numpy/random/__init__.pxd": "",
        "numpy-2.4.6.dist-info/RECORD": "",
        "pydantic/__pycache__/main.cpython-311.pyc": "",
        "PIL/__init__.py": "",
        "PIL/WebPImagePlugin.py": "",
    }.items():
        _write(root / path, text)
    # Pillow as auditwheel ships it: extension modules linking grafted libraries in pillow.libs/.
    _write(root / f"PIL/_imaging{SO}", fake_elf(["libjpeg-1.so.62", "libxcb-1.so.1", "libshared-1.so", "libc.so.6"]))
    _write(root / f"PIL/_webp{SO}", fake_elf(["libwebp-1.so.7", "libshared-1.so"]))
    _write(root / f"PIL/_imagingft{SO}", fake_elf(["libfreetype-1.so.6"]))
    _write(root / f"PIL/_imagingmath{SO}", fake_elf(["libm.so.6"]))
    libs = {
        "libjpeg-1.so.62": [],
        "libxcb-1.so.1": ["libXau-1.so.6"],
        "libXau-1.so.6": [],
        "libshared-1.so": [],  # needed by a dropped AND a kept module: kept
        "libwebp-1.so.7": ["libsharpyuv-1.so.0"],
        "libsharpyuv-1.so.0": [],
        "libfreetype-1.so.6": ["libpng16-1.so.16"],
        "libpng16-1.so.16": [],
        "libdlopened-1.so": [],  # nothing links it (perhaps dlopen-ed): never removed
    }
    for name, needed in libs.items():
        _write(root / "pillow.libs" / name, fake_elf(needed))


def test_prune_removes_only_what_lambda_never_loads(tmp_path: Path) -> None:
    root = tmp_path / "asset"
    _site_packages(root)
    report = prune_asset(root, strip="")
    left = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert left == {
        "fewclick_proxy/handler.py",
        "fewclick_contract/crop.py",
        "numpy/__init__.py",
        "numpy/testing/__init__.py",
        "numpy-2.4.6.dist-info/RECORD",
        "PIL/__init__.py",
        "PIL/WebPImagePlugin.py",  # imports _webp inside try/except ImportError
        f"PIL/_imaging{SO}",
        f"PIL/_imagingmath{SO}",
        "pillow.libs/libjpeg-1.so.62",
        "pillow.libs/libxcb-1.so.1",
        "pillow.libs/libXau-1.so.6",
        "pillow.libs/libshared-1.so",
        "pillow.libs/libdlopened-1.so",
    }
    assert not (root / "botocore").exists() and not (root / "numpy/_core/tests").exists()
    assert {"pillow.libs/libwebp-1.so.7", "pillow.libs/libsharpyuv-1.so.0", "pillow.libs/libpng16-1.so.16"} <= set(
        report.removed
    )
    assert report.bytes_after < report.bytes_before and report.stripped_bytes == 0


def test_an_unreadable_shared_object_keeps_every_library(tmp_path: Path) -> None:
    root = tmp_path / "asset"
    _site_packages(root)
    _write(root / f"PIL/_mystery{SO}", b"\x7fELF\x02\x01" + bytes(10))  # could need anything
    prune_asset(root, strip="")
    assert not (root / f"PIL/_webp{SO}").exists()  # optional modules still go
    assert (root / "pillow.libs/libwebp-1.so.7").exists() and (root / "pillow.libs/libpng16-1.so.16").exists()


def _fake_strip(tmp_path: Path) -> str:
    """A stand-in for binutils' strip: behaviour chosen by the input's name."""
    script = tmp_path / "strip"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[0].rsplit('/', 1)[0])\n"
        "from elf import fake_elf\n"
        "_, _, _, out, src = sys.argv\n"
        "name = Path(src).name\n"
        "if name.startswith('fails'):\n"
        "    Path(out).write_bytes(b'half')\n"
        "    sys.exit(1)\n"
        "Path(out).write_bytes(fake_elf(['libc.so.6'], vaddr=0x100 if name.startswith('misaligned') else 0))\n"
    )
    script.chmod(0o755)
    (tmp_path / "elf.py").write_text("import struct\n" + inspect.getsource(fake_elf))
    return str(script)


def test_strip_keeps_the_original_unless_the_copy_is_smaller_same_and_loadable(tmp_path: Path) -> None:
    root = tmp_path / "asset"
    padded = fake_elf(["libc.so.6"], padding=4096)
    for name in ("good.so", "misaligned.so.1", "fails.so"):
        _write(root / name, padded).chmod(0o755)
    _write(root / "relinks.so", fake_elf(["libother.so"], padding=4096))  # the copy would link libc instead
    saved = strip_debug_sections(root, _fake_strip(tmp_path))
    assert saved == 4096
    assert (root / "good.so").read_bytes() == fake_elf(["libc.so.6"]) and os.access(root / "good.so", os.X_OK)
    for name in ("misaligned.so.1", "fails.so"):
        assert (root / name).read_bytes() == padded
    assert elf_needed(root / "relinks.so") == ["libother.so"]
    assert sorted(p.name for p in root.iterdir()) == ["fails.so", "good.so", "misaligned.so.1", "relinks.so"]


def test_size_guard() -> None:
    report = asset_pruning.PruneReport(bytes_before=300_000_000, bytes_after=asset_pruning.LAMBDA_UNZIPPED_LIMIT_BYTES)
    check_size(report)  # exactly at the limit is accepted
    report.bytes_after += 1
    with pytest.raises(AssetTooLarge, match="262144001 bytes"):
        check_size(report)


def test_try_bundle_refuses_an_oversized_asset(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    _write(root / "lambda/proxy/fewclick_proxy/__init__.py", "x" * 100)
    _write(root / "lambda/proxy/requirements.txt", "pydantic\n")
    _write(root / "fewclick_contract/api.py")
    out = tmp_path / "out"
    out.mkdir()
    bundler = LocalPipBundling(
        source_root=root,
        handler_dir="lambda/proxy",
        extra_packages=["fewclick_contract"],
        requirements_file="lambda/proxy/requirements.txt",
        python_version="3.12",
        pip_command=(sys.executable, "-c", "pass"),
        max_asset_bytes=50,
    )
    with pytest.raises(AssetTooLarge):
        bundler.try_bundle(str(out), None)


def test_the_module_runs_standalone_as_the_docker_bundling_runs_it(tmp_path: Path) -> None:
    """Docker bundling: ``python3 -c "$FEWCLICK_PRUNE_ASSET" /asset-output`` (no `stacks` package there)."""
    root = tmp_path / "asset"
    _site_packages(root)
    env = {
        "PATH": os.environ.get("PATH", ""),
        PRUNE_SCRIPT_ENV: Path(asset_pruning.__file__).read_text(encoding="utf-8"),
    }
    command = f'cd / && "{sys.executable}" -I -c "${PRUNE_SCRIPT_ENV}" "{root}"'
    result = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "asset pruning:" in result.stderr and not (root / "botocore").exists()
    limit = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -I -c "${PRUNE_SCRIPT_ENV}" "{root}" --max-bytes 10'],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert limit.returncode == 1 and "Lambda's limit is 10" in limit.stderr
