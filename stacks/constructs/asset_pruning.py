"""Shrink a bundled Python Lambda asset (a ``pip install --target`` folder) without changing what it runs.

Why: Lambda refuses a function whose unzipped code exceeds 262,144,000 bytes ("250 MB"), and the
proxy's wheels come close: opencv-python-headless and numpy alone are ~200 MB (sizes measured in
README.md, "Deploying to AWS").

Standard library only, and runnable as a script (``python3 asset_pruning.py DIR [--max-bytes N]``):
`LocalPipBundling` calls `prune_asset`, and the Docker fallback bundling runs this same file inside
the SAM build image, so both ways of bundling ship the same files.

What goes, and why that is safe:

1. SDKs the Lambda Python runtime already provides (boto3, botocore, s3transfer; aws-xray-sdk
   pulls botocore in) and console scripts (``bin/``).
2. Files Python never loads at run time: ``__pycache__`` (compiled by the build interpreter, not
   Lambda's), third-party ``tests`` folders, type stubs (``.pyi``), Cython declarations (``.pxd``,
   ``.pyx``), C headers and static libraries (``.h``, ``.hpp``, ``.a``).
3. Pillow's optional extension modules no FewClick Lambda loads (AVIF, WebP, FreeType, LittleCMS, Tk:
   they decode PNG and JPEG only, e.g. `fewclick_proxy.image_source`), then the bundled libraries
   (auditwheel's ``<dist>.libs/``) that ONLY those modules needed, found by reading every remaining
   shared object's ELF ``DT_NEEDED`` entries. Pillow imports each of these modules inside
   ``try/except ImportError``, as on a Pillow built without those libraries.
4. Debug sections of shared objects (``strip --strip-debug``: symbol tables and dynamic linking are
   untouched), when binutils' ``strip`` is on the PATH. Each file is stripped into a copy that
   replaces it only when strip succeeded, the copy is smaller, links the same libraries, and passes
   the dynamic loader's segment-alignment check (`load_segments_aligned`).

Kept: ``*.dist-info`` (``importlib.metadata`` reads versions from it), and every library a remaining
module needs; a library nothing links to (possibly ``dlopen``-ed) is never removed.
"""

from __future__ import annotations

import argparse
import mmap
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Lambda's documented "250 MB" is this many bytes (the error message quotes it).
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
RUNTIME_PROVIDED: tuple[str, ...] = ("boto3", "botocore", "s3transfer")
DEV_ONLY_DIRS: tuple[str, ...] = ("__pycache__", "tests")
DEV_ONLY_SUFFIXES: tuple[str, ...] = (".pyc", ".pyi", ".pxd", ".pyx", ".h", ".hpp", ".a")
# (package folder, extension module name) of optional modules the proxy never imports.
OPTIONAL_EXTENSIONS: tuple[tuple[str, str], ...] = (
    ("PIL", "_avif"),
    ("PIL", "_webp"),
    ("PIL", "_imagingft"),
    ("PIL", "_imagingcms"),
    ("PIL", "_imagingtk"),
)

_ELF_MAGIC = b"\x7fELF"
_SHT_DYNAMIC = 6
_DT_NULL, _DT_NEEDED = 0, 1
_PT_LOAD = 1


class AssetTooLarge(RuntimeError):
    """The pruned asset is still over Lambda's limit: deploying it would fail later, less clearly."""


@dataclass
class PruneReport:
    bytes_before: int = 0
    bytes_after: int = 0
    removed: list[str] = field(default_factory=list)  # paths relative to the asset root
    stripped_bytes: int = 0

    def summary(self) -> str:
        return (
            f"{self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB unzipped "
            f"({len(self.removed)} paths removed, {self.stripped_bytes / 1e6:.1f} MB of debug sections stripped; "
            f"Lambda's limit is {LAMBDA_UNZIPPED_LIMIT_BYTES / 1e6:.1f} MB)"
        )


def asset_size(root: Path) -> int:
    """Bytes Lambda counts: the sum of the regular files' sizes (the unzipped size)."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def elf_needed(path: Path) -> list[str] | None:
    """The ``DT_NEEDED`` names of a 64-bit little-endian ELF file (x86_64 Lambda); None when the
    file is not one, or its section headers cannot be read (then nothing is assumed about it)."""
    try:
        with path.open("rb") as handle:
            if handle.read(6) != _ELF_MAGIC + b"\x02\x01":  # ELFCLASS64, little-endian
                return None
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _dynamic_needed(data)
    except (OSError, ValueError, struct.error, IndexError):
        return None


def _dynamic_needed(data: mmap.mmap) -> list[str] | None:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    if shoff == 0 or shnum == 0:
        return None
    # (sh_type, sh_offset, sh_size, sh_link) of every section.
    sections = []
    for index in range(shnum):
        base = shoff + index * shentsize
        (sh_type,) = struct.unpack_from("<I", data, base + 4)
        sh_offset, sh_size = struct.unpack_from("<QQ", data, base + 0x18)
        (sh_link,) = struct.unpack_from("<I", data, base + 0x28)
        sections.append((sh_type, sh_offset, sh_size, sh_link))
    needed: list[str] = []
    for sh_type, offset, size, link in sections:
        if sh_type != _SHT_DYNAMIC:
            continue
        strtab_offset = sections[link][1]
        for entry in range(offset, offset + size - 15, 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == _DT_NULL:
                break
            if tag == _DT_NEEDED:
                start = strtab_offset + value
                needed.append(data[start : data.find(b"\0", start)].decode("ascii"))
    return needed


def load_segments_aligned(path: Path, page_size: int = 4096) -> bool:
    """The dynamic loader's own check on every PT_LOAD segment (glibc refuses the file otherwise with
    "ELF load command address/offset not page-aligned"): ``p_vaddr - p_offset`` and ``p_align`` are
    multiples of the page size. binutils' strip can break it on libraries that auditwheel's patchelf
    rewrote (seen on numpy's OpenBLAS), so a stripped copy that fails it is thrown away."""
    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data[:6] != _ELF_MAGIC + b"\x02\x01":
                return False
            (phoff,) = struct.unpack_from("<Q", data, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
            for index in range(phnum):
                base = phoff + index * phentsize
                (p_type,) = struct.unpack_from("<I", data, base)
                if p_type != _PT_LOAD:
                    continue
                p_offset, p_vaddr = struct.unpack_from("<QQ", data, base + 0x08)
                (p_align,) = struct.unpack_from("<Q", data, base + 0x30)
                if (p_vaddr - p_offset) % page_size or p_align % page_size:
                    return False
            return phnum > 0
    except (OSError, ValueError, struct.error):
        return False


def _shared_objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.so*") if p.is_file() and not p.is_symlink() and ".so" in p.name)


def _bundled_libraries(root: Path) -> dict[str, Path]:
    """auditwheel's grafted libraries (``<dist>.libs/``), by the file name modules link them by."""
    return {p.name: p for folder in root.glob("*.libs") if folder.is_dir() for p in folder.iterdir() if p.is_file()}


def _needed_closure(starts: Iterable[Path], libraries: dict[str, Path], needed: dict[Path, list[str]]) -> set[Path]:
    """The bundled libraries ``starts`` load, directly or through one another."""
    seen: set[Path] = set()
    todo = list(starts)
    while todo:
        for name in needed.get(todo.pop(), []):
            library = libraries.get(name)
            if library is not None and library not in seen:
                seen.add(library)
                todo.append(library)
    return seen


def _optional_modules(root: Path) -> list[Path]:
    found = []
    for package, module in OPTIONAL_EXTENSIONS:
        folder = root / package
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.name.split(".")[0] == module and p.name.endswith(".so")]
    return sorted(found)


def _remove(path: Path, root: Path, report: PruneReport) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    report.removed.append(str(path.relative_to(root)))


def _drop_optional_modules(root: Path, report: PruneReport) -> None:
    dropped = _optional_modules(root)
    if not dropped:
        return
    libraries = _bundled_libraries(root)
    library_files = set(libraries.values())
    objects = _shared_objects(root)
    needed: dict[Path, list[str]] = {}
    unknown = False
    for path in objects:
        names = elf_needed(path)
        unknown |= names is None
        needed[path] = names or []
    modules = [p for p in objects if p not in library_files]
    orphans: set[Path] = set()
    if not unknown:  # a file we could not read might need anything: then keep every library
        kept = [p for p in modules if p not in dropped]
        orphans = _needed_closure(modules, libraries, needed) - _needed_closure(kept, libraries, needed)
    for path in sorted({*dropped, *orphans}):
        _remove(path, root, report)


def strip_debug_sections(root: Path, strip: str) -> int:
    """``strip --strip-debug`` every shared object in place (through a checked copy); bytes saved."""
    saved = 0
    for path in _shared_objects(root):
        if elf_needed(path) is None:
            continue
        copy = path.with_name(path.name + ".stripped")
        result = subprocess.run(
            [strip, "--strip-debug", "-o", str(copy), str(path)], capture_output=True, stdin=subprocess.DEVNULL
        )
        before = path.stat().st_size
        usable = result.returncode == 0 and copy.is_file() and 0 < copy.stat().st_size < before
        # Same libraries needed as before, and still loadable: otherwise the original stays.
        if usable and elf_needed(copy) == elf_needed(path) and load_segments_aligned(copy):
            shutil.copymode(path, copy)
            os.replace(copy, path)
            saved += before - path.stat().st_size
        else:
            copy.unlink(missing_ok=True)
    return saved


def prune_asset(root: Path, strip: str | None = None) -> PruneReport:
    """Remove what Lambda provides or never runs (module docstring); ``strip``: the binutils strip to
    use (default: the one on the PATH; "" = do not strip)."""
    report = PruneReport(bytes_before=asset_size(root))
    for name in RUNTIME_PROVIDED:
        for path in sorted((root / name, *root.glob(f"{name}-*.dist-info"))):
            if path.exists():
                _remove(path, root, report)
    if (root / "bin").exists():
        _remove(root / "bin", root, report)
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and p.name in DEV_ONLY_DIRS):
        if folder.exists():  # not already gone with a parent
            _remove(folder, root, report)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in DEV_ONLY_SUFFIXES):
        _remove(path, root, report)
    _drop_optional_modules(root, report)
    tool = shutil.which("strip") if strip is None else strip
    if tool:
        report.stripped_bytes = strip_debug_sections(root, tool)
    report.bytes_after = asset_size(root)
    return report


def check_size(report: PruneReport, limit: int = LAMBDA_UNZIPPED_LIMIT_BYTES) -> None:
    if report.bytes_after > limit:
        raise AssetTooLarge(f"the Lambda asset is {report.bytes_after} bytes unzipped; Lambda's limit is {limit}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prune a bundled Python Lambda asset in place.")
    parser.add_argument("root", type=Path)
    parser.add_argument("--max-bytes", type=int, default=LAMBDA_UNZIPPED_LIMIT_BYTES)
    args = parser.parse_args(argv)
    report = prune_asset(args.root)
    print(f"asset pruning: {report.summary()}", file=sys.stderr)
    try:
        check_size(report, args.max_bytes)
    except AssetTooLarge as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
