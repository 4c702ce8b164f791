"""Docker-free packaging of the proxy Lambda (`ILocalBundling`).

`cdk deploy` calls `try_bundle` first; it copies the handler package and the shared contract
into the asset folder and lets pip fetch Linux wheels for the Lambda's Python version, so no
Docker engine is needed. If that fails (no pip, no index), it returns False and the CDK falls
back to the Docker bundling image. Tests synth with `aws:cdk:bundling-stacks: []`, which skips
bundling entirely, so they need neither Docker nor network.

After pip, `asset_pruning.prune_asset` shrinks the folder (runtime-provided SDKs, tests, stubs,
unused Pillow codecs, debug sections), and a pruned asset still over Lambda's unzipped limit fails
the synth here, with its size, rather than the deployment later.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import ILocalBundling

from stacks.constructs.asset_pruning import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    RUNTIME_PROVIDED,
    AssetTooLarge,
    PruneReport,
    check_size,
)
from stacks.constructs.asset_pruning import prune_asset as _prune

# Lambda's Python 3.12 runs on Amazon Linux 2023 (glibc 2.34). Recent numpy/opencv wheels are
# tagged manylinux_2_28 only, so both tags are offered; pip picks the best match per package.
LAMBDA_PLATFORMS: tuple[str, ...] = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "tests")
__all__ = ["LAMBDA_PLATFORMS", "RUNTIME_PROVIDED", "AssetTooLarge", "LocalPipBundling", "prune_asset"]


def prune_asset(out: Path, strip: str | None = None) -> PruneReport:
    """Shrink the bundled asset in place (see `stacks.constructs.asset_pruning`)."""
    return _prune(out, strip=strip)


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """Copy `<handler_dir>/*` and the extra packages into the asset, then pip-install wheels."""

    def __init__(
        self,
        *,
        source_root: Path,
        handler_dir: str,
        extra_packages: Sequence[str],
        requirements_file: str,
        python_version: str,
        platforms: Sequence[str] = LAMBDA_PLATFORMS,
        pip_command: Sequence[str] | None = None,
        max_asset_bytes: int = LAMBDA_UNZIPPED_LIMIT_BYTES,
    ) -> None:
        self.source_root = source_root
        self.handler_dir = handler_dir
        self.extra_packages = tuple(extra_packages)
        self.requirements_file = requirements_file
        self.python_version = python_version
        self.platforms = tuple(platforms)
        # Injectable so a test can check the wiring without downloading wheels.
        self.pip_command = tuple(pip_command or (sys.executable, "-m", "pip"))
        self.max_asset_bytes = max_asset_bytes

    def install_command(self, output_dir: str) -> list[str]:
        platform_args = [arg for platform in self.platforms for arg in ("--platform", platform)]
        return [
            *self.pip_command,
            "install",
            "--disable-pip-version-check",
            # .pyc files would be compiled by this (build) interpreter, not Lambda's 3.12.
            "--no-compile",
            "--no-cache-dir",
            "--quiet",
            "-r",
            str(self.source_root / self.requirements_file),
            *platform_args,
            "--implementation",
            "cp",
            "--only-binary=:all:",
            "--python-version",
            self.python_version,
            "--target",
            output_dir,
        ]

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        """Called by the CDK (through jsii) before Docker bundling; True = asset is ready."""
        out = Path(output_dir)
        try:
            shutil.copytree(self.source_root / self.handler_dir, out, dirs_exist_ok=True, ignore=_IGNORED)
            for package in self.extra_packages:
                shutil.copytree(
                    self.source_root / package, out / Path(package).name, dirs_exist_ok=True, ignore=_IGNORED
                )
            subprocess.run(self.install_command(output_dir), check=True, stdin=subprocess.DEVNULL)
            report = prune_asset(out)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"local bundling failed ({exc}); falling back to Docker bundling", file=sys.stderr)
            # Docker bundling writes into the same folder: leave it empty, not half-filled.
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            return False
        print(f"{self.handler_dir} asset: {report.summary()}", file=sys.stderr)
        # Not a fallback case (Docker would bundle the same wheels): AssetTooLarge fails the synth.
        check_size(report, self.max_asset_bytes)
        return True
