"""A Lambda of the Ground Truth integration (pre-annotation, consolidation, task-token authorizer).

All three share one asset: `lambda/groundtruth/` (handler packages + `gt_common`) plus the shared
`fewclick_contract/` (the ONE task-token implementation and the label-map contract), packaged like
the proxy (`LocalPipBundling`: no Docker, Lambda wheels for Python 3.12; Docker's SAM image is the
fallback). Each function gets its own role and log group; permissions are granted by the caller,
so each role holds exactly what its function needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import BundlingOptions, Duration, IgnoreMode
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.constructs.local_bundling import RUNTIME_PROVIDED, LocalPipBundling
from stacks.constructs.proxy_function import asset_excludes
from stacks.constructs.python_lambda import PYTHON_VERSION, RUNTIME, log_group_and_role, python_function


def groundtruth_code(*, source_root: Path, handler_dir: str, extra_packages: Sequence[str]) -> lambda_.Code:
    """The shared asset (same source and options -> same asset hash, staged once per app)."""
    requirements = f"{handler_dir}/requirements.txt"
    docker_copy = " && ".join(
        [
            f"cp -r /asset-input/{handler_dir}/. /asset-output/",
            *(f"cp -r /asset-input/{package} /asset-output/" for package in extra_packages),
            f"pip install --no-cache-dir --no-compile -r /asset-input/{requirements} -t /asset-output",
            "cd /asset-output",
            "rm -rf bin " + " ".join(f"{name} {name}-*.dist-info" for name in RUNTIME_PROVIDED),
        ]
    )
    return lambda_.Code.from_asset(
        str(source_root),
        exclude=asset_excludes(handler_dir, extra_packages),
        ignore_mode=IgnoreMode.DOCKER,
        bundling=BundlingOptions(
            image=RUNTIME.bundling_image,
            command=["bash", "-c", docker_copy],
            local=LocalPipBundling(
                source_root=source_root,
                handler_dir=handler_dir,
                extra_packages=extra_packages,
                requirements_file=requirements,
                python_version=PYTHON_VERSION,
            ),
        ),
    )


class GroundTruthFunction(Construct):
    """Python 3.12 Lambda with its own role and log group (no managed policies, no X-Ray)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        environment: Mapping[str, str],
        service_name: str,
        log_level: str,
        timeout: Duration,
        memory_size: int,
        log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group, self.role = log_group_and_role(self, retention=log_retention, role_description=description)
        self.function = python_function(
            self,
            log_group=self.log_group,
            role=self.role,
            handler=handler,
            code=code,
            timeout=timeout,
            memory_size=memory_size,
            environment={
                **environment,
                "POWERTOOLS_SERVICE_NAME": service_name,
                "POWERTOOLS_LOG_LEVEL": log_level,
            },
            description=description,
        )
        NagSuppressions.add_resource_suppressions(
            self.function,
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Pinned to Python 3.12 like the proxy: the asset's wheels are built for it "
                    "(LocalPipBundling --python-version 3.12) and the tests run the handlers on it.",
                )
            ],
        )
