#!/usr/bin/env python3
"""FewClick CDK app: reads and validates the `fewclick:*` context once, then wires the stacks.

    cdk synth                        # via cdk.json ("app": "python3 app.py")
    python app.py                    # same without the CDK CLI, offline: writes cdk.out/, skips
                                     # Lambda bundling unless FEWCLICK_BUNDLE=1

Stacks (names prefixed by `fewclick:stackPrefix`, default FewClick):
    <prefix>-Model       model image (ECR) + SageMaker GPU endpoint + autoscaling
    <prefix>-Api         Cognito, proxy Lambda, REST API, WAF
    <prefix>-Monitoring  dashboard, alarms, SNS topic
    <prefix>-Labeling    Ground Truth template, Lambdas, job role (only with fewclick:labeling=true,
                         which also adds POST /v1/task/segment to <prefix>-Api; stacks/labeling_stack.py)
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# jsii prints a banner for Node versions it no longer lists as supported; the app works on
# Node 20 and the banner would drown the synth output.
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

if TYPE_CHECKING:  # runtime imports happen after the environment above is set
    import aws_cdk as cdk

    from stacks.api_stack import ApiStack
    from stacks.config import FewClickConfig
    from stacks.labeling_stack import LabelingStack
    from stacks.model_stack import ModelStack
    from stacks.monitoring_stack import MonitoringStack


APP_DIR = Path(__file__).resolve().parent


def project_context() -> dict[str, Any]:
    """The context the CDK CLI would pass: `cdk.json` (feature flags, `fewclick:*`) + `cdk.context.json`."""
    context: dict[str, Any] = {}
    for name in ("cdk.json", "cdk.context.json"):
        file = APP_DIR / name
        if file.exists():
            data = json.loads(file.read_text())
            context.update(data.get("context", {}) if name == "cdk.json" else data)
    return context


@dataclass(frozen=True)
class FewClickStacks:
    config: FewClickConfig
    model: ModelStack
    api: ApiStack
    monitoring: MonitoringStack
    labeling: LabelingStack | None = None


def build_app(app: cdk.App, *, nag: bool = True) -> FewClickStacks:
    """Validate the app's context and add the three stacks (and cdk-nag) to `app`."""
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from stacks import paths
    from stacks.api_stack import ApiStack
    from stacks.config import load_config
    from stacks.model_stack import ModelStack
    from stacks.monitoring_stack import MonitoringStack

    config = load_config(app.node)  # raises ConfigError naming the bad `fewclick:*` key
    env = (
        cdk.Environment(account=config.account, region=config.region)
        if config.account or config.region
        else None  # environment-agnostic: synth needs no credentials
    )
    prefix = config.stack_prefix

    model = ModelStack(
        app,
        f"{prefix}-Model",
        env=env,
        description="FewClick: model image and SageMaker GPU endpoint",
        context_dir=paths.REPO_ROOT,
        dockerfile=paths.MODEL_DOCKERFILE,
        image_build=config.image_build,
        instance_type=config.instance_type,
        instance_count_min=config.instance_count_min,
        instance_count_max=config.instance_count_max,
        target_invocations_per_instance=config.target_invocations_per_instance,
    )
    api = ApiStack(
        app,
        f"{prefix}-Api",
        env=env,
        description="FewClick: Cognito-protected segmentation API, proxy Lambda and WAF",
        source_root=paths.REPO_ROOT,
        handler_dir=paths.LAMBDA_PROXY_DIR,
        contract_dir=paths.CONTRACT_DIR,
        endpoint_name=model.endpoint_name,
        endpoint_arn=model.endpoint_arn,
        model_instance_type=config.instance_type,
        image_buckets=config.image_buckets,
        ui_origins=config.ui_origins,
        user_pool_arn=config.user_pool_arn,
        stage_name=config.stage_name,
        throttle_rate_limit=config.throttle_rate_limit,
        throttle_burst_limit=config.throttle_burst_limit,
        waf_rate_limit=config.waf_rate_limit,
        log_level=config.log_level,
        api_name=f"{prefix}-segmentation",
        metrics_prefix=prefix,
        task_route=config.labeling,
    )
    monitoring = MonitoringStack(
        app,
        f"{prefix}-Monitoring",
        env=env,
        description="FewClick: dashboard, alarms and alarm topic",
        endpoint_name=model.endpoint_name,
        variant_name=model.variant_name,
        instance_type=config.instance_type,
        function_name=api.function_name,
        proxy_metrics_namespace=api.metrics_namespace,
        api_name=api.api_name,
        stage_name=api.stage_name,
        latency_p90_threshold_microseconds=config.latency_alarm_p90_microseconds,
        alarm_email=config.alarm_email,
    )
    from stacks.labeling_stack import add_labeling

    labeling = add_labeling(
        app, api=api, config=config, env=env, source_root=paths.REPO_ROOT, contract_dir=paths.CONTRACT_DIR
    )
    cdk.Tags.of(app).add("project", "fewclick")
    if nag:
        cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return FewClickStacks(config=config, model=model, api=api, monitoring=monitoring, labeling=labeling)


def main() -> int:
    import aws_cdk as cdk

    from stacks.config import ConfigError

    if "CDK_OUTDIR" in os.environ:  # run by the CDK CLI, which passes context and outdir
        app = cdk.App()
    else:
        # `python app.py`: the CLI's context, written to ./cdk.out. Lambda bundling (pip
        # downloads wheels) is skipped so this works offline; FEWCLICK_BUNDLE=1 turns it on.
        context = project_context()
        if os.environ.get("FEWCLICK_BUNDLE") != "1":
            context.setdefault("aws:cdk:bundling-stacks", [])
        app = cdk.App(context=context, outdir=str(APP_DIR / "cdk.out"))
    try:
        build_app(app)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
