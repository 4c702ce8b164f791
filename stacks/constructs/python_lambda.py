"""The parts every FewClick Python Lambda shares: runtime, asset packaging, its own log group and role,
the function.

The proxy (`proxy_function.py`) and the Ground Truth handlers (`groundtruth_function.py`) are built
the same way; the helpers keep them so. They are split in two because a caller may grant its role
more between the two steps (the proxy's session secret), and statements keep the order they are
added in. Construct ids ("Logs", "Role", "Function") are the ones the constructs always used, so
logical ids, and with them deployed resources, stay the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import BundlingOptions, IgnoreMode, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.constructs.local_bundling import LocalPipBundling

RUNTIME = lambda_.Runtime.PYTHON_3_12
PYTHON_VERSION = "3.12"  # the wheels bundled into the assets are built for this runtime


def asset_excludes(handler_dir: str, extra_packages: Sequence[str]) -> list[str]:
    """Docker-ignore patterns keeping only the handler folder and the shared packages."""
    parent = str(Path(handler_dir).parent)
    keep = [f"!{parent}", f"{parent}/*", f"!{handler_dir}"] if parent != "." else [f"!{handler_dir}"]
    return [
        "*",
        *keep,
        *(f"!{package}" for package in extra_packages),
        "**/__pycache__",
        "**/*.pyc",
        "**/.pytest_cache",
    ]


def bundled_code(
    *,
    source_root: Path,
    handler_dir: str,
    extra_packages: Sequence[str],
    docker_finish: Sequence[str],
    docker_environment: Mapping[str, str] | None = None,
    pip_command: Sequence[str] | None = None,
) -> lambda_.Code:
    """The asset: ``handler_dir`` + ``extra_packages`` + the wheels of ``handler_dir/requirements.txt``.

    Packaged by `LocalPipBundling` (no Docker; Lambda wheels for PYTHON_VERSION), or else in the SAM
    image, where ``docker_finish`` (shell commands run after pip, in order) trims the output the way
    the local bundling does for that function.
    """
    requirements = f"{handler_dir}/requirements.txt"
    docker_copy = " && ".join(
        [
            f"cp -r /asset-input/{handler_dir}/. /asset-output/",
            *(f"cp -r /asset-input/{package} /asset-output/" for package in extra_packages),
            f"pip install --no-cache-dir --no-compile -r /asset-input/{requirements} -t /asset-output",
            *docker_finish,
        ]
    )
    return lambda_.Code.from_asset(
        str(source_root),
        exclude=asset_excludes(handler_dir, extra_packages),
        ignore_mode=IgnoreMode.DOCKER,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            command=["bash", "-c", docker_copy],
            environment=dict(docker_environment) if docker_environment is not None else None,
            local=LocalPipBundling(
                source_root=source_root,
                handler_dir=handler_dir,
                extra_packages=extra_packages,
                requirements_file=requirements,
                python_version=PYTHON_VERSION,
                pip_command=pip_command,  # None = this interpreter's pip; tests pass a stand-in
            ),
        ),
    )


def log_group_and_role(
    scope: Construct, *, retention: logs.RetentionDays, role_description: str
) -> tuple[logs.LogGroup, iam.Role]:
    """A log group removed with the stack, and a role that may write to that group only."""
    log_group = logs.LogGroup(scope, "Logs", retention=retention, removal_policy=RemovalPolicy.DESTROY)
    # An explicit role instead of the default one: the default attaches the managed
    # AWSLambdaBasicExecutionRole (logs on every group); this one writes to its own group only.
    role = iam.Role(
        scope, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=role_description
    )
    log_group.grant_write(role)
    return log_group, role


def python_function(scope: Construct, *, log_group: logs.ILogGroup, role: iam.IRole, **props: Any) -> lambda_.Function:
    """The function ("Function") on RUNTIME and x86_64 (the bundled wheels are), using the role and log group
    from `log_group_and_role`. `props`: the rest of `lambda_.Function`'s keyword arguments (handler, code, ...)."""
    return lambda_.Function(
        scope,
        "Function",
        runtime=RUNTIME,
        architecture=lambda_.Architecture.X86_64,
        role=role,
        log_group=log_group,
        **props,
    )
