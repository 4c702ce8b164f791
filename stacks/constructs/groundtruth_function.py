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

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from stacks.constructs.local_bundling import RUNTIME_PROVIDED
from stacks.constructs.python_lambda import bundled_code, log_group_and_role, python_function


def groundtruth_code(*, source_root: Path, handler_dir: str, extra_packages: Sequence[str]) -> lambda_.Code:
    """The shared asset (same source and options -> same asset hash, staged once per app)."""
    return bundled_code(
        source_root=source_root,
        handler_dir=handler_dir,
        extra_packages=extra_packages,
        # The runtime provides these (and LocalPipBundling drops them too).
        docker_finish=[
            "cd /asset-output",
            "rm -rf bin " + " ".join(f"{name} {name}-*.dist-info" for name in RUNTIME_PROVIDED),
        ],
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
