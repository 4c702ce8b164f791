"""`fewclick benchmark endpoint`, offline: every AWS call against botocore's Stubber, which checks
operation names, parameters and responses against the real service models shipped with botocore.

The SRP sign-in is checked against a simulated Cognito (the server side of SRP-6a), the instance-type
switch against the exact sequence of SageMaker and Application Auto Scaling calls, including the
restore after a failed run.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from fewclick.bench import cognito_srp
from fewclick.bench.endpoint import (
    SCALABLE_DIMENSION,
    Deployment,
    EndpointBenchmarkError,
    Row,
    benchmark,
    format_rows,
    latency_metrics,
    read_deployment,
)
from fewclick.bench.load import LoadResult, LoadSettings, Sample, Target

REGION = "eu-west-1"
POOL_ID = "eu-west-1_AbCdEf123"
CLIENT_ID = "3n4b5urk1ft4fl3mg5e62d9ado"
ENDPOINT = "FewClickEndpoint-abc123"
CONFIG = "ConfigD1E2F3-xyz"
RESOURCE_ID = f"endpoint/{ENDPOINT}/variant/AllTraffic"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT.lower()}"
T0 = datetime(2026, 7, 1, 9, 5, 3, tzinfo=UTC)


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")


# --- SRP ---


def _pi_fixed(bits: int) -> int:
    one = 1 << (bits + 64)

    def atan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> 64


def test_srp_group_is_rfc3526_3072() -> None:
    prime = 2**3072 - 2**3008 - 1 + 2**64 * (_pi_fixed(2942) + 1690314)
    assert prime == cognito_srp.N


def test_timestamp_has_no_leading_zero_day() -> None:
    assert cognito_srp.cognito_timestamp(T0) == "Wed Jul 1 09:05:03 UTC 2026"


class SimulatedCognito:
    """The server side of Cognito's SRP: a user with a salt and verifier; checks the client's proof."""

    def __init__(self, username: str, password: str) -> None:
        self.user_id = "5f9c1a2e-user-sub"
        self.salt_hex = os.urandom(16).hex()
        x = cognito_srp.compute_x(POOL_ID.split("_")[1], self.user_id, password, self.salt_hex)
        self.verifier = pow(cognito_srp.G, x, cognito_srp.N)
        self.small_b = int.from_bytes(os.urandom(64), "big")
        self.big_b = (cognito_srp.K * self.verifier + pow(cognito_srp.G, self.small_b, cognito_srp.N)) % cognito_srp.N
        self.secret_block = base64.standard_b64encode(os.urandom(64)).decode()

    def challenge(self) -> dict[str, str]:
        return {
            "SALT": self.salt_hex,
            "SRP_B": f"{self.big_b:x}",
            "SECRET_BLOCK": self.secret_block,
            "USER_ID_FOR_SRP": self.user_id,
            "USERNAME": self.user_id,
        }

    def expected_signature(self, srp_a_hex: str, timestamp: str) -> str:
        big_a = int(srp_a_hex, 16)
        u = cognito_srp.compute_u(big_a, self.big_b)
        shared = pow(big_a * pow(self.verifier, u, cognito_srp.N), self.small_b, cognito_srp.N)
        key = cognito_srp.hkdf_16(bytes.fromhex(cognito_srp.pad_hex(shared)), bytes.fromhex(cognito_srp.pad_hex(u)))
        message = (
            POOL_ID.split("_")[1].encode()
            + self.user_id.encode()
            + base64.standard_b64decode(self.secret_block)
            + timestamp.encode()
        )
        return base64.standard_b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def test_srp_sign_in_proves_the_password_to_cognito() -> None:
    cognito = SimulatedCognito("labeler@example.com", "correct horse battery staple")
    idp = client("cognito-idp")
    sent: dict[str, Any] = {}
    # Capture what the client sends (Stubber checks shapes; the proof is checked here).
    idp.meta.events.register(
        "provide-client-params.cognito-idp.*", lambda params, model, **_: sent.__setitem__(model.name, params)
    )
    with Stubber(idp) as stub:
        stub.add_response(
            "initiate_auth",
            {"ChallengeName": "PASSWORD_VERIFIER", "ChallengeParameters": cognito.challenge()},
            {"AuthFlow": "USER_SRP_AUTH", "ClientId": CLIENT_ID, "AuthParameters": ANY},
        )
        stub.add_response(
            "respond_to_auth_challenge",
            {"AuthenticationResult": {"IdToken": "id.token.jwt", "AccessToken": "a", "ExpiresIn": 3600}},
            {"ClientId": CLIENT_ID, "ChallengeName": "PASSWORD_VERIFIER", "ChallengeResponses": ANY},
        )
        token = cognito_srp.id_token(idp, POOL_ID, CLIENT_ID, "labeler@example.com", "correct horse battery staple")
        stub.assert_no_pending_responses()
    assert token == "id.token.jwt"
    answers = sent["RespondToAuthChallenge"]["ChallengeResponses"]
    srp_a = sent["InitiateAuth"]["AuthParameters"]["SRP_A"]
    assert sent["InitiateAuth"]["AuthParameters"]["USERNAME"] == "labeler@example.com"
    assert answers["USERNAME"] == cognito.user_id and answers["PASSWORD_CLAIM_SECRET_BLOCK"] == cognito.secret_block
    assert answers["PASSWORD_CLAIM_SIGNATURE"] == cognito.expected_signature(srp_a, answers["TIMESTAMP"])
    # The password itself never appears in anything sent.
    assert "correct horse" not in repr(sent)


def test_srp_wrong_password_does_not_verify() -> None:
    cognito = SimulatedCognito("u", "right")
    srp = cognito_srp.SrpClient(POOL_ID, "u", "wrong")
    answers = srp.challenge_responses(cognito.challenge(), T0)
    assert answers["PASSWORD_CLAIM_SIGNATURE"] != cognito.expected_signature(f"{srp.big_a:x}", answers["TIMESTAMP"])


def test_sign_in_refused_is_a_readable_error() -> None:
    idp = client("cognito-idp")
    with Stubber(idp) as stub:
        stub.add_client_error("initiate_auth", "NotAuthorizedException", "Incorrect username or password.")
        with pytest.raises(cognito_srp.CognitoAuthError, match="Incorrect username or password"):
            cognito_srp.id_token(idp, POOL_ID, CLIENT_ID, "u", "p")


# --- stack outputs ---


def _stack(name: str, outputs: dict[str, str]) -> dict[str, Any]:
    return {
        "StackName": name,
        "CreationTime": T0,
        "StackStatus": "CREATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
    }


def test_deployment_is_read_from_the_stack_outputs() -> None:
    cfn = client("cloudformation")
    with Stubber(cfn) as stub:
        api = {
            "ApiUrl": "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/",
            "UserPoolId": POOL_ID,
            "UiClientId": CLIENT_ID,
        }
        stub.add_response("describe_stacks", {"Stacks": [_stack("FewClick-Api", api)]}, {"StackName": "FewClick-Api"})
        stub.add_response(
            "describe_stacks",
            {"Stacks": [_stack("FewClick-Model", {"EndpointName": ENDPOINT, "ImageUri": "x"})]},
            {"StackName": "FewClick-Model"},
        )
        deployment = read_deployment(cfn, "FewClick")
    assert deployment == Deployment(
        "https://abc123.execute-api.eu-west-1.amazonaws.com/prod", ENDPOINT, "AllTraffic", POOL_ID, CLIENT_ID
    )


def test_missing_stack_is_a_readable_error() -> None:
    cfn = client("cloudformation")
    with Stubber(cfn) as stub:
        stub.add_client_error("describe_stacks", "ValidationError", "Stack with id Nope-Api does not exist")
        with pytest.raises(EndpointBenchmarkError, match="Nope-Api"):
            read_deployment(cfn, "Nope")


# --- CloudWatch ---

DEPLOYMENT = Deployment("https://api.example.test/prod", ENDPOINT, "AllTraffic", POOL_ID, CLIENT_ID)


def _metric_results(values: dict[str, float | None]) -> dict[str, Any]:
    return {
        "MetricDataResults": [
            {
                "Id": key,
                "Label": key,
                "Timestamps": [T0] if value is not None else [],
                "Values": [value] if value is not None else [],
                "StatusCode": "Complete",
            }
            for key, value in values.items()
        ]
    }


MICROS = {
    "modellatency_p50": 41_500.0,
    "modellatency_p90": 63_250.0,
    "overheadlatency_p50": 4_100.0,
    "overheadlatency_p90": 7_900.0,
}


def _expected_queries(start: datetime, end: datetime) -> dict[str, Any]:
    period = int((end - start).total_seconds())
    dimensions = [{"Name": "EndpointName", "Value": ENDPOINT}, {"Name": "VariantName", "Value": "AllTraffic"}]
    return {
        "MetricDataQueries": [
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
            for metric in ("ModelLatency", "OverheadLatency")
            for stat in ("p50", "p90")
        ],
        "StartTime": start,
        "EndTime": end,
    }


def test_latency_metrics_wait_for_cloudwatch_and_convert_to_ms() -> None:
    cw = client("cloudwatch")
    start, end = T0, T0 + timedelta(minutes=5, seconds=20)
    window = (T0.replace(second=0), T0.replace(second=0) + timedelta(minutes=6))  # 09:05 to 09:11
    slept: list[float] = []
    with Stubber(cw) as stub:
        stub.add_response("get_metric_data", _metric_results(dict.fromkeys(MICROS)), _expected_queries(*window))
        stub.add_response("get_metric_data", _metric_results(MICROS), _expected_queries(*window))
        values = latency_metrics(cw, DEPLOYMENT, start, end, wait_s=600, poll_s=30, sleep=slept.append)
        stub.assert_no_pending_responses()
    assert slept == [30]
    assert values == {
        "ModelLatency_p50": 41.5,
        "ModelLatency_p90": 63.25,
        "OverheadLatency_p50": 4.1,
        "OverheadLatency_p90": 7.9,
    }


# --- the whole benchmark, with the instance-type switch and its undoing ---


def _endpoint(status: str, config: str) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT.lower()}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": T0,
        "LastModifiedTime": T0,
    }


VARIANT = {
    "VariantName": "AllTraffic",
    "ModelName": "FewClickModel-abc",
    "InitialInstanceCount": 1,
    "InstanceType": "ml.g4dn.xlarge",
    "InitialVariantWeight": 1.0,
    "ContainerStartupHealthCheckTimeoutInSeconds": 600,
    "ModelDataDownloadTimeoutInSeconds": 600,
}
SCALING_TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": RESOURCE_ID,
    "ScalableDimension": SCALABLE_DIMENSION,
    "MinCapacity": 1,
    "MaxCapacity": 3,
    "RoleARN": "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
    "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
    "CreationTime": T0,
}
TRACKING = {
    "TargetValue": 300.0,
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
    "ScaleOutCooldown": 120,
    "ScaleInCooldown": 600,
}
POLICY = {
    "PolicyARN": "arn:aws:autoscaling:eu-west-1:123456789012:scalingPolicy:x:resource/sagemaker/y:policyName/p",
    "PolicyName": "FewClickModelScalingInvocationsPerInstance",
    "ServiceNamespace": "sagemaker",
    "ResourceId": RESOURCE_ID,
    "ScalableDimension": SCALABLE_DIMENSION,
    "PolicyType": "TargetTrackingScaling",
    "TargetTrackingScalingPolicyConfiguration": TRACKING,
    "CreationTime": T0,
}


def fake_load(settings: LoadSettings, target: Target) -> LoadResult:
    assert target.base_url == DEPLOYMENT.api_url and target.token == "id.token"
    samples = [Sample(0.1 * i, "new image" if i % 6 == 0 else "click", 200, 80.0 + i, 40.0) for i in range(60)]
    samples.append(Sample(6.5, "click", 429, 3.0, None, "THROTTLED"))
    return LoadResult(settings, samples, duration_s=settings.seconds)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        self.t += timedelta(minutes=1)
        return self.t


def _stub_metrics(stub: Stubber) -> None:
    stub.add_response(
        "get_metric_data", _metric_results(MICROS), {"MetricDataQueries": ANY, "StartTime": ANY, "EndTime": ANY}
    )


def _stub_read(sm: Stubber) -> None:
    sm.add_response("describe_endpoint", _endpoint("InService", CONFIG), {"EndpointName": ENDPOINT})
    sm.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": CONFIG,
            "EndpointConfigArn": "arn:aws:sagemaker:x:1:endpoint-config/c",
            "ProductionVariants": [VARIANT],
            "CreationTime": T0,
        },
        {"EndpointConfigName": CONFIG},
    )


def _stub_switch_and_restore(
    sm: Stubber,
    aas: Stubber,
    bench_config: str,
    switch_states: tuple[str, ...] = (),
    switch_fails: bool = False,
    interrupted: bool = False,
) -> None:
    """The switch to g5 and its undoing; ``switch_states``: what DescribeEndpoint says before the switch
    ends (each a poll); ``interrupted``: the switch's wait was stopped, and restore's own polls see it end."""
    target = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE_ID, "ScalableDimension": SCALABLE_DIMENSION}
    aas.add_response(
        "describe_scalable_targets",
        {"ScalableTargets": [SCALING_TARGET]},
        {"ServiceNamespace": "sagemaker", "ResourceIds": [RESOURCE_ID], "ScalableDimension": SCALABLE_DIMENSION},
    )
    aas.add_response("describe_scaling_policies", {"ScalingPolicies": [POLICY]}, target)
    aas.add_response("deregister_scalable_target", {}, target)
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": f"arn:aws:sagemaker:x:1:endpoint-config/{bench_config.lower()}"},
        {"EndpointConfigName": bench_config, "ProductionVariants": [{**VARIANT, "InstanceType": "ml.g5.xlarge"}]},
    )
    sm.add_response(
        "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": bench_config}
    )
    for status in switch_states:
        sm.add_response("describe_endpoint", _endpoint(status, bench_config), {"EndpointName": ENDPOINT})
    if switch_fails:
        # SageMaker could not bring the new instances up: the endpoint serves its old config again.
        failed = {**_endpoint("InService", CONFIG), "FailureReason": "ml.g5.xlarge: insufficient capacity"}
        sm.add_response("describe_endpoint", failed, {"EndpointName": ENDPOINT})
        sm.add_response("describe_endpoint", failed, {"EndpointName": ENDPOINT})  # restore finds it there
    else:
        sm.add_response("describe_endpoint", _endpoint("InService", bench_config), {"EndpointName": ENDPOINT})
        # Restore: the original config, autoscaling as it was, the temporary config deleted.
        if not interrupted:
            sm.add_response("describe_endpoint", _endpoint("InService", bench_config), {"EndpointName": ENDPOINT})
        sm.add_response(
            "update_endpoint", {"EndpointArn": ENDPOINT_ARN}, {"EndpointName": ENDPOINT, "EndpointConfigName": CONFIG}
        )
        sm.add_response("describe_endpoint", _endpoint("Updating", CONFIG), {"EndpointName": ENDPOINT})
        sm.add_response("describe_endpoint", _endpoint("InService", CONFIG), {"EndpointName": ENDPOINT})
    aas.add_response(
        "register_scalable_target",
        {},
        {**target, "MinCapacity": 1, "MaxCapacity": 3, "RoleARN": SCALING_TARGET["RoleARN"]},
    )
    aas.add_response(
        "put_scaling_policy",
        {"PolicyARN": POLICY["PolicyARN"]},
        {
            **target,
            "PolicyName": POLICY["PolicyName"],
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": TRACKING,
        },
    )
    sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": bench_config})


ONE_USER_ONE_SECOND = LoadSettings(users=1, seconds=1.0)


def _run(
    sm: Any,
    aas: Any,
    cw: Any,
    instance_types: list[str],
    *,
    settings: LoadSettings = ONE_USER_ONE_SECOND,
    load_runner: Any = fake_load,
    sleep: Any = lambda seconds: None,
) -> list[Row]:
    """The benchmark against the stubbed clients, with a waiter delay of 30 s (what `sleep` sees)."""
    return benchmark(
        deployment=DEPLOYMENT,
        token="id.token",
        instance_types=instance_types,
        settings=settings,
        sagemaker=sm,
        autoscaling=aas,
        cloudwatch=cw,
        load_runner=load_runner,
        now=Clock(),
        sleep=sleep,
        waiter_delay_s=30,
    )


def test_benchmark_per_instance_type_and_restore() -> None:
    sm, aas, cw = client("sagemaker"), client("application-autoscaling"), client("cloudwatch")
    bench_config = f"{CONFIG}-bench-g5-xlarge-20260701090603"
    settings = LoadSettings(users=4, seconds=7.0)
    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub, Stubber(cw) as cw_stub:
        _stub_read(sm_stub)
        _stub_metrics(cw_stub)  # the current type (g4dn) first
        _stub_switch_and_restore(sm_stub, aas_stub, bench_config)
        _stub_metrics(cw_stub)
        rows = _run(sm, aas, cw, ["ml.g4dn.xlarge", "ml.g5.xlarge"], settings=settings)
        for stub in (sm_stub, aas_stub, cw_stub):
            stub.assert_no_pending_responses()
    assert [row.instance_type for row in rows] == ["ml.g4dn.xlarge", "ml.g5.xlarge"]
    assert rows[0].metrics["ModelLatency_p50"] == 41.5 and rows[1].metrics["OverheadLatency_p90"] == 7.9
    assert rows[0].summary["errors"] == {"429 THROTTLED": 1}
    table = format_rows(rows)
    assert "ml.g5.xlarge" in table and "41.5" in table and "ModelLatency ms p50" in table


def test_a_failed_run_still_restores_the_endpoint() -> None:
    sm, aas, cw = client("sagemaker"), client("application-autoscaling"), client("cloudwatch")
    bench_config = f"{CONFIG}-bench-g5-xlarge-20260701090603"
    calls = {"n": 0}

    def failing_on_g5(settings: LoadSettings, target: Target) -> LoadResult:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C during the g5 run
        return fake_load(settings, target)

    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub, Stubber(cw) as cw_stub:
        _stub_read(sm_stub)
        _stub_metrics(cw_stub)
        _stub_switch_and_restore(sm_stub, aas_stub, bench_config)
        with pytest.raises(KeyboardInterrupt):
            _run(sm, aas, cw, ["ml.g5.xlarge"], load_runner=failing_on_g5)
        for stub in (sm_stub, aas_stub, cw_stub):
            stub.assert_no_pending_responses()


def test_current_instance_type_only_touches_nothing() -> None:
    sm, aas, cw = client("sagemaker"), client("application-autoscaling"), client("cloudwatch")
    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub, Stubber(cw) as cw_stub:
        _stub_read(sm_stub)
        _stub_metrics(cw_stub)
        rows = _run(sm, aas, cw, [])
        for stub in (sm_stub, aas_stub, cw_stub):
            stub.assert_no_pending_responses()
    assert [row.instance_type for row in rows] == ["ml.g4dn.xlarge"]


def test_the_switch_shows_its_wait_and_polls_until_the_new_config_serves(capsys: pytest.CaptureFixture[str]) -> None:
    sm, aas, cw = client("sagemaker"), client("application-autoscaling"), client("cloudwatch")
    slept: list[float] = []
    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub, Stubber(cw) as cw_stub:
        _stub_read(sm_stub)
        _stub_metrics(cw_stub)
        _stub_switch_and_restore(sm_stub, aas_stub, f"{CONFIG}-bench-g5-xlarge-20260701090603", ("Updating",) * 3)
        _stub_metrics(cw_stub)
        rows = _run(sm, aas, cw, ["ml.g5.xlarge"], sleep=slept.append)
        for stub in (sm_stub, aas_stub, cw_stub):
            stub.assert_no_pending_responses()
    assert [row.instance_type for row in rows] == ["ml.g4dn.xlarge", "ml.g5.xlarge"]
    # Three polls found it Updating on the way there, one on the way back; each waited the delay.
    assert slept == [30, 30, 30, 30]
    err = capsys.readouterr().err
    assert "switching to ml.g5.xlarge" in err and "status=Updating" in err and "s waited" in err
    assert "restoring ml.g4dn.xlarge" in err


def test_a_switch_sagemaker_rolled_back_is_an_error_not_a_row_for_the_old_type() -> None:
    """boto3's waiter passed once the endpoint was InService again, on its old config: the benchmark
    then reported the old instance type's latency under the new one's name."""
    sm, aas, cw = client("sagemaker"), client("application-autoscaling"), client("cloudwatch")
    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub, Stubber(cw) as cw_stub:
        _stub_read(sm_stub)
        _stub_metrics(cw_stub)
        # No UpdateEndpoint back: the endpoint is on its config already; autoscaling and the
        # temporary config are still put right.
        _stub_switch_and_restore(
            sm_stub, aas_stub, f"{CONFIG}-bench-g5-xlarge-20260701090603", ("Updating",), switch_fails=True
        )
        with pytest.raises(EndpointBenchmarkError) as raised:
            _run(sm, aas, cw, ["ml.g5.xlarge"])
        for stub in (sm_stub, aas_stub, cw_stub):
            stub.assert_no_pending_responses()
    message = str(raised.value)
    assert "switching to ml.g5.xlarge failed" in message and "insufficient capacity" in message
    assert f"on config {CONFIG} (wanted {CONFIG}-bench-g5-xlarge-20260701090603)" in message


def test_ctrl_c_during_the_switch_waits_for_it_to_end_before_restoring() -> None:
    """SageMaker refuses UpdateEndpoint while an update is under way: restoring at once failed and left
    autoscaling off."""
    sm, aas, cw = client("sagemaker"), client("application-autoscaling"), client("cloudwatch")
    bench_config = f"{CONFIG}-bench-g5-xlarge-20260701090603"
    calls = {"n": 0}

    def interrupted_once(seconds: float) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    with Stubber(sm) as sm_stub, Stubber(aas) as aas_stub, Stubber(cw) as cw_stub:
        _stub_read(sm_stub)
        _stub_metrics(cw_stub)
        # The switch's first poll (Updating), then Ctrl-C; restore polls the same update to its end
        # (Updating, InService on the bench config) before it updates back.
        _stub_switch_and_restore(sm_stub, aas_stub, bench_config, ("Updating", "Updating"), interrupted=True)
        with pytest.raises(KeyboardInterrupt):
            _run(sm, aas, cw, ["ml.g5.xlarge"], sleep=interrupted_once)
        for stub in (sm_stub, aas_stub, cw_stub):
            stub.assert_no_pending_responses()
