"""The parts every FewClick Python Lambda shares: runtime, its own log group and role, the function.

The proxy (`proxy_function.py`) and the Ground Truth handlers (`groundtruth_function.py`) are built
the same way; the helpers keep them so. They are split in two because a caller may grant its role
more between the two steps (the proxy's session secret), and statements keep the order they are
added in. Construct ids ("Logs", "Role", "Function") are the ones the constructs always used, so
logical ids, and with them deployed resources, stay the same.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

RUNTIME = lambda_.Runtime.PYTHON_3_12
PYTHON_VERSION = "3.12"  # the wheels bundled into the assets are built for this runtime


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
