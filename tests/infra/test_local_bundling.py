"""`LocalPipBundling`: Docker-free Lambda packaging (the tests never download wheels)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stacks.constructs.local_bundling import RUNTIME_PROVIDED, LocalPipBundling
from stacks.constructs.python_lambda import asset_excludes

REPO_ROOT = Path(__file__).resolve().parents[2]
NO_OP_PIP = (sys.executable, "-c", "pass")  # accepts and ignores pip's arguments


def _fake_repo(root: Path) -> Path:
    (root / "lambda/proxy/fewclick_proxy/__pycache__").mkdir(parents=True)
    (root / "lambda/proxy/fewclick_proxy/__init__.py").write_text("")
    (root / "lambda/proxy/fewclick_proxy/__pycache__/x.cpython-311.pyc").write_bytes(b"")
    (root / "lambda/proxy/requirements.txt").write_text("pydantic\n")
    (root / "fewclick_contract").mkdir()
    (root / "fewclick_contract/api.py").write_text("")
    return root


def _bundler(root: Path, pip_command: tuple[str, ...] = NO_OP_PIP) -> LocalPipBundling:
    return LocalPipBundling(
        source_root=root,
        handler_dir="lambda/proxy",
        extra_packages=["fewclick_contract"],
        requirements_file="lambda/proxy/requirements.txt",
        python_version="3.12",
        pip_command=pip_command,
    )


def test_pip_command_targets_lambdas_platform(tmp_path: Path) -> None:
    command = _bundler(tmp_path, ("pip",)).install_command("/out")
    joined = " ".join(command)
    for expected in (
        "--platform manylinux2014_x86_64",
        "--only-binary=:all:",
        "--python-version 3.12",
        "--target /out",
        "--implementation cp",
        f"-r {tmp_path}/lambda/proxy/requirements.txt",
        "--no-compile",
    ):
        assert expected in joined


def test_try_bundle_copies_handler_and_contract(tmp_path: Path) -> None:
    root = _fake_repo(tmp_path / "repo")
    out = tmp_path / "out"
    out.mkdir()
    (out / "botocore").mkdir()  # as if pip had pulled it in through aws-xray-sdk
    assert _bundler(root).try_bundle(str(out), None) is True
    assert (out / "fewclick_proxy/__init__.py").is_file()
    assert (out / "requirements.txt").is_file()
    assert (out / "fewclick_contract/api.py").is_file()
    assert not list(out.rglob("__pycache__"))
    assert not any((out / name).exists() for name in RUNTIME_PROVIDED)


def test_failed_install_falls_back_to_docker_with_an_empty_folder(tmp_path: Path) -> None:
    root = _fake_repo(tmp_path / "repo")
    out = tmp_path / "out"
    out.mkdir()
    failing = (sys.executable, "-c", "raise SystemExit(3)")
    assert _bundler(root, failing).try_bundle(str(out), None) is False
    assert not list(out.iterdir())


def test_asset_keeps_only_the_handler_and_contract() -> None:
    assert asset_excludes("lambda/proxy", ["fewclick_contract"])[:5] == [
        "*",
        "!lambda",
        "lambda/*",
        "!lambda/proxy",
        "!fewclick_contract",
    ]


@pytest.mark.slow
def test_cdk_calls_try_bundle_through_jsii(tmp_path: Path) -> None:
    """A real synth with bundling on: jsii calls back into Python and the asset gets the code."""
    import aws_cdk as cdk

    from stacks.constructs.proxy_function import ProxyFunction

    app = cdk.App(outdir=str(tmp_path / "cdk.out"))  # bundling enabled (the default)
    stack = cdk.Stack(app, "Bundled")
    ProxyFunction(
        stack,
        "Proxy",
        source_root=REPO_ROOT,
        handler_dir="lambda/proxy",
        extra_packages=["fewclick_contract"],
        endpoint_name="endpoint",
        allowed_buckets=["bucket"],
        allowed_origins=["https://label.example.com"],
        log_level="INFO",
        pip_command=NO_OP_PIP,
    )
    assembly = app.synth()
    assets = [p for p in Path(assembly.directory).glob("asset.*") if p.is_dir()]
    assert len(assets) == 1
    staged = {str(p.relative_to(assets[0])) for p in assets[0].rglob("*")}
    assert "fewclick_proxy/__init__.py" in staged
    assert "fewclick_contract/crop.py" in staged
    assert "requirements.txt" in staged
    assert not [name for name in staged if name.startswith(("model_image", "stacks", "tests", "lambda"))]
