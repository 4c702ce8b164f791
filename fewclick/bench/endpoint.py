"""`fewclick benchmark endpoint`: profile a deployed stack under labeler load, per instance type.

1. Reads the deployment from CloudFormation: ``<stack>-Api`` (ApiUrl, UserPoolId, UiClientId) and
   ``<stack>-Model`` (EndpointName); the variant is the stack's ``AllTraffic``.
2. Signs in (``--token``, or ``--username/--password`` through Cognito InitiateAuth with SRP, the only
   flow the stack's UI client allows).
3. For the endpoint's current instance type, and for each ``--instance-types`` entry, drives the deployed
   API with the load generator of `fewclick benchmark load` for ``--minutes``, then reads SageMaker's
   ``ModelLatency`` and ``OverheadLatency`` p50/p90 (published in microseconds; shown in ms) for the
   endpoint and variant over the run's window from CloudWatch (GetMetricData; the metrics arrive a minute
   or two late, so it polls for up to ``--metrics-wait`` seconds).
4. Prints one row per instance type, as the AWS post on SageMaker stateful sessions did across g4dn/g5/...

Progress bars show each load run and the wait for CloudWatch. AWS refusing a call (no region or
credentials, an unknown ``--profile``, AccessDenied on any call) ends the command with one line
naming the call; the endpoint is restored first where it was switched.

Switching instance types changes the live endpoint out of band, so it is opt-in and undone: the variant is
deregistered from autoscaling (SageMaker refuses to change an autoscaled variant's instance type), a copy
of the endpoint config with the other instance type is applied with UpdateEndpoint (minutes per switch,
billed), and at the end -- also after an error or Ctrl-C -- the original config is applied again, the
autoscaling target and policies are put back and the temporary configs are deleted.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fewclick_model.cli_types import non_negative_float, positive_float
from fewclick_model.preflight import prepare_out_dir

from fewclick.bench.load import (
    LoadResult,
    LoadSettings,
    Target,
    add_load_arguments,
    run_load,
    settings_from_args,
    summarize,
    write_report,
)

VARIANT_NAME = "AllTraffic"  # stacks/constructs/model_endpoint.py
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRICS = ("ModelLatency", "OverheadLatency")
STATS = ("p50", "p90")


class EndpointBenchmarkError(Exception):
    pass


def aws_errors() -> tuple[type[Exception], ...]:
    """What botocore raises when AWS or the local AWS setup refuses: ClientError (an answer from AWS:
    AccessDenied, throttling, validation) and BotoCoreError (no region, no credentials, ProfileNotFound,
    no network). Imported here, not at the top: the benchmark CLI imports this module to build its parser."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def describe_aws_error(exc: Exception) -> str:
    """One line for an `aws_errors` exception, with the fix where botocore's own text does not say it."""
    from botocore.exceptions import NoCredentialsError, NoRegionError

    hint = ""
    if isinstance(exc, NoRegionError):
        hint = " (give --region, or set AWS_REGION or the profile's region)"
    elif isinstance(exc, NoCredentialsError):
        hint = " (give --profile, or set AWS credentials in the environment)"
    return f"{exc}{hint}"


@dataclass(frozen=True)
class Deployment:
    api_url: str
    endpoint_name: str
    variant_name: str
    user_pool_id: str | None
    client_id: str | None


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # botocore ClientError: no such stack, no credentials, ...
        raise EndpointBenchmarkError(f"cannot read stack {stack_name}: {exc}") from exc
    if not stacks:
        raise EndpointBenchmarkError(f"no stack named {stack_name}")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def read_deployment(cloudformation: Any, prefix: str, variant: str = VARIANT_NAME) -> Deployment:
    """``prefix`` is the stack prefix (``fewclick:stackPrefix``, default FewClick)."""
    api = stack_outputs(cloudformation, f"{prefix}-Api")
    model = stack_outputs(cloudformation, f"{prefix}-Model")
    if "ApiUrl" not in api or "EndpointName" not in model:
        raise EndpointBenchmarkError(
            f"{prefix}-Api needs the output ApiUrl and {prefix}-Model the output EndpointName: "
            "are these FewClick stacks?"
        )
    return Deployment(
        api_url=api["ApiUrl"].rstrip("/"),
        endpoint_name=model["EndpointName"],
        variant_name=variant,
        user_pool_id=api.get("UserPoolId"),
        client_id=api.get("UiClientId"),
    )


# --- instance types ---


def _slug(instance_type: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", instance_type.removeprefix("ml.")).strip("-")


# The states an endpoint leaves on its own; any other (InService, Failed, OutOfService, ...) is where a
# change ended.
ENDPOINT_CHANGING_STATES = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack"})


@dataclass
class EndpointSwitcher:
    """Puts the endpoint on another instance type, and everything back at the end (see the module doc)."""

    sagemaker: Any
    autoscaling: Any
    deployment: Deployment
    waiter_delay_s: int = 30
    waiter_max_attempts: int = 80  # 40 minutes: a GPU instance takes ~10 to come up
    original_config: str = ""
    original_type: str = ""
    _variants: list[dict[str, Any]] = field(default_factory=list)
    _extra: dict[str, Any] = field(default_factory=dict)
    _scaling: dict[str, Any] | None = None
    _policies: list[dict[str, Any]] = field(default_factory=list)
    _created: list[str] = field(default_factory=list)
    _deregistered: bool = False
    sleep: Callable[[float], None] = time.sleep

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.deployment.endpoint_name}/variant/{self.deployment.variant_name}"

    def read(self) -> str:
        """The endpoint's current config and instance type (and its autoscaling, to restore later)."""
        endpoint = self.sagemaker.describe_endpoint(EndpointName=self.deployment.endpoint_name)
        self.original_config = endpoint["EndpointConfigName"]
        config = self.sagemaker.describe_endpoint_config(EndpointConfigName=self.original_config)
        self._variants = config["ProductionVariants"]
        self._extra = {k: config[k] for k in ("KmsKeyId", "DataCaptureConfig") if k in config}
        variant = next((v for v in self._variants if v["VariantName"] == self.deployment.variant_name), None)
        if variant is None:
            raise EndpointBenchmarkError(
                f"endpoint config {self.original_config} has no variant {self.deployment.variant_name}"
            )
        self.original_type = str(variant["InstanceType"])
        return self.original_type

    def _read_scaling(self) -> None:
        targets = self.autoscaling.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[self.resource_id], ScalableDimension=SCALABLE_DIMENSION
        )["ScalableTargets"]
        self._scaling = targets[0] if targets else None
        self._policies = self.autoscaling.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=self.resource_id, ScalableDimension=SCALABLE_DIMENSION
        )["ScalingPolicies"]

    def _settle(self, what: str) -> dict[str, Any]:
        """Poll the endpoint until no change is under way, with a bar of the time waited (a GPU
        instance takes ~10 minutes to come up); its description then."""
        from tqdm import tqdm

        name = self.deployment.endpoint_name
        limit_s = self.waiter_delay_s * self.waiter_max_attempts
        bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} s waited{postfix}"
        with tqdm(total=limit_s, desc=what, bar_format=bar_format, leave=False) as bar:
            for attempt in range(self.waiter_max_attempts + 1):
                endpoint: dict[str, Any] = self.sagemaker.describe_endpoint(EndpointName=name)
                status = str(endpoint["EndpointStatus"])
                bar.set_postfix(status=status)
                if status not in ENDPOINT_CHANGING_STATES:
                    return endpoint
                if attempt < self.waiter_max_attempts:
                    self.sleep(self.waiter_delay_s)
                    bar.update(min(self.waiter_delay_s, bar.total - bar.n))
        raise EndpointBenchmarkError(f"{what}: endpoint {name} still {status} after {limit_s} s")

    def _wait(self, config: str, what: str) -> None:
        """Wait until the endpoint serves ``config``.

        boto3's ``endpoint_in_service`` waiter printed nothing for those minutes, and it also succeeds
        when a failed update left the endpoint InService on its previous config: the benchmark would
        then have measured the old instance type under the new one's name.
        """
        endpoint = self._settle(what)
        if endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == config:
            return
        reason = endpoint.get("FailureReason") or "SageMaker gave no reason"
        raise EndpointBenchmarkError(
            f"{what} failed: endpoint {self.deployment.endpoint_name} is {endpoint['EndpointStatus']} on config "
            f"{endpoint['EndpointConfigName']} (wanted {config}): {reason}"
        )

    def switch(self, instance_type: str, stamp: str) -> None:
        if not self._deregistered:
            self._read_scaling()
            if self._scaling is not None:
                self.autoscaling.deregister_scalable_target(
                    ServiceNamespace="sagemaker", ResourceId=self.resource_id, ScalableDimension=SCALABLE_DIMENSION
                )
            self._deregistered = True
        name = f"{self.original_config[:40]}-bench-{_slug(instance_type)}-{stamp}"[:63]
        variants = [
            {**v, "InstanceType": instance_type} if v["VariantName"] == self.deployment.variant_name else dict(v)
            for v in self._variants
        ]
        self.sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants, **self._extra)
        self._created.append(name)
        self.sagemaker.update_endpoint(EndpointName=self.deployment.endpoint_name, EndpointConfigName=name)
        self._wait(name, f"switching to {instance_type}")

    def restore(self) -> None:
        if not self._created:
            return
        # A switch stopped mid-way (Ctrl-C while waiting) is still under way, and SageMaker refuses an
        # update then; one that failed has left the endpoint on its original config already.
        endpoint = self._settle("waiting for the endpoint's last change")
        if endpoint["EndpointConfigName"] != self.original_config:
            self.sagemaker.update_endpoint(
                EndpointName=self.deployment.endpoint_name, EndpointConfigName=self.original_config
            )
            self._wait(self.original_config, f"restoring {self.original_type}")
        if self._scaling is not None:
            self.autoscaling.register_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=self.resource_id,
                ScalableDimension=SCALABLE_DIMENSION,
                MinCapacity=self._scaling["MinCapacity"],
                MaxCapacity=self._scaling["MaxCapacity"],
                RoleARN=self._scaling["RoleARN"],
            )
            for policy in self._policies:
                kwargs = {
                    "PolicyName": policy["PolicyName"],
                    "ServiceNamespace": "sagemaker",
                    "ResourceId": self.resource_id,
                    "ScalableDimension": SCALABLE_DIMENSION,
                    "PolicyType": policy["PolicyType"],
                }
                for key in ("TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration"):
                    if key in policy:
                        kwargs[key] = policy[key]
                self.autoscaling.put_scaling_policy(**kwargs)
        for name in self._created:
            self.sagemaker.delete_endpoint_config(EndpointConfigName=name)
        self._created.clear()


# --- CloudWatch ---


def latency_metrics(
    cloudwatch: Any,
    deployment: Deployment,
    start: datetime,
    end: datetime,
    *,
    wait_s: float = 300.0,
    poll_s: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, float | None]:
    """{"ModelLatency_p50": ms, ...} over [start, end): one period spanning the whole run, so each
    percentile is over every invocation of the run. None where CloudWatch has no data (yet)."""
    from tqdm import tqdm

    start = start.replace(second=0, microsecond=0)
    end = end.replace(second=0, microsecond=0) + timedelta(minutes=1)
    period = max(60, math.ceil((end - start).total_seconds() / 60) * 60)
    dimensions = [
        {"Name": "EndpointName", "Value": deployment.endpoint_name},
        {"Name": "VariantName", "Value": deployment.variant_name},
    ]
    queries = [
        {
            "Id": f"{metric.lower()}_{stat}",
            "MetricStat": {
                "Metric": {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": dimensions},
                "Period": period,
                "Stat": stat,
                "Unit": "Microseconds",
            },
            "ReturnData": True,
        }
        for metric in METRICS
        for stat in STATS
    ]
    deadline = time.monotonic() + wait_s
    # The bar counts the seconds waited for CloudWatch (its data arrives a minute or two late); it ends
    # early when every figure is in.
    bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} s waited{postfix}"
    with tqdm(total=round(wait_s), desc="CloudWatch metrics", bar_format=bar_format, leave=False) as bar:
        while True:
            try:
                results = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
            except aws_errors() as exc:
                raise EndpointBenchmarkError(
                    f"cannot read {deployment.endpoint_name}'s latency from CloudWatch (GetMetricData): "
                    f"{describe_aws_error(exc)}"
                ) from exc
            values: dict[str, float | None] = {}
            for result in results["MetricDataResults"]:
                metric, _, stat = result["Id"].partition("_")
                name = next(m for m in METRICS if m.lower() == metric)
                # Microseconds -> milliseconds.
                values[f"{name}_{stat}"] = round(result["Values"][0] / 1000.0, 2) if result["Values"] else None
            missing = sum(v is None for v in values.values())
            bar.set_postfix(missing=missing)
            if not missing or time.monotonic() >= deadline:
                return values
            sleep(poll_s)
            bar.update(min(round(poll_s), bar.total - bar.n))


# --- the benchmark ---


@dataclass
class Row:
    instance_type: str
    summary: dict[str, Any]
    metrics: dict[str, float | None]


LoadRunner = Callable[[LoadSettings, Target], LoadResult]


def benchmark(
    *,
    deployment: Deployment,
    token: str,
    instance_types: list[str],
    settings: LoadSettings,
    sagemaker: Any,
    autoscaling: Any,
    cloudwatch: Any,
    load_runner: LoadRunner = run_load,
    metrics_wait_s: float = 300.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    on_result: Callable[[str, LoadResult], None] | None = None,
    waiter_delay_s: int = 30,
) -> list[Row]:
    switcher = EndpointSwitcher(sagemaker, autoscaling, deployment, waiter_delay_s=waiter_delay_s, sleep=sleep)
    current = switcher.read()
    plan = [current] + [t for t in instance_types if t != current]
    rows: list[Row] = []
    stamp = now().strftime("%Y%m%d%H%M%S")
    target = Target(deployment.api_url, token)
    try:
        for instance_type in plan:
            if instance_type != current:
                print(f"endpoint: switching {deployment.endpoint_name} to {instance_type} (minutes)...", flush=True)
                switcher.switch(instance_type, stamp)
            print(f"endpoint: {settings.users} labelers for {settings.seconds:g} s on {instance_type}", flush=True)
            started = now()
            result = load_runner(settings, target)
            ended = now()
            if on_result is not None:
                on_result(instance_type, result)
            metrics = latency_metrics(cloudwatch, deployment, started, ended, wait_s=metrics_wait_s, sleep=sleep)
            rows.append(Row(instance_type, summarize(result), metrics))
    finally:
        switcher.restore()
    return rows


def format_rows(rows: list[Row]) -> str:
    def f(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)

    # The client's round trip of the clicks; a run without clicks (--clicks 0, or none answered) shows
    # its new images instead, and the "of" column says which.
    head = (
        f"{'instance type':<16} {'users':>5} {'answered/s':>10} | {'e2e of':<9} {'e2e ms p50':>10} {'p90':>7} | "
        f"{'ModelLatency ms p50':>19} {'p90':>7} | {'OverheadLatency ms p50':>22} {'p90':>7} | errors"
    )
    lines = [head, "-" * len(head)]
    for row in rows:
        s, m = row.summary, row.metrics
        kind = next((k for k in ("click", "new image") if s["per_type"].get(k, {}).get("ok")), None)
        latency = s["per_type"][kind]["latency_ms"] if kind else {}
        lines.append(
            f"{row.instance_type:<16} {s['users']:>5} {f(s['throughput_rps']):>10} | {kind or '-':<9} "
            f"{f(latency.get('p50')):>10} {f(latency.get('p90')):>7} | "
            f"{f(m.get('ModelLatency_p50')):>19} {f(m.get('ModelLatency_p90')):>7} | "
            f"{f(m.get('OverheadLatency_p50')):>22} {f(m.get('OverheadLatency_p90')):>7} | "
            f"{s['errors'] or 'none'}"
        )
    return "\n".join(lines)


# --- CLI ---


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack prefix of the deployment (fewclick:stackPrefix)")
    parser.add_argument(
        "--instance-types",
        nargs="*",
        default=[],
        help="also run on these instance types (switches the live endpoint; restored at the end)",
    )
    parser.add_argument(
        "--minutes", type=positive_float, default=5.0, help="load per instance type, minutes (default: 5)"
    )
    parser.add_argument("--token", default=None, help="a Cognito ID token for the API")
    parser.add_argument("--username", default=None, help="Cognito user (with --password) instead of --token")
    parser.add_argument("--password", default=None, help="password of --username (SRP: never sent)")
    parser.add_argument("--region", default=None)
    parser.add_argument("--profile", default=None)
    parser.add_argument(
        "--metrics-wait",
        type=non_negative_float,
        default=300.0,
        help="seconds to wait for CloudWatch data (default: 300)",
    )
    add_load_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import boto3

    from fewclick.bench.cognito_srp import CognitoAuthError, id_token

    # Before the first AWS call: a switch and a run are minutes (billed) whose results go there.
    prepare_out_dir(args.out)
    try:
        # Inside the try: a missing region or an unknown --profile is raised by the session or its clients.
        session = boto3.Session(profile_name=args.profile, region_name=args.region)
        deployment = read_deployment(session.client("cloudformation"), args.stack)
        token = args.token
        if token is None:
            if not (args.username and args.password):
                raise EndpointBenchmarkError("give --token, or --username and --password")
            if not (deployment.user_pool_id and deployment.client_id):
                raise EndpointBenchmarkError(f"{args.stack}-Api has no UserPoolId/UiClientId outputs")
            token = id_token(
                session.client("cognito-idp"),
                deployment.user_pool_id,
                deployment.client_id,
                args.username,
                args.password,
            )
        settings = settings_from_args(args, args.minutes * 60.0)

        def keep(instance_type: str, result: LoadResult) -> None:
            write_report(result, args.out, f"endpoint-{_slug(instance_type)}-{settings.users}u")

        rows = benchmark(
            deployment=deployment,
            token=token,
            instance_types=list(args.instance_types),
            settings=settings,
            sagemaker=session.client("sagemaker"),
            autoscaling=session.client("application-autoscaling"),
            cloudwatch=session.client("cloudwatch"),
            metrics_wait_s=args.metrics_wait,
            on_result=keep,
        )
    except (EndpointBenchmarkError, CognitoAuthError) as exc:
        print(f"fewclick benchmark endpoint: {exc}", file=sys.stderr)
        return 2
    except aws_errors() as exc:
        # ClientError's text names the operation ("... when calling the DescribeEndpoint operation: ...").
        print(f"fewclick benchmark endpoint: {describe_aws_error(exc)}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    print(f"per-run JSON and PNG in {args.out}")
    return 0
