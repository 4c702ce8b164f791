"""Docker-free packaging of the proxy Lambda (`ILocalBundling`).

`cdk deploy` calls `try_bundle` first; it copies the handler package and the shared contract
into the asset folder and lets pip fetch Linux wheels for the Lambda's Python version, so no
Docker engine is needed. If that fails (no pip, no index), it returns False and the CDK falls
back to the Docker bundling image. Tests synth with `aws:cdk:bundling-stacks: []`, which skips
bundling entirely, so they need neither Docker nor network.
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

# Lambda's Python 3.12 runs on Amazon Linux 2023 (glibc 2.34). Recent numpy/opencv wheels are
# tagged manylinux_2_28 only, so both tags are offered; pip picks the best match per package.
LAMBDA_PLATFORMS: tuple[str, ...] = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "tests")
# The Lambda Python runtime ships these (aws-xray-sdk pulls botocore in); leaving them out keeps
# the unzipped asset under Lambda's 250 MB limit (opencv + numpy alone take ~200 MB).
RUNTIME_PROVIDED: tuple[str, ...] = ("boto3", "botocore", "s3transfer")


def prune_asset(out: Path) -> None:
    """Drop what Lambda provides or never runs: runtime-provided SDKs, console scripts."""
    for name in RUNTIME_PROVIDED:
        for path in (out / name, *out.glob(f"{name}-*.dist-info")):
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(out / "bin", ignore_errors=True)


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
    ) -> None:
        self.source_root = source_root
        self.handler_dir = handler_dir
        self.extra_packages = tuple(extra_packages)
        self.requirements_file = requirements_file
        self.python_version = python_version
        self.platforms = tuple(platforms)
        # Injectable so a test can check the wiring without downloading wheels.
        self.pip_command = tuple(pip_command or (sys.executable, "-m", "pip"))

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
            prune_asset(out)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"local bundling failed ({exc}); falling back to Docker bundling", file=sys.stderr)
            # Docker bundling writes into the same folder: leave it empty, not half-filled.
            for child in out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            return False
        return True
